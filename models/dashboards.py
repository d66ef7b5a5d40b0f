"""The six dashboards, read from the summary tables only (models/rollups.py keeps them).

Each returns a `Dashboard`: column names and rows of plain values (the JSON and the CSV are
the same table), and notes on how to read it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.rollups import (
    CampaignFunnel,
    ChannelWeek,
    ComplianceRollup,
    ReminderEffect,
    RollupWatermark,
    SearchRollup,
    SearchYear,
    TopicHours,
)

NAMES = ("topics", "compliance", "reminders", "search", "campaigns", "channels")
TOP_QUERIES = 20
ZERO_QUERIES = 50
TO_PRODUCE = 30
GROUPED_FROM = 500  # the most frequent zero-result queries are grouped into topics


class FilterError(ValueError):
    """A filter this dashboard cannot take; the message says why (answered with 400)."""


@dataclass(frozen=True)
class Filters:
    year: int
    month_from: int = 1
    month_to: int = 12
    agency: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.month_from <= self.month_to <= 12:
            raise FilterError("months run from 1 to 12, and month_from may not follow month_to")

    @property
    def first_day(self) -> str:
        return f"{self.year:04d}-{self.month_from:02d}-01"

    @property
    def last_day(self) -> str:
        end = calendar.monthrange(self.year, self.month_to)[1]
        return f"{self.year:04d}-{self.month_to:02d}-{end:02d}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "month_from": self.month_from,
            "month_to": self.month_to,
            "agency": self.agency,
        }


@dataclass
class Dashboard:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    filters: Filters
    as_of: dt.datetime | None = None
    notes: list[str] = field(default_factory=list)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _no_agency(name: str, filters: Filters) -> None:
    if filters.agency is not None:
        raise FilterError(f"the {name} dashboard has no agency (its source does not say who)")


async def _as_of(session: AsyncSession, source: str) -> dt.datetime | None:
    return await session.scalar(
        select(RollupWatermark.updated_at).where(RollupWatermark.source == source)
    )


# The rollup source each dashboard reads: its figures change only when that source's run does.
SOURCES = {
    "topics": "completion",
    "compliance": "completion",
    "reminders": "reminder_digest",
    "search": "search_log",
    "campaigns": "campaign_event",
    "channels": "inbound_event",
}


async def as_of(session: AsyncSession, name: str) -> dt.datetime | None:
    """When the rollup behind dashboard `name` last ran (None before its first run)."""
    return await _as_of(session, SOURCES[name])


async def version(session: AsyncSession, name: str) -> tuple[Any, ...] | None:
    """What changes whenever the rollup behind dashboard `name` changes its figures: the
    run's time, and how far it has read (a run given the same `now` still moves these)."""
    w = RollupWatermark
    row = (
        await session.execute(
            select(
                w.updated_at, w.last_id, w.last_day, w.gaps, w.fingerprint, w.roster_stamp
            ).where(w.source == SOURCES[name])
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2], repr(row[3]), row[4], row[5])


# -- topics ------------------------------------------------------------------------------------
async def topics(session: AsyncSession, filters: Filters) -> Dashboard:
    """Civil servants' completed hours by month, agency and course category."""
    t = TopicHours.__table__.c  # Core rows: no ORM bookkeeping per row
    query = select(t.month, t.agency, t.category, t.hours, t.completions).where(
        t.year == filters.year, t.month.between(filters.month_from, filters.month_to)
    )
    if filters.agency is not None:
        query = query.where(t.agency == filters.agency)
    rows = (await session.execute(query.order_by(t.month, t.agency, t.category))).all()
    return Dashboard(
        "topics",
        ["year", "month", "agency", "category", "hours", "completions"],
        [
            {
                "year": filters.year,
                "month": month,
                "agency": agency,
                "category": category,
                "hours": round(float(hours), 2),
                "completions": int(n),
            }
            for month, agency, category, hours, n in rows
        ],
        filters,
        await as_of(session, "topics"),
        ["Taipei calendar months; the category is the course's when the completion was read."],
    )


