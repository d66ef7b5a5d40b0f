"""Who qualifies for a campaign: one rule, evaluated for one member (with the reasons, for the
chat card) or as SQL over every member (for the export, dashboards and broadcast segments).

Both forms are built from the same SQL pieces, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, and_, cast, exists, func, literal, or_, select
from sqlalchemy import String as SqlString
from sqlalchemy.ext.asyncio import AsyncSession

from models.campaigns.spec import Rule
from models.campaigns.tables import Campaign
from models.courses import Course
from models.identity import CivilServant, VerifiedPhone
from models.learning import Completion, Requirement, load_requirements, taipei_day, year_bounds
from models.members import Member

EPSILON = 1e-9

# Verdict.missing kinds, in the order the card lists them.
PHONE, CIVIL_SERVANTS, AGENCY, HOURS, COURSES, REQUIREMENT = (
    "phone",
    "civil_servants_only",
    "agency",
    "min_hours",
    "course_ids",
    "requirement",
)


@dataclass(frozen=True)
class Missing:
    """One rule the member does not meet yet, with what is needed to meet it."""

    kind: str
    hours: float = 0.0  # still to do (min_hours, requirement)
    categories: tuple[str, ...] = ()
    course_ids: tuple[str, ...] = ()  # not completed yet
    requirement: Requirement | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether a member qualifies now; `missing` says exactly why not."""

    missing: tuple[Missing, ...] = field(default_factory=tuple)

    @property
    def eligible(self) -> bool:
        return not self.missing

    @property
    def reasons(self) -> list[str]:
        return [m.kind for m in self.missing]


def rule_of(campaign: Campaign) -> Rule:
    return Rule.from_json(campaign.rule)


def _person(member_id: Any) -> ColumnElement[bool]:
    """Completions of a member, whether the LMS named them by member id or employee id."""
    return or_(
        Completion.member_id == member_id,
        Completion.employee_id.in_(
            select(CivilServant.employee_id).where(CivilServant.member_id == member_id)
        ),
    )


def _since(campaign: Campaign, rule: Rule) -> dt.datetime:
    return rule.since or campaign.starts_at


def hours_done(campaign: Campaign, rule: Rule, member_id: Any) -> Any:
    """Scalar SQL: hours completed between `since` and `ends_at` in the rule's categories."""
    query = (
        select(func.coalesce(func.sum(Completion.hours), 0.0))
        .select_from(Completion)
        .where(
            _person(member_id),
            Completion.completed_at >= _since(campaign, rule),
            Completion.completed_at < campaign.ends_at,
        )
    )
    if rule.categories:
        query = query.join(Course, Course.id == Completion.course_id).where(
            Course.category.in_(rule.categories)
        )
    return query.scalar_subquery()


def course_done(course_id: str, member_id: Any, until: dt.datetime) -> ColumnElement[bool]:
    return exists().where(
        _person(member_id), Completion.course_id == course_id, Completion.completed_at < until
    )


def _tag_match(tag: str) -> ColumnElement[bool]:
    # Tags are a JSON list: SQLite keeps it as escaped JSON text, PostgreSQL as jsonb (its text
    # form keeps the characters); either spelling of the quoted tag matches.
    text = cast(Course.tags, SqlString)
    return or_(text.contains(json.dumps(tag)), text.contains(json.dumps(tag, ensure_ascii=False)))


def requirement_hours(requirement: Requirement, member_id: Any, now: dt.datetime) -> Any:
    """Scalar SQL: hours counting toward `requirement` in this Taipei year (as models.learning
    counts them: any course, its ids, categories or tags)."""
    start, end = year_bounds(taipei_day(now).year)
    query = (
        select(func.coalesce(func.sum(Completion.hours), 0.0))
        .select_from(Completion)
        .outerjoin(Course, Course.id == Completion.course_id)
        .where(_person(member_id), Completion.completed_at >= start, Completion.completed_at < end)
    )
    if requirement.scope != "any":
        counts = [
            Completion.course_id.in_(sorted(requirement.course_ids))
            if requirement.course_ids
            else None,
            Course.category.in_(sorted(requirement.categories)) if requirement.categories else None,
            *(_tag_match(t) for t in sorted(requirement.tags)),
        ]
        conditions = [c for c in counts if c is not None]
        query = query.where(or_(*conditions) if conditions else literal(False))
    return query.scalar_subquery()


