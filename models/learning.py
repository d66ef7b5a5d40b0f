"""Mandatory learning: requirements, completions, reminder digests and snoozes, and the
rules over them (which course counts for what, the hours gap, the reminder cadence).

Every reminder decision is keyed in the database: one digest per member and Taipei day, and
with it the cadence points it covered (per point date, the requirements covered), so a
sweep that runs twice (two schedulers, a restart, an operator's re-run) sends nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TAIPEI, Base
from models.courses import Course
from models.identity import CivilServant
from models.outbox import ids_match
from models.search.normalise import compact, fold

DEFAULT_CADENCE = (30, 14, 7, 3, 1)
DEFAULT_OVERDUE_EVERY = 7
YEARLY_GOAL_CODE = "total"


class MandatoryRequirement(Base):
    __tablename__ = "mandatory_requirement"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(100))
    title_en: Mapped[str] = mapped_column(String(100))
    hours: Mapped[float] = mapped_column(Float)
    scope: Mapped[str] = mapped_column(String(8), default="match")  # "any" or "match"
    categories: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    # Words of course titles that count ("重大政策" in 「當前國家重大政策議題」), folded.
    title_keywords: Mapped[list[Any]] = mapped_column(default=list)
    course_ids: Mapped[list[Any]] = mapped_column(default=list)
    agencies: Mapped[list[Any]] = mapped_column(default=list)  # empty: every agency
    deadline: Mapped[str] = mapped_column(String(5), default="12-31")  # MM-DD, Asia/Taipei
    cadence_days: Mapped[list[Any]] = mapped_column(default=lambda: list(DEFAULT_CADENCE))
    overdue_every_days: Mapped[int] = mapped_column(default=DEFAULT_OVERDUE_EVERY)
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime]


class Completion(Base):
    """A course someone finished, from the LMS; one per person, course and Taipei day."""

    __tablename__ = "completion"
    __table_args__ = (UniqueConstraint("person", "course_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "employee:<id>" or "member:<id>": the identity the LMS gave, for uniqueness.
    person: Mapped[str] = mapped_column(String(80))
    employee_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True, default=None
    )
    course_id: Mapped[str] = mapped_column(String(48))
    completed_at: Mapped[dt.datetime] = mapped_column(index=True)
    day: Mapped[str] = mapped_column(String(10))  # Taipei calendar day, YYYY-MM-DD
    hours: Mapped[float] = mapped_column(Float)
    imported_at: Mapped[dt.datetime]


class ReminderDigest(Base):
    """The one reminder digest of a member on a Taipei calendar day."""

    __tablename__ = "reminder_digest"
    __table_args__ = (UniqueConstraint("member_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    day: Mapped[str] = mapped_column(String(10))
    outbox_key: Mapped[str] = mapped_column(String(160))
    open_requirements: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime]


class ReminderPoint(Base):
    """A cadence point (e.g. 14 days before the deadline) that a member's digest covered,
    with the requirements it covered it for.

    One row per digest and point date (requirements sharing a deadline share their points,
    so a digest writes one row, not one per requirement: at 80,000 people a sweep wrote
    480,000 index-heavy rows before migration 0007). A requirement id that is listed here
    for a point is covered for that point; requirements are switched off, never deleted.
    """

    __tablename__ = "reminder_coverage"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    digest_day: Mapped[str] = mapped_column(String(10), primary_key=True)
    point: Mapped[str] = mapped_column(String(10), primary_key=True)  # the point's Taipei date
    requirement_ids: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[dt.datetime]


class ReminderSnooze(Base):
    """'Remind me next week': no digest for this member before `until`."""

    __tablename__ = "reminder_snooze"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    until: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]


# -- requirements as data ----------------------------------------------------------------------
class RequirementsError(ValueError):
    """The requirements file is wrong; the message says where."""


@dataclass(frozen=True)
class Requirement:
    """A requirement as the rules use it (detached from the session)."""

    id: int
    code: str
    title: str
    title_en: str
    hours: float
    scope: str
    categories: frozenset[str]
    tags: frozenset[str]
    course_ids: frozenset[str]
    agencies: frozenset[str]
    deadline: str
    cadence_days: tuple[int, ...]
    overdue_every_days: int
    title_keywords: frozenset[str] = frozenset()  # folded, compact

    def counts(
        self, course_id: str, category: str | None, tags: Iterable[str], title: str = ""
    ) -> bool:
        """Whether a completed course counts toward this requirement."""
        if self.scope == "any" or course_id in self.course_ids:
            return True
        if category is not None and category in self.categories:
            return True
        if any(t in self.tags for t in tags):
            return True
        if self.title_keywords and title:
            folded = compact(fold(title))
            return any(k in folded for k in self.title_keywords)
        return False

    def applies_to(self, agency: str | None) -> bool:
        return not self.agencies or (agency is not None and agency in self.agencies)

    def title_in(self, lang: str) -> str:
        return self.title_en if lang == "en" and self.title_en else self.title

    def deadline_in(self, year: int) -> dt.date:
        month, day = (int(x) for x in self.deadline.split("-"))
        return dt.date(year, month, day)

    def due_point(self, today: dt.date) -> dt.date | None:
        """The latest cadence point on or before `today` in today's year, if any.

        Points are the cadence days before the deadline, then the day after it and weekly
        while overdue. A sweep that missed days catches up with this one point.
        """
        deadline = self.deadline_in(today.year)
        if today > deadline:
            every = max(1, self.overdue_every_days)
            weeks = (today - deadline - dt.timedelta(days=1)).days // every
            return deadline + dt.timedelta(days=1 + weeks * every)
        points = [deadline - dt.timedelta(days=d) for d in self.cadence_days]
        past = [p for p in points if p <= today]
        return max(past) if past else None


def _spec(row: MandatoryRequirement) -> Requirement:
    return Requirement(
        id=row.id,
        code=row.code,
        title=row.title,
        title_en=row.title_en,
        hours=float(row.hours),
        scope=row.scope,
        categories=frozenset(row.categories or ()),
        tags=frozenset(row.tags or ()),
        title_keywords=frozenset(compact(fold(k)) for k in row.title_keywords or () if fold(k)),
        course_ids=frozenset(row.course_ids or ()),
        agencies=frozenset(row.agencies or ()),
        deadline=row.deadline,
        cadence_days=tuple(sorted({int(d) for d in row.cadence_days or DEFAULT_CADENCE})),
        overdue_every_days=int(row.overdue_every_days or DEFAULT_OVERDUE_EVERY),
    )


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise RequirementsError(f"{where}: expected a list of words")
    return [str(v).strip() for v in value if str(v).strip()]


def parse_requirements(data: Any) -> list[dict[str, Any]]:
    """Validate a requirements document (YAML/JSON shape of models/data/requirements.yaml)."""
    if not isinstance(data, dict) or not isinstance(data.get("requirements"), list):
        raise RequirementsError("expected a mapping with a 'requirements' list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise RequirementsError("'defaults' must be a mapping")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(data["requirements"], start=1):
        where = f"requirement {index}"
        if not isinstance(item, dict):
            raise RequirementsError(f"{where}: expected a mapping")
        code = str(item.get("code") or "").strip()
        if not code or len(code) > 40:
            raise RequirementsError(f"{where}: 'code' is required (at most 40 characters)")
        where = f"requirement {index} ({code})"
        if code in seen:
            raise RequirementsError(f"{where}: code used twice")
        seen.add(code)
        title = str(item.get("title") or "").strip()
        if not title:
            raise RequirementsError(f"{where}: 'title' is required")
        try:
            hours = float(item.get("hours"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RequirementsError(f"{where}: 'hours' must be a number") from None
        if not 0 < hours <= 1000:
            raise RequirementsError(f"{where}: 'hours' must be above 0")
        scope = str(item.get("scope") or "match")
        if scope not in ("any", "match"):
            raise RequirementsError(f"{where}: 'scope' is 'any' or 'match'")
        deadline = str(item.get("deadline") or defaults.get("deadline") or "12-31")
        try:
            month, day = (int(x) for x in deadline.split("-"))
            dt.date(2024, month, day)  # a leap year accepts 02-29 too
        except ValueError:
            raise RequirementsError(f"{where}: 'deadline' is MM-DD, e.g. 12-31") from None
        cadence = item.get("cadence_days", defaults.get("cadence_days", list(DEFAULT_CADENCE)))
        if not isinstance(cadence, list) or not all(
            isinstance(d, int) and 0 <= d <= 366 for d in cadence
        ):
            raise RequirementsError(f"{where}: 'cadence_days' is a list of days, e.g. [30, 7]")
        every = item.get(
            "overdue_every_days", defaults.get("overdue_every_days", DEFAULT_OVERDUE_EVERY)
        )
        if not isinstance(every, int) or every < 1:
            raise RequirementsError(f"{where}: 'overdue_every_days' must be a whole number ≥ 1")
        record = {
            "code": code,
            "title": title[:100],
            "title_en": str(item.get("title_en") or title)[:100],
            "hours": hours,
            "scope": scope,
            "categories": _str_list(item.get("categories"), where),
            "tags": _str_list(item.get("tags"), where),
            "title_keywords": _str_list(item.get("title_keywords"), where),
            "course_ids": _str_list(item.get("course_ids"), where),
            "agencies": _str_list(item.get("agencies"), where),
            "deadline": f"{month:02d}-{day:02d}",
            "cadence_days": sorted(set(cadence), reverse=True),
            "overdue_every_days": every,
            "position": index,
        }
        if scope == "match" and not (
            record["categories"]
            or record["tags"]
            or record["title_keywords"]
            or record["course_ids"]
        ):
            raise RequirementsError(
                f"{where}: say which courses count (categories/tags/title_keywords/course_ids)"
            )
        out.append(record)
    return out


def default_requirements() -> list[dict[str, Any]]:
    """The shipped defaults (models/data/requirements.yaml)."""
    raw = resources.files("models").joinpath("data/requirements.yaml").read_text("utf-8")
    return parse_requirements(yaml.safe_load(raw))


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def import_requirements(
    session: AsyncSession, records: list[dict[str, Any]], *, now: dt.datetime
) -> dict[str, int]:
    """Upsert requirements by code; codes missing from `records` are switched off."""
    stmt = _insert(session)(MandatoryRequirement).values(
        [{**r, "active": True, "updated_at": now} for r in records]
    )
    columns = {k: stmt.excluded[k] for k in (*records[0], "active", "updated_at") if k != "code"}
    await session.execute(stmt.on_conflict_do_update(index_elements=["code"], set_=columns))
    codes = [r["code"] for r in records]
    result = await session.execute(
        update(MandatoryRequirement)
        .where(MandatoryRequirement.code.not_in(codes), MandatoryRequirement.active.is_(True))
        .values(active=False, updated_at=now)
    )
    return {"loaded": len(records), "switched_off": int(result.rowcount or 0)}  # type: ignore[attr-defined]


async def load_requirements(session: AsyncSession, *, now: dt.datetime) -> list[Requirement]:
    """The active requirements; the shipped defaults are stored first if there are none."""
    count = await session.scalar(select(func.count()).select_from(MandatoryRequirement))
    if not count:
        records = default_requirements()
        stmt = _insert(session)(MandatoryRequirement).values(
            [{**r, "active": True, "updated_at": now} for r in records]
        )
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["code"]))
    rows = await session.scalars(
        select(MandatoryRequirement)
        .where(MandatoryRequirement.active.is_(True))
        .order_by(MandatoryRequirement.position, MandatoryRequirement.id)
    )
    return [_spec(r) for r in rows]


async def requirements_without_courses(
    session: AsyncSession, requirements: Sequence[Requirement] | None = None
) -> list[Requirement]:
    """The active requirements that no active course can satisfy (nothing to remind with).

    Without `requirements`, the stored active ones (the shipped defaults while none are
    stored). The console, `edoor requirements import` and start-up report them.
    """
    if requirements is None:
        rows = list(
            await session.scalars(
                select(MandatoryRequirement)
                .where(MandatoryRequirement.active.is_(True))
                .order_by(MandatoryRequirement.position, MandatoryRequirement.id)
            )
        )
        stored = await session.scalar(select(func.count()).select_from(MandatoryRequirement))
        if not stored:
            rows = [MandatoryRequirement(id=-i, **r) for i, r in enumerate(default_requirements())]
        requirements = [_spec(r) for r in rows]
    waiting = [r for r in requirements if r.scope == "match"]
    if not waiting:
        return []
    courses = await session.execute(
        select(Course.id, Course.category, Course.tags, Course.title).where(
            Course.retired.is_(False)
        )
    )
    for cid, category, tags, title in courses:
        waiting = [r for r in waiting if not r.counts(cid, category, tags or (), title)]
        if not waiting:
            break
    return waiting


# -- hours -------------------------------------------------------------------------------------
def taipei_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(TAIPEI).date()


def year_bounds(year: int) -> tuple[dt.datetime, dt.datetime]:
    """The Taipei calendar year as a UTC interval [start, end)."""
    start = dt.datetime(year, 1, 1, tzinfo=TAIPEI).astimezone(dt.UTC)
    end = dt.datetime(year + 1, 1, 1, tzinfo=TAIPEI).astimezone(dt.UTC)
    return start, end


@dataclass
class CourseFacts:
    """What the rules need of a course: its category and tags (title for buttons)."""

    category: str | None
    tags: tuple[str, ...]
    title: str = ""


async def course_facts(
    session: AsyncSession, *, course_ids: Iterable[str]
) -> dict[str, CourseFacts]:
    ids = list(set(course_ids))
    out: dict[str, CourseFacts] = {}
    for i in range(0, len(ids), 1000):
        rows = await session.execute(
            select(Course.id, Course.category, Course.tags, Course.title).where(
                Course.id.in_(ids[i : i + 1000])
            )
        )
        for cid, category, tags, title in rows:
            out[cid] = CourseFacts(category, tuple(tags or ()), title)
    return out


@dataclass
class Person:
    """A member as the hours rules see them: their roster id and agency, if any."""

    member_id: int
    employee_id: str | None = None
    agency: str | None = None


async def completed_hours(
    session: AsyncSession,
    *,
    people: Sequence[Person],
    year: int,
    requirements: Sequence[Requirement],
    facts: dict[str, CourseFacts] | None = None,
    courses_out: dict[int, set[str]] | None = None,
) -> dict[int, dict[int, float]]:
    """{member_id: {requirement_id: hours done in the Taipei year}} for these people.

    Completions count whether the LMS named the person by employee id or by member id.
    `facts` caches course categories between calls (a sweep passes one dict throughout);
    `courses_out`, when given, receives each member's completed course ids.
    """
    start, end = year_bounds(year)
    by_employee = {p.employee_id: p.member_id for p in people if p.employee_id}
    member_ids = [p.member_id for p in people]
    rows = (
        await session.execute(
            select(
                Completion.member_id,
                Completion.employee_id,
                Completion.course_id,
                func.sum(Completion.hours),
            )
            .where(
                Completion.completed_at >= start,
                Completion.completed_at < end,
                or_(
                    ids_match(session, Completion.member_id, member_ids),
                    ids_match(session, Completion.employee_id, by_employee, item_type=String),
                ),
            )
            .group_by(Completion.member_id, Completion.employee_id, Completion.course_id)
        )
    ).all()
    facts = facts if facts is not None else {}
    missing = {r[2] for r in rows if r[2] not in facts}
    if missing:
        found = await course_facts(session, course_ids=missing)
        for cid in missing:
            facts[cid] = found.get(cid, CourseFacts(None, ()))
    out: dict[int, dict[int, float]] = {m: {} for m in member_ids}
    for member_id, employee_id, course_id, hours in rows:
        owner = member_id if member_id in out else by_employee.get(employee_id or "")
        if owner is None:
            continue
        course = facts[course_id]
        if courses_out is not None:
            courses_out.setdefault(owner, set()).add(course_id)
        done = out[owner]
        for req in requirements:
            if req.counts(course_id, course.category, course.tags, course.title):
                done[req.id] = done.get(req.id, 0.0) + float(hours or 0)
    return out


@dataclass
class Progress:
    """One requirement's state for a person: hours done of hours needed by the deadline."""

    requirement: Requirement
    done: float
    deadline: dt.date

    @property
    def needed(self) -> float:
        return self.requirement.hours

    @property
    def open(self) -> bool:
        return self.done + 1e-9 < self.requirement.hours


