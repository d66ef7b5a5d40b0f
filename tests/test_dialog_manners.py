"""Issue 14's manners, as a person meets them through the simulator, every answer checked on
both renderers: small talk is not a search, nothing to cancel is said as such, every answer
offers a next step, 取消訂閱 after a podcast subscription asks which one, English plurals, and
reminder times typed as people say them ("7am", 早上七點)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.simulator.views import views
from models.members import ChannelAccount, Member
from models.podcasts import PodcastSubscription
from models.times import parse_time_of_day
from tests.dialog import Chat, buttons, texts
from tests.podcast_support import seed_podcast
from tests.render_check import dropped, line_limit_errors

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
async def world(served, tone: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with served(public_base_url="https://edoor.example") as (url, api):
        runtime = api.state.runtime
        await seed_podcast(runtime.sessionmaker, runtime.settings, tone, now=NOW)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield {"http": http, "runtime": runtime}


def _both(replies: list[dict[str, Any]]) -> None:
    """Every action survives both renderers, within LINE's limits."""
    for reply in replies:
        seen = views(reply)
        assert dropped(reply, **seen) == []
        assert line_limit_errors(seen["line"]) == []


@pytest.mark.parametrize(
    ("language", "said", "expected"),
    [
        ("zh-TW", "你好", "您好！"),
        ("zh-TW", "謝謝！", "不客氣"),
        ("zh-TW", "👍", "收到"),
        ("zh-TW", "?", "收到"),
        ("zh-TW", "取消", "目前沒有進行中的步驟"),
        ("en", "hello", "Hello!"),
        ("en", "Thanks!", "You're welcome"),
        ("en", "cancel", "nothing to cancel"),
    ],
)
async def test_small_talk_gets_a_friendly_answer_and_the_menu_never_a_search(
    world: dict[str, Any], language: str, said: str, expected: str
) -> None:
    chat = Chat(world["http"], f"sim-talk-{language}", language=language)
    replies = await chat.say(said)
    shown = texts(replies)
    assert expected in shown
    assert "找不到" not in shown
    assert "No course" not in shown
    assert "cmd:search" in buttons(replies).values()
    _both(replies)


async def test_a_wrong_course_password_and_every_snooze_offer_a_way_on(
    world: dict[str, Any],
) -> None:
    chat = Chat(world["http"], "sim-ways")
    snoozed = await chat.tap("learning.snooze")
    assert buttons(snoozed)["我的學習"] == "cmd:learning"
    _both(snoozed)
    # An answer no handler gave a button gets the main menu (the root router's net).
    dead = await chat.tap("pod.unsub:999999")
    assert buttons(dead), texts(dead)
    _both(dead)
    # The cancel button leaves a step like typing 取消.
    await chat.tap("settings.reminder")
    left = await chat.tap("cancel")
    assert "已取消" in texts(left)
    assert "提醒時間" not in texts(await chat.say("07:00"))  # not taken as a reminder time


async def test_unsubscribe_right_after_a_podcast_subscription_asks_which(
    world: dict[str, Any],
) -> None:
    chat = Chat(world["http"], "sim-unsub")
    runtime = world["runtime"]
    await chat.say("聽課")
    async with runtime.sessionmaker() as session:
        podcast_id = int(
            (await session.scalars(select(PodcastSubscription.podcast_id))).first() or 0
        )
    assert podcast_id == 0  # nothing subscribed yet
    listed = await chat.say("聽課")
    (open_action,) = [a for a in buttons(listed).values() if a.startswith("pod.open:")]
    pid = open_action.split(":")[1]
    await chat.tap(f"pod.subok:{pid}:0730:d")
    asked = await chat.say("取消訂閱")
    assert "要取消哪一個訂閱" in texts(asked)
    choice = buttons(asked)
    assert choice["停止活動訊息"] == "settings.marketing:off"
    assert choice["停收「資安小學堂」"] == f"pod.unsub:{pid}"
    _both(asked)
    # Nothing changed until the person chooses; the podcast's own button stops the podcast only.
    async with runtime.sessionmaker() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == chat.user)
        )
        assert account is not None
        member = await session.get(Member, account.member_id)
        assert member is not None
        assert member.marketing_opt_in is True
    stopped = await chat.tap(choice["停收「資安小學堂」"])
    assert "資安小學堂" in texts(stopped)
    async with runtime.sessionmaker() as session:
        sub = await session.scalar(select(PodcastSubscription))
        assert sub is not None
        assert sub.active is False
        member = await session.get(Member, account.member_id)
        assert member is not None
        assert member.marketing_opt_in is True
    # Without a podcast subscription, 取消訂閱 stops campaign messages at once, as before.
    stopped_marketing = await chat.say("取消訂閱")
    assert "要取消哪一個訂閱" not in texts(stopped_marketing)
    _both(stopped_marketing)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("7am", "07:00"),
        ("8:30 pm", "20:30"),
        ("早上七點", "07:00"),
        ("晚上8點半", "20:30"),
        ("下午三點十五分", "15:15"),
        ("noon", "12:00"),
        ("２０：００", "20:00"),
    ],
)
async def test_reminder_time_typed_as_people_say_it(
    world: dict[str, Any], typed: str, expected: str
) -> None:
    chat = Chat(world["http"], "sim-clock")
    await chat.tap("settings.reminder")
    replies = await chat.say(typed)
    assert f"提醒時間：{expected}" in texts(replies)
    _both(replies)


def test_times_that_are_not_times_are_refused() -> None:
    for typed in ("7", "25:00", "13pm", "hello", "三十點"):
        assert parse_time_of_day(typed) is None, typed


async def test_english_says_one_course_not_one_courses(world: dict[str, Any]) -> None:
    chat = Chat(world["http"], "sim-plural", language="en")
    listed = await chat.say("podcasts")
    shown = texts(listed)
    assert "1 episodes" not in shown
    catalog = world["runtime"].services.catalog
    assert catalog.tn("en", "courses.found", 1, total=1, query="AI") == '1 course about "AI"'
    assert catalog.tn("en", "courses.found", 2, total=2, query="AI") == '2 courses about "AI"'
    assert catalog.tn("en", "podcasts.episodes_count", 1, count=1) == "1 episode"
