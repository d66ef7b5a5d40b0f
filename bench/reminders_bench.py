"""Reminder sweep benchmark on PostgreSQL: 80,000 verified civil servants, 6 requirements
each, two completions each; the sweep's time and memory (first over 20,000 people, then over
all 80,000, to show memory does not grow with their number), then the 80,000 LINE digests
handed to a fake LINE API (push budget 2,000/s enforced by the fake) by dispatcher workers.

Run: make bench  (or .venv/bin/python -m bench.reminders_bench [--people 80000] [--workers 2])
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dispatcher_bench import ROOT, Database, Fakes
from bot.i18n import Catalog
from models.base import TAIPEI
from models.courses import Course
from models.db import create_engine, create_sessionmaker
from models.identity import CivilServant
from models.learning import Completion
from models.members import ChannelAccount, Member
from models.outbox import OutboxMessage
from notifications.reminders import sweep_reminders

CATEGORIES = [
    "環境教育",
    "性別平等",
    "廉政倫理",
    "人權教育",
    "行政中立",
    "資訊安全",
    "管理",
    "健康生活",
]
# 09:00 in Taipei, 14 and then 7 days before the 31 December deadline: both cadence points.
FIRST = dt.datetime(2026, 12, 17, 9, 0, tzinfo=TAIPEI)
SECOND = dt.datetime(2026, 12, 24, 9, 0, tzinfo=TAIPEI)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def add_people(engine: AsyncEngine, start: int, count: int, rng: random.Random) -> None:
    now = FIRST
    async with engine.begin() as conn:
        for offset in range(0, count, 5000):
            n = min(5000, count - offset)
            base = start + offset
            ids = (
                (
                    await conn.execute(
                        insert(Member).returning(Member.id),
                        [
                            {"language": "zh-TW", "is_civil_servant": True, "created_at": now}
                            for _ in range(n)
                        ],
                    )
                )
                .scalars()
                .all()
            )
            await conn.execute(
                insert(ChannelAccount),
                [
                    {
                        "member_id": m,
                        "channel": "line",
                        "external_id": f"U{uuid.uuid4().hex}",
                        "following": True,
                        "unreachable": False,
                        "created_at": now,
                        "last_seen_at": now,
                    }
                    for m in ids
                ],
            )
            await conn.execute(
                insert(CivilServant),
                [
                    {
                        "employee_id": f"E{base + i:07d}",
                        "name_sealed": "x",
                        "agency": "臺北市政府",
                        "phone_hash": f"{base + i:064d}",
                        "phone_sealed": "x",
                        "active": True,
                        "member_id": m,
                        "linked_at": now,
                        "imported_at": now,
                        "updated_at": now,
                    }
                    for i, m in enumerate(ids)
                ],
            )
            completions = []
            for i in range(n):
                for k in range(2):
                    course = rng.randrange(100) + 100 * k  # two different courses
                    day = dt.date(2026, 1 + rng.randrange(11), 1 + rng.randrange(28))
                    completions.append(
                        {
                            "person": f"employee:E{base + i:07d}",
                            "employee_id": f"E{base + i:07d}",
                            "course_id": f"c{course:03d}",
                            "completed_at": dt.datetime.combine(day, dt.time(12), tzinfo=TAIPEI),
                            "day": day.isoformat(),
                            "hours": rng.choice([1.0, 2.0, 3.0]),
                            "imported_at": now,
                        }
                    )
            await conn.execute(insert(Completion), completions)
        # Benchmarks run day and night: no quiet hours in the way of the delivery figure.
        await conn.execute(text("UPDATE member SET quiet_hours = '00:00-00:00'"))


async def add_courses(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(Course),
            [
                {
                    "id": f"c{i:03d}",
                    "title": f"課程 {i}",
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "hours": 2.0,
                    "hours_estimated": False,
                    "description": "",
                    "audience": "public",
                    "tags": [],
                    "platform": "",
                    "popularity": i,
                    "retired": False,
                    "created_at": FIRST,
                    "updated_at": FIRST,
                }
                for i in range(200)
            ],
        )


async def timed_sweep(engine: AsyncEngine, now: dt.datetime) -> tuple[Any, float, float, float]:
    """(report, seconds, RSS before MB, peak RSS during MB)."""
    peak = rss_mb()
    before = peak
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    report = await sweep_reminders(
        create_sessionmaker(engine), catalog=Catalog(), now=now, channels=["line"]
    )
    seconds = time.perf_counter() - started
    done.set()
    await sampler
    return report, seconds, before, peak


async def worker(url: str, line_url: str, now: str) -> None:
    """One dispatcher process (run by the benchmark with --worker)."""
    from bot.line import LineChannel
    from bot.settings import Settings
    from notifications.dispatcher import Dispatcher, DispatcherConfig

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        line_channel_secret="bench-secret-0123456789",  # noqa: S106 (a fake)
        line_channel_access_token="bench-token-0123456789",  # noqa: S106
        line_api_base_url=line_url,
    )
    engine = create_engine(url, pool_size=10)
    line = LineChannel(settings)
    dispatcher = Dispatcher(
        create_sessionmaker(engine),
        {"line": line},
        # Batches of 2,000 (as the dispatcher benchmark's LINE worker): the per-batch
        # database work is then a small share of a batch's sends.
        config=DispatcherConfig(concurrency=64, batch_size=2000),
        redis_url=os.environ.get("REDIS_URL"),
    )
    # The sweep's `now` and then real seconds onwards (rows are due from the sweep's time).
    moment = dt.datetime.fromisoformat(now)
    report = await dispatcher.drain(moment)
    await line.stop()
    await engine.dispose()
    sys.stdout.write(
        f"sent={report.sent} errors={report.errors} requests={report.requests} "
        f"limiter waits={dispatcher.limits.waited:.1f} s\n"
    )


async def deliver(url: str, workers: int, now: dt.datetime, expected: int) -> None:
    async with Fakes(enforce=True) as fakes:
        started = time.perf_counter()
        procs = [
            subprocess.Popen(  # noqa: ASYNC220 (waited on below in a thread)
                [
                    sys.executable,
                    "-m",
                    "bench.reminders_bench",
                    "--worker",
                    url,
                    fakes.url,
                    now.isoformat(),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(workers)
        ]
        outs = [await asyncio.to_thread(p.communicate) for p in procs]
        seconds = time.perf_counter() - started
        stats = await fakes.stats()
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-2000:])
        print(f"(worker: {out.decode().strip()})")
    handed = stats["recipients"].get("line", 0)
    rate = handed / seconds
    print(
        f"\nDelivery of the digests ({workers} worker process(es); the fake LINE enforces "
        "2,000 push/s and 200 multicast/s)"
    )
    print("digests queued | handed to LINE | seconds | per second | 429 by us | within a minute")
    print("-" * 88)
    print(
        f"{expected:>14,} | {handed:>14,} | {seconds:>7.1f} | {rate:>10,.0f} | "
        f"{sum(stats['too_many'].values()):>9} | {'yes' if seconds <= 60 else 'no'}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=80_000)
    # Several workers share the budgets through Redis (REDIS_URL) but pace themselves
    # independently, so their bursts can meet: one worker is the figure we report.
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker", nargs=3, metavar=("URL", "LINE_URL", "NOW"))
    args = parser.parse_args()
    if args.worker:
        await worker(*args.worker)
        return
    rng = random.Random(6)
    first = args.people // 4
    async with Database() as url:
        engine = create_engine(url, pool_size=10)
        await add_courses(engine)
        setup = time.perf_counter()
        await add_people(engine, 0, first, rng)
        small = await timed_sweep(engine, FIRST)
        await add_people(engine, first, args.people - first, rng)
        setup = time.perf_counter() - setup - small[1]
        # Last week's digests went out; this week's sweep covers everyone.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE outbox SET status = 'sent'"))
        large = await timed_sweep(engine, SECOND)
        async with create_sessionmaker(engine)() as s:
            queued = await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == "pending")
            )
        await engine.dispose()
        print(f"(set-up: {args.people:,} people, {2 * args.people:,} completions in {setup:.0f} s)")
        print("\nReminder sweep (PostgreSQL, 6 requirements per person, chunks of 5,000)")
        print("people  | digests | seconds | people/s | RSS before MB | RSS peak MB | growth MB")
        print("-" * 84)
        for people, (report, secs, before, peak) in ((first, small), (args.people, large)):
            print(
                f"{people:>7,} | {report.digests:>7,} | {secs:>7.1f} | {people / secs:>8,.0f} | "
                f"{before:>13.0f} | {peak:>11.0f} | {peak - before:>9.0f}"
            )
        await deliver(url, args.workers, SECOND, int(queued or 0))


if __name__ == "__main__":
    asyncio.run(main())
