"""Summary tables for the dashboards, and the rules that keep them up to date.

The dashboards read only these tables; `absorb_*` functions bring them up to date from the
raw tables (completion, search_log, inbound_event, reminder_digest) and are run by the
`rollups` job (notifications/rollups.py), one source per transaction.

Each source has a watermark row (`rollup_watermark`): the last raw id absorbed (or, for
reminders, the last day closed). A run first writes to that row, which takes its lock (the
row lock on PostgreSQL, the database's write lock on SQLite), then reads the watermark,
absorbs the rows after it with set-based INSERT ... SELECT ... ON CONFLICT DO UPDATE, and
moves the watermark, all in one transaction: two runs at once are serialised, a re-run finds
nothing new, and a failed run leaves both the summary and its watermark as they were.

On PostgreSQL ids are handed out before commit, so a long import may commit rows with ids
below a watermark that a run has already passed. A run remembers the ids missing from the
range it absorbed (`gaps`, as ranges) and looks for them again on later runs, until they are
older than GAP_SETTLE (rolled-back inserts and ON CONFLICT DO NOTHING leave gaps that never
fill). On SQLite writers are serialised, so the run's lock means no gap can fill later.

Topics and compliance are computed again from the raw completions whenever the rules
(`fingerprint`: the requirements and which course counts for which) or the roster
(`roster_stamp`: who is in which agency, who is active) changed since the last run; between
those, a course's category is the one it had when its completions were absorbed. Completions
deleted later (a member erasing their data) stay in the counts until the next rebuild, as
anonymous sums.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Float,
    Index,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from models.base import Base, UTCDateTime
from models.courses import Course, SearchLog
from models.identity import CivilServant
from models.inbound import InboundEvent
from models.learning import (
    TAIPEI,
    Completion,
    MandatoryRequirement,
    Requirement,
    load_requirements,
    taipei_day,
)

UNCATEGORISED = "(未分類)"
# Missing ids are looked for again this long (no import transaction lasts as long).
GAP_SETTLE = dt.timedelta(minutes=30)
MAX_GAPS = 200  # ranges kept per source (the oldest given up first): SQLite caps expression depth
# A reminder day is measured once its 7-day window has passed, plus a day for late imports.
REMINDER_WINDOW_DAYS = 7
REMINDER_CLOSE_DAYS = REMINDER_WINDOW_DAYS + 1
MONTHS = range(1, 13)


# -- tables ------------------------------------------------------------------------------------
class RollupWatermark(Base):
    """How far each source has been absorbed."""

    __tablename__ = "rollup_watermark"

    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(default=0)
    last_day: Mapped[str] = mapped_column(String(10), default="")
    # [[lo, hi, first seen (ISO)], ...]: ids in lo..hi not yet seen (see the module doc).
    gaps: Mapped[list[Any]] = mapped_column(default=list)
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    roster_stamp: Mapped[str] = mapped_column(String(80), default="")
    updated_at: Mapped[dt.datetime]


class TopicHours(Base):
    """Civil servants' completed hours by Taipei month, agency and course category."""

    __tablename__ = "rollup_topic_hours"

    year: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[int] = mapped_column(primary_key=True)
    agency: Mapped[str] = mapped_column(String(200), primary_key=True)
    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    completions: Mapped[int] = mapped_column(default=0)


class CourseRequirement(Base):
    """Which course counts toward which requirement (Requirement.counts, for SQL joins);
    course_id '*' stands for every course (scope 'any')."""

    __tablename__ = "rollup_course_requirement"

    course_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    requirement_id: Mapped[int] = mapped_column(primary_key=True)
    deadline: Mapped[str] = mapped_column(String(5))  # MM-DD


