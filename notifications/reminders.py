"""The reminder sweep: a digest of open mandatory hours for each verified civil servant, on a
cadence that tightens as the deadline nears.

For each person the sweep computes the hours gap per requirement this Taipei year. A digest
goes out when some open requirement has a cadence point (30, 14, 7, 3, 1 days before the
deadline, then weekly while overdue) on or before today that no earlier digest covered, so a
sweep that missed days catches up once. At most one digest per member and Taipei day; none
while snoozed; none once completions close the gap. Members are read in chunks by id, so
memory does not grow with their number; each chunk commits on its own, and every effect is
keyed (member+day, the points that day's digest covered, outbox key), so a second
scheduler or a re-run adds nothing. One chunk's writes overlap the next chunk's reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import Catalog
from bot.messages import Button, Reply, Text, dump_replies
from models.base import TAIPEI
from models.identity import CivilServant
from models.learning import (
    NewDigest,
    Person,
    Requirement,
    completed_hours,
    covered_points,
    digests_on,
    load_requirements,
    record_digests,
    snoozed,
    taipei_day,
)
from models.members import Member
from models.outbox import PRIORITY_REMINDER, NewMessage, Target, choose_targets, enqueue_many
from models.suggestions import suggest_courses
from notifications.quiet_hours import DEFAULT_WINDOW, QuietWindow, window_for

log = logging.getLogger("edoor.reminders")

KIND = "reminder"
CHUNK = 5000
MAX_COURSE_BUTTONS = 3  # + "remind me next week": LINE shows four buttons under a message
# Rendered digests kept per sweep: people with the same open hours (and the same relevant
# completed courses) get the same digest, rendered and serialised once. Bounded, so memory
# does not grow with the number of people.
RENDER_CACHE = 4096
# Columns other features added to member (0003 reminder_time, 0004 quiet_hours), by name.
_REMINDER_TIME: Any = literal_column("member.reminder_time")
_QUIET: Any = literal_column("member.quiet_hours")


@dataclass
class SweepReport:
    people: int = 0
    digests: int = 0
    up_to_date: int = 0  # nothing open, or every due point already covered
    snoozed: int = 0
    already_today: int = 0
    no_channel: int = 0

    def __str__(self) -> str:
        return (
            f"{self.people} civil servants, {self.digests} digests queued, "
            f"{self.up_to_date} up to date, {self.snoozed} snoozed, "
            f"{self.already_today} already reminded today, {self.no_channel} unreachable"
        )


def _hours(value: float) -> str:
    return f"{round(value, 1):g}"


def render_digest(
    catalog: Catalog,
    lang: str,
    *,
    open_items: Sequence[tuple[Requirement, float]],
    today: dt.date,
    suggestions: dict[int, list[tuple[str, str]]],
    taken: set[str],
) -> list[Reply]:
    """The digest: every open requirement with hours done/needed, course buttons, snooze."""
    lines = [catalog.t(lang, "reminders.title")]
    nearest = min(r.deadline_in(today.year) for r, _ in open_items)
    days = (nearest - today).days
    if days > 0:
        lines.append(catalog.t(lang, "reminders.days_left", days=days, date=f"{nearest:%m/%d}"))
    elif days == 0:
        lines.append(catalog.t(lang, "reminders.due_today", date=f"{nearest:%m/%d}"))
    else:
        lines.append(catalog.t(lang, "reminders.overdue", date=f"{nearest:%m/%d}"))
    for req, done in open_items:
        lines.append(
            catalog.t(
                lang,
                "reminders.line",
                title=req.title_in(lang),
                done=_hours(done),
                needed=_hours(req.hours),
                missing=_hours(req.hours - done),
            )
        )
        if req.scope != "any" and not suggestions.get(req.id):
            # No open course counts toward it here (edoor reports such a requirement at
            # import and start-up): say so rather than point at a list that is not there.
            lines.append(catalog.t(lang, "reminders.no_course"))
    buttons: list[Button] = []
    chosen: set[str] = set()
    # Topics first (a course there also counts toward the yearly total).
    for req, _ in sorted(open_items, key=lambda item: item[0].scope == "any"):
        if len(buttons) >= MAX_COURSE_BUTTONS:
            break
        pick = next(
            (cid for cid, _ in suggestions.get(req.id, []) if cid not in taken | chosen), None
        )
        if pick is None:
            continue
        chosen.add(pick)
        buttons.append(
            Button(
                label=catalog.t(lang, "reminders.take", topic=req.title_in(lang)),
                action=f"course.open:{pick}",
            )
        )
    if buttons:
        lines.append(catalog.t(lang, "reminders.footer"))
    else:
        # Nothing to tap: never "tap a course below" above an empty list.
        lines.append(catalog.t(lang, "reminders.footer_search"))
        buttons.append(Button(label=catalog.t(lang, "reminders.search"), action="cmd:search"))
    buttons.append(Button(label=catalog.t(lang, "reminders.snooze"), action="learning.snooze"))
    return [
        Text(
            text="\n".join(lines),
            buttons=buttons,
            quick_replies=[
                Button(label=catalog.t(lang, "reminders.my_learning"), action="cmd:learning")
            ],
        )
    ]


def _send_time(
    now: dt.datetime, today: dt.date, reminder_time: str | None, quiet: QuietWindow
) -> dt.datetime:
    """The member's chosen time today if still ahead, else now; then out of quiet hours."""
    moment = now
    if reminder_time:
        # A malformed stored time falls back to "as soon as quiet hours allow".
        with contextlib.suppress(ValueError):
            hour, minute = (int(x) for x in reminder_time.split(":"))
            chosen = dt.datetime.combine(today, dt.time(hour, minute), tzinfo=TAIPEI)
            moment = max(now, chosen.astimezone(dt.UTC))
    return quiet.next_allowed(moment)


