"""Admin API for what the training office loads: the roster, completions and requirements.

Imports take the file as the request body (as the course import does), reuse the CLI's
rules (models.roster_import, models.completions_import, models.learning) and are
all-or-nothing: a refused file changes nothing and the answer lists every bad row.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, any_role, require_role
from bot.settings import Settings
from models.audit import record_audit
from models.base import utcnow
from models.completions_import import CompletionsError, import_completions
from models.courses import Course
from models.learning import (
    RequirementsError,
    import_requirements,
    load_requirements,
    parse_requirements,
)
from models.phones import parse_regions
from models.pii import PiiVault
from models.roster_import import RosterError, import_roster
from models.tabular import RefusedFile

MAX_UPLOAD = 50 * 1024 * 1024
SHOWN_MATCHES = 50


async def _body(request: Request) -> bytes:
    data = await request.body()
    if not data:
        raise HTTPException(400, "empty body: send the file as the request body")
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, "file larger than 50 MB")
    return data


def _refused(exc: RefusedFile) -> HTTPException:
    return HTTPException(
        422,
        {"message": f"{exc.what} refused, nothing changed", "errors": [str(e) for e in exc.errors]},
    )


async def requirement_matches(session: AsyncSession) -> list[dict[str, Any]]:
    """Every active requirement with the active courses that count toward it; a requirement
    that no active course can satisfy is flagged (`unmatched`)."""
    requirements = await load_requirements(session, now=utcnow())
    courses = (
        await session.execute(
            select(Course.id, Course.title, Course.category, Course.tags, Course.hours)
            .where(Course.retired.is_(False))
            .order_by(Course.id)
        )
    ).all()
    out = []
    for req in requirements:
        matching = [c for c in courses if req.counts(c.id, c.category, c.tags or ())]
        out.append(
            {
                "code": req.code,
                "title": req.title,
                "title_en": req.title_en,
                "hours": req.hours,
                "scope": req.scope,
                "deadline": req.deadline,
                "categories": sorted(req.categories),
                "tags": sorted(req.tags),
                "course_ids": sorted(req.course_ids),
                "agencies": sorted(req.agencies),
                "matching_count": len(matching),
                "matching_hours": round(sum(c.hours for c in matching), 2),
                "matching": [
                    {"id": c.id, "title": c.title, "category": c.category, "hours": c.hours}
                    for c in matching[:SHOWN_MATCHES]
                ],
                "unmatched": not matching,
                "short_of_hours": bool(matching) and sum(c.hours for c in matching) < req.hours,
            }
        )
    return out


def learning_admin_routes(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], vault: PiiVault
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api")
    admin_only = Depends(require_role(settings, "admin"))
    readers = Depends(any_role(settings))

    @routes.post("/imports/roster")
    async def roster(request: Request, caller: Caller = admin_only) -> dict[str, Any]:
        """Replace the civil-servant roster with the CSV in the body."""
        data = await _body(request)
        regions = parse_regions(settings.phone_allowed_regions)
        try:
            async with sessionmaker() as session:
                result = await import_roster(
                    session,
                    vault=vault,
                    data=data,
                    regions=regions,
                    now=utcnow(),
                    actor=caller.name,
                )
                await session.commit()
        except RosterError as exc:
            raise _refused(exc) from None
        return {k: v for k, v in result.__dict__.items() if k != "members_checked"}

    @routes.post("/imports/completions")
    async def completions(request: Request, caller: Caller = admin_only) -> dict[str, Any]:
        """Add the completions in the CSV body (re-importing the same rows is harmless)."""
        data = await _body(request)
        try:
            async with sessionmaker() as session:
                result = await import_completions(session, data, now=utcnow())
                await record_audit(
                    session,
                    actor=caller.name,
                    action="completions.imported",
                    subject="completions",
                    details=dict(result.__dict__),
                    now=utcnow(),
                )
                await session.commit()
        except CompletionsError as exc:
            raise _refused(exc) from None
        return dict(result.__dict__)

    @routes.get("/requirements")
    async def requirements(caller: Caller = readers) -> dict[str, Any]:
        """The requirements, which courses each matches, and those no course can satisfy."""
        async with sessionmaker() as session:
            out = await requirement_matches(session)
            await session.commit()  # the shipped defaults, stored on first use
        return {"requirements": out, "unmatched": [r["code"] for r in out if r["unmatched"]]}

    @routes.post("/requirements")
    async def load(request: Request, caller: Caller = admin_only) -> dict[str, Any]:
        """Load requirements from the YAML or JSON body; codes absent are switched off."""
        data = await _body(request)
        try:
            text = data.decode("utf-8-sig")
            raw = json.loads(text) if text.lstrip().startswith(("{", "[")) else yaml.safe_load(text)
            records = parse_requirements(raw)
            if not records:
                raise RequirementsError("the file holds no requirement")
        except (RequirementsError, ValueError, yaml.YAMLError) as exc:
            raise HTTPException(422, f"requirements refused, nothing changed: {exc}") from None
        async with sessionmaker() as session:
            out = await import_requirements(session, records, now=utcnow())
            await record_audit(
                session,
                actor=caller.name,
                action="requirements.imported",
                subject="requirements",
                details=out,
                now=utcnow(),
            )
            await session.commit()
        return out

    return routes
