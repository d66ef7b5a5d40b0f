"""Import course completions from the LMS (CSV), all or nothing, idempotent.

Columns by name: `employee_id` or `member_id` (the header says which), `course_id`,
`completed_at` (ISO 8601 date or date and time; without an offset it is Asia/Taipei),
`hours` (decimal). UTF-8 with or without BOM; the header is line 1; every problem names its
line and column. The same person, course and Taipei day is one completion, so re-importing a
file (or an overlapping one) changes nothing. Completion times in the future are refused.

Reminders that are queued but not yet sent are withdrawn for people whose gap just closed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import TAIPEI
from models.identity import CivilServant
from models.learning import Completion, member_progress
from models.members import Member
from models.outbox import PENDING, OutboxMessage, cancel_pending
from models.tabular import Progress, RefusedFile, RowError, read_csv

CHUNK = 1000
REMINDER_KIND = "reminder"


class CompletionsError(RefusedFile):
    """The file was refused and nothing changed; `errors` lists every problem found."""

    what = "completions"


@dataclass(frozen=True)
class CompletionRow:
    line: int
    person: str  # "employee:E1" or "member:12"
    employee_id: str | None
    member_id: int | None
    course_id: str
    completed_at: dt.datetime  # UTC
    day: str  # Taipei calendar day
    hours: float


@dataclass
class CompletionsResult:
    rows: int = 0
    added: int = 0
    already_known: int = 0
    reminders_withdrawn: int = 0


def parse_moment(value: str) -> dt.datetime:
    """'2026-03-01', '2026-03-01 14:30' or '2026-03-01T14:30:00+08:00' as an aware UTC time."""
    value = value.strip()
    try:
        if len(value) == 10:
            moment = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(12, 0))
        else:
            moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date or time (e.g. 2026-03-01T14:30)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TAIPEI)
    return moment.astimezone(dt.UTC)


def parse_completions(data: bytes | str, *, now: dt.datetime) -> list[CompletionRow]:
    """Validate the whole file; raises CompletionsError listing every problem."""
    table = read_csv(data, required=(), refuse=CompletionsError)
    header = table.header
    errors: list[RowError] = []
    who = [c for c in ("employee_id", "member_id") if c in header]
    if len(who) != 1:
        errors.append(RowError.at(1, "employee_id", "the header needs employee_id or member_id"))
    for column in ("course_id", "completed_at", "hours"):
        if column not in header:
            errors.append(RowError.at(1, column, "column missing from the header"))
    if errors:
        raise CompletionsError(errors)
    id_column = who[0]

    rows: list[CompletionRow] = []
    for record in table.rows:
        line, values = record.line, record.values
        if record.error is not None:
            errors.append(record.error)
            continue
        row_errors: list[RowError] = []
        person_id = values.get(id_column, "")
        member_id: int | None = None
        if not person_id:
            row_errors.append(RowError.at(line, id_column, "empty"))
        elif id_column == "member_id":
            if not person_id.isdigit():
                row_errors.append(RowError.at(line, id_column, "not a member number"))
            else:
                member_id = int(person_id)
        elif len(person_id) > 64:
            row_errors.append(RowError.at(line, id_column, "longer than 64 characters"))
        course_id = values.get("course_id", "")
        if not course_id:
            row_errors.append(RowError.at(line, "course_id", "empty"))
        elif len(course_id) > 48:
            row_errors.append(RowError.at(line, "course_id", "longer than 48 characters"))
        moment: dt.datetime | None = None
        try:
            moment = parse_moment(values.get("completed_at", ""))
            if moment > now:
                row_errors.append(RowError.at(line, "completed_at", "in the future"))
        except ValueError as exc:
            row_errors.append(RowError.at(line, "completed_at", str(exc)))
        hours = 0.0
        try:
            amount = Decimal(values.get("hours", ""))
            if not amount.is_finite() or amount <= 0 or amount > 1000:
                row_errors.append(RowError.at(line, "hours", "must be a number above 0"))
            else:
                hours = float(amount)
        except InvalidOperation:
            row_errors.append(RowError.at(line, "hours", "not a decimal number (e.g. 1.5)"))
        if row_errors or moment is None:
            errors.extend(row_errors)
            continue
        rows.append(
            CompletionRow(
                line=line,
                person=f"{'member' if member_id is not None else 'employee'}:{person_id}",
                employee_id=None if member_id is not None else person_id,
                member_id=member_id,
                course_id=course_id,
                completed_at=moment,
                day=moment.astimezone(TAIPEI).date().isoformat(),
                hours=hours,
            )
        )
    if errors:
        raise CompletionsError(errors)
    return rows


async def import_completions(
    session: AsyncSession,
    data: bytes | str,
    *,
    now: dt.datetime,
    progress: Progress | None = None,
) -> CompletionsResult:
    """Validate, then store the file's completions; the caller commits (or rolls back)."""
    rows = parse_completions(data, now=now)
    # The same person, course and day twice in one file is one completion (the first).
    unique: dict[tuple[str, str, str], CompletionRow] = {}
    for row in rows:
        unique.setdefault((row.person, row.course_id, row.day), row)
    members = sorted({r.member_id for r in unique.values() if r.member_id is not None})
    known: set[int] = set()
    for i in range(0, len(members), CHUNK):
        known.update(
            await session.scalars(select(Member.id).where(Member.id.in_(members[i : i + CHUNK])))
        )
    unknown = [r for r in rows if r.member_id is not None and r.member_id not in known]
    if unknown:
        raise CompletionsError(
            [RowError.at(r.line, "member_id", "no such member") for r in unknown]
        )

    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = CompletionsResult(rows=len(rows))
    todo = list(unique.values())
    for i in range(0, len(todo), CHUNK):
        chunk = todo[i : i + CHUNK]
        stmt = (
            insert(Completion)
            .values(
                [
                    {
                        "person": r.person,
                        "employee_id": r.employee_id,
                        "member_id": r.member_id,
                        "course_id": r.course_id,
                        "completed_at": r.completed_at,
                        "day": r.day,
                        "hours": r.hours,
                        "imported_at": now,
                    }
                    for r in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["person", "course_id", "day"])
            .returning(Completion.id)
        )
        result.added += len((await session.scalars(stmt)).all())
        if progress is not None:
            progress(min(i + CHUNK, len(todo)), len(todo))
    result.already_known = len(rows) - result.added
    result.reminders_withdrawn = await _withdraw_moot_reminders(
        session, rows=list(unique.values()), now=now
    )
    return result


async def _withdraw_moot_reminders(
    session: AsyncSession, *, rows: list[CompletionRow], now: dt.datetime
) -> int:
    """Queued digests of people whose every requirement is now met go unsent."""
    member_ids = {r.member_id for r in rows if r.member_id is not None}
    employees = sorted({r.employee_id for r in rows if r.employee_id is not None})
    for i in range(0, len(employees), CHUNK):
        linked = await session.scalars(
            select(CivilServant.member_id).where(
                CivilServant.employee_id.in_(employees[i : i + CHUNK]),
                CivilServant.member_id.is_not(None),
            )
        )
        member_ids.update(m for m in linked if m is not None)
    waiting: set[int] = set()
    ids = sorted(member_ids)
    for i in range(0, len(ids), CHUNK):
        waiting.update(
            await session.scalars(
                select(OutboxMessage.member_id).where(
                    OutboxMessage.member_id.in_(ids[i : i + CHUNK]),
                    OutboxMessage.kind == REMINDER_KIND,
                    OutboxMessage.status == PENDING,
                )
            )
        )
    done = []
    for member_id in sorted(waiting):
        progress = await member_progress(session, member_id=member_id, now=now)
        if not any(p.open for p in progress):
            done.append(member_id)
    return await cancel_pending(session, member_ids=done, kind=REMINDER_KIND, now=now)