async def get_person(session: AsyncSession, *, member_id: int) -> Person:
    row = (
        await session.execute(
            select(CivilServant.employee_id, CivilServant.agency).where(
                CivilServant.member_id == member_id
            )
        )
    ).first()
    return Person(member_id, *(row or (None, None)))


async def member_progress(
    session: AsyncSession, *, member_id: int, now: dt.datetime
) -> list[Progress]:
    """Each requirement that applies to the member, with this Taipei year's hours."""
    today = taipei_day(now)
    requirements = await load_requirements(session, now=now)
    person = await get_person(session, member_id=member_id)
    mine = [r for r in requirements if r.applies_to(person.agency)]
    done = await completed_hours(session, people=[person], year=today.year, requirements=mine)
    return [Progress(r, done[member_id].get(r.id, 0.0), r.deadline_in(today.year)) for r in mine]


# -- snooze and digests --------------------------------------------------------------------------
async def snooze(
    session: AsyncSession, *, member_id: int, until: dt.datetime, now: dt.datetime
) -> None:
    """No reminder digest for this member before `until` (a later snooze replaces it)."""
    stmt = _insert(session)(ReminderSnooze).values(member_id=member_id, until=until, created_at=now)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["member_id"], set_={"until": until, "created_at": now}
        )
    )