class RequirementProgress(Base):
    """A civil servant's hours toward a requirement in a Taipei year: `m<k>` holds the hours
    up to the end of month k (cumulative, so compliance compares instead of summing), and
    `by_deadline` the hours up to the requirement's deadline."""

    __tablename__ = "rollup_requirement_progress"

    year: Mapped[int] = mapped_column(primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requirement_id: Mapped[int] = mapped_column(primary_key=True)
    by_deadline: Mapped[float] = mapped_column(Float, default=0.0)
    m1: Mapped[float] = mapped_column(Float, default=0.0)
    m2: Mapped[float] = mapped_column(Float, default=0.0)
    m3: Mapped[float] = mapped_column(Float, default=0.0)
    m4: Mapped[float] = mapped_column(Float, default=0.0)
    m5: Mapped[float] = mapped_column(Float, default=0.0)
    m6: Mapped[float] = mapped_column(Float, default=0.0)
    m7: Mapped[float] = mapped_column(Float, default=0.0)
    m8: Mapped[float] = mapped_column(Float, default=0.0)
    m9: Mapped[float] = mapped_column(Float, default=0.0)
    m10: Mapped[float] = mapped_column(Float, default=0.0)
    m11: Mapped[float] = mapped_column(Float, default=0.0)
    m12: Mapped[float] = mapped_column(Float, default=0.0)


class ComplianceRollup(Base):
    """Per year, month (hours to the end of it), agency and requirement: how many active
    civil servants it applies to, how many met it, how many met it by the deadline."""

    __tablename__ = "rollup_compliance"

    year: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[int] = mapped_column(primary_key=True)
    agency: Mapped[str] = mapped_column(String(200), primary_key=True)
    requirement_id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(100))
    deadline: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    people: Mapped[int] = mapped_column(default=0)
    met: Mapped[int] = mapped_column(default=0)
    met_by_deadline: Mapped[int] = mapped_column(default=0)


class ReminderEffect(Base):
    """For a day with reminder digests, per agency: the civil servants reminded that day and
    how many completed a course in the 7 days from it; against those not reminded this year
    up to the window's end, and how many of them completed one in the same 7 days."""

    __tablename__ = "rollup_reminder_effect"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    agency: Mapped[str] = mapped_column(String(200), primary_key=True)
    reminded: Mapped[int] = mapped_column(default=0)
    reminded_completed: Mapped[int] = mapped_column(default=0)
    control: Mapped[int] = mapped_column(default=0)
    control_completed: Mapped[int] = mapped_column(default=0)


class SearchRollup(Base):
    """Searches per Taipei month and normalised query, and how many found nothing."""

    __tablename__ = "rollup_search"

    year: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[int] = mapped_column(primary_key=True)
    normalised: Mapped[str] = mapped_column(String(200), primary_key=True)
    searches: Mapped[int] = mapped_column(default=0)
    zero_results: Mapped[int] = mapped_column(default=0)


class SearchYear(Base):
    """SearchRollup summed over the year: the whole-year view reads its top rows by index."""

    __tablename__ = "rollup_search_year"
    __table_args__ = (
        Index("ix_rollup_search_year_searches", "year", "searches"),
        Index("ix_rollup_search_year_zero_results", "year", "zero_results"),
    )

    year: Mapped[int] = mapped_column(primary_key=True)
    normalised: Mapped[str] = mapped_column(String(200), primary_key=True)
    searches: Mapped[int] = mapped_column(default=0)
    zero_results: Mapped[int] = mapped_column(default=0)


