"""Episode drops: each subscriber's next episode is written for the outbox at their chosen
Taipei time, once per slot, skipping what they have finished, weekdays only when asked."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import Catalog
from bot.messages import Audio, Reply, Text, load_replies
from bot.settings import Settings
from media.files import MediaSigner
from models.base import TAIPEI
from models.db import create_sessionmaker
from models.members import ensure_account
from models.outbox import OutboxMessage
from models.podcasts import (
    add_episode,
    latest_slot,
    mark_finished,
    parse_delivery_time,
    require_podcast,
    subscribe,
)
from notifications.podcast_drops import drop_key, podcast_drops
from tests.podcast_support import Seeded, seed_podcast


def taipei(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """March 2026, Taipei wall clock (2 March is a Monday)."""
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=TAIPEI).astimezone(dt.UTC)


@dataclass
class Row:
    key: str
    member_id: int
    replies: list[Reply]
    not_before: dt.datetime
    kind: str
    channel: str


class Outbox:
    """Reads what the job wrote to the real outbox."""

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self.sm = sm
        self.rows: dict[str, Row] = {}

    async def refresh(self) -> list[Row]:
        async with self.sm() as session:
            found = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        new = []
        for m in found:
            if m.key not in self.rows:
                row = Row(
                    m.key, m.member_id, load_replies(m.replies), m.not_before, m.kind, m.channel
                )
                self.rows[m.key] = row
                new.append(row)
        return new


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def setup(sm, make_settings, tone):  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(public_base_url="https://edoor.example")
    seeded = await seed_podcast(sm, settings, tone, now=taipei(1, 12))
    async with sm() as session:
        account, _ = await ensure_account(
            session, channel="simulator", external_id="commuter", now=taipei(2, 9)
        )
        await session.commit()
    return settings, seeded, account.member_id


async def _subscribe(
    sm: async_sessionmaker[AsyncSession],
    member_id: int,
    *,
    time: str,
    weekdays_only: bool,
    now: dt.datetime,
) -> None:
    from models.members import Member

    async with sm() as session:
        member = await session.get(Member, member_id)
        podcast = await require_podcast(session, slug="infosec")
        assert member is not None
        await subscribe(
            session,
            member=member,
            podcast=podcast,
            delivery_time=time,
            weekdays_only=weekdays_only,
            now=now,
        )
        await session.commit()


async def test_an_episode_goes_out_at_the_chosen_taipei_time_once(sm, setup) -> None:  # type: ignore[no-untyped-def]
    settings, seeded, member_id = setup
    seeded: Seeded
    outbox = Outbox(sm)
    catalog = Catalog()

    async def run(now: dt.datetime) -> list[Row]:
        await podcast_drops(
            sm,
            now=now,
            settings=settings,
            catalog=catalog,
            signer=MediaSigner.from_settings(settings),
        )
        return await outbox.refresh()

    # Subscribed on Monday 09:00 for 07:30 on weekdays: this morning's slot has passed.
    await _subscribe(sm, member_id, time="07:30", weekdays_only=True, now=taipei(2, 9))
    assert await run(taipei(2, 10)) == []
    assert await run(taipei(3, 7, 29)) == []
    (row,) = await run(taipei(3, 7, 30))
    first, second, third = seeded.episodes
    assert row.key == drop_key(
        podcast_id=seeded.podcast.id, member_id=member_id, episode_id=first.id
    )
    assert row.member_id == member_id
    assert row.kind == "episode"
    assert row.channel == "simulator"
    assert row.not_before == taipei(3, 7, 30)
    text, audio = row.replies
    assert isinstance(text, Text)
    assert "資安小學堂" in text.text
    assert "第1集" in text.text
    assert isinstance(audio, Audio)
    assert audio.url == f"https://edoor.example/media/{first.media_path}"
    assert audio.duration_ms == first.duration_ms
    # The same slot again, or later that morning (a second scheduler): nothing new.
    assert await run(taipei(3, 7, 30)) == []
    assert await run(taipei(3, 20, 0)) == []
    # Episode 2 finished in chat meanwhile: Wednesday brings episode 3.
    async with sm() as session:
        await mark_finished(session, member_id=member_id, episode=second, now=taipei(3, 12))
        await session.commit()
    (row,) = await run(taipei(4, 7, 31))
    assert row.key.endswith(f":episode:{third.id}")
    # Caught up on Thursday; Friday's slot is served by an episode published on Thursday.
    assert await run(taipei(5, 7, 30)) == []
    async with sm() as session:
        podcast = await require_podcast(session, slug="infosec")
        fourth = await add_episode(
            session,
            podcast=podcast,
            title="第4課",
            media_path=first.media_path + ".copy",
            content_type=first.content_type,
            size_bytes=first.size_bytes,
            duration_ms=first.duration_ms,
            now=taipei(5, 12),
        )
        await session.commit()
    assert await run(taipei(5, 13)) == []  # not before Friday 07:30
    (row,) = await run(taipei(6, 7, 45))
    assert row.key.endswith(f":episode:{fourth.id}")


async def test_weekdays_only_skips_the_weekend_and_daily_does_not(sm, setup) -> None:  # type: ignore[no-untyped-def]
    settings, seeded, member_id = setup
    outbox = Outbox(sm)
    catalog = Catalog()
    first, second, _ = seeded.episodes
    # Subscribed on Friday evening, weekdays at 18:00.
    await _subscribe(sm, member_id, time="18:00", weekdays_only=True, now=taipei(6, 19))
    for day in (7, 8):  # Saturday, Sunday
        await podcast_drops(
            sm,
            now=taipei(day, 18, 5),
            settings=settings,
            catalog=catalog,
            signer=MediaSigner.from_settings(settings),
        )
    assert await outbox.refresh() == []
    await podcast_drops(
        sm,
        now=taipei(9, 18, 0),
        settings=settings,
        catalog=catalog,
        signer=MediaSigner.from_settings(settings),
    )
    assert [r.not_before for r in await outbox.refresh()] == [taipei(9, 18)]
    # Changed to daily 08:00: Saturday counts, and delivery resumes after episode 1.
    await _subscribe(sm, member_id, time="08:00", weekdays_only=False, now=taipei(13, 9))
    await podcast_drops(
        sm,
        now=taipei(14, 8, 0),
        settings=settings,
        catalog=catalog,
        signer=MediaSigner.from_settings(settings),
    )
    await outbox.refresh()
    assert [k.rsplit(":", 1)[1] for k in outbox.rows] == [str(first.id), str(second.id)]


def test_slots_and_typed_times() -> None:
    assert latest_slot(taipei(2, 7, 29), delivery_time="07:30", weekdays_only=False) == taipei(
        1, 7, 30
    )
    # Monday 07:00, weekdays only: the latest slot was Friday's.
    assert latest_slot(taipei(9, 7), delivery_time="07:30", weekdays_only=True) == taipei(6, 7, 30)
    assert parse_delivery_time("7:30") == "07:30"
    assert parse_delivery_time("０７：３０") == "07:30"
    assert parse_delivery_time("1830") == "18:30"
    assert parse_delivery_time("25:00") is None
    assert parse_delivery_time("明天") is None