# -- compliance --------------------------------------------------------------------------------
async def compliance(session: AsyncSession, filters: Filters) -> Dashboard:
    """Per agency and requirement: civil servants who met it, by the end of month_to and by
    the requirement's deadline."""
    c = ComplianceRollup.__table__.c  # Core rows: no ORM bookkeeping per row
    query = select(c.agency, c.code, c.title, c.deadline, c.people, c.met, c.met_by_deadline).where(
        c.year == filters.year, c.month == filters.month_to
    )
    if filters.agency is not None:
        query = query.where(c.agency == filters.agency)
    rows = (await session.execute(query.order_by(c.requirement_id, c.agency))).all()
    return Dashboard(
        "compliance",
        [
            "year",
            "agency",
            "requirement",
            "title",
            "deadline",
            "people",
            "met",
            "share_met",
            "met_by_deadline",
            "share_met_by_deadline",
        ],
        [
            {
                "year": filters.year,
                "agency": agency,
                "requirement": code,
                "title": title,
                "deadline": deadline,
                "people": people,
                "met": met,
                "share_met": _share(met, people),
                "met_by_deadline": on_time,
                "share_met_by_deadline": _share(on_time, people),
            }
            for agency, code, title, deadline, people, met, on_time in rows
        ],
        filters,
        await as_of(session, "compliance"),
        [
            "people: active civil servants on the roster the requirement applies to.",
            f"met: hours reached by the end of month {filters.month_to} (cumulative from "
            "January; month_from does not apply).",
        ],
    )


# -- reminders ---------------------------------------------------------------------------------
async def reminders(session: AsyncSession, filters: Filters) -> Dashboard:
    """Completions within 7 days of a reminder, against civil servants not yet reminded."""
    r = ReminderEffect.__table__.c  # Core rows: no ORM bookkeeping per row
    month = func.substr(r.day, 6, 2)
    query = select(
        month,
        r.agency,
        func.count(func.distinct(r.day)),
        func.sum(r.reminded),
        func.sum(r.reminded_completed),
        func.sum(r.control),
        func.sum(r.control_completed),
    ).where(r.day >= filters.first_day, r.day <= filters.last_day)
    if filters.agency is not None:
        query = query.where(r.agency == filters.agency)
    rows = (await session.execute(query.group_by(month, r.agency).order_by(month, r.agency))).all()
    out = []
    for mm, agency, days, a, b, c, d in rows:
        a, b, c, d = int(a or 0), int(b or 0), int(c or 0), int(d or 0)
        out.append(
            {
                "year": filters.year,
                "month": int(mm),
                "agency": agency,
                "reminder_days": int(days),
                "reminded": a,
                "reminded_completed": b,
                "reminded_rate": _share(b, a),
                "not_reminded": c,
                "not_reminded_completed": d,
                "not_reminded_rate": _share(d, c),
            }
        )
    return Dashboard(
        "reminders",
        [
            "year",
            "month",
            "agency",
            "reminder_days",
            "reminded",
            "reminded_completed",
            "reminded_rate",
            "not_reminded",
            "not_reminded_completed",
            "not_reminded_rate",
        ],
        out,
        filters,
        await as_of(session, "reminders"),
        [
            "For each day with reminders: civil servants reminded that day, and how many "
            "completed a course that day or in the 6 days after; against linked civil "
            "servants of the same agency not reminded this year before that window ended, "
            "over the same 7 days. Counts are person-days, summed over the month.",
            "A day is measured 8 days after it, when its window has closed.",
        ],
    )


# -- search ------------------------------------------------------------------------------------
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _compact(query: str) -> str:
    return _NOT_WORD.sub("", query.casefold())


def group_queries(queries: list[tuple[str, int]]) -> list[tuple[str, int, list[str]]]:
    """Zero-result queries as topics to produce: a query joins the first (most searched)
    topic whose words hold it or are held by it ('長照 課程' with '長照'); (topic, searches,
    queries) most searched first."""
    groups: list[tuple[str, str, list[tuple[str, int]]]] = []  # head, compact head, members
    for query, count in sorted(queries, key=lambda q: (-q[1], q[0])):
        key = _compact(query)
        for _, head_key, members in groups:
            if len(key) >= 2 and len(head_key) >= 2 and (key in head_key or head_key in key):
                members.append((query, count))
                break
        else:
            groups.append((query, key, [(query, count)]))
    out = [
        (head, sum(n for _, n in members), [q for q, _ in members]) for head, _, members in groups
    ]
    return sorted(out, key=lambda g: (-g[1], g[0]))