class ChannelActivity(Base):
    """A sender seen on a channel in a Taipei week (Monday's date): distinct counts need it.
    Kept for this week and the last only (absorb_inbound), so no account ids pile up."""

    __tablename__ = "rollup_channel_activity"

    week: Mapped[str] = mapped_column(String(10), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    sender: Mapped[str] = mapped_column(String(80), primary_key=True)


class ChannelWeek(Base):
    """Active members (distinct senders) per Taipei week and channel."""

    __tablename__ = "rollup_channel_week"

    week: Mapped[str] = mapped_column(String(10), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    active: Mapped[int] = mapped_column(default=0)


class CampaignFunnel(Base):
    """Per campaign: members eligible, who opened it, with a verified phone, who claimed."""

    __tablename__ = "rollup_campaign_funnel"

    campaign: Mapped[str] = mapped_column(String(80), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    starts_on: Mapped[str] = mapped_column(String(10), default="")  # Taipei date
    eligible: Mapped[int] = mapped_column(default=0)
    opened: Mapped[int] = mapped_column(default=0)
    verified: Mapped[int] = mapped_column(default=0)
    claimed: Mapped[int] = mapped_column(default=0)


# -- watermarks --------------------------------------------------------------------------------
def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def lock_watermark(
    session: AsyncSession, source: str, *, now: dt.datetime
) -> RollupWatermark:
    """The source's watermark, locked until the transaction ends (written first: see the
    module doc)."""
    await session.execute(
        _insert(session)(RollupWatermark)
        .values(
            source=source,
            last_id=0,
            last_day="",
            gaps=[],
            fingerprint="",
            roster_stamp="",
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["source"])
    )
    await session.execute(
        update(RollupWatermark).where(RollupWatermark.source == source).values(updated_at=now)
    )
    row = await session.scalar(
        select(RollupWatermark)
        .where(RollupWatermark.source == source)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


@dataclass
class IdRanges:
    """What one run absorbs of a source: (lo, hi] ranges, the new watermark and gaps."""

    ranges: list[tuple[int, int]]
    last_id: int
    gaps: list[list[Any]] = field(default_factory=list)


async def _missing(session: AsyncSession, id_col: Any, lo: int, hi: int) -> list[tuple[int, int]]:
    """Ranges of ids in (lo, hi] with no row (one window query, on both backends)."""
    if hi <= lo:
        return []
    inner = (
        select(id_col.label("id"), func.lag(id_col, 1, lo).over(order_by=id_col).label("prev"))
        .where(id_col > lo, id_col <= hi)
        .subquery()
    )
    rows = (
        await session.execute(
            select(inner.c.prev + 1, inner.c.id - 1).where(inner.c.id > inner.c.prev + 1)
        )
    ).all()
    out = [(int(a), int(b)) for a, b in rows]
    top = await session.scalar(select(func.max(id_col)).where(id_col > lo, id_col <= hi))
    last = int(top) if top is not None else lo
    if last < hi:
        out.append((last + 1, hi))
    return out


async def plan_ids(
    session: AsyncSession, mark: RollupWatermark, id_col: Any, *, now: dt.datetime
) -> IdRanges:
    """The id ranges to absorb now: new ids after the watermark, and remembered gaps."""
    hi = int(await session.scalar(select(func.coalesce(func.max(id_col), 0))) or 0)
    lo = mark.last_id
    ranges: list[tuple[int, int]] = []
    gaps: list[list[Any]] = []
    for g_lo, g_hi, seen in mark.gaps or []:
        g_lo, g_hi = int(g_lo), int(g_hi)
        if g_hi > lo:  # a rebuild moved the watermark back below this gap
            continue
        ranges.append((g_lo - 1, g_hi))
        if now - dt.datetime.fromisoformat(seen) < GAP_SETTLE:
            gaps.extend([a, b, seen] for a, b in await _missing(session, id_col, g_lo - 1, g_hi))
    if hi > lo:
        ranges.append((lo, hi))
        gaps.extend([a, b, now.isoformat()] for a, b in await _missing(session, id_col, lo, hi))
    # The gap ranges absorbed above are absorbed again only for the ids that were missing.
    return IdRanges(ranges=ranges, last_id=max(hi, lo), gaps=gaps[-MAX_GAPS:])


def _in_ranges(id_col: Any, ranges: Sequence[tuple[int, int]]) -> Any:
    return or_(*(and_(id_col > lo, id_col <= hi) for lo, hi in ranges))


# -- periods (Taipei months and weeks as UTC intervals) -----------------------------------------
def month_bounds(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(year, month, 1, tzinfo=TAIPEI)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=TAIPEI)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def months_between(first: dt.datetime, last: dt.datetime) -> Iterator[tuple[int, int]]:
    a, b = first.astimezone(TAIPEI), last.astimezone(TAIPEI)
    year, month = a.year, a.month
    while (year, month) <= (b.year, b.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def week_of(moment: dt.datetime) -> dt.date:
    """The Monday (Taipei) of the week holding `moment`."""
    day = moment.astimezone(TAIPEI).date()
    return day - dt.timedelta(days=day.weekday())


def weeks_between(first: dt.datetime, last: dt.datetime) -> Iterator[dt.date]:
    monday = week_of(first)
    while monday <= week_of(last):
        yield monday
        monday += dt.timedelta(days=7)


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=TAIPEI).astimezone(dt.UTC)


# -- civil servants behind a completion ---------------------------------------------------------
def _people() -> tuple[Any, Any, Any, Any]:
    """Completions joined to the roster by employee id or by member id; (from, employee id,
    agency, roster row id) expressions."""
    by_emp = aliased(CivilServant, name="cs_emp")
    by_member = aliased(CivilServant, name="cs_member")
    joined = Completion.__table__.outerjoin(
        by_emp, by_emp.employee_id == Completion.employee_id
    ).outerjoin(by_member, by_member.member_id == Completion.member_id)
    return (
        joined,
        func.coalesce(by_emp.employee_id, by_member.employee_id),
        func.coalesce(by_emp.agency, by_member.agency),
        func.coalesce(by_emp.id, by_member.id),
    )


def _year() -> Any:
    return cast(func.substr(Completion.day, 1, 4), Integer)


def _month() -> Any:
    return cast(func.substr(Completion.day, 6, 2), Integer)


# -- topics ------------------------------------------------------------------------------------
async def _absorb_topics(session: AsyncSession, ranges: Sequence[tuple[int, int]]) -> None:
    joined, _, agency, roster = _people()
    joined = joined.outerjoin(Course, Course.id == Completion.course_id)
    category = func.coalesce(Course.category, UNCATEGORISED)
    year, month = _year(), _month()
    source = (
        select(year, month, agency, category, func.sum(Completion.hours), func.count())
        .select_from(joined)
        .where(_in_ranges(Completion.id, ranges), roster.is_not(None))
        .group_by(year, month, agency, category)
    )
    stmt = _insert(session)(TopicHours).from_select(
        ["year", "month", "agency", "category", "hours", "completions"], source
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["year", "month", "agency", "category"],
            set_={
                "hours": TopicHours.hours + stmt.excluded.hours,
                "completions": TopicHours.completions + stmt.excluded.completions,
            },
        )
    )


# -- compliance --------------------------------------------------------------------------------
def _mapping(
    requirements: Sequence[Requirement], courses: Sequence[tuple[str, str | None, Any, str]]
) -> list[tuple[str, int, str]]:
    """(course id, requirement id, deadline) pairs, by the requirement's own rule (title
    keywords included)."""
    out: list[tuple[str, int, str]] = []
    for r in requirements:
        if r.scope == "any":
            out.append(("*", r.id, r.deadline))
            continue
        out.extend(
            (cid, r.id, r.deadline)
            for cid, category, tags, title in courses
            if r.counts(cid, category, tags or (), title or "")
        )
    return sorted(out)


def _fingerprint(requirements: Sequence[Requirement], pairs: Sequence[tuple[str, int, str]]) -> str:
    data = [[r.id, r.code, r.hours, sorted(r.agencies), r.deadline, r.scope] for r in requirements]
    return hashlib.sha256(json.dumps([data, pairs], ensure_ascii=False).encode()).hexdigest()


async def _refresh_mapping(
    session: AsyncSession, requirements: Sequence[Requirement], *, stored: str
) -> str:
    """Which course counts for which requirement, stored again when it changed since
    `stored` (the fingerprint of the last mapping); returns the current fingerprint."""
    courses = (
        await session.execute(select(Course.id, Course.category, Course.tags, Course.title))
    ).all()
    pairs = _mapping(requirements, [tuple(c) for c in courses])
    fingerprint = _fingerprint(requirements, pairs)
    if fingerprint == stored:
        return fingerprint
    await session.execute(delete(CourseRequirement))
    for i in range(0, len(pairs), 5000):
        await session.execute(
            _insert(session)(CourseRequirement),
            [
                {"course_id": c, "requirement_id": r, "deadline": d}
                for c, r, d in pairs[i : i + 5000]
            ],
        )
    return fingerprint


def _month_columns() -> list[str]:
    return [f"m{m}" for m in MONTHS]


async def _absorb_progress(session: AsyncSession, ranges: Sequence[tuple[int, int]]) -> None:
    """Add the completions in `ranges` to each civil servant's requirement progress."""
    year, month = _year(), _month()
    mmdd = func.substr(Completion.day, 6, 5)
    for every_course in (False, True):
        joined, employee, _, roster = _people()
        if every_course:
            on = CourseRequirement.course_id == "*"
        else:
            on = CourseRequirement.course_id == Completion.course_id
        joined = joined.join(CourseRequirement, on)
        columns = [func.sum(case((month <= m, Completion.hours), else_=0.0)) for m in MONTHS]
        source = (
            select(
                year,
                employee,
                CourseRequirement.requirement_id,
                func.sum(case((mmdd <= CourseRequirement.deadline, Completion.hours), else_=0.0)),
                *columns,
            )
            .select_from(joined)
            .where(_in_ranges(Completion.id, ranges), roster.is_not(None))
            .group_by(year, employee, CourseRequirement.requirement_id)
        )
        names = ["year", "employee_id", "requirement_id", "by_deadline", *_month_columns()]
        stmt = _insert(session)(RequirementProgress).from_select(names, source)
        table = RequirementProgress.__table__.c
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["year", "employee_id", "requirement_id"],
                set_={n: table[n] + stmt.excluded[n] for n in names[3:]},
            )
        )


async def _years_in(session: AsyncSession, ranges: Sequence[tuple[int, int]]) -> set[int]:
    """The Taipei years of the completions in `ranges`."""
    if not ranges:
        return set()
    rows = await session.scalars(
        select(_year()).where(_in_ranges(Completion.id, ranges)).distinct()
    )
    return set(rows.all())


async def _rebuild_compliance(
    session: AsyncSession, requirements: Sequence[Requirement], years: Sequence[int]
) -> None:
    """rollup_compliance for `years` from the progress rows and the active roster (one
    scan of each year's progress rows)."""
    headcount = dict(
        (
            await session.execute(
                select(CivilServant.agency, func.count())
                .where(CivilServant.active.is_(True))
                .group_by(CivilServant.agency)
            )
        ).all()
    )
    p = RequirementProgress.__table__.c
    needed = MandatoryRequirement.hours - 1e-9
    cumulative = [p[f"m{m}"] for m in MONTHS]
    counts = [func.sum(case((c >= needed, 1), else_=0)) for c in cumulative]
    counts.append(func.sum(case((p.by_deadline >= needed, 1), else_=0)))
    rows: list[dict[str, Any]] = []
    for year in years:
        found = (
            await session.execute(
                select(CivilServant.agency, p.requirement_id, *counts)
                .select_from(
                    RequirementProgress.__table__.join(
                        CivilServant, CivilServant.employee_id == p.employee_id
                    ).join(MandatoryRequirement, MandatoryRequirement.id == p.requirement_id)
                )
                .where(p.year == year, CivilServant.active.is_(True))
                .group_by(CivilServant.agency, p.requirement_id)
            )
        ).all()
        met = {(agency, req): [int(v or 0) for v in values] for agency, req, *values in found}
        for req in requirements:
            deadline = req.deadline_in(year).isoformat()
            for agency, people in headcount.items():
                if not req.applies_to(agency):
                    continue
                done = met.get((agency, req.id), [0] * 13)
                rows.extend(
                    {
                        "year": year,
                        "month": m,
                        "agency": agency,
                        "requirement_id": req.id,
                        "code": req.code,
                        "title": req.title,
                        "deadline": deadline,
                        "people": int(people),
                        "met": done[m - 1],
                        "met_by_deadline": done[12],
                    }
                    for m in MONTHS
                )
    await session.execute(delete(ComplianceRollup).where(ComplianceRollup.year.in_(list(years))))
    for i in range(0, len(rows), 2000):
        await session.execute(_insert(session)(ComplianceRollup), rows[i : i + 2000])


# -- the completions source (topics and compliance) ----------------------------------------------
@dataclass
class AbsorbReport:
    rows: int = 0
    rebuilt: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went

    def __str__(self) -> str:
        spent = ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items() if v >= 0.01)
        return (
            f"{self.rows} rows"
            + (" (rebuilt)" if self.rebuilt else "")
            + (f" [{spent}]" if spent else "")
        )

    def lap(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - since
        return now


async def _count(session: AsyncSession, id_col: Any, ranges: Sequence[tuple[int, int]]) -> int:
    if not ranges:
        return 0
    return int(await session.scalar(select(func.count()).where(_in_ranges(id_col, ranges))) or 0)


async def absorb_completions(session: AsyncSession, *, now: dt.datetime) -> AbsorbReport:
    """Topics and compliance: absorb completions after the watermark (the caller commits)."""
    report = AbsorbReport()
    t = time.perf_counter()
    mark = await lock_watermark(session, "completion", now=now)
    requirements = await load_requirements(session, now=now)
    fingerprint = await _refresh_mapping(session, requirements, stored=mark.fingerprint)
    plan = await plan_ids(session, mark, Completion.id, now=now)
    roster = await _roster_stamp(session)
    t = report.lap("plan", t)
    if fingerprint != mark.fingerprint or roster != mark.roster_stamp:
        # The rules or the roster changed (which courses count, who is in which agency):
        # both summaries are computed again from the raw rows, everything up to the new
        # watermark (ids still missing are looked for later, as always).
        await session.execute(delete(RequirementProgress))
        await session.execute(delete(TopicHours))
        everything = [(0, plan.last_id)] if plan.last_id else []
        if everything:
            await _absorb_progress(session, everything)
            t = report.lap("progress", t)
            await _absorb_topics(session, everything)
            t = report.lap("topics", t)
        years = set((await session.scalars(select(RequirementProgress.year).distinct())).all())
        years.add(now.astimezone(TAIPEI).year)
        mark.fingerprint, mark.roster_stamp = fingerprint, roster
        report.rebuilt = True
    else:
        years = await _years_in(session, plan.ranges)
        if plan.ranges:
            await _absorb_progress(session, plan.ranges)
            t = report.lap("progress", t)
            await _absorb_topics(session, plan.ranges)
            t = report.lap("topics", t)
    report.rows = await _count(session, Completion.id, plan.ranges)
    if years:
        await _rebuild_compliance(session, requirements, sorted(years))
    report.lap("compliance", t)
    mark.last_id, mark.gaps = plan.last_id, plan.gaps
    await session.flush()
    return report


async def _roster_stamp(session: AsyncSession) -> str:
    """Changes whenever the roster does (a new row, a change of agency or active flag)."""
    count, newest = (
        await session.execute(select(func.count(), func.max(CivilServant.updated_at)))
    ).one()
    return f"{count}:{newest}"[:80]


async def _span(
    session: AsyncSession, time_col: Any, id_col: Any, ranges: Sequence[tuple[int, int]]
) -> tuple[dt.datetime, dt.datetime]:
    """The earliest and latest time among the rows in `ranges` (there are some)."""
    first, last = (
        await session.execute(
            select(func.min(time_col), func.max(time_col)).where(_in_ranges(id_col, ranges))
        )
    ).one()
    return first, last


# -- search ------------------------------------------------------------------------------------
async def absorb_searches(session: AsyncSession, *, now: dt.datetime) -> AbsorbReport:
    """Search analytics: absorb search_log rows after the watermark (the caller commits)."""
    mark = await lock_watermark(session, "search_log", now=now)
    plan = await plan_ids(session, mark, SearchLog.id, now=now)
    report = AbsorbReport(rows=await _count(session, SearchLog.id, plan.ranges))
    if report.rows:
        first, last = await _span(session, SearchLog.created_at, SearchLog.id, plan.ranges)
        for year, month in months_between(first, last):
            start, end = month_bounds(year, month)
            targets: list[tuple[Any, list[str], list[int]]] = [
                (SearchRollup, ["year", "month", "normalised"], [year, month]),
                (SearchYear, ["year", "normalised"], [year]),
            ]
            for table, index, keys in targets:
                source = (
                    select(
                        *(literal(k) for k in keys),
                        SearchLog.normalised,
                        func.count(),
                        func.sum(case((SearchLog.result_count == 0, 1), else_=0)),
                    )
                    .where(
                        _in_ranges(SearchLog.id, plan.ranges),
                        SearchLog.created_at >= start,
                        SearchLog.created_at < end,
                    )
                    .group_by(SearchLog.normalised)
                )
                stmt = _insert(session)(table).from_select(
                    [*index, "searches", "zero_results"], source
                )
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=index,
                        set_={
                            "searches": table.searches + stmt.excluded.searches,
                            "zero_results": table.zero_results + stmt.excluded.zero_results,
                        },
                    )
                )
    mark.last_id, mark.gaps = plan.last_id, plan.gaps
    await session.flush()
    return report


