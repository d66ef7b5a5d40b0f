"""Dashboards benchmark on PostgreSQL: 1,500,000 members, 80,000 civil servants and
5,000,000 completions (plus searches, chats and reminder digests), all generated with
set-based SQL (generate_series). Measures the first full `rollups` run, the p95 of each
dashboard request through the real admin API against the same figures computed from the raw
tables in the same run (the ratio), and the time `rollups` takes to absorb 100,000 new
completions (goal: under 10 s), checking on the way that summary and raw figures agree.

Run: make bench  (or .venv/bin/python -m bench.dashboards_bench [--members 1500000]
[--civil-servants 80000] [--completions 5000000] [--requests 100])
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dispatcher_bench import Database
from bot.i18n import TAIPEI
from bot.settings import Settings
from models.db import create_engine, create_sessionmaker
from models.learning import load_requirements
from models.rollups import _REMINDER_DAY, REMINDER_WINDOW_DAYS, day_start

NOW = dt.datetime(2026, 12, 20, 10, 0, tzinfo=TAIPEI)
YEAR = 2026
TOKEN = "bench-admin-token-0123456789"
AGENCIES = 60
COURSES = 2000
CATEGORIES = [
    "環境教育", "性別平等", "重大政策", "廉政倫理", "人權教育", "行政中立",
    "資訊安全", "長期照顧", "人工智慧", "管理", "健康生活", "語文",
]  # fmt: skip
WORDS = ["長照", "AI", "資安", "量子", "淨零", "區塊鏈", "英文", "Excel", "領導", "失智"]
REMINDER_DAYS = ("2026-06-01", "2026-09-01", "2026-12-01")
DAYS_IN_DATA = 334  # 1 January to 30 November
# Row g's time: a day of the year so far and a second of that day (Taipei).
_SPREAD = (
    f"timestamptz '{YEAR}-01-01 00:00+08' + ((g % {DAYS_IN_DATA}) || ' days')::interval"
    " + ((g * 37 % 86400) || ' seconds')::interval"
)


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


_WORD = f"({_array(WORDS)})[1 + g % {len(WORDS)}]"


def _completions_sql(first: int, count: int, *, civil: bool, cs: int, members: int) -> str:
    """`count` completions numbered from `first`; each (person, k) pair is a new course for
    that person, so the unique (person, course, day) holds whatever the numbers."""
    if civil:
        p, k = f"(g % {cs} + 1)", f"(g / {cs})"
        person = (
            f"CASE WHEN {p} <= {cs * 3 // 4} AND {k} % 2 = 1 THEN 'member:' || {p} "
            f"ELSE 'employee:E' || lpad({p}::text, 6, '0') END"
        )
        employee = (
            f"CASE WHEN {p} <= {cs * 3 // 4} AND {k} % 2 = 1 THEN NULL "
            f"ELSE 'E' || lpad({p}::text, 6, '0') END"
        )
        member = f"CASE WHEN {p} <= {cs * 3 // 4} AND {k} % 2 = 1 THEN {p} END"
        course = f"(({k} * 37 + {p}) % {COURSES})"
    else:
        citizens = members - cs
        p, k = f"({cs + 1} + g % {citizens})", f"(g / {citizens})"
        person, employee, member = f"'member:' || {p}", "NULL", p
        course = f"(({k} * 53 + {p}) % {COURSES})"
    day = f"(date '{YEAR}-01-01' + ((g * 7919) % {DAYS_IN_DATA})::int)"
    return f"""
        INSERT INTO completion
            (person, employee_id, member_id, course_id, completed_at, day, hours, imported_at)
        SELECT {person}, {employee}, {member}, 'c' || lpad({course}::text, 5, '0'),
               ({day} + time '12:00') AT TIME ZONE 'Asia/Taipei',
               to_char({day}, 'YYYY-MM-DD'), 1 + g % 3, now()
        FROM generate_series({first}::bigint, {first + count - 1}) g
    """


async def generate(engine: AsyncEngine, args: argparse.Namespace) -> None:
    cs, members = args.civil_servants, args.members
    linked = cs * 3 // 4
    civil_rows = min(args.completions * 2 // 5, cs * 25)
    steps = [
        (
            "courses",
            f"""INSERT INTO course (id, title, category, hours, hours_estimated, description,
                    audience, tags, platform, popularity, retired, created_at, updated_at)
                SELECT 'c' || lpad(g::text, 5, '0'), '課程 ' || g,
                       ({_array(CATEGORIES)})[1 + g % {len(CATEGORIES)}], 1 + g % 3, false, '',
                       'public', '[]'::jsonb, '', g % 100, false, now(), now()
                FROM generate_series(0, {COURSES - 1}) g""",
        ),
        (
            "members",
            f"""INSERT INTO member (id, language, is_civil_servant, marketing_opt_in, created_at)
                SELECT g, 'zh-TW', g <= {linked}, true, now()
                FROM generate_series(1, {members}) g""",
        ),
        (
            "member ids",
            "SELECT setval(pg_get_serial_sequence('member', 'id'), max(id)) FROM member",
        ),
        (
            "channel accounts",
            """INSERT INTO channel_account (member_id, channel, external_id, following,
                    unreachable, created_at, last_seen_at)
                SELECT id, CASE WHEN id % 7 = 0 THEN 'telegram' ELSE 'line' END,
                       CASE WHEN id % 7 = 0 THEN 'T' ELSE 'U' END || id, true, false, now(), now()
                FROM member""",
        ),
        (
            "civil servants",
            f"""INSERT INTO civil_servant (employee_id, name_sealed, agency, phone_hash,
                    phone_sealed, active, member_id, linked_at, imported_at, updated_at)
                SELECT 'E' || lpad(g::text, 6, '0'), 'x',
                       '機關' || lpad((g % {AGENCIES})::text, 2, '0'), md5(g::text), 'x', true,
                       CASE WHEN g <= {linked} THEN g END, now(), now(), now()
                FROM generate_series(1, {cs}) g""",
        ),
        (
            "completions (civil servants)",
            _completions_sql(0, civil_rows, civil=True, cs=cs, members=members),
        ),
        (
            "completions (citizens)",
            _completions_sql(0, args.completions - civil_rows, civil=False, cs=cs, members=members),
        ),
        (
            "searches",
            f"""INSERT INTO search_log (query, normalised, result_count, channel, created_at)
                SELECT q, q, CASE WHEN g % 10 = 0 THEN 0 ELSE 1 + g % 7 END, 'line',
                       {_SPREAD}
                FROM (SELECT g, {_WORD} || ' ' || (g * 7 % 3000) AS q
                      FROM generate_series(1::bigint, {args.searches}) g) s""",
        ),
        (
            "inbound events",
            f"""INSERT INTO inbound_event (channel, event_id, kind, sender, status, attempts,
                    received_at, payload)
                SELECT CASE WHEN m % 7 = 0 THEN 'telegram' ELSE 'line' END, 'ev' || g, 'message',
                       CASE WHEN m % 7 = 0 THEN 'T' ELSE 'U' END || m, 'done', 1, {_SPREAD},
                       '{{}}'::jsonb
                FROM (SELECT g, 1 + (g * 7919) % {min(members, 300000)} AS m
                      FROM generate_series(1::bigint, {args.events}) g) s""",
        ),
        (
            "reminder digests",
            f"""INSERT INTO reminder_digest (member_id, day, outbox_key, open_requirements,
                    created_at)
                SELECT m, d, 'reminder:' || m || ':' || d, 1,
                       (d::date + time '09:00') AT TIME ZONE 'Asia/Taipei'
                FROM generate_series(1, {linked}) m,
                     unnest({_array(list(REMINDER_DAYS))}) WITH ORDINALITY AS x(d, i)
                WHERE (m + i) % 3 <> 0""",
        ),
    ]
    for label, sql in steps:
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(text(sql))
        print(f"  generated {label:<30} {time.perf_counter() - started:7.1f} s", flush=True)
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    async with create_sessionmaker(engine)() as session:
        await load_requirements(session, now=NOW)  # the shipped defaults
        await session.commit()
    print(f"  analyze                                {time.perf_counter() - started:7.1f} s")


# -- the same figures from the raw tables --------------------------------------------------------
_PEOPLE = """completion c
    LEFT JOIN civil_servant e ON e.employee_id = c.employee_id
    LEFT JOIN civil_servant mm ON mm.member_id = c.member_id"""
RAW_TOPICS = text(f"""
    SELECT CAST(substr(c.day, 6, 2) AS int), coalesce(e.agency, mm.agency),
           coalesce(co.category, '(未分類)'), sum(c.hours), count(*)
    FROM {_PEOPLE} LEFT JOIN course co ON co.id = c.course_id
    WHERE c.day >= '{YEAR}-01-01' AND c.day <= '{YEAR}-12-31'
      AND coalesce(e.id, mm.id) IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")