async def snoozed(
    session: AsyncSession, *, member_ids: Sequence[int], now: dt.datetime
) -> set[int]:
    rows = await session.scalars(
        select(ReminderSnooze.member_id).where(
            ids_match(session, ReminderSnooze.member_id, member_ids), ReminderSnooze.until > now
        )
    )
    return set(rows.all())


async def digests_on(session: AsyncSession, *, member_ids: Sequence[int], day: str) -> set[int]:
    rows = await session.scalars(
        select(ReminderDigest.member_id).where(
            ids_match(session, ReminderDigest.member_id, member_ids), ReminderDigest.day == day
        )
    )
    return set(rows.all())


async def covered_points(
    session: AsyncSession, *, member_ids: Sequence[int], points: Sequence[str]
) -> set[tuple[int, int, str]]:
    """(requirement_id, member_id, point) already reminded, among these members and points."""
    if not points:
        return set()
    rows = await session.execute(
        select(ReminderPoint.requirement_ids, ReminderPoint.member_id, ReminderPoint.point).where(
            ids_match(session, ReminderPoint.member_id, member_ids),
            ReminderPoint.point.in_(list(points)),
        )
    )
    return {(int(r), m, p) for ids, m, p in rows for r in ids or ()}


def _coverage(digests: Sequence[NewDigest], won: set[int]) -> list[tuple[int, str, list[int]]]:
    """(member_id, point, requirement ids) for the digests this call recorded."""
    out: list[tuple[int, str, list[int]]] = []
    for d in digests:
        if d.member_id not in won:
            continue
        by_point: dict[str, list[int]] = {}
        for req_id, point in d.points:
            by_point.setdefault(point, []).append(req_id)
        out.extend((d.member_id, point, sorted(ids)) for point, ids in sorted(by_point.items()))
    return out