async def find_requirement(
    session: AsyncSession, *, code: str | None, now: dt.datetime
) -> Requirement | None:
    if not code:
        return None
    return next((r for r in await load_requirements(session, now=now) if r.code == code), None)


def _conditions(
    campaign: Campaign,
    rule: Rule,
    requirement: Requirement | None,
    member_id: Any,
    now: dt.datetime,
) -> list[tuple[str, ColumnElement[bool]]]:
    """(kind, SQL condition) for every rule the campaign sets, over a member id expression."""
    out: list[tuple[str, ColumnElement[bool]]] = [
        (PHONE, exists().where(VerifiedPhone.member_id == member_id))
    ]
    if rule.civil_servants_only:
        out.append(
            (
                CIVIL_SERVANTS,
                exists().where(Member.id == member_id, Member.is_civil_servant.is_(True)),
            )
        )
    if rule.agencies:
        out.append(
            (
                AGENCY,
                exists().where(
                    CivilServant.member_id == member_id,
                    CivilServant.active.is_(True),
                    CivilServant.agency.in_(rule.agencies),
                ),
            )
        )
    if rule.min_hours > 0:
        out.append(
            (HOURS, cast(hours_done(campaign, rule, member_id), Float) >= rule.min_hours - EPSILON)
        )
    for course_id in rule.course_ids:
        out.append((COURSES, course_done(course_id, member_id, campaign.ends_at)))
    if rule.requirement:
        if requirement is None:
            out.append((REQUIREMENT, literal(False)))
        else:
            done = cast(requirement_hours(requirement, member_id, now), Float)
            out.append((REQUIREMENT, done >= requirement.hours - EPSILON))
    return out


async def eligible_member_ids(
    session: AsyncSession, *, campaign: Campaign, now: dt.datetime, phone: bool = True
) -> Select[Any]:
    """SQL selecting the ids of every member who qualifies for `campaign` now (the broadcast
    segment `campaign_eligible`, the export's counts). Not executed here. `phone=False`
    leaves out the verified phone: who has earned the prize (the dashboard's funnel top)."""
    rule = rule_of(campaign)
    requirement = await find_requirement(session, code=rule.requirement, now=now)
    conditions = _conditions(campaign, rule, requirement, Member.id, now)
    return select(Member.id).where(and_(*(c for kind, c in conditions if phone or kind != PHONE)))


async def evaluate(
    session: AsyncSession, *, campaign: Campaign, member_id: int, now: dt.datetime
) -> Verdict:
    """Whether `member_id` qualifies for `campaign` now, and exactly what is missing if not."""
    rule = rule_of(campaign)
    requirement = await find_requirement(session, code=rule.requirement, now=now)
    me = literal(member_id)
    conditions = _conditions(campaign, rule, requirement, me, now)
    extra: list[Any] = []
    if rule.min_hours > 0:
        extra.append(hours_done(campaign, rule, me))
    if requirement is not None:
        extra.append(requirement_hours(requirement, me, now))
    row = (await session.execute(select(*(c for _, c in conditions), *extra))).one()
    met = list(row[: len(conditions)])
    values = list(row[len(conditions) :])
    done_hours = float(values.pop(0)) if rule.min_hours > 0 else 0.0
    req_hours = float(values.pop(0)) if requirement is not None else 0.0
    missing: list[Missing] = []
    courses_left = tuple(
        cid
        for cid, ok in zip(
            rule.course_ids,
            [ok for (kind, _), ok in zip(conditions, met, strict=True) if kind == COURSES],
            strict=True,
        )
        if not ok
    )
    for kind in (PHONE, CIVIL_SERVANTS, AGENCY, HOURS, COURSES, REQUIREMENT):
        failed = [ok for (k, _), ok in zip(conditions, met, strict=True) if k == kind and not ok]
        if not failed:
            continue
        if kind == HOURS:
            missing.append(
                Missing(kind, hours=rule.min_hours - done_hours, categories=rule.categories)
            )
        elif kind == COURSES:
            missing.append(Missing(kind, course_ids=courses_left))
        elif kind == REQUIREMENT:
            left = (requirement.hours - req_hours) if requirement else 0.0
            missing.append(Missing(kind, hours=left, requirement=requirement))
        else:
            missing.append(Missing(kind))
    return Verdict(tuple(missing))
