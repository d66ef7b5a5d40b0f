"""Admin API for the course catalog: import (JSON/CSV) and course passwords."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, any_role, require_role
from bot.settings import Settings
from models.base import utcnow
from models.catalog_import import CatalogError, parse_catalog
from models.courses import (
    Course,
    apply_catalog,
    forget_unlocks,
    get_course,
    hash_course_password,
)
from models.identity import record_audit
from models.search.index import Filters
from models.search.service import SearchService

MAX_UPLOAD = 50 * 1024 * 1024


class PasswordChange(BaseModel):
    password: str | None = Field(default=None, min_length=4, max_length=128)


async def course_page(
    session: AsyncSession, *, audience: str | None, offset: int, limit: int
) -> dict[str, Any]:
    where: list[Any] = [Course.retired.is_(False)]
    if audience:
        where.append(Course.audience == audience)
    total = await session.scalar(select(func.count()).select_from(Course).where(*where))
    rows = await session.scalars(
        select(Course).where(*where).order_by(Course.id).offset(offset).limit(limit)
    )
    return {
        "total": int(total or 0),
        "courses": [
            {
                "id": c.id,
                "title": c.title,
                "category": c.category,
                "hours": c.hours,
                "audience": c.audience,
                "password_protected": c.password_protected,
                "tags": list(c.tags or []),
            }
            for c in rows
        ],
    }


def search_preview(
    search: SearchService, q: str, *, audience: str | None, limit: int
) -> dict[str, Any]:
    result = search.search(q, filters=Filters(audience=audience), limit=limit)
    return {
        "query": q,
        "normalised": result.normalised,
        "total": result.total,
        "corrected": result.corrected,
        "suggestions": result.suggestions,
        "hits": [
            {
                "id": h.id,
                "title": h.title,
                "category": h.category,
                "hours": h.hours,
                "audience": h.audience,
                "score": round(h.score, 3),
            }
            for h in result.hits
        ],
    }


def course_admin_routes(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    search: SearchService,
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/courses")
    admin_only = Depends(require_role(settings, "admin"))
    readers = Depends(any_role(settings))

    @routes.get("")
    async def index(
        audience: Annotated[str | None, Query(pattern="^(public|civil_servant)$")] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        caller: Caller = readers,
    ) -> dict[str, Any]:
        """Active courses (id order) with audience and whether a password protects them."""
        async with sessionmaker() as session:
            return await course_page(session, audience=audience, offset=offset, limit=limit)

    @routes.get("/search")
    async def preview(
        q: Annotated[str, Query(min_length=1, max_length=200)],
        audience: Annotated[str | None, Query(pattern="^(public|civil_servant)$")] = None,
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
        caller: Caller = readers,
    ) -> dict[str, Any]:
        """What a person typing `q` in the chat would find (the chat's own search; the
        preview is not logged as a search)."""
        return search_preview(search, q, audience=audience, limit=limit)

    @routes.post("/import")
    async def import_catalog(
        request: Request,
        skip_invalid: bool = False,
        retire_missing: bool = False,
        fmt: Annotated[str | None, Query(alias="format", pattern="^(json|csv)$")] = None,
        caller: Caller = admin_only,
    ) -> dict[str, Any]:
        """Upsert the catalog in the body; 422 with every bad row when it is refused."""
        data = await request.body()
        if not data:
            raise HTTPException(400, "empty body: send the catalog file as the request body")
        if len(data) > MAX_UPLOAD:
            raise HTTPException(413, "catalog larger than 50 MB")
        kind = fmt or ("csv" if "csv" in request.headers.get("content-type", "") else None)
        try:
            parsed = parse_catalog(data, fmt=kind, name="upload")  # type: ignore[arg-type]
            async with sessionmaker() as session:
                report = await apply_catalog(
                    session,
                    parsed=parsed,
                    now=utcnow(),
                    skip_invalid=skip_invalid,
                    retire_absent=retire_missing,
                )
                await record_audit(
                    session,
                    actor=caller.name,
                    action="courses.import",
                    subject="catalog",
                    details=report.__dict__,
                    now=utcnow(),
                )
                await session.commit()
                await search.reload(session)
        except CatalogError as exc:
            raise HTTPException(
                422,
                {
                    "message": "catalog refused, nothing changed",
                    "errors": [str(e) for e in exc.errors],
                },
            ) from None
        return {**report.__dict__, "skipped_rows": [str(e) for e in parsed.errors]}

    @routes.put("/{course_id}/password")
    async def set_password(
        course_id: str, body: PasswordChange, caller: Caller = admin_only
    ) -> dict[str, Any]:
        """Set, change or (with null) remove a course's password; stored as an argon2 hash."""
        async with sessionmaker() as session:
            course = await get_course(session, course_id=course_id)
            if course is None:
                raise HTTPException(404, "no such course")
            course.password_hash = hash_course_password(body.password) if body.password else None
            await forget_unlocks(session, course_ids=[course_id])
            await record_audit(
                session,
                actor=caller.name,
                action="courses.password",
                subject=course_id,
                details={"protected": body.password is not None},
                now=utcnow(),
            )
            await session.commit()
        return {"id": course_id, "password_protected": body.password is not None}

    @routes.delete("/{course_id}/password/lock")
    async def lift_password_lock(course_id: str, caller: Caller = admin_only) -> dict[str, Any]:
        """Lift a course's password pause (too many wrong tries from everyone) before it ends."""
        async with sessionmaker() as session:
            course = await get_course(session, course_id=course_id)
            if course is None:
                raise HTTPException(404, "no such course")
            was = course.password_locked_until
            course.password_locked_until = None
            await record_audit(
                session,
                actor=caller.name,
                action="courses.password_lock_lifted",
                subject=course_id,
                details={"was_locked": was is not None and was > utcnow()},
                now=utcnow(),
            )
            await session.commit()
        return {"id": course_id, "password_locked_until": None}

    return routes