RAW_COMPLIANCE = text(f"""
    WITH done AS (
        SELECT coalesce(e.employee_id, mm.employee_id) AS emp, r.requirement_id, c.hours
        FROM {_PEOPLE} JOIN rollup_course_requirement r ON r.course_id = c.course_id
        WHERE c.day >= '{YEAR}-01-01' AND c.day <= '{YEAR}-12-31'
          AND coalesce(e.id, mm.id) IS NOT NULL
        UNION ALL
        SELECT coalesce(e.employee_id, mm.employee_id), r.requirement_id, c.hours
        FROM {_PEOPLE} JOIN rollup_course_requirement r ON r.course_id = '*'
        WHERE c.day >= '{YEAR}-01-01' AND c.day <= '{YEAR}-12-31'
          AND coalesce(e.id, mm.id) IS NOT NULL
    ), per AS (SELECT emp, requirement_id, sum(hours) AS h FROM done GROUP BY 1, 2)
    SELECT cs.agency, q.code, count(*) FILTER (WHERE per.h >= q.hours - 1e-9)
    FROM per JOIN civil_servant cs ON cs.employee_id = per.emp AND cs.active
    JOIN mandatory_requirement q ON q.id = per.requirement_id
    GROUP BY 1, 2 ORDER BY 2, 1""")