async def search(session: AsyncSession, filters: Filters) -> Dashboard:
    """Top queries, zero-result queries, and the zero-result queries grouped into topics."""
    _no_agency("search", filters)
    # The whole year is read from its own table, by index; a range of months sums months.
    whole_year = (filters.month_from, filters.month_to) == (1, 12)
    s: Any = (SearchYear if whole_year else SearchRollup).__table__.c
    where = [s.year == filters.year]
    if not whole_year:
        where.append(s.month.between(filters.month_from, filters.month_to))
    if whole_year:
        searches, zero = s.searches, s.zero_results
        grouped_by: tuple[Any, ...] = ()
    else:
        searches, zero = func.sum(s.searches), func.sum(s.zero_results)
        grouped_by = (s.normalised,)
    top = (
        await session.execute(
            select(s.normalised, searches, zero)
            .where(*where)
            .group_by(*grouped_by)
            .order_by(searches.desc(), s.normalised)
            .limit(TOP_QUERIES)
        )
    ).all()
    missing = (
        await session.execute(
            select(s.normalised, searches, zero)
            .where(*where, s.zero_results > 0)
            .group_by(*grouped_by)
            .order_by(zero.desc(), s.normalised)
            .limit(GROUPED_FROM)
        )
    ).all()
    rows: list[dict[str, Any]] = [
        {"kind": "top", "query": q, "searches": int(n), "zero_results": int(z), "related": ""}
        for q, n, z in top
    ]
    rows += [
        {
            "kind": "zero_result",
            "query": q,
            "searches": int(n),
            "zero_results": int(z),
            "related": "",
        }
        for q, n, z in missing[:ZERO_QUERIES]
    ]
    grouped = group_queries([(q, int(z)) for q, _, z in missing])
    rows += [
        {
            "kind": "to_produce",
            "query": head,
            "searches": total,
            "zero_results": total,
            "related": " / ".join(members),
        }
        for head, total, members in grouped[:TO_PRODUCE]
    ]
    return Dashboard(
        "search",
        ["kind", "query", "searches", "zero_results", "related"],
        rows,
        filters,
        await as_of(session, "search"),
        [
            "Queries in their normalised form; numbers of four digits or more were masked "
            "when searched.",
            "to_produce: zero-result queries grouped by shared words, the most searched "
            f"{GROUPED_FROM} of them.",
        ],
    )


# -- channels ----------------------------------------------------------------------------------
async def channels(session: AsyncSession, filters: Filters) -> Dashboard:
    """Active members (distinct accounts that wrote) per Taipei week and channel."""
    _no_agency("channels", filters)
    w = ChannelWeek.__table__.c  # Core rows: no ORM bookkeeping per row
    rows = (
        await session.execute(
            select(w.week, w.channel, w.active)
            .where(w.week >= filters.first_day, w.week <= filters.last_day)
            .order_by(w.week, w.channel)
        )
    ).all()
    return Dashboard(
        "channels",
        ["week", "channel", "active_members"],
        [{"week": week, "channel": ch, "active_members": int(n)} for week, ch, n in rows],
        filters,
        await as_of(session, "channels"),
        ["Weeks start on Monday (Taipei) and belong to the month of their Monday."],
    )


# -- campaigns ---------------------------------------------------------------------------------
async def campaigns(session: AsyncSession, filters: Filters) -> Dashboard:
    """Per campaign: eligible, opened, verified, claimed."""
    _no_agency("campaigns", filters)
    f = CampaignFunnel.__table__.c  # Core rows: no ORM bookkeeping per row
    rows = (
        await session.execute(
            select(f.campaign, f.title, f.starts_on, f.eligible, f.opened, f.verified, f.claimed)
            .where(f.starts_on >= filters.first_day, f.starts_on <= filters.last_day)
            .order_by(f.starts_on, f.campaign)
        )
    ).all()
    return Dashboard(
        "campaigns",
        ["campaign", "title", "starts_on", "eligible", "opened", "verified", "claimed"],
        [
            {
                "campaign": slug,
                "title": title,
                "starts_on": starts,
                "eligible": eligible,
                "opened": opened,
                "verified": verified,
                "claimed": claimed,
            }
            for slug, title, starts, eligible, opened, verified, claimed in rows
        ],
        filters,
        await as_of(session, "campaigns"),
        [
            "Campaigns that start in the period, in distinct members: eligible meet the rule "
            "now, a verified phone aside; opened tapped claim; verified tapped with a verified "
            "phone; claimed won, entered or in review (revoked left out)."
        ],
    )


READERS: dict[str, Callable[[AsyncSession, Filters], Awaitable[Dashboard]]] = {
    "topics": topics,
    "compliance": compliance,
    "reminders": reminders,
    "search": search,
    "campaigns": campaigns,
    "channels": channels,
}
