"""Issue 14, item 8: every reply offers a next step, through the real app and checked on both
renderers (the LINE messages and the Telegram calls built from the answer): what a verified
phone unlocks, declining or accepting an account link, deletion (done or declined), a finished
podcast, a wrong course password, and every answer that finds nothing (選單 and 說明 beside
its own suggestions)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.messages import load_replies
from bot.simulator.views import line_view, telegram_view, views
from models.catalog_import import read_catalog
from models.courses import Course, apply_catalog
from models.podcasts import Episode, parse_check
from models.roster_import import import_roster
from models.search import demo_catalog_path
from tests.dialog import Chat, World, buttons, texts
from tests.podcast_support import seed_podcast
from tests.render_check import dropped, line_actions, line_limit_errors, telegram_actions

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
SERVANT = "0912-345-678"
CITIZEN = "0987-654-321"
ROSTER = (
    "employee_id,name,agency,mobile,email,active\n"
    "E001,王小明,臺北市政府資訊局,0912345678,ming@gov.taipei,是\n"
)
MENU, HELP = "cmd:menu", "cmd:help"
# A course of the demo catalog behind a password (only its hash is known: any try is wrong).
PASSWORD_COURSE = "egov-pg-530419a3e4"


@pytest.fixture
async def world(session, served, tone: Path) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    await apply_catalog(session, parsed=read_catalog(demo_catalog_path()), now=NOW)
    await session.commit()
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served(public_base_url="https://edoor.example"))
        runtime = api.state.runtime
        await seed_podcast(runtime.sessionmaker, runtime.settings, tone, now=NOW)
        async with runtime.sessionmaker() as s:
            await import_roster(s, vault=runtime.services.vault, data=ROSTER, now=NOW)
            await s.commit()
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        w = World(runtime, http, now=NOW)
        w.follow_clock()
        yield w


def offered(replies: list[dict[str, Any]], *actions: str) -> None:
    """Each of `actions` can be tapped on LINE and on Telegram in this answer, sent in one go
    as the webhook sends it; and no reply loses an action or breaks LINE's limits."""
    assert replies, "no answer"
    typed = load_replies(replies)
    line, telegram = line_view(typed), telegram_view(typed)
    on_line, on_telegram = line_actions(line), telegram_actions(telegram)
    for action in actions:
        assert action in on_line, (action, sorted(on_line))
        assert action in on_telegram, (action, sorted(on_telegram))
    assert line_limit_errors(line) == []
    for reply in replies:
        seen = views(reply)
        assert dropped(reply, **seen) == []
        assert line_limit_errors(seen["line"]) == []


async def verify(world: World, chat: Chat, phone: str) -> list[dict[str, Any]]:
    await chat.say("驗證手機" if chat.language != "en" else "verify")
    sent = await chat.say(phone)
    assert buttons(sent), texts(sent)
    return await chat.say(await world.sms_code(phone))


# -- what a verified phone unlocks -----------------------------------------------------------------
async def test_a_verified_citizen_is_told_prizes_and_how_civil_servants_get_more(
    world: World,
) -> None:
    chat = world.chat("ns-citizen")
    done = await verify(world, chat, CITIZEN)
    shown = texts(done)
    assert "手機：已驗證" in shown
    assert "活動領獎" in shown  # what it unlocks, named
    assert "人事資料登記的手機號碼" in shown  # and how a civil servant would get more
    assert "公務人員：已驗證" not in shown
    offered(done, "cmd:prizes", "cmd:search", MENU, HELP)
    assert buttons(done)["活動領獎"] == "cmd:prizes"
    # The prizes button leads somewhere that itself goes on (no campaign runs here).
    prizes = await chat.tap("cmd:prizes")
    offered(prizes, "cmd:myprizes", MENU, HELP)


async def test_a_verified_civil_servant_gets_their_courses_learning_and_prizes(
    world: World,
) -> None:
    chat = world.chat("ns-servant", language="en")
    done = await verify(world, chat, SERVANT)
    shown = texts(done)
    assert "Civil servant: verified" in shown
    assert '"My learning"' in shown
    assert "personnel record" not in shown  # the roster matched: no "if you are" note
    offered(done, "course.f:0,ac:", "cmd:learning", "cmd:prizes", MENU, HELP)
    labels = buttons(done)
    assert labels["For civil servants"] == "course.f:0,ac:"
    # The button lists the courses only civil servants may take.
    listed = await chat.tap(labels["For civil servants"])
    (cards,) = [r for r in listed if r["kind"] == "cards"]
    assert cards["cards"], texts(listed)
    async with world.runtime.sessionmaker() as s:
        for card in cards["cards"]:
            course_id = card["buttons"][0]["action"].split(":", 1)[1]
            course = await s.get(Course, course_id)
            assert course is not None
            assert course.audience == "civil_servant", card["title"]


