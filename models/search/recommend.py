"""為你推薦 / Recommended for you: courses from what a member saved, completed and searched
for and (for verified civil servants) still owes in mandatory hours; popular and short
courses otherwise.

Signals, strongest first: mandatory requirements with hours missing this Taipei year
(civil servants only); then, taking turns, courses like the ones saved, like the ones
completed, and the best matches of the member's recent searches (member_search_interest:
the anonymous search log deliberately has no member id). What is left of the list is
filled with popular courses and courses of under an hour, so a new member gets those.
Never recommended: retired courses (not in the index), courses already completed,
courses already saved (except for a mandatory gap, where a saved course is the best
advice), and civil-servant-only courses to anyone who is not a verified civil servant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.courses import (
    Course,
    active_course_ids,
    popular_courses,
    recent_searches,
    saved_course_ids,
    short_courses,
)
from models.learning import Completion, Requirement, get_person, member_progress
from models.search.index import Filters, SearchIndex

# How many saved or completed courses seed "more like this" (the most recent ones).
SEEDS = 3
PER_GAP = 2
GAPS = 3  # at most this many gap courses in one list


@dataclass(frozen=True)
class Recommendation:
    """One recommended course and why: `reason` is gap, saved, completed, searched, popular
    or short."""

    id: str
    title: str
    category: str
    hours: float
    reason: str
    because: str = ""  # the saved / completed course's title, or the words searched
    requirement: Requirement | None = None  # for a gap
    missing_hours: float = 0.0


async def completed_course_ids(session: AsyncSession, *, member_id: int) -> list[str]:
    """Every course the member completed (by member id or roster employee id), newest first."""
    person = await get_person(session, member_id=member_id)
    who = [Completion.member_id == member_id]
    if person.employee_id:
        who.append(Completion.employee_id == person.employee_id)
    rows = await session.execute(
        select(Completion.course_id, Completion.completed_at)
        .where(or_(*who))
        .order_by(Completion.completed_at.desc(), Completion.id.desc())
    )
    return list(dict.fromkeys(course_id for course_id, _ in rows.all()))


async def recommend(
    session: AsyncSession,
    index: SearchIndex,
    *,
    member_id: int,
    civil_servant: bool,
    now: dt.datetime,
    limit: int = 5,
) -> list[Recommendation]:
    """Up to `limit` courses for this member, strongest signal first, no course twice."""
    filters = Filters(audience=None if civil_servant else "public")
    completed = await completed_course_ids(session, member_id=member_id)
    saved = await saved_course_ids(session, member_id=member_id)
    out: list[Recommendation] = []
    taken: set[str] = set(completed)

    def room() -> bool:
        return len(out) < limit

    if civil_servant:
        # One course per open requirement first, then a second round; at most GAPS of the
        # list, so the member's own interests still show.
        rounds = []
        for progress in await member_progress(session, member_id=member_id, now=now):
            req = progress.requirement
            if not progress.open or req.scope == "any":
                continue
            hits = index.matching(
                categories=req.categories,
                tags=req.tags,
                course_ids=req.course_ids,
                title_keywords=req.title_keywords,
                filters=filters,
                exclude=taken,
                limit=PER_GAP,
            )
            rounds.append((progress, hits))
        cap = min(GAPS, limit)
        for rank in range(PER_GAP):
            for progress, hits in rounds:
                if rank >= len(hits) or len(out) >= cap or hits[rank].id in taken:
                    continue
                h = hits[rank]
                taken.add(h.id)
                out.append(
                    Recommendation(
                        h.id,
                        h.title,
                        h.category,
                        h.hours,
                        "gap",
                        requirement=progress.requirement,
                        missing_hours=round(progress.needed - progress.done, 1),
                    )
                )
    taken.update(saved)
    # Round-robin over the seeds (saved, then completed, then searched), so each gets a turn.
    lists = []
    for reason, seed in [
        *(("saved", i) for i in saved[:SEEDS]),
        *(("completed", i) for i in completed[:SEEDS]),
    ]:
        doc = index.get(seed)
        if doc is not None:
            hits = index.similar(seed, filters=filters, exclude=taken, limit=limit)
            lists.append((reason, doc.title, hits))
    for query in await recent_searches(session, member_id=member_id, limit=SEEDS):
        # Over-fetch: what is taken (completed, saved) is skipped below.
        found = index.search(query, filters=filters, limit=limit + len(taken))
        lists.append(("searched", query, [h for h in found.hits if h.id not in taken]))
    for rank in range(limit):
        for reason, title, hits in lists:
            if rank < len(hits) and room() and hits[rank].id not in taken:
                h = hits[rank]
                taken.add(h.id)
                out.append(
                    Recommendation(h.id, h.title, h.category, h.hours, reason, because=title)
                )
    if room():
        audience = filters.audience
        want = min(limit + len(taken), 100)
        popular = await popular_courses(session, limit=want, audience=audience)
        short = await short_courses(session, limit=want, audience=audience)
        fill: list[tuple[str, Course]] = []
        # Alternate: a popular course, a short one, ...
        for i in range(want):
            fill.extend(
                (reason, found[i])
                for reason, found in (("popular", popular), ("short", short))
                if i < len(found)
            )
        for reason, course in fill:
            if room() and course.id not in taken and index.get(course.id) is not None:
                taken.add(course.id)
                out.append(
                    Recommendation(course.id, course.title, course.category, course.hours, reason)
                )
    # The index is rebuilt after imports; a course retired since then is dropped here.
    live = await active_course_ids(session, course_ids=[r.id for r in out])
    return [r for r in out if r.id in live]
