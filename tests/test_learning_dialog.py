"""我的學習 / My learning end to end: the real app over HTTP, the simulator channel."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.simulator.views import views
from handlers.learning import router as learning_router
from models.completions_import import import_completions
from models.courses import Course
from models.learning import ReminderSnooze
from models.members import get_account
from tests.dialog import Chat, buttons, texts
from tests.render_check import _walk as walk_json
from tests.render_check import dropped


@pytest.fixture
async def app(served: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with served() as (url, api):
        router = api.state.runtime.router
        if "learning.snooze" not in router.actions:  # until handlers/__init__.py includes it
            router.include(learning_router)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http, api


async def civil_servant(http: httpx.AsyncClient, language: str | None = None) -> Chat:
    user = "civil-servant-1"
    body = {"user": user, "persona": "civil_servant", "kind": "follow", "language": language}
    (await http.post("/simulator/api/send", json=body)).raise_for_status()
    chat = Chat(http, user, language=language)
    await chat.pending()
    return chat


async def test_my_learning_shows_the_year_against_the_goal_and_each_requirement(
    app: tuple[httpx.AsyncClient, Any],
) -> None:
    http, api = app
    chat = await civil_servant(http)
    runtime = api.state.runtime
    year = dt.datetime.now(dt.UTC).year
    async with runtime.sessionmaker() as s:
        account = await get_account(s, channel="simulator", external_id=chat.user)
        assert account is not None
        s.add(Course(id="env-9", title="淨零生活", category="環境教育", hours=3))
        await import_completions(
            s,
            f"member_id,course_id,completed_at,hours\n{account.member_id},env-9,{year}-02-03,3\n",
            now=dt.datetime.now(dt.UTC),
        )
        await s.commit()

    replies = await chat.say("我的學習")

    shown = texts(replies)
    assert f"我的學習（{year} 年）" in shown
    # A picture: a bar per requirement (the yearly goal's bar is the total, shown once).
    (picture,) = [r for r in replies if r["kind"] == "progress"]
    bars = {b["label"]: b for b in picture["bars"]}
    assert (bars["環境教育"]["done"], bars["環境教育"]["needed"]) == (3, 4)
    assert "▓▓▓▓▓▓▓▓░░ 3 / 4 小時\n⏳ 還差 1 小時，12/31 截止" in shown
    assert "░░░░░░░░░░ 0 / 3 小時\n⏳ 還差 3 小時，12/31 截止" in shown
    assert shown.count("3 / 20 小時") == 1
    # One "take a course" button per open requirement that has a course.
    takes = [label for label in buttons(replies) if label.startswith("上課：")]
    assert takes
    # Both renderers draw it: LINE Flex bars (boxes with a width), Telegram text bars.
    seen = views(picture)
    assert any(
        n.get("type") == "box" and str(n.get("width", "")).endswith("%")
        for n in walk_json(seen["line"])
    )
    assert "▓" in seen["telegram"][0]["params"]["text"]
    assert dropped(picture, **seen) == []
    assert buttons(replies)["下週再提醒我"] == "learning.snooze"
    # The Telegram command and the English words reach the same answer.
    assert "3 / 20 小時" in texts(await chat.say("/learning"))
    assert "3 / 20 小時" in texts(await chat.say("My Learning"))


async def test_remind_me_next_week_snoozes_for_seven_days(
    app: tuple[httpx.AsyncClient, Any],
) -> None:
    http, api = app
    chat = await civil_servant(http, language="en")
    before = dt.datetime.now(dt.UTC)

    replies = await chat.tap("learning.snooze")

    assert "no mandatory-hour reminders until" in texts(replies)
    async with api.state.runtime.sessionmaker() as s:
        (row,) = (await s.scalars(select(ReminderSnooze))).all()
    assert before + dt.timedelta(days=7) <= row.until <= before + dt.timedelta(days=7, minutes=1)


async def test_a_citizen_is_told_how_reminders_start(app: tuple[httpx.AsyncClient, Any]) -> None:
    http, _ = app
    chat = Chat(http, "citizen-42")

    replies = await chat.say("我的學習")

    assert "必修時數提醒適用於已驗證的公務人員" in texts(replies)
    assert buttons(replies)["驗證手機"] == "cmd:verify"
