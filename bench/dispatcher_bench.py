"""Dispatcher benchmark on PostgreSQL against fake LINE/Telegram APIs in another process.

1. Throughput with the platform limits off, as a ratio to a bare claim-and-mark loop
   (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 500), then mark sent)
   on the same database in the same run.
2. With the limits on (the fake answers 429 to any excess): the share of each configured
   budget sustained (LINE multicast 200 calls/s, Telegram 30 messages/s and 1/s per chat),
   and the 429s we caused.

Run: make bench  (or .venv/bin/python -m bench.dispatcher_bench [--rows 50000] [--seconds 60])
BENCH_DATABASE_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test) names the
server; the benchmark creates and drops its own database there. REDIS_URL, when set, makes
the limits shared through Redis as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.messages import Text, dump_replies
from bot.settings import Settings
from models.db import create_engine, create_sessionmaker
from models.members import ChannelAccount, Member
from models.migrate import upgrade
from models.outbox import PRIORITY_BROADCAST, NewMessage, Target, enqueue_many
from notifications.dispatcher import Dispatcher, DispatcherConfig

ROOT = Path(__file__).resolve().parents[1]
SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TG_TOKEN = "7012345678:AAFakeTokenForBench_0123456789abcdefXYZ"
NOW = dt.datetime.now(dt.UTC)


def _dsn(url: str, database: str | None = None) -> str:
    u = make_url(url)
    if database:
        u = u.set(database=database)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class Database:
    def __init__(self) -> None:
        self.name = f"edoor_bench_{uuid.uuid4().hex[:8]}"
        self.url = make_url(SERVER).set(database=self.name).render_as_string(hide_password=False)

    async def __aenter__(self) -> str:
        conn = await asyncpg.connect(_dsn(SERVER))
        await conn.execute(f'CREATE DATABASE "{self.name}"')
        await conn.close()
        engine = create_engine(self.url)
        await upgrade(engine)
        await engine.dispose()
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        conn = await asyncpg.connect(_dsn(SERVER))
        await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        await conn.close()


def _platform_priority() -> None:
    """The fake stands for LINE's and Telegram's servers, which do not share our cores: it
    runs ahead of the processes under test where it may (root), so that a fake starved of
    CPU does not read a backlog of calls late and count them as arriving together."""
    with contextlib.suppress(OSError):
        os.nice(-10)


class Fakes:
    """bench.platform_fakes under uvicorn in a child process."""

    def __init__(self, *, enforce: bool) -> None:
        self.enforce = enforce
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Fakes:
        env = {**os.environ, "ENFORCE": "1" if self.enforce else "0"}
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited on)
            [sys.executable, "-m", "uvicorn", "bench.platform_fakes:app", "--port", str(self.port),
             "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
            cwd=ROOT, env=env, preexec_fn=_platform_priority,
        )  # fmt: skip
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    await http.get(f"{self.url}/stats")
                    return self
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("fake platforms did not start")

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=10)

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{self.url}/stats")).json()  # type: ignore[no-any-return]

    async def reset(self) -> None:
        async with httpx.AsyncClient() as http:
            await http.post(f"{self.url}/reset")


async def people(engine: AsyncEngine, channel: str, count: int) -> list[Target]:
    """`count` members with one account each, inserted in bulk."""
    out: list[Target] = []
    async with engine.begin() as conn:
        for start in range(0, count, 5000):
            n = min(5000, count - start)
            ids = (
                (
                    await conn.execute(
                        insert(Member).returning(Member.id),
                        [{"language": "zh-TW", "created_at": NOW} for _ in range(n)],
                    )
                )
                .scalars()
                .all()
            )
            externals = [
                f"U{uuid.uuid4().hex}" if channel == "line" else str(10_000_000 + start + i)
                for i in range(n)
            ]
            accounts = (
                (
                    await conn.execute(
                        insert(ChannelAccount).returning(ChannelAccount.id),
                        [
                            {
                                "member_id": m,
                                "channel": channel,
                                "external_id": e,
                                "following": True,
                                "unreachable": False,
                                "created_at": NOW,
                                "last_seen_at": NOW,
                            }
                            for m, e in zip(ids, externals, strict=True)
                        ],
                    )
                )
                .scalars()
                .all()
            )
            out.extend(
                Target(m, a, channel, e) for m, a, e in zip(ids, accounts, externals, strict=True)
            )
        # Benchmarks run day and night: no quiet hours for these people.
        await conn.execute(text("UPDATE member SET quiet_hours = '00:00-00:00'"))
    return out


async def enqueue(engine: AsyncEngine, targets: list[Target], *, same_every: int, tag: str) -> None:
    """One row per target; `same_every` consecutive rows share a body (1 = all distinct)."""
    maker = create_sessionmaker(engine)
    bodies: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(targets), 2000):
        batch = []
        for i, t in enumerate(targets[start : start + 2000], start=start):
            group = i // same_every
            body = bodies.setdefault(group, dump_replies([Text(text=f"{tag} 訊息 {group}")]))
            batch.append(NewMessage(f"{tag}:{i}", t, body, "broadcast", PRIORITY_BROADCAST, NOW))
        async with maker() as s:
            await enqueue_many(s, batch, now=NOW)
            await s.commit()
        if len(bodies) > 10_000:
            bodies.clear()


async def truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE outbox"))


async def bare_loop(engine: AsyncEngine) -> tuple[int, float]:
    claim = text(
        "UPDATE outbox SET status = 'sending', claimed_by = :w, lease_until = :l, "
        "attempts = attempts + 1 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' "
        "AND not_before <= :now ORDER BY priority, not_before, id LIMIT 500 "
        "FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    mark = text("UPDATE outbox SET status = 'sent', sent_at = :now WHERE id = ANY(:ids)")
    done, started = 0, time.perf_counter()
    while True:
        async with engine.begin() as conn:
            ids = list(
                (await conn.execute(claim, {"w": "bare", "l": NOW, "now": NOW})).scalars().all()
            )
            if not ids:
                break
            await conn.execute(mark, {"now": NOW, "ids": ids})
        done += len(ids)
    return done, time.perf_counter() - started


def channels_for(fakes: Fakes, url: str, which: str) -> dict[str, Any]:
    from telegram.request import HTTPXRequest

    from bot.line import LineChannel
    from bot.telegram import TelegramChannel

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        line_channel_secret="bench-secret-0123456789",  # noqa: S106 (a fake)
        line_channel_access_token="bench-token-0123456789",  # noqa: S106
        line_api_base_url=fakes.url,
        telegram_bot_token=TG_TOKEN,
        telegram_mode="polling",
        telegram_api_base_url=f"{fakes.url}/bot",
    )
    if which == "line":
        return {"line": LineChannel(settings)}
    # PTB's default pool has one connection: concurrent chats need more.
    request = HTTPXRequest(connection_pool_size=64)
    return {"telegram": TelegramChannel(settings, request=request)}


async def close(channels: dict[str, Any]) -> None:
    for channel in channels.values():
        await channel.stop()


async def timed_drain(
    engine: AsyncEngine, channels: dict[str, Any], **config: Any
) -> tuple[int, float, Any]:
    if "telegram" in channels:
        await channels["telegram"].start()
    dispatcher = Dispatcher(
        create_sessionmaker(engine), channels, config=DispatcherConfig(limits_on=False, **config)
    )
    started = time.perf_counter()
    report = await dispatcher.drain(NOW + dt.timedelta(seconds=1))
    return report.sent, time.perf_counter() - started, report


def row(cells: list[str], widths: list[int]) -> str:
    return " | ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


async def throughput(url: str, rows: int) -> None:
    engine = create_engine(url, pool_size=40, max_overflow=20)
    line_people = await people(engine, "line", rows)
    tg_people = await people(engine, "telegram", max(500, rows // 50))
    results: list[tuple[str, int, float, float]] = []

    await enqueue(engine, line_people, same_every=rows, tag="bare")
    done, secs = await bare_loop(engine)
    bare_rate = done / secs
    results.append(("bare claim-and-mark loop (500/batch)", done, secs, bare_rate))
    await truncate(engine)

    async with Fakes(enforce=False) as fakes:
        cases = [
            ("LINE broadcast (multicast of 500)", "line", line_people, rows),
            ("LINE personal (push, 1 per row)", "line", line_people[: rows // 10], 1),
            ("Telegram personal (1 call per row)", "telegram", tg_people, 1),
        ]
        for name, which, targets, same in cases:
            await enqueue(engine, targets, same_every=same, tag=name[:8])
            channels = channels_for(fakes, url, which)
            sent, secs, report = await timed_drain(engine, channels, concurrency=64)
            await close(channels)
            assert sent == len(targets), (name, report)
            results.append((name, sent, secs, sent / secs))
            await truncate(engine)
    await engine.dispose()

    widths = [38, 8, 7, 10, 9]
    print("\nThroughput, platform limits off (PostgreSQL, fakes in another process)")
    print(row(["workload", "rows", "s", "rows/s", "vs bare"], widths))
    print("-" * 80)
    for name, n, secs, rate in results:
        print(row([name, f"{n}", f"{secs:.2f}", f"{rate:,.0f}", f"{rate / bare_rate:.0%}"], widths))


async def sustained(url: str, seconds: float) -> None:
    engine = create_engine(url, pool_size=40, max_overflow=20)
    line_budget, tg_budget = 190, 28  # the configured budgets (DispatcherConfig defaults)
    line_rows = int(2 * line_budget * seconds * 1.15)  # pairs: 2 people per multicast
    tg_chats = 300
    tg_rows = int(tg_budget * seconds * 1.15)
    line_people = await people(engine, "line", line_rows)
    tg_people = await people(engine, "telegram", tg_chats)
    await enqueue(engine, line_people, same_every=2, tag="pair")
    await enqueue(engine, [tg_people[i % tg_chats] for i in range(tg_rows)], same_every=1, tag="tg")
    redis_url = os.environ.get("REDIS_URL")
    async with Fakes(enforce=True) as fakes:
        line_ch = channels_for(fakes, url, "line")
        tg_ch = channels_for(fakes, url, "telegram")
        await tg_ch["telegram"].start()
        # One worker per channel, as a deployment would run them (each claims its channel);
        # the LINE worker takes bigger batches so that claiming is a small share of a batch.
        # Pairs would normally go as pushes (2,000/s) rather than spend the scarce multicast
        # budget (200/s); this figure is about holding the multicast budget, so the pairs
        # are kept as multicasts (balance_multicast=False).
        workers = [
            Dispatcher(
                create_sessionmaker(engine),
                ch,
                config=DispatcherConfig(
                    concurrency=64, poll_seconds=0.05, batch_size=size, balance_multicast=False
                ),
                redis_url=redis_url,
            )
            for ch, size in ((line_ch, 2000), (tg_ch, 500))
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        await asyncio.sleep(2)  # warm-up, not measured
        before = await fakes.stats()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        after = await fakes.stats()
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*tasks)
        await close(line_ch)
        await close(tg_ch)
    await engine.dispose()

    def rate(key: str) -> float:
        return (after["calls"].get(key, 0) - before["calls"].get(key, 0)) / elapsed

    too_many = after["too_many"]
    print(f"(fake's 429 reasons: {dict(too_many)})")
    widths = [34, 9, 10, 9, 12]
    print(f"\nSustained with the limits on ({elapsed:.0f} s measured after 2 s warm-up; "
          f"limits in {'Redis' if redis_url else 'memory'})")  # fmt: skip
    print(row(["channel budget", "budget/s", "achieved/s", "share", "429 by us"], widths))
    print("-" * 82)
    for name, key, budget in (
        ("LINE multicast (2 people a call)", "multicast", line_budget),
        ("Telegram messages (300 chats)", "telegram", tg_budget),
    ):
        achieved = rate(key)
        print(row([name[:34], f"{budget}", f"{achieved:.1f}", f"{achieved / budget:.0%}",
                   f"{too_many.get(key, 0)}"], widths))  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--skip-sustained", action="store_true")
    args = parser.parse_args()
    async with Database() as url:
        await throughput(url, args.rows)
    if not args.skip_sustained:
        async with Database() as url:
            await sustained(url, args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