async def sweep_reminders(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    catalog: Catalog,
    now: dt.datetime,
    channels: Sequence[str] | None = None,
    quiet: QuietWindow = DEFAULT_WINDOW,
    chunk: int = CHUNK,
) -> SweepReport:
    """Queue today's reminder digests (the `reminders` job); safe to run any number of times."""
    today = taipei_day(now)
    day = today.isoformat()
    report = SweepReport()
    async with sessionmaker() as session:
        requirements = await load_requirements(session, now=now)
        suggestions = await suggest_courses(session, requirements)
        await session.commit()
    due = {r.id: r.due_point(today) for r in requirements}
    points = sorted({p.isoformat() for p in due.values() if p is not None})
    if not points:
        return report  # no requirement is near its deadline: nothing can be due today
    sweep = _Sweep(
        catalog=catalog,
        now=now,
        today=today,
        requirements=requirements,
        due=due,
        points=points,
        suggestions=suggestions,
        channels=channels,
        quiet=quiet,
        report=report,
        suggested=frozenset(cid for picks in suggestions.values() for cid, _ in picks),
    )
    after = 0
    # On PostgreSQL one chunk's writes (digests, points, outbox rows: their own transaction)
    # overlap the next chunk's reads and rendering; chunks are disjoint sets of members, so
    # neither depends on the other. At most one write is in flight: memory stays two chunks.
    bind = sessionmaker.kw.get("bind")
    overlap = getattr(getattr(bind, "dialect", None), "name", "") == "postgresql"
    writing: asyncio.Task[None] | None = None
    try:
        while True:
            async with sessionmaker() as session:
                readers = await _read_chunk(session, after=after, limit=chunk)
                if not readers:
                    break
                after = readers[-1].person.member_id
                report.people += len(readers)
                planned = await _plan_chunk(session, readers, sweep)
                await session.commit()  # the reads' transaction; writes go in their own
            if writing is not None:
                task, writing = writing, None
                await task
            write = _write_chunk(sessionmaker, *planned, day=day, now=now, report=report)
            if overlap:
                writing = asyncio.create_task(write)
            else:
                await write
        if writing is not None:
            task, writing = writing, None
            await task
    finally:
        if writing is not None:  # the reads failed: abandon the write (a re-run redoes it)
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
    log.info("reminder sweep %s: %s", day, report)
    return report


