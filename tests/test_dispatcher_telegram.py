"""The dispatcher against a fake Telegram Bot API: 429 retry_after, 403 unreachable, rate limits,
rerouting to the member's other channel, and a timeout retried with backoff."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from bot.simulator import SimulatorChannel
from bot.telegram import TelegramChannel
from models.db import create_sessionmaker
from models.members import ChannelAccount
from models.outbox import OutboxMessage, choose_targets
from models.simulator import SimulatorMessage
from notifications.dispatcher import Dispatcher, DispatcherConfig
from tests.fakes.server import RecordedRequest
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.outbox_support import NOON, add_member, queue, text


class TimedTelegram(FakeTelegram):
    """The fake Bot API, noting when each call arrived and for which chat."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[str, float]] = []

    async def respond(self, request: RecordedRequest) -> Response:
        self.arrivals.append((str(request.params.get("chat_id")), time.monotonic()))
        return await super().respond(request)


@pytest.fixture
async def fake() -> AsyncIterator[TimedTelegram]:
    async with TimedTelegram() as server:
        yield server


@pytest.fixture
async def telegram(fake: FakeTelegram, make_settings: Any) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(
        make_settings(
            telegram_bot_token=TOKEN,
            telegram_mode="polling",
            telegram_api_base_url=fake.api_base_url,
        )
    )
    await channel.start()
    yield channel
    await channel.stop()


def dispatcher(engine: AsyncEngine, channels: dict[str, Any], **config: Any) -> Dispatcher:
    return Dispatcher(create_sessionmaker(engine), channels, config=DispatcherConfig(**config))


async def rows(engine: AsyncEngine) -> list[OutboxMessage]:
    async with create_sessionmaker(engine)() as s:
        return list((await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_429_waits_retry_after_then_succeeds(
    engine: AsyncEngine, fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    async with create_sessionmaker(engine)() as s:
        person = await add_member(s, channel="telegram", external_id="4242")
        await queue(s, [person], text("提醒"), key="r")
        await s.commit()
    fake.fail(status=429, chat_id=4242, retry_after=7)
    work = dispatcher(engine, {"telegram": telegram})

    report = await work.drain(NOON)

    assert (report.sent, report.retried) == (0, 1)
    (row,) = await rows(engine)
    assert row.not_before == NOON + dt.timedelta(seconds=7)  # exactly what Telegram asked
    assert row.last_error == "telegram: rate limited"
    assert (await work.drain(NOON + dt.timedelta(seconds=6))).claimed == 0

    report = await work.drain(NOON + dt.timedelta(seconds=7))

    assert report.sent == 1
    assert [c.params["text"] for c in fake.calls("sendMessage")] == ["提醒", "提醒"]
    (row,) = await rows(engine)
    assert (row.status, row.attempts) == ("sent", 2)


async def test_403_marks_the_member_unreachable_and_stops_further_sends(
    engine: AsyncEngine, fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    async with create_sessionmaker(engine)() as s:
        person = await add_member(s, channel="telegram", external_id="4242")
        await queue(s, [person], text("first"), key="a")
        await queue(s, [person], text("second"), key="b")
        await s.commit()
    fake.fail(status=403, chat_id=4242, times=None)
    work = dispatcher(engine, {"telegram": telegram})

    report = await work.drain(NOON)

    # The first call is refused; the second row is never sent to a chat that blocked us.
    assert len(fake.calls("sendMessage")) == 1
    assert report.sent == 0
    first, second = await rows(engine)
    assert (first.status, first.last_error) == (
        "failed",
        "telegram: Forbidden: bot was blocked by the user",
    )
    async with create_sessionmaker(engine)() as s:
        account = await s.get(ChannelAccount, person.account_id)
    assert account is not None
    assert account.unreachable
    # The second row waited behind the first, and now goes nowhere: no other channel.
    await work.drain(NOON + dt.timedelta(seconds=1))
    assert len(fake.calls("sendMessage")) == 1
    _, second = await rows(engine)
    assert (second.status, second.last_error) == ("failed", "recipient unreachable")
    # New messages choose among reachable channels only: there is none left.
    async with create_sessionmaker(engine)() as s:
        assert await choose_targets(s, member_ids=[person.member_id]) == {}


async def test_an_unreachable_account_hands_the_message_to_the_members_other_channel(
    engine: AsyncEngine, fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        person = await add_member(s, channel="telegram", external_id="4242")
        s.add(
            ChannelAccount(
                member_id=person.member_id,
                channel="simulator",
                external_id="sim-4242",
                created_at=NOON,
                last_seen_at=NOON - dt.timedelta(days=3),
            )
        )
        await queue(s, [person], text("for you"), key="x")
        account = await s.get(ChannelAccount, person.account_id)
        assert account is not None
        account.unreachable = True  # blocked after the row was written
        await s.commit()
    work = dispatcher(engine, {"telegram": telegram, "simulator": SimulatorChannel(maker)})

    await work.drain(NOON)

    assert fake.calls("sendMessage") == []
    (row,) = await rows(engine)
    assert (row.status, row.channel, row.external_id) == ("sent", "simulator", "sim-4242")
    async with maker() as s:
        stored = (await s.scalars(select(SimulatorMessage))).all()
    assert [m.reply["text"] for m in stored] == ["for you"]


async def test_one_message_per_second_per_chat_and_the_chat_order_is_kept(
    engine: AsyncEngine, fake: TimedTelegram, telegram: TelegramChannel
) -> None:
    async with create_sessionmaker(engine)() as s:
        person = await add_member(s, channel="telegram", external_id="4242")
        others = [
            await add_member(s, channel="telegram", external_id=f"{5000 + i}") for i in range(4)
        ]
        for n in range(3):
            await queue(s, [person], text(f"part {n}"), key=f"p{n}")
        await queue(s, others, text("news"), key="news")
        await s.commit()

    report = await dispatcher(engine, {"telegram": telegram}).drain(NOON)

    assert report.sent == 7
    mine = [c for c in fake.calls("sendMessage") if c.params["chat_id"] == 4242]
    assert [c.params["text"] for c in mine] == ["part 0", "part 1", "part 2"]
    arrivals = [t for chat, t in fake.arrivals if chat == "4242"]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 2
    assert min(gaps) >= 0.95
    # The other chats did not wait behind this one.
    others_done = max(t for chat, t in fake.arrivals if chat != "4242")
    assert others_done < arrivals[1]


async def test_a_timeout_is_retried_with_backoff(
    engine: AsyncEngine, fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    async with create_sessionmaker(engine)() as s:
        person = await add_member(s, channel="telegram", external_id="4242")
        await queue(s, [person], text("x"), key="x")
        await s.commit()
    fake.fail(status=502, chat_id=4242)
    work = dispatcher(engine, {"telegram": telegram}, backoff_base=60)

    report = await work.drain(NOON)

    assert report.retried == 1
    (row,) = await rows(engine)
    assert NOON + dt.timedelta(seconds=30) <= row.not_before <= NOON + dt.timedelta(seconds=60)
    assert (await work.drain(row.not_before)).sent == 1