# -- channels ----------------------------------------------------------------------------------
IGNORED_KINDS = ("unfollow", "leave", "my_chat_member")


def cutoff_of(now: dt.datetime) -> str:
    """The oldest week whose senders are still kept (last week's Monday)."""
    return (week_of(now) - dt.timedelta(days=7)).isoformat()


async def absorb_inbound(session: AsyncSession, *, now: dt.datetime) -> AbsorbReport:
    """Channel use: absorb inbound events after the watermark (the caller commits)."""
    mark = await lock_watermark(session, "inbound_event", now=now)
    plan = await plan_ids(session, mark, InboundEvent.id, now=now)
    report = AbsorbReport(rows=await _count(session, InboundEvent.id, plan.ranges))
    if report.rows:
        first, last = await _span(session, InboundEvent.received_at, InboundEvent.id, plan.ranges)
        # Who wrote is kept only while the week can still change (this week and the last):
        # a closed week keeps its count, and a late row for it is left out.
        cutoff = cutoff_of(now)
        counted_before = set(
            await session.scalars(select(ChannelWeek.week).where(ChannelWeek.week < cutoff))
        )
        weeks: list[str] = []
        for monday in weeks_between(first, last):
            week = monday.isoformat()
            if week in counted_before:
                continue
            weeks.append(week)
            source = (
                select(literal(week), InboundEvent.channel, InboundEvent.sender)
                .where(
                    _in_ranges(InboundEvent.id, plan.ranges),
                    InboundEvent.received_at >= day_start(monday),
                    InboundEvent.received_at < day_start(monday + dt.timedelta(days=7)),
                    InboundEvent.sender.is_not(None),
                    InboundEvent.kind.not_in(IGNORED_KINDS),
                )
                .distinct()
            )
            await session.execute(
                _insert(session)(ChannelActivity)
                .from_select(["week", "channel", "sender"], source)
                .on_conflict_do_nothing(index_elements=["week", "channel", "sender"])
            )
        if weeks:
            counted = (
                select(ChannelActivity.week, ChannelActivity.channel, func.count())
                .where(ChannelActivity.week.in_(weeks))
                .group_by(ChannelActivity.week, ChannelActivity.channel)
            )
            stmt = _insert(session)(ChannelWeek).from_select(["week", "channel", "active"], counted)
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["week", "channel"], set_={"active": stmt.excluded.active}
                )
            )
    await session.execute(delete(ChannelActivity).where(ChannelActivity.week < cutoff_of(now)))
    mark.last_id, mark.gaps = plan.last_id, plan.gaps
    await session.flush()
    return report