RAW_SEARCH = [
    text("""SELECT normalised, count(*), sum(CASE WHEN result_count = 0 THEN 1 ELSE 0 END)
        FROM search_log WHERE created_at >= :start AND created_at < :end
        GROUP BY normalised ORDER BY 2 DESC, normalised LIMIT 20"""),
    text("""SELECT normalised, count(*), sum(CASE WHEN result_count = 0 THEN 1 ELSE 0 END) AS z
        FROM search_log WHERE created_at >= :start AND created_at < :end
        GROUP BY normalised HAVING sum(CASE WHEN result_count = 0 THEN 1 ELSE 0 END) > 0
        ORDER BY z DESC, normalised LIMIT 500"""),
]
RAW_CHANNELS = text("""
    SELECT to_char(date_trunc('week', received_at AT TIME ZONE 'Asia/Taipei'), 'YYYY-MM-DD'),
           channel, count(DISTINCT sender)
    FROM inbound_event
    WHERE received_at >= :start AND received_at < :end AND sender IS NOT NULL
      AND kind NOT IN ('unfollow', 'leave', 'my_chat_member')
    GROUP BY 1, 2 ORDER BY 1, 2""")


def _year_bounds() -> dict[str, dt.datetime]:
    return {
        "start": dt.datetime(YEAR, 1, 1, tzinfo=TAIPEI),
        "end": dt.datetime(YEAR + 1, 1, 1, tzinfo=TAIPEI),
    }


