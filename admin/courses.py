"""Admin API for the course catalog: import (JSON/CSV) and course passwords."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, require_role
from bot.settings import Settings
from models.base import utcnow
from models.catalog_import import CatalogError, parse_catalog
from models.courses import apply_catalog, forget_unlocks, get_course, hash_course_password
from models.identity import record_audit
from models.search.service import SearchService

MAX_UPLOAD = 50 * 1024 * 1024


class PasswordChange(BaseModel):
    password: str | None = Field(default=None, min_length=4, max_length=128)


def course_admin_routes(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    search: SearchService,
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/courses")
    admin_only = Depends(require_role(settings, "admin"))

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