# -- reminders ---------------------------------------------------------------------------------
_REMINDER_DAY = text(
    """
    SELECT cs.agency,
           SUM(CASE WHEN r.member_id IS NOT NULL THEN 1 ELSE 0 END),
           SUM(CASE WHEN r.member_id IS NOT NULL AND w.cs_id IS NOT NULL THEN 1 ELSE 0 END),
           SUM(CASE WHEN r.member_id IS NULL AND e.member_id IS NULL THEN 1 ELSE 0 END),
           SUM(CASE WHEN r.member_id IS NULL AND e.member_id IS NULL
                     AND w.cs_id IS NOT NULL THEN 1 ELSE 0 END)
    FROM civil_servant cs
    LEFT JOIN (SELECT DISTINCT member_id FROM reminder_digest WHERE day = :day) r
           ON r.member_id = cs.member_id
    LEFT JOIN (SELECT DISTINCT member_id FROM reminder_digest
               WHERE day >= :year_start AND day < :window_end) e
           ON e.member_id = cs.member_id
    LEFT JOIN (
        SELECT cse.id AS cs_id FROM completion c
          JOIN civil_servant cse ON cse.employee_id = c.employee_id
         WHERE c.completed_at >= :start AND c.completed_at < :end
        UNION
        SELECT csm.id FROM completion c
          JOIN civil_servant csm ON csm.member_id = c.member_id
         WHERE c.completed_at >= :start AND c.completed_at < :end
    ) w ON w.cs_id = cs.id
    WHERE cs.active AND cs.member_id IS NOT NULL
    GROUP BY cs.agency
    """
).bindparams(bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))


