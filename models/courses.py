"""The course catalog and the search log, with the rules over them (import, retire, browse)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.catalog_import import CatalogError, CourseRow, ParsedCatalog, Progress
from models.members import Member
from models.phones import MASK, mask_text

# A protected course whose password the import did not give: nobody can open it until an
# admin sets one (the same convention as "!" in /etc/shadow).
LOCKED = "!"
CHUNK = 500
# Course passwords are shared codes handed out by trainers, not personal secrets: a lighter
# argon2 keeps a 100,000-row import with 1% protected courses under a minute.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class Course(Base):
    __tablename__ = "course"
    __table_args__ = (Index("ix_course_retired_category", "retired", "category"),)

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(40))
    hours: Mapped[float] = mapped_column(Float)
    hours_estimated: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[str] = mapped_column(String(16), default="public")
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    # Password entry paused for everyone until then (too many wrong tries from all members
    # together); an admin may lift it sooner.
    password_locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    url: Mapped[str | None] = mapped_column(String(500), default=None)
    platform: Mapped[str] = mapped_column(String(60), default="")
    popularity: Mapped[int] = mapped_column(default=0)
    retired: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def password_protected(self) -> bool:
        return self.password_hash is not None


class CatalogVersion(Base):
    """One row (id 1) counting committed catalog imports. Every process's search index
    compares it: the newest `updated_at` alone can miss an import that started first (an
    older stamp) but committed last."""

    __tablename__ = "catalog_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


class SearchLog(Base):
    """One search, for the analytics dashboard; deliberately without any member id."""

    __tablename__ = "search_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    query: Mapped[str] = mapped_column(String(200))
    normalised: Mapped[str] = mapped_column(String(200))
    result_count: Mapped[int]
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


async def purge_search_log(session: AsyncSession, *, before: dt.datetime) -> int:
    """Drop searches older than `before` (retention job; the dashboards keep their totals)."""
    result = await session.execute(delete(SearchLog).where(SearchLog.created_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class MemberSearchInterest(Base):
    """What a member searched for lately, for 為你推薦 only; erased with the member.

    The anonymous search_log never learns who searched; this keeps the member's side apart,
    small (the last RECENT_SEARCHES distinct queries) and without numbers (digits masked).
    """

    __tablename__ = "member_search_interest"
    __table_args__ = (UniqueConstraint("member_id", "query"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    query: Mapped[str] = mapped_column(String(100))  # the normalised form
    count: Mapped[int] = mapped_column(default=1)
    last_at: Mapped[dt.datetime]


class SavedCourse(Base):
    """A course a member saved for later ("收藏"); erased with the member."""

    __tablename__ = "saved_course"
    __table_args__ = (UniqueConstraint("member_id", "course_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    course_id: Mapped[str] = mapped_column(
        String(48), ForeignKey("course.id", ondelete="CASCADE"), index=True
    )
    saved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CoursePasswordAttempt(Base):
    """One typed course password, right or wrong (never the password itself): the hourly
    limit on wrong tries per member, across all courses; erased with the member."""

    __tablename__ = "course_password_attempt"
    __table_args__ = (
        Index("ix_course_password_attempt_member_at", "member_id", "attempted_at"),
        Index("ix_course_password_attempt_course_at", "course_id", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    course_id: Mapped[str] = mapped_column(String(48))
    attempted_at: Mapped[dt.datetime]
    success: Mapped[bool]


class CourseNotFound(LookupError):
    """No course with that id (require_course)."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    skipped: int = 0  # invalid rows left out (only with skip_invalid)


# -- passwords ----------------------------------------------------------------------------


def hash_course_password(password: str) -> str:
    return _hasher.hash(password)


def verify_course_password(course: Course, password: str) -> bool:
    """True when `password` opens the course; a locked or open course never matches."""
    if course.password_hash is None or course.password_hash == LOCKED:
        return False
    try:
        return _hasher.verify(course.password_hash, password.strip())
    except (VerificationError, InvalidHashError):
        return False


# Wrong passwords a member may type in any rolling hour, over all courses together.
PASSWORD_TRIES_PER_HOUR = 5
PASSWORD_WINDOW = dt.timedelta(hours=1)
PASSWORD_KEEP = dt.timedelta(days=1)


# Wrong passwords for one course from all members together in a rolling hour, before its
# password entry pauses for an hour: throwaway accounts each get five tries of their own, so
# guessing a course's password must also cost the course.
COURSE_PASSWORD_TRIES_PER_HOUR = 30
COURSE_PASSWORD_PAUSE = dt.timedelta(hours=1)