async def test_declining_the_link_offers_another_number_the_menu_and_help(world: World) -> None:
    first, second = world.chat("ns-link-a"), world.chat("ns-link-b")
    await verify(world, first, CITIZEN)
    world.advance(seconds=61)
    offer = await verify(world, second, CITIZEN)
    assert buttons(offer)["不要連結"] == "verify.nolink"
    declined = await second.tap("verify.nolink")
    assert "不連結" in texts(declined)
    offered(declined, "cmd:verify", MENU, HELP)
    assert buttons(declined)["改用其他號碼"] == "cmd:verify"
    # "Use another number" asks for a number (this account has none verified).
    asked = await second.tap("cmd:verify")
    assert asked[0]["kind"] == "ask_phone"
    # Typed "no" to a new offer is the same answer.
    await second.tap("cancel")
    world.advance(seconds=61)
    await verify(world, second, CITIZEN)
    typed_no = await second.say("不要")
    assert "不連結" in texts(typed_no)
    offered(typed_no, "cmd:verify", MENU, HELP)


async def test_linking_says_what_the_verified_phone_unlocks(world: World) -> None:
    first, second = world.chat("ns-join-a"), world.chat("ns-join-b")
    await verify(world, first, SERVANT)
    world.advance(seconds=61)
    await verify(world, second, SERVANT)
    linked = await second.tap("verify.link")
    assert "帳號已連結" in texts(linked)
    assert "公務人員：已驗證" in texts(linked)
    offered(linked, "course.f:0,ac:", "cmd:learning", "cmd:prizes", MENU, HELP)


# -- deletion --------------------------------------------------------------------------------------
async def test_after_deletion_the_menu_and_help_in_the_persons_language(world: World) -> None:
    chat = world.chat("ns-delete", language="en")
    await chat.say("delete my data")
    kept = await chat.tap("settings.delete_no")
    assert "your data is kept" in texts(kept)
    offered(kept, "cmd:settings", MENU, HELP)
    await chat.say("delete my data")
    gone = await chat.tap("settings.delete_yes")
    assert "has been deleted" in texts(gone)
    offered(gone, MENU, HELP)
    assert buttons(gone) == {"Menu": MENU, "Help": HELP}


# -- a finished podcast, a wrong password ------------------------------------------------------
async def test_a_finished_podcast_offers_more_podcasts_and_the_menu(world: World) -> None:
    chat = world.chat("ns-listener")
    listed = await chat.say("聽課")
    (open_action,) = [a for a in buttons(listed).values() if a.startswith("pod.open:")]
    async with world.runtime.sessionmaker() as s:
        ids = list(await s.scalars(select(Episode.id).order_by(Episode.number)))
    assert len(ids) == 3
    for episode_id in ids[:-1]:
        step = await chat.tap(f"pod.done:{episode_id}")
        offered(step, open_action)
    last = await chat.tap(f"pod.done:{ids[-1]}")
    assert "恭喜" in texts(last)
    offered(last, open_action, "cmd:podcasts", MENU)
    assert buttons(last)["其他語音課"] == "cmd:podcasts"
    again = await chat.tap(f"pod.done:{ids[0]}")
    assert "全部 3 集" in texts(again)
    offered(again, "cmd:podcasts", MENU)


async def test_a_podcast_that_earned_hours_offers_my_learning(world: World, tone: Path) -> None:
    runtime = world.runtime
    law = await seed_podcast(
        runtime.sessionmaker,
        runtime.settings,
        tone,
        slug="law",
        title="法規快報",
        episodes=1,
        hours=1.0,
        now=NOW,
    )
    (episode,) = law.episodes
    async with runtime.sessionmaker() as s:
        row = await s.get(Episode, episode.id)
        assert row is not None
        row.check_question = parse_check(
            {"question": "密碼要多久換一次？", "choices": ["永遠不換", "定期更換"], "answer": 1}
        )
        await s.commit()
    chat = world.chat("ns-hours", language="en")
    asked = await chat.tap(f"pod.done:{episode.id}")
    offered(asked, f"pod.ans:{episode.id}:1", f"pod.ep:{episode.id}")
    done = await chat.tap(f"pod.ans:{episode.id}:1")
    shown = texts(done)
    assert "learning hours: 1" in shown, shown
    assert "1 episodes" not in shown  # one episode is not "episodes"
    assert "1 learning hours" not in shown
    offered(done, "cmd:learning", "cmd:podcasts", MENU)
    assert buttons(done)["My learning"] == "cmd:learning"