async def absorb_reminders(session: AsyncSession, *, now: dt.datetime) -> AbsorbReport:
    """Reminder effect: measure each reminder day whose 7-day window has closed, once."""
    from models.learning import ReminderDigest

    mark = await lock_watermark(session, "reminder_digest", now=now)
    closed = (now.astimezone(TAIPEI).date() - dt.timedelta(days=REMINDER_CLOSE_DAYS)).isoformat()
    days = (
        await session.scalars(
            select(ReminderDigest.day)
            .where(ReminderDigest.day > mark.last_day, ReminderDigest.day <= closed)
            .distinct()
            .order_by(ReminderDigest.day)
        )
    ).all()
    for day in days:
        start_day = dt.date.fromisoformat(day)
        window_end = start_day + dt.timedelta(days=REMINDER_WINDOW_DAYS)
        rows = (
            await session.execute(
                _REMINDER_DAY,
                {
                    "day": day,
                    "year_start": f"{start_day.year}-01-01",
                    "window_end": window_end.isoformat(),
                    "start": day_start(start_day),
                    "end": day_start(window_end),
                },
            )
        ).all()
        values = [
            {
                "day": day,
                "agency": agency,
                "reminded": int(a or 0),
                "reminded_completed": int(b or 0),
                "control": int(c or 0),
                "control_completed": int(d or 0),
            }
            for agency, a, b, c, d in rows
            if a
        ]
        await session.execute(delete(ReminderEffect).where(ReminderEffect.day == day))
        if values:
            await session.execute(_insert(session)(ReminderEffect), values)
        mark.last_day = day
    await session.flush()
    return AbsorbReport(rows=len(days))