def course_password_paused(course: Course, *, now: dt.datetime) -> dt.datetime | None:
    """Until when nobody may try this course's password; None when they may."""
    until = course.password_locked_until
    return until if until is not None and until > now else None


async def note_wrong_course_password(
    session: AsyncSession, *, course: Course, now: dt.datetime
) -> dt.datetime | None:
    """After a wrong try has been recorded: pause the course's password entry when everyone's
    wrong tries this hour reach the limit; returns until when, or None."""
    wrong = await session.scalar(
        select(func.count(CoursePasswordAttempt.id)).where(
            CoursePasswordAttempt.course_id == course.id,
            CoursePasswordAttempt.success.is_(False),
            CoursePasswordAttempt.attempted_at > now - PASSWORD_WINDOW,
        )
    )
    if int(wrong or 0) < COURSE_PASSWORD_TRIES_PER_HOUR:
        return None
    course.password_locked_until = now + COURSE_PASSWORD_PAUSE
    return course.password_locked_until


async def _lock_member(session: AsyncSession, member_id: int) -> None:
    # Two processes answering the same member at once must not both see "one try left";
    # on SQLite the write transaction (BEGIN IMMEDIATE) already serialises them.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(Member.id).where(Member.id == member_id).with_for_update())


async def password_retry_at(
    session: AsyncSession, *, member_id: int, now: dt.datetime
) -> dt.datetime | None:
    """When the member may type a course password again; None when they may now.

    Locks the member's row on PostgreSQL, so call it in the transaction that records the try.
    """
    await _lock_member(session, member_id)
    recent = (
        await session.scalars(
            select(CoursePasswordAttempt.attempted_at)
            .where(
                CoursePasswordAttempt.member_id == member_id,
                CoursePasswordAttempt.success.is_(False),
                CoursePasswordAttempt.attempted_at > now - PASSWORD_WINDOW,
            )
            .order_by(CoursePasswordAttempt.attempted_at.desc())
            .limit(PASSWORD_TRIES_PER_HOUR)
        )
    ).all()
    if len(recent) < PASSWORD_TRIES_PER_HOUR:
        return None
    # The window frees a try when the oldest of the last five wrong ones is an hour old.
    return recent[-1] + PASSWORD_WINDOW


async def password_tries_left(session: AsyncSession, *, member_id: int, now: dt.datetime) -> int:
    """Wrong passwords the member may still type in the current rolling hour."""
    n = await session.scalar(
        select(func.count(CoursePasswordAttempt.id)).where(
            CoursePasswordAttempt.member_id == member_id,
            CoursePasswordAttempt.success.is_(False),
            CoursePasswordAttempt.attempted_at > now - PASSWORD_WINDOW,
        )
    )
    return max(PASSWORD_TRIES_PER_HOUR - int(n or 0), 0)


async def record_password_attempt(
    session: AsyncSession, *, member_id: int, course_id: str, success: bool, now: dt.datetime
) -> None:
    """Count one typed password (only whether it was right, never what was typed).

    A right one is also the member's unlock of the course (its podcasts play from then on),
    so it is kept, one per course; wrong ones older than a day go: the table stays small.
    """
    stale = CoursePasswordAttempt.success.is_(False) & (
        CoursePasswordAttempt.attempted_at < now - PASSWORD_KEEP
    )
    if success:
        stale = stale | (
            CoursePasswordAttempt.success.is_(True)
            & (CoursePasswordAttempt.course_id == course_id[:48])
        )
    await session.execute(
        delete(CoursePasswordAttempt).where(CoursePasswordAttempt.member_id == member_id, stale)
    )
    session.add(
        CoursePasswordAttempt(
            member_id=member_id, course_id=course_id[:48], attempted_at=now, success=success
        )
    )
    await session.flush()


async def lock_password_for_check(session: AsyncSession, course: Course) -> None:
    """Re-read the course's password hash under a share lock (PostgreSQL; SQLite's one writer
    already serialises), so a password change waits for this check or is seen by it: an
    unlock made with the old password cannot slip in after forget_unlocks."""
    await session.refresh(course, attribute_names=["password_hash"], with_for_update={"read": True})


async def forget_unlocks(session: AsyncSession, *, course_ids: Sequence[str]) -> None:
    """A course's password changed or was removed: earlier unlocks no longer count."""
    if course_ids:
        await session.execute(
            delete(CoursePasswordAttempt).where(
                CoursePasswordAttempt.course_id.in_(list(course_ids)),
                CoursePasswordAttempt.success.is_(True),
            )
        )


