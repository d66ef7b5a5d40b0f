"""A podcast with hours of its own and no course: hours count only with evidence (the member's
own link served 90% of the episode, or a right answer to its check question), then "My
learning" counts them; a self-mark alone is refused. Through the real app and the simulator."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.simulator.views import views
from models.learning import Completion
from models.podcasts import Episode, PodcastError, parse_check, podcast_course_id, split_check
from tests.dialog import Chat, buttons, texts
from tests.podcast_support import Seeded, seed_podcast
from tests.render_check import dropped

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


def _own_link(replies: list[dict[str, Any]]) -> str:
    """The path and query of the played episode's link (the member's own, signed)."""
    (audio,) = [r for r in replies if r["kind"] == "audio"]
    parts = urllib.parse.urlsplit(audio["url"])
    assert "m=" in parts.query
    assert "sig=" in parts.query
    return f"{parts.path}?{parts.query}"


async def _fetch(http: httpx.AsyncClient, link: str, first: int, last: int | None) -> None:
    end = "" if last is None else str(last)
    response = await http.get(link, headers={"Range": f"bytes={first}-{end}"})
    assert response.status_code == 206, response.text


async def _set_check(world: dict[str, Any], episode_id: int) -> None:
    async with world["runtime"].sessionmaker() as session:
        episode = await session.get(Episode, episode_id)
        assert episode is not None
        episode.check_question = parse_check(
            {"question": "密碼要多久換一次？", "choices": ["永遠不換", "定期更換"], "answer": 1}
        )
        await session.commit()


async def test_a_self_mark_without_evidence_is_refused_for_hours_that_count(
    world: dict[str, Any],
) -> None:
    chat = Chat(world["http"], "sim-lazy")
    law: Seeded = world["hours"]
    refused = await chat.tap(f"pod.done:{law.episodes[0].id}")
    assert "要聽完才算" in texts(refused)
    assert buttons(refused)["重新播放"] == f"pod.ep:{law.episodes[0].id}"
    assert "今年已完成 0 小時" in texts(await chat.say("我的學習"))
    async with world["runtime"].sessionmaker() as session:
        assert (await session.scalars(select(Completion))).all() == []


async def test_hours_count_after_the_own_link_served_90_percent_or_a_right_answer(
    world: dict[str, Any],
) -> None:
    chat = Chat(world["http"], "sim-hours")
    http: httpx.AsyncClient = world["http"]
    runtime = world["runtime"]
    law: Seeded = world["hours"]
    first, second = law.episodes
    assert "今年已完成 0 小時" in texts(await chat.say("我的學習"))

    # Evidence 1: the member's own link served 90% of the bytes (Range requests, per member).
    link = _own_link(await chat.tap(f"pod.ep:{first.id}"))
    size = first.size_bytes
    half = size // 2
    await _fetch(http, link, 0, half - 1)
    await _fetch(http, link, 0, half - 1)  # the same half twice is still half
    assert "要聽完才算" in texts(await chat.tap(f"pod.done:{first.id}"))
    # Telegram's servers fetching the file are not the member listening.
    response = await http.get(link, headers={"User-Agent": "TelegramBot (like TwitterBot)"})
    assert response.status_code == 200
    assert "要聽完才算" in texts(await chat.tap(f"pod.done:{first.id}"))
    # Someone else's member id in the link breaks its signature.
    forged = link.replace("m=", "m=9")
    assert (await http.get(forged, headers={"Range": "bytes=0-10"})).status_code == 403
    await _fetch(http, link, half, None)
    accepted = await chat.tap(f"pod.done:{first.id}")
    assert "要聽完才算" not in texts(accepted)
    assert "今年已完成 0 小時" in texts(await chat.say("我的學習"))  # not before the last one

    # Evidence 2: the episode's check question, asked in chat (both renderers show it).
    await _set_check(world, second.id)
    asked = await chat.tap(f"pod.done:{second.id}")
    assert "密碼要多久換一次？" in texts(asked)
    actions = buttons(asked)
    assert actions["2. 定期更換"] == f"pod.ans:{second.id}:1"
    for reply in asked:
        assert dropped(reply, **views(reply)) == []
    wrong = await chat.tap(f"pod.ans:{second.id}:0")
    assert "答案不對" in texts(wrong)
    assert "可認列" not in texts(wrong)
    done = await chat.tap(f"pod.ans:{second.id}:1")
    assert "答對了" in texts(done)
    assert "可認列 1.5 小時學習時數" in texts(done)
    assert "今年已完成 1.5 小時" in texts(await chat.say("我的學習"))
    # Finishing again records nothing twice.
    await chat.tap(f"pod.done:{second.id}")
    assert "今年已完成 1.5 小時" in texts(await chat.say("/learning"))
    async with runtime.sessionmaker() as session:
        (row,) = (await session.scalars(select(Completion))).all()
    assert (row.course_id, row.hours) == (podcast_course_id(law.podcast.id), 1.5)

    # A podcast without hours may stay self-marked: it claims none and adds none.
    none: Seeded = world["none"]
    finished = await chat.tap(f"pod.done:{none.episodes[0].id}")
    assert "恭喜" in texts(finished)
    assert "小時" not in texts(finished)
    assert "今年已完成 1.5 小時" in texts(await chat.say("我的學習"))


def test_a_lesson_script_carries_its_check_question() -> None:
    script, check = split_check(
        "第一段。\n第二段。\n\nQ: 密碼要多久換一次？\n- 永遠不換\n* 定期更換\n"
    )
    assert script == "第一段。\n第二段。"
    assert check == {
        "question": "密碼要多久換一次？",
        "choices": ["永遠不換", "定期更換"],
        "answer": 1,
    }
    assert split_check("沒有問題的課。") == ("沒有問題的課。", None)
    with pytest.raises(PodcastError):
        split_check("課。\nQ: 沒有對的答案？\n- 甲\n- 乙")