@dataclass
class NewDigest:
    member_id: int
    outbox_key: str
    open_requirements: int
    points: list[tuple[int, str]] = field(default_factory=list)  # (requirement_id, point)


async def record_digests(
    session: AsyncSession, digests: Sequence[NewDigest], *, day: str, now: dt.datetime
) -> set[int]:
    """Record today's digests; returns the members whose digest this call recorded (another
    scheduler may have won the race for the rest: those must not be sent again)."""
    if not digests:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return await _record_digests_pg(session, digests, day=day, now=now)
    stmt = (
        _insert(session)(ReminderDigest.__table__)  # Core: no ORM bookkeeping per row
        .on_conflict_do_nothing(index_elements=["member_id", "day"])
        .returning(ReminderDigest.__table__.c.member_id, sort_by_parameter_order=True)
    )
    rows = await session.execute(
        stmt,
        [
            {
                "member_id": d.member_id,
                "day": day,
                "outbox_key": d.outbox_key,
                "open_requirements": d.open_requirements,
                "created_at": now,
            }
            for d in digests
        ],
    )
    won = {m for m in rows.scalars().all() if m is not None}
    points = [
        {
            "member_id": member_id,
            "digest_day": day,
            "point": point,
            "requirement_ids": ids,
            "created_at": now,
        }
        for member_id, point, ids in _coverage(digests, won)
    ]
    if points:
        await session.execute(
            _insert(session)(ReminderPoint.__table__).on_conflict_do_nothing(
                index_elements=["member_id", "digest_day", "point"]
            ),
            points,
        )
    return won


