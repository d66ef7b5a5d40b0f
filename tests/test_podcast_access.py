"""A podcast of a password-protected course follows the course's access rule, through the real
app: it does not play, drop or feed until the member has unlocked the course in the course's
own password step; the refusal explains and points to that step."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.i18n import Catalog
from media.feeds import private_feed_url
from media.files import MediaSigner, media_url
from models.catalog_import import parse_csv
from models.courses import apply_catalog
from models.members import ChannelAccount, Member
from models.outbox import OutboxMessage
from models.podcasts import (
    PodcastError,
    PodcastSubscription,
    ensure_feed_token,
    latest_slot,
    subscribe,
)
from notifications.podcast_drops import podcast_drops
from tests.dialog import Chat, buttons, texts
from tests.podcast_support import Seeded, seed_podcast

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
BASE = "https://edoor.example"
# Letters only: the stored inbound event masks digit runs, which would hide nothing here.
PASSWORD = "Open-Sesame-Podcast"
COURSES = (
    "id,title,category,hours,audience,password\n"
    f"pw-pod,密碼課程語音版,資訊安全,2,public,{PASSWORD}\n"
    "pw-other,另一門密碼課,資訊安全,1,public,Another-Secret\n"
)


@pytest.fixture
async def world(served, tone: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served(public_base_url=BASE))
        runtime = api.state.runtime
        sm, settings = runtime.sessionmaker, runtime.settings
        async with sm() as session:
            await apply_catalog(session, parsed=parse_csv(COURSES.encode()), now=NOW)
            await session.commit()
        locked = await seed_podcast(
            sm, settings, tone, slug="pw-pod", title="密碼課語音", course_id="pw-pod", now=NOW
        )
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        yield {"http": http, "runtime": runtime, "locked": locked}


async def _member(runtime: Any, user: str) -> Member:
    async with runtime.sessionmaker() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == user)
        )
        assert account is not None
        member = await session.get(Member, account.member_id)
        assert member is not None
        return member


async def _drops(runtime: Any, now: dt.datetime) -> int:
    await podcast_drops(
        runtime.sessionmaker,
        now=now,
        settings=runtime.settings,
        catalog=Catalog(),
        signer=runtime.services.media_signer,
    )
    async with runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count(OutboxMessage.id))) or 0)


async def test_locked_until_the_course_is_unlocked_then_plays_drops_and_feeds(
    world: dict[str, Any],
) -> None:
    http: httpx.AsyncClient = world["http"]
    runtime = world["runtime"]
    locked: Seeded = world["locked"]
    podcast, first = locked.podcast, locked.episodes[0]
    chat = Chat(http, "sim-pw-listener")

    listing = await chat.say("聽課")
    assert "密碼課語音" in texts(listing)
    assert "需輸入課程密碼" in texts(listing)
    assert "公務人員限定" not in texts(listing)

    # Every way in is refused, explained, and points to the course's password step.
    for action in (
        f"pod.open:{podcast.id}",
        f"pod.ep:{first.id}",
        f"pod.done:{first.id}",
        f"pod.sub:{podcast.id}",
        f"pod.subok:{podcast.id}:0830:d",
        f"pod.feed:{podcast.id}",
    ):
        refused = await chat.tap(action)
        assert "有密碼的課程「密碼課程語音版」" in texts(refused), action
        assert buttons(refused)["🔑 輸入課程密碼"] == "course.pw:pw-pod", action
        assert buttons(refused)["課程介紹"] == "course.open:pw-pod", action
        assert not [r for r in refused if r["kind"] == "audio"], action
    english = await Chat(http, "sim-pw-english", language="en").tap(f"pod.ep:{first.id}")
    assert "password-protected course" in texts(english)
    assert buttons(english)["🔑 Course password"] == "course.pw:pw-pod"

    # Nothing is open without the chat: no public feed, no unsigned audio.
    assert (await http.get("/feeds/pw-pod.xml")).status_code == 403
    listed = (await http.get("/feeds/")).json()["feeds"]
    assert "pw-pod" not in [f["id"] for f in listed]
    bare = media_url(runtime.settings, first.media_path).split("/", 3)[3]
    assert (await http.get("/" + bare)).status_code == 403

    # A subscription and a private feed that exist already (made before the course got its
    # password) deliver nothing while it is locked.
    member = await _member(runtime, chat.user)
    async with runtime.sessionmaker() as session:
        with pytest.raises(PodcastError, match="unlocked"):
            await subscribe(
                session,
                member=member,
                podcast=podcast,
                delivery_time="08:30",
                weekdays_only=False,
                now=NOW,
            )
        session.add(
            PodcastSubscription(
                member_id=member.id,
                podcast_id=podcast.id,
                delivery_time="08:30",
                weekdays_only=False,
                next_number=1,
                last_slot_at=NOW,
            )
        )
        token = await ensure_feed_token(
            session, member_id=member.id, podcast_id=podcast.id, now=NOW
        )
        await session.commit()
    feed = private_feed_url(runtime.settings, MediaSigner.from_settings(runtime.settings), token)
    feed_path = feed.removeprefix(BASE)
    assert (await http.get(feed_path)).status_code == 403
    slot = latest_slot(NOW + dt.timedelta(days=1), delivery_time="08:30", weekdays_only=False)
    assert await _drops(runtime, slot) == 0

    # A wrong password, or another course's right one, unlocks nothing.
    await chat.tap("course.pw:pw-pod")
    assert "密碼正確" not in texts(await chat.say("Not-The-Password"))
    await chat.tap("course.pw:pw-other")
    assert "密碼正確" in texts(await chat.say("Another-Secret"))
    assert "需輸入課程密碼" in texts(await chat.say("聽課"))
    assert "有密碼的課程" in texts(await chat.tap(f"pod.ep:{first.id}"))

    # The course's own password step unlocks the course, and with it the podcast.
    prompt = await chat.tap("course.pw:pw-pod")
    assert "課程密碼" in texts(prompt)
    assert "密碼正確" in texts(await chat.say(PASSWORD))
    assert "需輸入課程密碼" not in texts(await chat.say("聽課"))
    played = await chat.tap(f"pod.ep:{first.id}")
    (audio,) = [r for r in played if r["kind"] == "audio"]
    assert "&sig=" in audio["url"]  # still not a public file: a signed, expiring link
    assert (await http.get(audio["url"].removeprefix(BASE))).status_code == 200
    assert "進度：已聽完 0 / 3 集" in texts(await chat.tap(f"pod.open:{podcast.id}"))
    assert (await http.get(feed_path)).status_code == 200
    asked = await chat.tap(f"pod.feed:{podcast.id}")
    assert f"{BASE}/feeds/private/" in texts(asked)
    assert await _drops(runtime, slot + dt.timedelta(days=1)) == 1
    ok = await chat.tap(f"pod.subok:{podcast.id}:0830:d")
    assert "已訂閱「密碼課語音」" in texts(ok)


async def test_an_unlock_lasts_past_later_wrong_tries_and_ends_when_the_password_changes(
    world: dict[str, Any],
) -> None:
    http: httpx.AsyncClient = world["http"]
    runtime = world["runtime"]
    first = world["locked"].episodes[0]
    chat = Chat(http, "sim-pw-later")
    now = NOW
    runtime.processor.clock = lambda: now
    await chat.tap("course.pw:pw-pod")
    assert "密碼正確" in texts(await chat.say(PASSWORD))

    # Two days on, a wrong password for another course prunes old tries, not the unlock.
    now += dt.timedelta(days=2)
    await chat.tap("course.pw:pw-other")
    assert "密碼正確" not in texts(await chat.say("Wrong-Guess"))
    assert [r for r in await chat.tap(f"pod.ep:{first.id}") if r["kind"] == "audio"]

    # The trainers hand out a new password: the old unlock no longer opens the podcast.
    changed = COURSES.replace(PASSWORD, "A-New-Password")
    async with runtime.sessionmaker() as session:
        await apply_catalog(session, parsed=parse_csv(changed.encode()), now=now)
        await session.commit()
    assert "有密碼的課程" in texts(await chat.tap(f"pod.ep:{first.id}"))
    await chat.tap("course.pw:pw-pod")
    assert "密碼正確" in texts(await chat.say("A-New-Password"))
    assert [r for r in await chat.tap(f"pod.ep:{first.id}") if r["kind"] == "audio"]