# -- campaigns ---------------------------------------------------------------------------------
async def absorb_campaigns(session: AsyncSession, *, now: dt.datetime) -> AbsorbReport:
    """The campaign funnel, one row per campaign, in distinct members: `eligible` meet the
    campaign's rule now, a verified phone aside (who has earned the prize); `opened` tapped
    it in chat (any claim attempt, refusals included); `verified` of those, tapped with a
    verified phone; `claimed` hold a prize or a draw entry (revoked and lapsed ones left out).

    Campaigns are few (tens a year), so each run counts every campaign again: opened,
    verified and claimed from the campaign's own indexed rows (a revocation changes a claim
    without a new id, which a watermark would miss). Eligibility scans the members, so it is
    kept once a run has happened after the campaign ended (`last_day`: the day of the
    previous run), when its hours can no longer change.
    """
    from models.campaigns.eligibility import eligible_member_ids
    from models.campaigns.tables import DRAWN, ENTERED, REVIEW, WON, Campaign, CampaignAttempt
    from models.campaigns.tables import CampaignClaim as Claim

    mark = await lock_watermark(session, "campaign_event", now=now)
    previous_run = day_start(dt.date.fromisoformat(mark.last_day)) if mark.last_day else None
    kept = {
        str(slug): int(n)
        for slug, n in await session.execute(
            select(CampaignFunnel.campaign, CampaignFunnel.eligible)
        )
    }
    campaigns = (await session.scalars(select(Campaign).order_by(Campaign.id))).all()
    values = []
    for c in campaigns:
        if c.slug in kept and previous_run is not None and c.ends_at < previous_run:
            eligible = int(kept[c.slug])
        else:
            ids = await eligible_member_ids(session, campaign=c, now=now, phone=False)
            eligible = int(
                await session.scalar(select(func.count()).select_from(ids.subquery())) or 0
            )
        a = CampaignAttempt
        opened, verified = (
            await session.execute(
                select(
                    func.count(a.member_id.distinct()),
                    func.count(
                        case((a.phone_hash.is_not(None), a.member_id), else_=None).distinct()
                    ),
                ).where(a.campaign_id == c.id)
            )
        ).one()
        claimed = await session.scalar(
            select(func.count(Claim.claimant_id.distinct())).where(
                Claim.campaign_id == c.id,
                Claim.status.in_([WON, DRAWN, REVIEW, ENTERED]),
                Claim.revoked_at.is_(None),
            )
        )
        values.append(
            {
                "campaign": c.slug,
                "title": c.title,
                "starts_on": taipei_day(c.starts_at).isoformat(),
                "eligible": eligible,
                "opened": int(opened),
                "verified": int(verified),
                "claimed": int(claimed or 0),
            }
        )
    await session.execute(delete(CampaignFunnel))
    if values:
        await session.execute(_insert(session)(CampaignFunnel), values)
    mark.last_day = taipei_day(now).isoformat()
    await session.flush()
    return AbsorbReport(rows=len(values))


SOURCES = {
    "completion": absorb_completions,
    "search_log": absorb_searches,
    "inbound_event": absorb_inbound,
    "reminder_digest": absorb_reminders,
    "campaign_event": absorb_campaigns,
}