# -- import -------------------------------------------------------------------------------

_COMPARED = (
    "title",
    "category",
    "hours",
    "hours_estimated",
    "description",
    "audience",
    "tags",
    "url",
    "platform",
)


def _values(row: CourseRow) -> dict[str, Any]:
    return {
        "title": row.title,
        "category": row.category,
        "hours": row.hours,
        "hours_estimated": row.hours_estimated,
        "description": row.description,
        "audience": row.audience,
        "tags": list(row.tags),
        "url": row.url,
        "platform": row.platform,
    }


def _new_hash(row: CourseRow, current: str | None) -> str | None:
    """The password hash the course should carry after this row is applied."""
    if not row.password_protected:
        return None
    if row.password_hash is not None:
        return row.password_hash
    if row.password is not None:
        if current not in (None, LOCKED):
            # A stored hash that no longer verifies (or is malformed) is simply replaced.
            with contextlib.suppress(VerificationError, InvalidHashError):
                if _hasher.verify(current, row.password):
                    return current  # same password: keep the hash, the row is unchanged
        return hash_course_password(row.password)
    return current if current is not None else LOCKED


async def upsert_courses(
    session: AsyncSession,
    *,
    rows: Sequence[CourseRow],
    now: dt.datetime,
    progress: Progress | None = None,
) -> ImportReport:
    """Insert new courses and update changed ones by id; a course in the source is active."""
    report = ImportReport()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        existing = {
            r.id: r
            for r in (
                await session.execute(
                    select(
                        Course.id, Course.password_hash, Course.retired, *_current_columns()
                    ).where(Course.id.in_([row.id for row in chunk]))
                )
            ).all()
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        relocked: list[str] = []
        for row in chunk:
            values = _values(row)
            old = existing.get(row.id)
            if old is None:
                values.update(
                    id=row.id,
                    password_hash=_new_hash(row, None),
                    retired=False,
                    popularity=0,
                    created_at=now,
                    updated_at=now,
                )
                inserts.append(values)
                continue
            values["password_hash"] = _new_hash(row, old.password_hash)
            if values["password_hash"] != old.password_hash:
                relocked.append(row.id)
            changed = old.retired or values["password_hash"] != old.password_hash
            changed = changed or any(getattr(old, k) != values[k] for k in _COMPARED)
            if changed:
                values.update(id=row.id, retired=False, updated_at=now)
                updates.append(values)
            else:
                report.unchanged += 1
        if inserts:
            await session.execute(insert(Course), inserts)
            report.created += len(inserts)
        if updates:
            await session.execute(update(Course), updates)
            report.updated += len(updates)
        await forget_unlocks(session, course_ids=relocked)
        if progress is not None:
            progress(min(start + CHUNK, len(rows)), len(rows))
    return report


def _current_columns() -> list[Any]:
    return [getattr(Course, name) for name in _COMPARED]


async def retire_missing(
    session: AsyncSession, *, keep_ids: Sequence[str], now: dt.datetime
) -> int:
    """Retire every active course whose id is not in `keep_ids`; returns how many."""
    keep = set(keep_ids)
    active = (await session.scalars(select(Course.id).where(Course.retired.is_(False)))).all()
    gone = [cid for cid in active if cid not in keep]
    for start in range(0, len(gone), CHUNK):
        await session.execute(
            update(Course)
            .where(Course.id.in_(gone[start : start + CHUNK]))
            .values(retired=True, updated_at=now)
        )
    return len(gone)


async def apply_catalog(
    session: AsyncSession,
    *,
    parsed: ParsedCatalog,
    now: dt.datetime,
    skip_invalid: bool = False,
    retire_absent: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Apply a validated catalog: all or nothing unless `skip_invalid` (raises CatalogError).

    With `retire_absent`, courses missing from the source are retired; the ids of invalid
    rows count as present, so a typo in one row never retires that course.
    """
    file_level = [e for e in parsed.errors if not e.where.startswith(("line", "index"))]
    if parsed.errors and (not skip_invalid or file_level or (retire_absent and not parsed.rows)):
        raise CatalogError(parsed.errors)
    report = await upsert_courses(session, rows=parsed.rows, now=now, progress=progress)
    report.skipped = len({e.where for e in parsed.errors})
    if retire_absent:
        report.retired = await retire_missing(
            session, keep_ids=[r.id for r in parsed.rows], now=now
        )
    if report.created or report.updated or report.retired:
        await _bump_catalog_version(session)
    return report


async def _bump_catalog_version(session: AsyncSession) -> None:
    # Last in the import's transaction: on PostgreSQL the row lock orders concurrent imports
    # for the shortest time, and each commit moves the version exactly once.
    make = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = make(CatalogVersion).values(id=1, version=1)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[CatalogVersion.id], set_={"version": CatalogVersion.version + 1}
        )
    )


# -- reading ------------------------------------------------------------------------------


async def get_course(session: AsyncSession, *, course_id: str) -> Course | None:
    return await session.get(Course, course_id)


async def require_course(session: AsyncSession, *, course_id: str) -> Course:
    course = await session.get(Course, course_id)
    if course is None:
        raise CourseNotFound(course_id)
    return course


def _active(audience: str | None) -> list[Any]:
    where: list[Any] = [Course.retired.is_(False)]
    if audience is not None:
        where.append(Course.audience == audience)
    return where


async def list_categories(
    session: AsyncSession, *, audience: str | None = None
) -> list[tuple[str, int]]:
    """Active categories with their course counts, largest first."""
    n = func.count(Course.id)
    rows = await session.execute(
        select(Course.category, n)
        .where(*_active(audience))
        .group_by(Course.category)
        .order_by(n.desc(), Course.category)
    )
    return [(c, int(k)) for c, k in rows.all()]


async def courses_in_category(
    session: AsyncSession,
    *,
    category: str,
    limit: int = 10,
    offset: int = 0,
    audience: str | None = None,
) -> list[Course]:
    rows = await session.scalars(
        select(Course)
        .where(*_active(audience), Course.category == category)
        .order_by(Course.popularity.desc(), Course.title, Course.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def newest_courses(
    session: AsyncSession, *, limit: int = 10, offset: int = 0, audience: str | None = None
) -> list[Course]:
    rows = await session.scalars(
        select(Course)
        .where(*_active(audience))
        .order_by(Course.created_at.desc(), Course.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def popular_courses(
    session: AsyncSession, *, limit: int = 10, offset: int = 0, audience: str | None = None
) -> list[Course]:
    rows = await session.scalars(
        select(Course)
        .where(*_active(audience))
        .order_by(Course.popularity.desc(), Course.title, Course.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def short_courses(
    session: AsyncSession,
    *,
    under_hours: float = 1.0,
    limit: int = 10,
    offset: int = 0,
    audience: str | None = None,
) -> list[Course]:
    """Active courses shorter than `under_hours`, shortest first."""
    rows = await session.scalars(
        select(Course)
        .where(*_active(audience), Course.hours < under_hours)
        .order_by(Course.hours, Course.popularity.desc(), Course.title, Course.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def bump_popularity(session: AsyncSession, *, course_id: str, by: int = 1) -> None:
    """Count an opening of the course (the 'popular' list's order, until real statistics)."""
    await session.execute(
        update(Course).where(Course.id == course_id).values(popularity=Course.popularity + by)
    )


async def active_course_ids(session: AsyncSession, *, course_ids: Sequence[str]) -> set[str]:
    """Which of these courses are active (not retired) right now."""
    out: set[str] = set()
    ids = list(dict.fromkeys(course_ids))
    for start in range(0, len(ids), CHUNK):
        out.update(
            await session.scalars(
                select(Course.id).where(
                    Course.id.in_(ids[start : start + CHUNK]), Course.retired.is_(False)
                )
            )
        )
    return out


# -- search log ---------------------------------------------------------------------------


# Text typed outside a verification step is searched, so a phone number ("0912-345-678",
# "+886 912 345 678") or a one-time code may arrive here. The log keeps no identity and is
# never erased, so neither may rest in it: digit runs are masked (models.phones.mask_text,
# the rule the logs use); course words rarely hold four digits, and "***" still counts as a
# search.


async def log_search(
    session: AsyncSession,
    *,
    query: str,
    normalised: str,
    result_count: int,
    channel: str,
    now: dt.datetime,
) -> None:
    """Record one search (no identity: the dashboard only needs what was asked and found).

    Phone numbers and codes in what was typed are masked in both forms before storing.
    """
    session.add(
        SearchLog(
            query=mask_text(query)[:200],
            normalised=mask_text(normalised)[:200],
            result_count=result_count,
            channel=channel[:16],
            created_at=now,
        )
    )


# Enough to follow a member's current interests; older searches say little about them.
RECENT_SEARCHES = 20


def _interest(normalised: str) -> str:
    """The normalised query as kept for a member: numbers gone, not merely masked."""
    return " ".join(w for w in mask_text(normalised).replace(MASK, " ").split())[:100]


async def remember_search(
    session: AsyncSession, *, member_id: int, normalised: str, now: dt.datetime
) -> None:
    """Note that a member searched for `normalised` (a signal for recommendations).

    The same query again counts up and moves to the front; beyond RECENT_SEARCHES
    distinct queries the oldest are dropped. A query of only numbers is not kept at all.
    """
    query = _interest(normalised)
    if not query:
        return
    make = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = make(MemberSearchInterest).values(member_id=member_id, query=query, count=1, last_at=now)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["member_id", "query"],
            set_={"count": MemberSearchInterest.count + 1, "last_at": now},
        )
    )
    old = (
        await session.scalars(
            select(MemberSearchInterest.id)
            .where(MemberSearchInterest.member_id == member_id)
            .order_by(MemberSearchInterest.last_at.desc(), MemberSearchInterest.id.desc())
            .offset(RECENT_SEARCHES)
        )
    ).all()
    if old:
        await session.execute(delete(MemberSearchInterest).where(MemberSearchInterest.id.in_(old)))


async def recent_searches(
    session: AsyncSession, *, member_id: int, limit: int = RECENT_SEARCHES
) -> list[str]:
    """The member's remembered queries (normalised), most recent first."""
    rows = await session.scalars(
        select(MemberSearchInterest.query)
        .where(MemberSearchInterest.member_id == member_id)
        .order_by(MemberSearchInterest.last_at.desc(), MemberSearchInterest.id.desc())
        .limit(limit)
    )
    return list(rows.all())


async def zero_result_queries(
    session: AsyncSession, *, since: dt.datetime, limit: int = 20
) -> list[tuple[str, int]]:
    """What people searched for and did not find, most frequent first."""
    n = func.count(SearchLog.id)
    rows = await session.execute(
        select(SearchLog.normalised, n)
        .where(SearchLog.result_count == 0, SearchLog.created_at >= since)
        .group_by(SearchLog.normalised)
        .order_by(n.desc(), SearchLog.normalised)
        .limit(limit)
    )
    return [(q, int(k)) for q, k in rows.all()]


# -- saved courses ------------------------------------------------------------------------

# Enough for any real reading list; stops one account from growing the table without bound.
MAX_SAVED = 200


async def save_course(
    session: AsyncSession, *, member_id: int, course_id: str, now: dt.datetime
) -> bool:
    """Save a course for later; False when it was saved already (saving twice is harmless).

    Raises `SavedCoursesFull` at MAX_SAVED. The caller checks the course is visible.
    """
    if await is_saved(session, member_id=member_id, course_id=course_id):
        return False
    if await count_saved(session, member_id=member_id) >= MAX_SAVED:
        raise SavedCoursesFull(member_id)
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        make(SavedCourse)
        .values(member_id=member_id, course_id=course_id, saved_at=now)
        .on_conflict_do_nothing(index_elements=["member_id", "course_id"])
    )
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