def _monday_bounds() -> dict[str, dt.datetime]:
    """From the first Monday of the year to the first of the next (a week is its Monday's)."""

    def monday_on_or_after(day: dt.date) -> dt.datetime:
        day += dt.timedelta(days=(7 - day.weekday()) % 7)
        return dt.datetime.combine(day, dt.time(), tzinfo=TAIPEI)

    return {
        "start": monday_on_or_after(dt.date(YEAR, 1, 1)),
        "end": monday_on_or_after(dt.date(YEAR + 1, 1, 1)),
    }


async def raw_figures(engine: AsyncEngine, name: str) -> Any:
    async with engine.connect() as conn:
        if name == "topics":
            return (await conn.execute(RAW_TOPICS)).all()
        if name == "compliance":
            return (await conn.execute(RAW_COMPLIANCE)).all()
        if name == "search":
            return [(await conn.execute(q, _year_bounds())).all() for q in RAW_SEARCH]
        if name == "channels":
            return (await conn.execute(RAW_CHANNELS, _monday_bounds())).all()
        if name == "reminders":
            out = []
            for day in REMINDER_DAYS:
                first = dt.date.fromisoformat(day)
                end = first + dt.timedelta(days=REMINDER_WINDOW_DAYS)
                out.append(
                    (
                        await conn.execute(
                            _REMINDER_DAY,
                            {
                                "day": day,
                                "year_start": f"{first.year}-01-01",
                                "window_end": end.isoformat(),
                                "start": day_start(first),
                                "end": day_start(end),
                            },
                        )
                    ).all()
                )
            return out
    return None  # campaigns: no raw source in this checkout


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def timed(fn: Callable[[], Awaitable[Any]], times: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(times):
        started = time.perf_counter()
        result = await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def check(name: str, board: dict[str, Any], raw: Any) -> str:
    """Whether the dashboard's figures are the raw tables' (the parts both hold)."""
    rows = board["rows"]
    if name == "topics":
        ok = [(r["month"], r["agency"], r["category"], r["completions"]) for r in rows] == [
            (m, a, c, n) for m, a, c, _, n in raw
        ] and all(
            abs(r["hours"] - float(h)) < 0.01 for r, (*_, h, _) in zip(rows, raw, strict=True)
        )
    elif name == "compliance":
        mine = {(r["agency"], r["requirement"]): r["met"] for r in rows}
        ok = all(mine.get((a, code)) == n for a, code, n in raw) and bool(raw)
    elif name == "channels":
        ok = [(r["week"], r["channel"], r["active_members"]) for r in rows] == [
            tuple(x) for x in raw
        ]
    elif name == "search":
        top = [(r["query"], r["searches"]) for r in rows if r["kind"] == "top"]
        ok = top == [(q, n) for q, n, _ in raw[0]]
    elif name == "reminders":
        total = sum(r["reminded"] for r in rows)
        ok = total == sum(int(a) for day in raw for _, a, *_ in day if a)
    else:
        return "n/a"
    return "yes" if ok else "NO"


async def main(args: argparse.Namespace) -> int:
    from app import create_app

    print(
        f"PostgreSQL: {args.members:,} members, {args.civil_servants:,} civil servants, "
        f"{args.completions:,} completions, {args.searches:,} searches, "
        f"{args.events:,} inbound events",
        flush=True,
    )
    async with Database() as url:
        engine = create_engine(url)
        try:
            await generate(engine, args)
            with tempfile.TemporaryDirectory() as tmp:
                settings = Settings(
                    _env_file=None,  # type: ignore[call-arg]
                    database_url=url,
                    edoor_background="off",
                    pii_key="bench-pii-key-0123456789abcdef-0123456789",
                    media_dir=Path(tmp),
                    admin_token=TOKEN,
                    log_level="WARNING",
                )
                api = create_app(settings)
                # As `edoor serve` starts it: the search index loaded and the long-lived heap
                # frozen out of the collector's sight (without it, full collections walk the
                # whole heap and their pauses land on whichever request is running).
                await api.state.runtime.start()
                job = api.state.runtime.jobs.require("rollups")
                started = time.perf_counter()
                report = await job.run(NOW.astimezone(dt.UTC))
                first_run = time.perf_counter() - started
                print(f"\nfirst rollups run (everything): {first_run:.1f} s  {report}")
                started = time.perf_counter()
                report = await job.run(NOW.astimezone(dt.UTC))
                print(f"re-run with nothing new:        {time.perf_counter() - started:.2f} s")
                results = []
                transport = httpx.ASGITransport(app=api)
                async with httpx.AsyncClient(
                    transport=transport,
                    base_url="http://bench",
                    headers={"authorization": f"Bearer {TOKEN}"},
                ) as http:
                    for name in ("topics", "compliance", "reminders", "search", "channels",
                                 "campaigns"):  # fmt: skip
                        path = f"/admin/api/dashboards/{name}?year={YEAR}"

                        async def request(path: str = path) -> dict[str, Any]:
                            response = await http.get(path)
                            response.raise_for_status()
                            return response.json()  # type: ignore[no-any-return]

                        async def computed(path: str = path) -> dict[str, Any]:
                            api.state.dashboard_answers.clear()  # as after a rollups run
                            return await request(path)

                        await request()  # warm
                        fast, board = await timed(computed, args.requests)
                        repeats, _ = await timed(request, args.requests)
                        slow, raw = await timed(
                            lambda name=name: raw_figures(engine, name), args.raw_runs
                        )
                        results.append((name, fast, slow, len(board["rows"]),
                                        check(name, board, raw), repeats))  # fmt: skip
                await absorb_new(engine, job, args)
                await api.state.runtime.close()
        finally:
            await engine.dispose()
    print(
        "\nAPI: the first view after a rollups run (computed from the summary tables; the"
        "\nanswer cache emptied before each request); repeat: the same view again (cached"
        "\nuntil the next run); raw: the same figures from the raw tables."
        f"\n{'dashboard':<11} | {'rows':>5} | {'API p50 ms':>10} | {'API p95 ms':>10} | "
        f"{'repeat p95':>10} | {'raw p50 ms':>10} | {'raw p95 ms':>10} | "
        f"{'raw/API p95':>11} | agree"
    )
    failed = 0
    for name, fast, slow, rows, agree, repeats in results:
        head = (f"{name:<11} | {rows:>5} | {statistics.median(fast):>10.1f} | "
                f"{p95(fast):>10.1f} | {p95(repeats):>10.1f} | ")  # fmt: skip
        if name == "campaigns":
            print(head + f"{'-':>10} | {'-':>10} | {'-':>11} | n/a")
            continue
        ratio = p95(slow) / p95(fast)
        print(head + f"{statistics.median(slow):>10.1f} | {p95(slow):>10.1f} | "
              f"{ratio:>10.0f}x | {agree}")  # fmt: skip
        failed |= p95(fast) >= 200 or agree != "yes"
    return 1 if failed else 0


async def absorb_new(engine: AsyncEngine, job: Any, args: argparse.Namespace) -> None:
    """100,000 new civil servants' completions, then one `rollups` run."""
    cs = args.civil_servants
    first = min(args.completions * 2 // 5, cs * 25)
    async with engine.begin() as conn:
        await conn.execute(
            text(_completions_sql(first, args.new, civil=True, cs=cs, members=args.members))
        )
    started = time.perf_counter()
    report = await job.run((NOW + dt.timedelta(minutes=5)).astimezone(dt.UTC))
    took = time.perf_counter() - started
    goal = "met" if took < 10 else "NOT met"
    print(f"\nabsorbing {args.new:,} new completions: {took:.2f} s (goal < 10 s: {goal})  {report}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_500_000)
    parser.add_argument("--civil-servants", type=int, default=80_000)
    parser.add_argument("--completions", type=int, default=5_000_000)
    parser.add_argument("--searches", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--new", type=int, default=100_000, help="completions absorbed at the end")
    parser.add_argument("--requests", type=int, default=100, help="requests per dashboard")
    parser.add_argument("--raw-runs", type=int, default=5, help="raw-table runs per dashboard")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse(sys.argv[1:]))))
