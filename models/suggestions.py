"""Courses to suggest for a requirement: the most popular open courses that count toward it.

One rule for the reminder digests (notifications) and 我的學習 (handlers), which may not import
each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.courses import Course
from models.learning import Requirement

SUGGESTIONS = 20
MAX_ACTION_BYTES = 64  # a "course.open:<id>" button must fit Telegram's callback_data


async def suggest_courses(
    session: AsyncSession, requirements: Sequence[Requirement], *, limit: int = SUGGESTIONS
) -> dict[int, list[tuple[str, str]]]:
    """{requirement id: [(course id, title), ...]} the most popular open courses that count."""
    out: dict[int, list[tuple[str, str]]] = {r.id: [] for r in requirements}
    rows = await session.execute(
        select(Course.id, Course.title, Course.category, Course.tags)
        .where(Course.retired.is_(False), Course.password_hash.is_(None))
        .order_by(Course.popularity.desc(), Course.id)
    )
    for cid, title, category, tags in rows:
        if len(f"course.open:{cid}".encode()) > MAX_ACTION_BYTES:
            continue
        for r in requirements:
            picks = out[r.id]
            if len(picks) < limit and r.counts(cid, category, tags or (), title):
                picks.append((cid, title))
    return out


async def first_courses(
    session: AsyncSession, *, requirements: Sequence[Requirement]
) -> dict[int, str | None]:
    """{requirement id: the most popular open course that counts, or None}."""
    found = await suggest_courses(session, requirements, limit=1)
    return {rid: picks[0][0] if picks else None for rid, picks in found.items()}