def _array(values: list[Any], item_type: Any) -> Any:
    return bindparam(None, values, type_=ARRAY(item_type))


async def _record_digests_pg(
    session: AsyncSession, digests: Sequence[NewDigest], *, day: str, now: dt.datetime
) -> set[int]:
    """record_digests on PostgreSQL: each table in one INSERT ... SELECT FROM unnest(arrays)
    (a few parameters whatever the count, instead of thousands of bound rows)."""
    table = ReminderDigest.__table__
    created = bindparam(None, now, type_=table.c.created_at.type)
    source = (
        func.unnest(
            _array([d.member_id for d in digests], Integer),
            _array([d.outbox_key for d in digests], String),
            _array([d.open_requirements for d in digests], Integer),
        )
        .table_valued("member_id", "outbox_key", "open_requirements")
        .render_derived()
    )
    stmt = (
        pg_insert(ReminderDigest)
        .from_select(
            ["member_id", "day", "outbox_key", "open_requirements", "created_at"],
            select(
                source.c.member_id,
                bindparam(None, day, type_=String),
                source.c.outbox_key,
                source.c.open_requirements,
                created,
            ),
        )
        .on_conflict_do_nothing(index_elements=["member_id", "day"])
        .returning(table.c.member_id)
    )
    won = {m for m in (await session.execute(stmt)).scalars().all() if m is not None}
    coverage = _coverage(digests, won)
    if coverage:
        points = ReminderPoint.__table__
        source = (
            func.unnest(
                _array([c[0] for c in coverage], Integer),
                _array([c[1] for c in coverage], String),
                _array([json.dumps(c[2]) for c in coverage], String),
            )
            .table_valued("member_id", "point", "requirement_ids")
            .render_derived()
        )
        await session.execute(
            pg_insert(ReminderPoint)
            .from_select(
                ["member_id", "digest_day", "point", "requirement_ids", "created_at"],
                select(
                    source.c.member_id,
                    bindparam(None, day, type_=String),
                    source.c.point,
                    func.cast(source.c.requirement_ids, JSONB),
                    bindparam(None, now, type_=points.c.created_at.type),
                ),
            )
            .on_conflict_do_nothing(index_elements=["member_id", "digest_day", "point"])
        )
    return won


async def purge_reminders(session: AsyncSession, *, now: dt.datetime, keep_days: int = 400) -> int:
    """Retention: digests and points older than a year and a bit; snoozes that ended."""
    cutoff = now - dt.timedelta(days=keep_days)
    await session.execute(delete(ReminderSnooze).where(ReminderSnooze.until < now))
    await session.execute(delete(ReminderPoint).where(ReminderPoint.created_at < cutoff))
    result = await session.execute(delete(ReminderDigest).where(ReminderDigest.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def by_id(requirements: Sequence[Requirement]) -> Mapping[int, Requirement]:
    return {r.id: r for r in requirements}
