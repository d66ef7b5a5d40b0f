"""The reminder sweep against a real database: digests are created, tighten towards the
deadline, catch up, stay one per day, stop after a completion import, and snooze."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.i18n import Catalog
from models.base import TAIPEI
from models.completions_import import import_completions
from models.courses import Course
from models.db import create_sessionmaker
from models.identity import CivilServant
from models.learning import (
    ReminderDigest,
    default_requirements,
    import_requirements,
    member_progress,
    snooze,
)
from models.outbox import OutboxMessage, Target
from notifications.reminders import sweep_reminders
from tests.outbox_support import add_member

CATALOG = Catalog()


def taipei(day: str, hour: int = 9) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hour:02d}:00").replace(tzinfo=TAIPEI)


async def setup(session: AsyncSession) -> dict[str, Target]:
    seen = taipei("2026-01-05")
    people = {
        "rostered": await add_member(
            s := session, channel="line", external_id="U" + "a" * 32, civil_servant=True, seen=seen
        ),
        "plain": await add_member(
            s, channel="telegram", external_id="777", civil_servant=True, language="en", seen=seen
        ),
        "citizen": await add_member(s, channel="line", external_id="U" + "c" * 32, seen=seen),
    }
    s.add(
        CivilServant(
            employee_id="E001",
            name_sealed="x",
            agency="臺北市政府資訊局",
            phone_hash="h" * 64,
            phone_sealed="x",
            member_id=people["rostered"].member_id,
            imported_at=seen,
            updated_at=seen,
        )
    )
    for cid, category, popularity in (
        ("env-1", "環境教育", 50),
        ("env-2", "環境教育", 10),
        ("sec-1", "資訊安全", 40),
        ("gen-1", "性別平等", 30),
        ("law-1", "廉政倫理", 20),
    ):
        s.add(
            Course(id=cid, title=f"課程 {cid}", category=category, hours=2, popularity=popularity)
        )
    await s.flush()
    return people


async def sweep(engine: AsyncEngine, now: dt.datetime, **kw: Any) -> Any:
    return await sweep_reminders(
        create_sessionmaker(engine), catalog=CATALOG, now=now, channels=["line", "telegram"], **kw
    )


async def digests(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with create_sessionmaker(engine)() as s:
        rows = await s.execute(
            select(ReminderDigest.member_id, ReminderDigest.day).order_by(
                ReminderDigest.day, ReminderDigest.member_id
            )
        )
        return [(m, d) for m, d in rows]


async def message(engine: AsyncEngine, member_id: int, day: str) -> OutboxMessage:
    async with create_sessionmaker(engine)() as s:
        row = await s.scalar(
            select(OutboxMessage).where(OutboxMessage.key == f"reminder:{member_id}:{day}")
        )
    assert row is not None
    return row


async def test_digests_start_30_days_before_tighten_and_stay_one_per_day(
    engine: AsyncEngine,
) -> None:
    async with create_sessionmaker(engine)() as s:
        people = await setup(s)
        await s.commit()
    a, b = people["rostered"].member_id, people["plain"].member_id

    assert (await sweep(engine, taipei("2026-11-30"))).digests == 0  # 31 days before
    report = await sweep(engine, taipei("2026-12-01"))  # 30 days before

    assert (report.people, report.digests) == (2, 2)  # the citizen is not reminded
    assert await digests(engine) == [(a, "2026-12-01"), (b, "2026-12-01")]
    row = await message(engine, a, "2026-12-01")
    assert (row.channel, row.external_id, row.kind) == ("line", "U" + "a" * 32, "reminder")
    assert row.not_before == taipei("2026-12-01")
    (digest,) = row.replies
    lines = digest["text"].split("\n")
    assert lines[1] == "距離截止（12/31）還有 30 天，以下時數尚未完成："
    assert "• 全年學習時數：0 / 20 小時（還差 20 小時）" in lines
    assert "• 環境教育：0 / 4 小時（還差 4 小時）" in lines
    assert "• 資通安全：0 / 3 小時（還差 3 小時）" in lines
    assert len([line for line in lines if line.startswith("• ")]) == 6
    actions = [b["action"] for b in digest["buttons"]]
    assert actions[:2] == ["course.open:env-1", "course.open:gen-1"]  # most popular that count
    assert actions[-1] == "learning.snooze"
    english = (await message(engine, b, "2026-12-01")).replies[0]
    assert "• Environmental education: 0 / 4 h (4 h to go)" in english["text"]

    # Same day again, or a second scheduler: nothing new.
    assert (await sweep(engine, taipei("2026-12-01", 15))).digests == 0
    # Between cadence points: silence.
    for day in ("2026-12-02", "2026-12-10", "2026-12-16"):
        assert (await sweep(engine, taipei(day))).digests == 0
    # 14, 7, 3 and 1 days before: one each; the days between stay quiet.
    for day, expected in (
        ("2026-12-17", 2),
        ("2026-12-18", 0),
        ("2026-12-24", 2),
        ("2026-12-28", 2),
        ("2026-12-29", 0),
        ("2026-12-30", 2),
        ("2026-12-31", 0),
    ):
        assert (await sweep(engine, taipei(day))).digests == expected, day
    assert [d for m, d in await digests(engine) if m == a] == [
        "2026-12-01",
        "2026-12-17",
        "2026-12-24",
        "2026-12-28",
        "2026-12-30",
    ]


async def test_a_missed_point_is_caught_up_once(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as s:
        await setup(s)
        await s.commit()
    # No sweep ran on 17 December (14 days before): the next one catches up, once.
    assert (await sweep(engine, taipei("2026-12-20"))).digests == 2
    assert (await sweep(engine, taipei("2026-12-21"))).digests == 0
    assert (await sweep(engine, taipei("2026-12-24"))).digests == 2


async def test_weekly_while_overdue(engine: AsyncEngine) -> None:
    now = taipei("2026-10-01")
    async with create_sessionmaker(engine)() as s:
        await setup(s)
        # The training office tallies on 30 November this year.
        await import_requirements(
            s, [{**r, "deadline": "11-30"} for r in default_requirements()], now=now
        )
        await s.commit()
    counts = {}
    for day in ("2026-11-29", "2026-12-01", "2026-12-02", "2026-12-07", "2026-12-08", "2026-12-15"):
        counts[day] = (await sweep(engine, taipei(day))).digests
    assert counts == {
        "2026-11-29": 2,  # 1 day before
        "2026-12-01": 2,  # overdue: the day after
        "2026-12-02": 0,
        "2026-12-07": 0,
        "2026-12-08": 2,  # a week later
        "2026-12-15": 2,
    }
    async with create_sessionmaker(engine)() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.key.like("%2026-12-08")))
    assert row is not None
    assert "已超過截止日（11/30）" in row.replies[0]["text"]


async def test_imported_completions_silence_reminders_and_withdraw_a_queued_one(
    engine: AsyncEngine,
) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        people = await setup(s)
        await s.commit()
    a, b = people["rostered"].member_id, people["plain"].member_id
    # 22:00 on the 14-days point: the digest waits for the end of quiet hours...
    await sweep(engine, taipei("2026-12-17", 22))
    queued = await message(engine, a, "2026-12-17")
    assert queued.not_before == taipei("2026-12-18", 8)
    # ...and the LMS reports at 23:00 that person A did everything (by employee id).
    csv = "employee_id,course_id,completed_at,hours\n" + "".join(
        f"E001,{cid},2026-{month}-10,{hours}\n"
        for cid, month, hours in (
            ("env-1", "03", 4),
            ("gen-1", "04", 1),
            ("pol-1", "05", 1),
            ("law-1", "06", 4),
            ("sec-1", "07", 3),
            ("other", "08", 7),
        )
    )
    async with maker() as s:
        s.add(Course(id="pol-1", title="重大政策", category="重大政策", hours=1))
        result = await import_completions(s, csv, now=taipei("2026-12-17", 23))
        await s.commit()
    assert (result.added, result.reminders_withdrawn) == (6, 1)
    assert (await message(engine, a, "2026-12-17")).status == "cancelled"
    assert (await message(engine, b, "2026-12-17")).status == "pending"
    async with maker() as s:
        progress = await member_progress(s, member_id=a, now=taipei("2026-12-18"))
    assert {p.requirement.code: p.done for p in progress} == {
        "total": 20,
        "environment": 4,
        "gender": 1,
        "policy": 1,
        "democracy": 4,
        "infosec": 3,
    }

    report = await sweep(engine, taipei("2026-12-24"))

    assert report.digests == 1
    assert [m for m, d in await digests(engine) if d == "2026-12-24"] == [b]


async def test_a_partial_completion_shrinks_the_digest(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        people = await setup(s)
        await import_completions(
            s,
            "employee_id,course_id,completed_at,hours\nE001,env-1,2026-06-01,2.5\n",
            now=taipei("2026-12-01"),
        )
        await s.commit()
    await sweep(engine, taipei("2026-12-01"))
    text = (await message(engine, people["rostered"].member_id, "2026-12-01")).replies[0]["text"]
    assert "• 環境教育：2.5 / 4 小時（還差 1.5 小時）" in text
    assert "• 全年學習時數：2.5 / 20 小時（還差 17.5 小時）" in text
    # The course already taken is not suggested again.
    buttons = (await message(engine, people["rostered"].member_id, "2026-12-01")).replies[0][
        "buttons"
    ]
    assert "course.open:env-1" not in [b["action"] for b in buttons]
    assert "course.open:env-2" in [b["action"] for b in buttons]


async def test_snooze_holds_digests_for_a_week_then_the_sweep_catches_up(
    engine: AsyncEngine,
) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        people = await setup(s)
        await s.commit()
    a = people["rostered"].member_id
    await sweep(engine, taipei("2026-12-01"))
    async with maker() as s:
        await snooze(s, member_id=a, until=taipei("2026-12-21", 10), now=taipei("2026-12-14", 10))
        await s.commit()

    report = await sweep(engine, taipei("2026-12-17"))

    assert (report.digests, report.snoozed) == (1, 1)
    assert (await sweep(engine, taipei("2026-12-21", 9))).digests == 0  # still snoozed at 09:00
    assert (await sweep(engine, taipei("2026-12-21", 11))).digests == 1  # catch-up of 17 Dec
    assert [d for m, d in await digests(engine) if m == a] == ["2026-12-01", "2026-12-21"]


async def test_the_members_reminder_time_and_own_quiet_window_set_the_send_time(
    engine: AsyncEngine,
) -> None:
    from sqlalchemy import text as sql

    maker = create_sessionmaker(engine)
    async with maker() as s:
        people = await setup(s)
        await s.execute(
            sql("UPDATE member SET reminder_time = '20:00' WHERE id = :id"),
            {"id": people["rostered"].member_id},
        )
        await s.execute(
            sql("UPDATE member SET quiet_hours = '08:00-10:00' WHERE id = :id"),
            {"id": people["plain"].member_id},
        )
        await s.commit()
    await sweep(engine, taipei("2026-12-01", 9))
    assert (await message(engine, people["rostered"].member_id, "2026-12-01")).not_before == taipei(
        "2026-12-01", 20
    )
    assert (await message(engine, people["plain"].member_id, "2026-12-01")).not_before == taipei(
        "2026-12-01", 10
    )
