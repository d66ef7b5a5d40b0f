"""Several processes against one PostgreSQL: two schedulers and two workers deliver each
message exactly once; a worker killed with SIGKILL mid-batch loses nothing and LINE sees the
same retry key again (409) instead of a second message."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import create_sessionmaker
from models.learning import (
    ReminderDigest,
    default_requirements,
    import_requirements,
    taipei_day,
)
from models.outbox import OutboxMessage
from tests.fakes.line import FakeLine
from tests.fakes.telegram import FakeTelegram
from tests.outbox_support import (
    add_member,
    never_quiet,
    queue,
    settings_env,
    start_process,
    text,
)

pytestmark = pytest.mark.postgres_only


@pytest.fixture
async def fake_tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def count(engine: AsyncEngine, *where: Any) -> int:
    async with create_sessionmaker(engine)() as s:
        return int(
            await s.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0
        )


async def wait_until(check: Any, *, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.05)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]


async def test_two_schedulers_and_two_workers_deliver_each_message_exactly_once(
    engine: AsyncEngine,
    database_url: str,
    fake_line: tuple[FakeLine, str],
    fake_tg: FakeTelegram,
) -> None:
    fake, line_url = fake_line
    # The workers run on the real clock, so the sweep does too: the deadline is today.
    now = dt.datetime.now(dt.UTC)
    async with create_sessionmaker(engine)() as s:
        records = [{**r, "deadline": f"{taipei_day(now):%m-%d}"} for r in default_requirements()]
        await import_requirements(s, records, now=now)
        servants = [
            await add_member(
                s, channel="line", external_id=f"U{i:032x}", civil_servant=True, seen=now
            )
            for i in range(150)
        ]
        servants += [
            await add_member(
                s, channel="telegram", external_id=str(9000 + i), civil_servant=True, seen=now
            )
            for i in range(30)
        ]
        citizens = [
            await add_member(s, channel="line", external_id=f"U{i + 1000:032x}", seen=now)
            for i in range(400)
        ]
        await queue(s, citizens[:300], text("同一則公告"), key="news", now=now)
        for c in citizens[300:]:
            await queue(s, [c], text(f"個人訊息 {c.member_id}"), key="personal", now=now)
        await never_quiet(s)
        await s.commit()

    env = settings_env(database_url, line_url=line_url, telegram_url=fake_tg.api_base_url)
    sweeps = [
        await start_process(
            "sweep", "--database-url", database_url, "--now", now.isoformat(), env=env
        )
        for _ in range(2)
    ]
    workers = [await start_process("worker", "--batch", "50", env=env) for _ in range(2)]
    for proc in sweeps:
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
    async with create_sessionmaker(engine)() as s:
        digests = await s.scalar(select(func.count()).select_from(ReminderDigest))
    assert digests == 180  # two schedulers, one digest each

    total = 400 + 180
    try:
        await wait_until(lambda: _all_sent(engine, total), within=90, what="every row sent")
    finally:
        for proc in workers:
            await stop(proc)

    delivered = fake.delivered()
    line_people = [t.external_id for t in servants[:150] + citizens]
    assert delivered == dict.fromkeys(line_people, 1)
    tg_calls = [c.params["chat_id"] for c in fake_tg.calls("sendMessage")]
    assert sorted(tg_calls) == sorted(int(t.external_id) for t in servants[150:])
    assert all(r.status == 200 for r in fake.sent("/push") + fake.sent("/multicast"))
    assert await count(engine, OutboxMessage.status != "sent") == 0


async def _all_sent(engine: AsyncEngine, total: int) -> bool:
    return await count(engine, OutboxMessage.status == "sent") == total


async def test_a_worker_killed_mid_batch_loses_nothing_and_line_sees_the_same_key_again(
    engine: AsyncEngine, database_url: str, fake_line: tuple[FakeLine, str]
) -> None:
    fake, line_url = fake_line
    now = dt.datetime.now(dt.UTC)
    async with create_sessionmaker(engine)() as s:
        people = [
            await add_member(s, channel="line", external_id=f"U{i:032x}", seen=now)
            for i in range(400)
        ]
        await queue(s, people[:200], text("同一則公告"), key="news", now=now)
        for p in people[200:]:
            await queue(s, [p], text(f"個人訊息 {p.member_id}"), key="personal", now=now)
        await never_quiet(s)
        await s.commit()
    fake.delay = 0.5  # LINE is slow: the kill lands while calls are in flight
    env = settings_env(database_url, line_url=line_url)

    worker = await start_process("worker", "--batch", "100", "--lease", "2", env=env)
    await wait_until(_at_least(fake, 8), within=30, what="calls in flight")
    os.kill(worker.pid, signal.SIGKILL)
    await worker.wait()
    before = {id(r) for r in fake.requests}
    keys_before: dict[str, str] = {}
    for r in fake.requests:
        for user in _to(r):
            keys_before[user] = r.headers["x-line-retry-key"]
    held = await count(engine, OutboxMessage.status == "sending")
    assert held > 0  # the dead worker's claims are still leased

    fake.delay = 0.0
    await asyncio.sleep(2.5)  # the lease runs out
    survivor = await start_process("worker", "--batch", "100", "--until-empty", env=env)
    _out, err = await asyncio.wait_for(survivor.communicate(), timeout=60)
    assert survivor.returncode == 0, err.decode()[-2000:]

    assert await count(engine, OutboxMessage.status == "sent") == 400
    assert fake.delivered() == {p.external_id: 1 for p in people}
    retried = [r for r in fake.requests if id(r) not in before and set(_to(r)) & set(keys_before)]
    assert retried, "the survivor re-sent what the dead worker had in flight"
    for r in retried:
        # Same people, same key: LINE answers 409 where it had accepted the first call.
        assert {keys_before[u] for u in _to(r)} == {r.headers["x-line-retry-key"]}
    assert any(r.status == 409 for r in retried)


def _to(r: Any) -> list[str]:
    to = r.body.get("to")
    return to if isinstance(to, list) else [to]


def _at_least(fake: FakeLine, n: int) -> Any:
    async def check() -> bool:
        return len(fake.requests) >= n

    return check
