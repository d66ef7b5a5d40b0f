"""The dispatcher against a fake LINE API on loopback: multicast grouping, retry keys, 409,
5xx retries, the monthly limit, quiet hours and the simulator channel."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from linebot.v3.messaging import MulticastRequest, PushMessageRequest
from sqlalchemy import func, select
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.line import LineChannel
from bot.line.render import render
from bot.messages import Button, Text, dump_replies
from bot.simulator import SimulatorChannel
from models.db import create_sessionmaker
from models.identity import AuditLog
from models.members import ChannelAccount
from models.outbox import (
    PRIORITY_REPLY,
    ChannelPause,
    OutboxMessage,
    group_key,
    row_key,
)
from models.simulator import SimulatorMessage
from notifications.dispatcher import Dispatcher, DispatcherConfig
from tests.fakes.line import FakeLine
from tests.outbox_support import LINE_SECRET, LINE_TOKEN, NOON, add_member, queue, text

EVENING = NOON + dt.timedelta(hours=10)  # 22:00 in Taipei: quiet hours


@pytest.fixture
async def line(fake_line: tuple[FakeLine, str], make_settings: Any) -> AsyncIterator[LineChannel]:
    _, url = fake_line
    channel = LineChannel(
        make_settings(
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=url,
        )
    )
    yield channel
    await channel.stop()


def dispatcher(engine: AsyncEngine, channels: dict[str, Any], **config: Any) -> Dispatcher:
    # One lane unless a test says otherwise: these tests count multicasts exactly, and two
    # lanes claiming at once may each take part of a group (see the lanes test below).
    config.setdefault("line_lanes", 1)
    return Dispatcher(create_sessionmaker(engine), channels, config=DispatcherConfig(**config))


async def statuses(engine: AsyncEngine) -> dict[str, int]:
    async with create_sessionmaker(engine)() as s:
        rows = await s.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return {str(status): int(count) for status, count in rows.all()}


async def test_identical_messages_go_as_one_multicast_and_the_rest_as_pushes(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(5)]
        await queue(s, people[:4], text("新課程上架"), key="news")
        await queue(s, people[4:], text("只給你的訊息"), key="personal")
        await s.commit()

    report = await dispatcher(engine, {"line": line}).drain(NOON)

    assert (report.sent, report.failed) == (5, 0)
    multicast, push = fake.sent("/multicast"), fake.sent("/push")
    assert len(multicast) == 1
    assert len(push) == 1
    assert sorted(multicast[0].body["to"]) == sorted(p.external_id for p in people[:4])
    assert multicast[0].body["messages"][0]["text"] == "新課程上架"
    assert push[0].body["to"] == people[4].external_id
    async with create_sessionmaker(engine)() as s:
        rows = (await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    # The group's key is stored on its rows before the call (on PostgreSQL by the claim
    # itself, elsewhere derived from the rows); a push's key comes from its row.
    key = multicast[0].headers["x-line-retry-key"]
    assert {r.retry_key for r in rows[:4]} == {key}
    assert str(uuid.UUID(key)) == key
    if engine.dialect.name == "sqlite":
        assert key == group_key(r.id for r in rows[:4])
    assert rows[4].retry_key is None
    assert push[0].headers["x-line-retry-key"] == row_key(rows[4].id)
    assert all(r.status == "sent" and r.sent_at == NOON for r in rows)
    assert fake.delivered() == {p.external_id: 1 for p in people}
    # Nothing is due any more: a second drain sends nothing.
    assert (await dispatcher(engine, {"line": line}).drain(NOON)).claimed == 0


async def _broadcast(engine: AsyncEngine, n: int) -> list[Any]:
    """`n` LINE members, each queued the same message."""
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(n)]
        await queue(s, people, text("broadcast"), key="b")
        await s.commit()
    return people


async def test_more_than_500_identical_messages_are_split_into_multicasts_of_500(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    people = await _broadcast(engine, 1201)

    report = await dispatcher(engine, {"line": line}, batch_size=2000).drain(NOON)

    assert report.sent == 1201
    sizes = sorted(len(r.body["to"]) for r in fake.sent("/multicast"))
    assert sizes == [201, 500, 500]
    assert len(fake.sent("/push")) == 0
    assert fake.delivered() == {p.external_id: 1 for p in people}


async def test_lanes_claiming_side_by_side_keep_multicasts_within_500_and_send_each_once(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    people = await _broadcast(engine, 1201)

    report = await dispatcher(engine, {"line": line}, batch_size=700, line_lanes=3).drain(NOON)

    assert report.sent == 1201
    sizes = [len(r.body["to"]) for r in fake.sent("/multicast")]
    assert sum(sizes) + len(fake.sent("/push")) == 1201
    assert max(sizes) <= 500
    # Each claim (at most 700 rows, in one of three lanes) forms its own groups: a broadcast
    # may split where claims meet, never into more than one extra call per claim.
    claims = -(-1201 // 700) + 2
    assert len(sizes) <= -(-1201 // 500) + claims
    assert fake.delivered() == {p.external_id: 1 for p in people}


async def test_a_5xx_is_retried_later_with_the_same_key_and_409_counts_as_sent(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(3)]
        await queue(s, people, text("hello"), key="k")
        await s.commit()
    fake.scripted.append((500, {"message": "Internal error"}))
    work = dispatcher(engine, {"line": line}, backoff_base=10)

    report = await work.drain(NOON)

    assert (report.sent, report.retried) == (0, 3)
    key = fake.sent("/multicast")[0].headers["x-line-retry-key"]
    # As if LINE had accepted the call before failing: the retry must not send it again.
    fake.accepted_retry_keys.add(key)
    async with create_sessionmaker(engine)() as s:
        rows = (await s.scalars(select(OutboxMessage))).all()
        retry_at = {r.not_before for r in rows}
    assert len(retry_at) == 1  # a group retries as one
    (when,) = retry_at
    assert NOON + dt.timedelta(seconds=5) <= when <= NOON + dt.timedelta(seconds=10)
    assert (await work.drain(NOON + dt.timedelta(seconds=4))).claimed == 0  # not yet due

    report = await work.drain(when)

    assert report.sent == 3
    calls = fake.sent("/multicast")
    assert [c.headers["x-line-retry-key"] for c in calls] == [key, key]
    assert [c.status for c in calls] == [500, 409]
    assert await statuses(engine) == {"sent": 3}


async def test_monthly_limit_pauses_line_alerts_admins_once_and_resumes_later(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        a = await add_member(s, channel="line", external_id="U" + "a" * 32)
        b = await add_member(s, channel="line", external_id="U" + "b" * 32)
        await queue(s, [a], text("one"), key="x")
        await queue(s, [b], text("two"), key="y")
        await s.commit()
    fake.scripted.append((429, {"message": "You have reached your monthly limit."}))
    work = dispatcher(engine, {"line": line}, concurrency=1)

    report = await work.drain(NOON)

    assert report.sent == 0
    assert report.retried == 0
    assert len(fake.sent("/push")) == 1  # the pause stops the rest of the batch too
    async with create_sessionmaker(engine)() as s:
        pause = await s.get(ChannelPause, "line")
        alerts = (
            await s.scalars(select(AuditLog).where(AuditLog.action == "alert.line_monthly_limit"))
        ).all()
        rows = (await s.scalars(select(OutboxMessage))).all()
    assert pause is not None
    assert pause.paused_until == NOON + dt.timedelta(hours=1)
    assert len(alerts) == 1
    assert {r.status for r in rows} == {"pending"}
    assert {r.attempts for r in rows} == {0}
    # While paused, nothing is claimed for LINE, however often the job runs.
    assert (await work.drain(NOON + dt.timedelta(minutes=30))).claimed == 0
    assert len(fake.sent("/push")) == 1

    report = await work.drain(NOON + dt.timedelta(hours=1, seconds=1))

    assert report.sent == 2
    assert fake.delivered() == {a.external_id: 1, b.external_id: 1}


async def test_quiet_hours_defer_proactive_messages_but_not_replies(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        a = await add_member(s, channel="line", external_id="U" + "a" * 32)
        b = await add_member(s, channel="line", external_id="U" + "b" * 32)
        await queue(s, [a], text("broadcast at night"), key="night", now=EVENING)
        await queue(
            s,
            [b],
            text("your answer"),
            key="reply",
            now=EVENING,
            proactive=False,
            priority=PRIORITY_REPLY,
        )
        await s.commit()
    work = dispatcher(engine, {"line": line})

    report = await work.drain(EVENING)

    assert (report.sent, report.deferred) == (1, 1)
    assert [r.body["to"] for r in fake.sent("/push")] == [b.external_id]
    morning = dt.datetime(2026, 3, 3, 0, 0, tzinfo=dt.UTC)  # 08:00 Taipei
    async with create_sessionmaker(engine)() as s:
        deferred = await s.scalar(
            select(OutboxMessage).where(OutboxMessage.member_id == a.member_id)
        )
    assert deferred is not None
    assert deferred.not_before == morning
    assert deferred.status == "pending"
    assert deferred.attempts == 0
    assert (await work.drain(morning - dt.timedelta(minutes=1))).sent == 0

    assert (await work.drain(morning)).sent == 1
    assert fake.delivered() == {a.external_id: 1, b.external_id: 1}


async def test_a_member_may_choose_their_own_quiet_window(
    engine: AsyncEngine, line: LineChannel
) -> None:
    async with create_sessionmaker(engine)() as s:
        a = await add_member(s, channel="line", external_id="U" + "a" * 32)
        await queue(s, [a], text("at noon"), key="noon")
        await s.execute(
            sql("UPDATE member SET quiet_hours = '11:00-13:30' WHERE id = :id"), {"id": a.member_id}
        )
        await s.commit()

    report = await dispatcher(engine, {"line": line}).drain(NOON)

    assert (report.sent, report.deferred) == (0, 1)
    async with create_sessionmaker(engine)() as s:
        row = await s.get(OutboxMessage, 1)
    assert row is not None
    assert row.not_before == NOON + dt.timedelta(minutes=90)


async def test_the_simulator_channel_delivers_by_storing(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        a = await add_member(s, channel="simulator", external_id="sim-1")
        await queue(s, [a], text("hello from the outbox"), key="sim")
        await s.commit()

    report = await dispatcher(engine, {"simulator": SimulatorChannel(maker)}).drain(NOON)

    assert report.sent == 1
    async with maker() as s:
        stored = (await s.scalars(select(SimulatorMessage))).all()
    assert [m.reply["text"] for m in stored] == ["hello from the outbox"]


async def test_bodies_built_once_are_exactly_the_sdks_requests_and_batches_follow_each_other(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    body = [
        Text(
            text="還差 2 小時",
            buttons=[Button(label="去上課", action="course.open:c1")],
            quick_replies=[Button(label="我的學習", action="cmd:learning")],
        )
    ]
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(7)]
        await queue(s, people[:4], dump_replies(body), key="same")
        for i, person in enumerate(people[4:]):
            await queue(s, [person], text(f"只給你 {i}"), key=f"own{i}")
        await s.commit()

    # Batches of 2: the next batch is claimed while one is being sent.
    report = await dispatcher(engine, {"line": line}, batch_size=2).drain(NOON)

    assert (report.sent, report.failed) == (7, 0), report
    assert fake.delivered() == {p.external_id: 1 for p in people}
    messages = render(body)
    for recorded in fake.sent("/multicast"):
        expected = MulticastRequest(to=recorded.body["to"], messages=messages).to_dict()
        assert recorded.body == expected
    for recorded in fake.sent("/push"):
        if recorded.body["to"] in {p.external_id for p in people[:4]}:
            assert (
                recorded.body
                == PushMessageRequest(to=recorded.body["to"], messages=messages).to_dict()
            )
        else:
            assert recorded.body["messages"][0]["type"] == "text"
        assert recorded.headers["content-type"] == "application/json"
        assert recorded.headers["authorization"] == f"Bearer {LINE_TOKEN}"


@pytest.mark.parametrize("lanes", [1, 3])
async def test_a_stopped_drain_puts_back_every_batch_it_claimed_ahead(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel, lanes: int
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(8)]
        for i, person in enumerate(people):
            await queue(s, [person], text(f"訊息 {i}"), key=f"m{i}")
        await s.commit()
    stop = asyncio.Event()
    fake.delay = 0.2
    work = dispatcher(engine, {"line": line}, batch_size=2, line_lanes=lanes)

    async def stop_soon() -> None:
        await asyncio.sleep(0.1)
        stop.set()

    stopping = asyncio.create_task(stop_soon())
    first = await work.drain(NOON, stop=stop)
    await stopping

    # Each lane sends the batch it holds; what it claimed ahead goes back (SQLite: one lane).
    sending = 2 * (lanes if engine.dialect.name == "postgresql" else 1)
    assert first.sent == sending
    assert await statuses(engine) == {"sent": sending, "pending": 8 - sending}
    fake.delay = 0
    assert (await work.drain(NOON)).sent == 8 - sending
    assert fake.delivered() == {p.external_id: 1 for p in people}


async def test_small_identical_groups_go_as_pushes_when_multicasts_would_be_the_bound(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(200)]
        for pair in range(100):
            await queue(s, people[2 * pair : 2 * pair + 2], text(f"兩人 {pair}"), key=f"p{pair}")
        await s.commit()

    report = await dispatcher(engine, {"line": line}).drain(NOON)

    # 200 pushes take ~0.1 s of the 2,000/s budget; 100 multicasts would take 0.5 s of the
    # 200/s one: the multicasts that fit in the pushes' time go, the other pairs are pushed.
    assert report.sent == 200
    multicasts, pushes = fake.sent("/multicast"), fake.sent("/push")
    assert len(multicasts) == 16
    assert len(pushes) == 200 - 2 * 16
    assert fake.delivered() == {p.external_id: 1 for p in people}
    async with create_sessionmaker(engine)() as s:
        rows = {r.external_id: r for r in (await s.scalars(select(OutboxMessage))).all()}
    for recorded in pushes:
        # Pushed alone: no group key left on the row (a retry goes alone under this key).
        assert recorded.headers["x-line-retry-key"] == row_key(rows[recorded.body["to"]].id)
        assert rows[recorded.body["to"]].retry_key is None
    keys = [recorded.headers["x-line-retry-key"] for recorded in multicasts]
    assert len(set(keys)) == len(keys)
    for recorded, key in zip(multicasts, keys, strict=True):
        assert {rows[u].retry_key for u in recorded.body["to"]} == {key}
        if engine.dialect.name == "sqlite":
            assert key == group_key(rows[u].id for u in recorded.body["to"])


async def test_a_push_that_failed_is_retried_alone_under_its_row_key_never_in_a_new_group(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    async with create_sessionmaker(engine)() as s:
        first = await add_member(s, channel="line", external_id="U" + "1" * 32)
        second = await add_member(s, channel="line", external_id="U" + "2" * 32)
        await queue(s, [first], text("同一句話"), key="a")
        await s.commit()
    fake.scripted.append((500, {"message": "Internal error"}))
    work = dispatcher(engine, {"line": line}, backoff_base=1)

    assert (await work.drain(NOON)).retried == 1
    (pushed,) = fake.sent("/push")
    fake.accepted_retry_keys.add(pushed.headers["x-line-retry-key"])  # LINE had taken it
    async with create_sessionmaker(engine)() as s:
        await queue(s, [second], text("同一句話"), key="b")  # the same words, for another
        await s.commit()

    report = await work.drain(NOON + dt.timedelta(minutes=1))

    assert report.sent == 2
    assert fake.sent("/multicast") == []
    retried = [r for r in fake.sent("/push") if r.body["to"] == first.external_id]
    assert [r.headers["x-line-retry-key"] for r in retried] == [
        pushed.headers["x-line-retry-key"]
    ] * 2
    assert [r.status for r in retried] == [500, 409]
    assert fake.delivered() == {second.external_id: 1}  # the first had it already (409)


async def test_people_held_back_from_a_group_leave_it_and_go_later_under_their_own_key(
    engine: AsyncEngine, fake_line: tuple[FakeLine, str], line: LineChannel
) -> None:
    fake, _ = fake_line
    maker = create_sessionmaker(engine)
    async with maker() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(4)]
        quiet, gone = people[2], people[3]
        s.add(
            ChannelAccount(
                member_id=gone.member_id,
                channel="simulator",
                external_id="sim-gone",
                created_at=NOON,
                last_seen_at=NOON,
            )
        )
        await queue(s, people, text("本週新課"), key="news")
        await s.execute(
            sql("UPDATE member SET quiet_hours = '11:00-13:30' WHERE id = :id"),
            {"id": quiet.member_id},
        )
        await s.execute(
            sql("UPDATE channel_account SET unreachable = :yes WHERE id = :id"),
            {"yes": True, "id": gone.account_id},
        )
        await s.commit()
    work = dispatcher(engine, {"line": line, "simulator": SimulatorChannel(maker)})

    first = await work.drain(NOON)

    (multicast,) = fake.sent("/multicast")
    assert sorted(multicast.body["to"]) == sorted(p.external_id for p in people[:2])
    key = multicast.headers["x-line-retry-key"]
    async with maker() as s:
        rows = {r.member_id: r for r in (await s.scalars(select(OutboxMessage))).all()}
    assert {rows[p.member_id].retry_key for p in people[:2]} == {key}
    # The quiet member's row waits without the group's key, its attempt not counted.
    held = rows[quiet.member_id]
    assert (held.status, held.retry_key, held.attempts) == ("pending", None, 0)
    # The blocked account's row went to the member's other channel.
    moved = rows[gone.member_id]
    assert (moved.status, moved.channel, moved.retry_key) == ("sent", "simulator", None)
    assert first.sent == 3

    later = await work.drain(NOON + dt.timedelta(minutes=90))

    assert later.sent == 1
    (push,) = fake.sent("/push")
    assert push.body["to"] == quiet.external_id
    assert push.headers["x-line-retry-key"] == row_key(held.id)
    assert fake.delivered() == {p.external_id: 1 for p in people[:3]}
