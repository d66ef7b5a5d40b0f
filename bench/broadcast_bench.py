"""Broadcast benchmark on PostgreSQL.

1. Planning: a broadcast to N members (segment `{all: [{channel: line}]}`), planned by the
   real code (`bot.broadcasts.plan_due`: segment evaluation, channel choice, frequency cap,
   INSERT ... SELECT in chunks of member ids), against a same-run baseline that bulk-inserts
   the same rows directly (one INSERT ... SELECT of member JOIN channel_account). Seconds, and
   the peak RSS of the planning process (each size in a fresh process, so the peaks compare).
2. Sending: the planned broadcast sent by two `edoor worker`-like processes (limits shared
   through Redis) to the fast fake LINE API with its limits on (multicast 200/s): requests
   per second against the budget, 429s we caused, and every recipient exactly once.

Run: .venv/bin/python -m bench.broadcast_bench [--sizes 100000,1500000] [--send 150000]
BENCH_DATABASE_URL as in bench.dispatcher_bench; REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.dispatcher_bench import Database, Fakes, row
from bot.i18n import Catalog
from bot.settings import Settings
from models.db import create_engine, create_sessionmaker

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 3, 2, 4, 0, tzinfo=dt.UTC)  # noon in Taipei: no quiet hours
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
FILE = {
    "name": "bench",
    "segment": {"all": [{"channel": "line"}]},
    "message": {"text": "臺北e大新課程上架", "text_en": "New courses"},
    "send_at": "now",
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def populate(url: str, n: int) -> None:
    """n members with one LINE account each, made inside PostgreSQL (generate_series)."""
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO member (id, language, is_civil_servant, marketing_opt_in, "
                "created_at, quiet_hours) SELECT g, CASE WHEN g % 10 = 0 THEN 'en' ELSE 'zh-TW' "
                "END, g % 3 = 0, true, :now, '00:00-00:00' FROM generate_series(1, :n) g"
            ),
            {"n": n, "now": NOW},
        )
        await conn.execute(
            text(
                "INSERT INTO channel_account (id, member_id, channel, external_id, following, "
                "unreachable, created_at, last_seen_at) SELECT g, g, 'line', "
                "'U' || md5(g::text), true, false, :now, :now FROM generate_series(1, :n) g"
            ),
            {"n": n, "now": NOW},
        )
        await conn.execute(text("SELECT setval('member_id_seq', :n)"), {"n": n})
        await conn.execute(text("SELECT setval('channel_account_id_seq', :n)"), {"n": n})
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE member"))
        await conn.execute(text("VACUUM ANALYZE channel_account"))
    await engine.dispose()


async def _reset_outbox(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE outbox"))
        await conn.execute(text("DELETE FROM broadcast"))
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("CHECKPOINT"))
    await engine.dispose()


async def baseline(url: str) -> float:
    """The same rows, bulk-inserted directly: one INSERT ... SELECT, no segment, no checks
    (the same message bodies as the planner's, composed by the same code, one per language)."""
    from bot.broadcasts import bodies
    from models.broadcasts import create_broadcast

    engine = create_engine(url)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    async with create_sessionmaker(engine)() as s:
        made = await create_broadcast(s, FILE, created_by="bench", now=NOW)
        body = (await bodies(s, made, catalog=Catalog(), settings=settings))["a"]
        await s.rollback()
    zh = json.dumps(body.zh, ensure_ascii=False)
    en = json.dumps(body.en, ensure_ascii=False)
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (key, member_id, account_id, channel, external_id, kind, "
                "priority, proactive, replies, body_hash, not_before, status, attempts, "
                "created_at, broadcast_id, aggregation_unit) SELECT 'base:' || m.id, m.id, a.id, "
                "a.channel, a.external_id, 'broadcast', 20, true, CAST(CASE WHEN m.language = "
                "'en' THEN :en ELSE :zh END AS jsonb), CASE WHEN m.language = 'en' THEN "
                "'0123456789abcdef0123456789abcdef' ELSE 'fedcba9876543210fedcba9876543210' END, "
                ":now, 'pending', 0, :now, 0, 'edoor_bc0_a' "
                "FROM member m JOIN channel_account a ON a.member_id = m.id "
                "ON CONFLICT (key) DO NOTHING"
            ),
            {"zh": zh, "en": en, "now": NOW},
        )
    secs = time.perf_counter() - started
    await engine.dispose()
    return secs


async def planning(url: str) -> tuple[float, int]:
    """The real planner, as `edoor run-job broadcasts` runs it."""
    from bot.broadcasts import plan_due
    from models.broadcasts import create_broadcast

    engine = create_engine(url)
    maker = create_sessionmaker(engine)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    async with maker() as s:
        await create_broadcast(s, FILE, created_by="bench", now=NOW)
        await s.commit()
    started = time.perf_counter()
    done = await plan_due(
        maker,
        now=NOW,
        catalog=Catalog(),
        settings=settings,
        channels=["line"],
        not_before=lambda t: t,
    )
    secs = time.perf_counter() - started
    await engine.dispose()
    return secs, sum(done.values())