@dataclass(frozen=True)
class _Reader:
    """A civil servant as the sweep reads them: who (for the hours rules), in which language,
    and when they like to be reminded."""

    person: Person
    language: str
    reminder_time: str | None
    quiet_hours: str | None


@dataclass
class _Sweep:
    """What one sweep decides with, the same for every chunk; `facts` and `rendered` are the
    sweep's caches (the hours rules' facts, digests rendered once per signature)."""

    catalog: Catalog
    now: dt.datetime
    today: dt.date
    requirements: Sequence[Requirement]
    due: dict[int, dt.date | None]
    points: list[str]
    suggestions: dict[int, list[tuple[str, str]]]
    channels: Sequence[str] | None
    quiet: QuietWindow
    report: SweepReport
    suggested: frozenset[str] = frozenset()
    facts: dict[str, object] = field(default_factory=dict)
    rendered: dict[tuple[object, ...], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def day(self) -> str:
        return self.today.isoformat()


@dataclass(frozen=True)
class _Candidate:
    """Someone a digest is due for: their open requirements (with hours done) and the due
    points (requirement id, day) no earlier digest covered."""

    reader: _Reader
    open_items: list[tuple[Requirement, float]]
    fresh: list[tuple[int, str]]


async def _read_chunk(session: AsyncSession, *, after: int, limit: int) -> list[_Reader]:
    """The next `limit` civil servants by member id."""
    rows = await session.execute(
        select(
            Member.id,
            Member.language,
            _REMINDER_TIME,
            _QUIET,
            CivilServant.employee_id,
            CivilServant.agency,
        )
        .outerjoin(CivilServant, CivilServant.member_id == Member.id)
        .where(Member.is_civil_servant.is_(True), Member.id > after)
        .order_by(Member.id)
        .limit(limit)
    )
    return [
        _Reader(Person(member_id, employee_id, agency), language, reminder_time, quiet_hours)
        for member_id, language, reminder_time, quiet_hours, employee_id, agency in rows
    ]


async def _plan_chunk(
    session: AsyncSession, readers: list[_Reader], sweep: _Sweep
) -> tuple[list[NewDigest], dict[int, NewMessage]]:
    """Read one chunk's facts and decide its digests (nothing written yet)."""
    candidates, taken = await _candidates(session, readers, sweep)
    if not candidates:
        return [], {}
    targets = await choose_targets(
        session,
        member_ids=[c.reader.person.member_id for c in candidates],
        channels=sweep.channels,
    )
    digests: list[NewDigest] = []
    messages: dict[int, NewMessage] = {}
    for candidate in candidates:
        reader = candidate.reader
        m = reader.person.member_id
        target: Target | None = targets.get(m)
        if target is None:
            sweep.report.no_channel += 1
            continue
        key = f"{KIND}:{m}:{sweep.day}"
        window = window_for(reader.quiet_hours, sweep.quiet)
        messages[m] = NewMessage(
            key=key,
            target=target,
            # Shared between identical digests: hashed once when queued.
            replies=_digest_body(sweep, candidate, taken.get(m, set())),
            kind=KIND,
            priority=PRIORITY_REMINDER,
            not_before=_send_time(sweep.now, sweep.today, reader.reminder_time, window),
        )
        digests.append(NewDigest(m, key, len(candidate.open_items), candidate.fresh))
    return digests, messages


async def _candidates(
    session: AsyncSession, readers: list[_Reader], sweep: _Sweep
) -> tuple[list[_Candidate], dict[int, set[str]]]:
    """Who of the chunk a digest is due for (not snoozed, not reminded today, some due point
    uncovered), and the courses each has taken (for the suggestions)."""
    report = sweep.report
    people = [r.person for r in readers]
    ids = [p.member_id for p in people]
    sleeping = await snoozed(session, member_ids=ids, now=sweep.now)
    done_today = await digests_on(session, member_ids=ids, day=sweep.day)
    taken: dict[int, set[str]] = {}
    hours = await completed_hours(
        session,
        people=people,
        year=sweep.today.year,
        requirements=sweep.requirements,
        facts=sweep.facts,  # type: ignore[arg-type]
        courses_out=taken,
    )
    covered = await covered_points(session, member_ids=ids, points=sweep.points)
    due_iso = {r: (p.isoformat() if p is not None else None) for r, p in sweep.due.items()}
    candidates: list[_Candidate] = []
    for reader in readers:
        person = reader.person
        m = person.member_id
        if m in sleeping:
            report.snoozed += 1
            continue
        if m in done_today:
            report.already_today += 1
            continue
        open_items = [
            (r, hours[m].get(r.id, 0.0))
            for r in sweep.requirements
            if r.applies_to(person.agency) and hours[m].get(r.id, 0.0) + 1e-9 < r.hours
        ]
        fresh = [
            (r.id, point)
            for r, _ in open_items
            if (point := due_iso[r.id]) is not None and (r.id, m, point) not in covered
        ]
        if not fresh:
            report.up_to_date += 1
            continue
        candidates.append(_Candidate(reader, open_items, fresh))
    return candidates, taken


def _digest_body(sweep: _Sweep, candidate: _Candidate, mine: set[str]) -> list[dict[str, Any]]:
    """The digest, rendered once per signature: everything it depends on besides what is the
    same for the whole sweep (today, the catalog, the suggestions) is the language, the open
    hours and which suggested courses the person already took."""
    language = candidate.reader.language
    signature = (
        language,
        tuple((r.id, done) for r, done in candidate.open_items),
        frozenset(mine & sweep.suggested),
    )
    body = sweep.rendered.get(signature)
    if body is None:
        body = dump_replies(
            render_digest(
                sweep.catalog,
                language,
                open_items=candidate.open_items,
                today=sweep.today,
                suggestions=sweep.suggestions,
                taken=mine,
            )
        )
        if len(sweep.rendered) >= RENDER_CACHE:
            sweep.rendered.clear()
        sweep.rendered[signature] = body
    return body


async def _write_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    digests: list[NewDigest],
    messages: dict[int, NewMessage],
    *,
    day: str,
    now: dt.datetime,
    report: SweepReport,
) -> None:
    """Record one chunk's digests and queue the ones this sweep won, in one transaction."""
    if not digests:
        return
    async with sessionmaker() as session:
        won = await record_digests(session, digests, day=day, now=now)
        added = await enqueue_many(session, [messages[m] for m in sorted(won)], now=now)
        await session.commit()
    report.digests += len(added)
    report.already_today += len(digests) - len(won)


# -- wiring (app.py) ---------------------------------------------------------------------------
def reminders_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    catalog: Catalog,
    channels: Sequence[str],
    quiet: QuietWindow = DEFAULT_WINDOW,
) -> Callable[[dt.datetime], Awaitable[SweepReport]]:
    """The `reminders` job: a plain function of `now`."""

    async def run(now: dt.datetime) -> SweepReport:
        return await sweep_reminders(
            sessionmaker, catalog=catalog, now=now, channels=channels, quiet=quiet
        )

    return run


async def retention(sessionmaker: async_sessionmaker[AsyncSession], *, now: dt.datetime) -> int:
    """This feature's part of the `retention` job: finished outbox rows after 30 days,
    reminder records after ~13 months, ended snoozes. Returns outbox rows deleted."""
    from models.learning import purge_reminders
    from models.outbox import purge_finished

    async with sessionmaker() as session:
        deleted = await purge_finished(session, now=now)
        await purge_reminders(session, now=now)
        await session.commit()
    return deleted
