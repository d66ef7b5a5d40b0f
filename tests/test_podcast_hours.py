"""A podcast with hours of its own and no course: finishing it says "X hours", and "My learning"
counts those hours, through the real app and the simulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models.learning import Completion
from models.podcasts import podcast_course_id
from tests.dialog import Chat, texts
from tests.podcast_support import Seeded, seed_podcast

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
async def world(served, tone: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with served() as (url, api):
        runtime = api.state.runtime
        sm, settings = runtime.sessionmaker, runtime.settings
        with_hours = await seed_podcast(
            sm, settings, tone, slug="law", title="法規快報", episodes=2, hours=1.5, now=NOW
        )
        no_hours = await seed_podcast(
            sm, settings, tone, slug="chat", title="閒聊", episodes=1, now=NOW
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield {"http": http, "runtime": runtime, "hours": with_hours, "none": no_hours}


async def test_hours_of_a_podcast_without_a_course_count_in_my_learning(
    world: dict[str, Any],
) -> None:
    chat = Chat(world["http"], "sim-hours")
    runtime = world["runtime"]
    law: Seeded = world["hours"]
    assert "今年已完成 0 小時" in texts(await chat.say("我的學習"))

    await chat.tap(f"pod.done:{law.episodes[0].id}")
    assert "今年已完成 0 小時" in texts(await chat.say("我的學習"))  # not before the last one
    done = await chat.tap(f"pod.done:{law.episodes[1].id}")
    assert "可認列 1.5 小時學習時數" in texts(done)
    assert "今年已完成 1.5 小時" in texts(await chat.say("我的學習"))
    # Finishing again records nothing twice.
    await chat.tap(f"pod.done:{law.episodes[1].id}")
    assert "今年已完成 1.5 小時" in texts(await chat.say("/learning"))
    async with runtime.sessionmaker() as session:
        (row,) = (await session.scalars(select(Completion))).all()
    assert (row.course_id, row.hours) == (podcast_course_id(law.podcast.id), 1.5)

    # A podcast without hours claims none and adds none.
    none: Seeded = world["none"]
    finished = await chat.tap(f"pod.done:{none.episodes[0].id}")
    assert "恭喜" in texts(finished)
    assert "小時" not in texts(finished)
    assert "今年已完成 1.5 小時" in texts(await chat.say("我的學習"))