class SavedCoursesFull(Exception):
    """The member has MAX_SAVED courses saved already."""


async def unsave_course(session: AsyncSession, *, member_id: int, course_id: str) -> bool:
    """Remove a saved course; False when it was not saved."""
    result = await session.execute(
        delete(SavedCourse).where(
            SavedCourse.member_id == member_id, SavedCourse.course_id == course_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def is_saved(session: AsyncSession, *, member_id: int, course_id: str) -> bool:
    found = await session.scalar(
        select(SavedCourse.id).where(
            SavedCourse.member_id == member_id, SavedCourse.course_id == course_id
        )
    )
    return found is not None


async def count_saved(session: AsyncSession, *, member_id: int) -> int:
    n = await session.scalar(
        select(func.count(SavedCourse.id)).where(SavedCourse.member_id == member_id)
    )
    return int(n or 0)


async def saved_courses(
    session: AsyncSession, *, member_id: int, limit: int = 10, offset: int = 0
) -> list[Course]:
    """The member's saved courses, most recently saved first (retired ones included)."""
    rows = await session.scalars(
        select(Course)
        .join(SavedCourse, SavedCourse.course_id == Course.id)
        .where(SavedCourse.member_id == member_id)
        .order_by(SavedCourse.saved_at.desc(), SavedCourse.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def saved_course_ids(
    session: AsyncSession, *, member_id: int, limit: int | None = None
) -> list[str]:
    """Ids of the member's saved courses, most recently saved first."""
    stmt = (
        select(SavedCourse.course_id)
        .where(SavedCourse.member_id == member_id)
        .order_by(SavedCourse.saved_at.desc(), SavedCourse.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.scalars(stmt)).all())