def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.broadcast_bench", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def plan_sizes(sizes: list[int]) -> None:
    results = []
    for n in sizes:
        async with Database() as url:
            await populate(url, n)
            base = _child("child-baseline", "--url", url)
            await _reset_outbox(url)
            ours = _child("child-plan", "--url", url)
            assert ours["rows"] == n, ours
        results.append((n, base, ours))
        print(f"  planned {n:,}: baseline {base['s']:.1f} s, ours {ours['s']:.1f} s", flush=True)
    widths = [11, 11, 9, 8, 13, 12]
    print("\nPlanning a broadcast on PostgreSQL (fresh process per measurement)")
    print(row(["recipients", "baseline s", "ours s", "ratio", "base RSS MB", "our RSS MB"], widths))
    print("-" * 76)
    for n, base, ours in results:
        print(
            row(
                [
                    f"{n:,}",
                    f"{base['s']:.1f}",
                    f"{ours['s']:.1f}",
                    f"{ours['s'] / base['s']:.2f}x",
                    f"{base['rss']:.0f}",
                    f"{ours['rss']:.0f}",
                ],
                widths,
            )
        )


async def send(n: int, workers: int) -> None:
    async with Database() as url:
        await populate(url, n)
        plan = _child("child-plan", "--url", url)
        assert plan["rows"] == n
        async with Fakes(enforce=True) as fakes:
            import redis.asyncio as aioredis

            r = aioredis.from_url(REDIS)
            await r.flushdb()
            await r.aclose()
            env = {**os.environ, "REDIS_URL": REDIS}
            command = [sys.executable, "-m", "bench.broadcast_bench", "child-worker"]
            command += ["--url", url, "--line-url", fakes.url]
            procs = [
                subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: ASYNC220 (measured children)
                for _ in range(workers)
            ]
            started = time.perf_counter()
            last = None
            while True:
                await asyncio.sleep(0.5)
                stats = await fakes.stats()
                got = stats["recipients"].get("line", 0)
                if got >= n or time.perf_counter() - started > max(120, n / 2000):
                    last = time.perf_counter()
                    break
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            stats = await fakes.stats()
    calls = stats["calls"].get("multicast", 0) + stats["calls"].get("push", 0)
    span = stats["span"] or 1e-9
    print(f"\nSending {n:,} LINE recipients, {workers} worker processes, limits on (Redis)")
    widths = [26, 12]
    for label, value in (
        ("recipients delivered", f"{stats['recipients'].get('line', 0):,}"),
        ("distinct recipients", f"{stats.get('distinct', {}).get('line', 0):,}"),
        ("repeats", f"{stats.get('repeats', {}).get('line', 0):,}"),
        ("multicast calls", f"{stats['calls'].get('multicast', 0):,}"),
        ("push calls", f"{stats['calls'].get('push', 0):,}"),
        ("first to last call, s", f"{span:.1f}"),
        ("calls/s", f"{calls / span:.1f}"),
        ("share of 200/s", f"{calls / span / 200:.0%}"),
        ("429 caused by us", f"{sum(stats['too_many'].values())}"),
        ("wall clock, s", f"{(last or 0) - started:.1f}"),
    ):
        print(row([label, value], widths))
    # The steady rate: whole seconds after the first (the workers start one after the other).
    steady = stats.get("per_second", [])[1:-1]
    print("calls in each second       | " + " ".join(str(c) for c in stats.get("per_second", [])))
    if steady:
        rate = sum(steady) / len(steady)
        print(row(["steady calls/s (2nd on)", f"{rate:.1f}"], widths))
        print(row(["steady share of 200/s", f"{rate / 200:.0%}"], widths))


async def _child_worker(url: str, line_url: str) -> None:
    import signal

    from bot.line import LineChannel
    from notifications.dispatcher import Dispatcher, DispatcherConfig

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        line_channel_secret="bench-secret-0123456789",  # noqa: S106 (a fake)
        line_channel_access_token="bench-token-0123456789",  # noqa: S106
        line_api_base_url=line_url,
    )
    engine = create_engine(url, pool_size=20, max_overflow=10)
    line = LineChannel(settings)
    worker = Dispatcher(
        create_sessionmaker(engine),
        {"line": line},
        # Every group of 500 as one multicast (the budget under test), as in dispatcher_bench.
        config=DispatcherConfig(
            concurrency=64, poll_seconds=0.05, batch_size=5000, balance_multicast=False
        ),
        redis_url=os.environ.get("REDIS_URL"),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        # Noon in Taipei (no quiet hours), moving with the real clock so that a row put back
        # for a few seconds (a 429's retry_after) comes due again.
        started = time.monotonic()
        await worker.run(
            stop, clock=lambda: NOW + dt.timedelta(seconds=1 + time.monotonic() - started)
        )
    finally:
        await line.stop()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="all")
    parser.add_argument("--sizes", default="100000,1500000")
    parser.add_argument("--send", type=int, default=150_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--url")
    parser.add_argument("--line-url")
    args = parser.parse_args()
    if args.command == "child-baseline":
        secs = asyncio.run(baseline(args.url))
        print(json.dumps({"s": secs, "rss": _rss_mb()}))
    elif args.command == "child-plan":
        secs, rows = asyncio.run(planning(args.url))
        print(json.dumps({"s": secs, "rows": rows, "rss": _rss_mb()}))
    elif args.command == "child-worker":
        asyncio.run(_child_worker(args.url, args.line_url))
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        if args.command in ("all", "plan") and sizes:
            asyncio.run(plan_sizes(sizes))
        if args.command in ("all", "send") and args.send:
            asyncio.run(send(args.send, args.workers))


if __name__ == "__main__":
    main()