async def test_a_wrong_course_password_offers_a_cancel_then_a_search(world: World) -> None:
    chat = world.chat("ns-password")
    await chat.tap(f"course.pw:{PASSWORD_COURSE}")
    wrong = await chat.say("not-the-password")
    assert "密碼不對" in texts(wrong), texts(wrong)
    offered(wrong, "cancel")
    for _ in range(4):
        locked = await chat.say("still-not-it")
    assert "cancel" not in buttons(locked).values()  # the step is over: nothing to cancel
    offered(locked, "cmd:search", MENU, HELP)
    # Asking again during the cool-down says when, with the same ways on.
    cooling = await chat.tap(f"course.pw:{PASSWORD_COURSE}")
    offered(cooling, "cmd:search", MENU, HELP)


# -- answers that find nothing --------------------------------------------------------------
@pytest.mark.parametrize(
    ("said", "expected", "own"),
    [
        ("沒有這種課程吧zzz", "找不到", ()),
        ("量子糾纏 30分鐘以內", "找不到", ()),
        ("資安 30分鐘以內 類別:語言學習", "要放寬條件嗎", ("course.f:0:資安 學習",)),
        ("我的收藏", "還沒有收藏課程", ("course.rec", "cmd:search")),
        ("我的獎品", "還沒有獲得獎品", ("cmd:prizes",)),
    ],
)
async def test_every_answer_that_finds_nothing_offers_the_menu_and_help(
    world: World, said: str, expected: str, own: tuple[str, ...]
) -> None:
    chat = world.chat("ns-nothing")
    replies = await chat.say(said)
    assert expected in texts(replies), texts(replies)
    offered(replies, *own, MENU, HELP)


async def test_tapped_answers_that_find_nothing_offer_the_menu_and_help(world: World) -> None:
    chat = world.chat("ns-taps", language="en")
    empty = await chat.tap("course.cat:NoSuchCategory")
    assert "No courses match" in texts(empty)
    offered(empty, "cmd:search", MENU, HELP)
    # Only courses for civil servants match: the way to see them, then the menu and help;
    # said again after the notice beside results was given (else it would read "nothing").
    citizen = world.chat("ns-hidden", language="en")
    beside = await citizen.say("貪污治罪條例")
    assert any(r["kind"] == "cards" for r in beside)
    assert "for civil servants only that also match" in texts(beside)
    for _ in range(2):
        hidden = await citizen.say("公務機密維護講習")
        assert "No course open to everyone matches" in texts(hidden), texts(hidden)
        assert not any(r["kind"] == "cards" for r in hidden)
        offered(hidden, "cmd:verify", "course.rec", MENU, HELP)
    # The notice beside results stays once per session.
    again = await citizen.say("貪污治罪條例")
    assert "also match" not in texts(again)
    # A verified phone and no campaign: the prizes won so far, courses, the menu and help.
    await verify(world, chat, CITIZEN)
    none_running = await chat.say("prizes")
    assert "No prize campaign is running" in texts(none_running)
    offered(none_running, "cmd:myprizes", "cmd:search", MENU, HELP)


async def test_an_empty_deployment_still_offers_ways_on(served) -> None:  # type: ignore[no-untyped-def]
    """No podcast and no course yet: a search, the menu and help; no "categories below"."""
    async with (
        served() as (url, _api),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        chat = Chat(http, "ns-empty")
        replies = await chat.say("聽課")
        assert "還沒有語音課" in texts(replies)
        offered(replies, "cmd:search", MENU, HELP)
        nothing = await chat.say("量子糾纏")
        assert "找不到" in texts(nothing)
        assert "下面" not in texts(nothing)  # there is nothing below to pick from
        assert "說明" in texts(nothing)
        offered(nothing, MENU, HELP)
        english = await Chat(http, "ns-empty-en", language="en").say("quantum entanglement")
        assert "No course matches" in texts(english)
        assert "below" not in texts(english)
        offered(english, MENU, HELP)
