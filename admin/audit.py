"""Admin API for the audit log (admin and auditor): filtered JSON or CSV, and the chain check."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import MAX_ID, Caller, require_role
from bot.i18n import TAIPEI, taipei_time
from bot.settings import Settings
from models.audit import AuditLog, list_audit, verify_chain

MAX_ROWS = 10_000
CSV_COLUMNS = ("id", "created_at", "actor", "action", "subject", "details", "row_hash")


def entry_view(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at.isoformat(),
        "created_taipei": taipei_time(row.created_at, "%Y-%m-%d %H:%M:%S"),
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "row_hash": row.row_hash,
    }


def to_csv(rows: list[AuditLog]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.id,
                row.created_at.isoformat(),
                row.actor,
                row.action,
                row.subject,
                json.dumps(row.details, ensure_ascii=False, sort_keys=True),
                row.row_hash,
            ]
        )
    return out.getvalue()


class AuditFilters:
    """The query filters every audit view takes (API and console)."""

    def __init__(
        self,
        actor: Annotated[str | None, Query(max_length=64)] = None,
        action: Annotated[str | None, Query(max_length=64, description="a prefix")] = None,
        subject: Annotated[str | None, Query(max_length=128)] = None,
        since: Annotated[
            str | None, Query(max_length=40, description="ISO 8601; no offset = Asia/Taipei")
        ] = None,
        until: Annotated[
            str | None, Query(max_length=40, description="ISO 8601; no offset = Asia/Taipei")
        ] = None,
        before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 100,
    ) -> None:
        self.actor, self.action, self.subject = actor or None, action or None, subject or None
        self.since, self.until = _moment(since, "since"), _moment(until, "until")
        self.before_id, self.limit = before_id, limit

    async def rows(self, session: AsyncSession) -> list[AuditLog]:
        return await list_audit(
            session,
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            since=self.since,
            until=self.until,
            before_id=self.before_id,
            limit=self.limit,
        )


def _moment(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 date or time (empty: no bound); without an offset it is Asia/Taipei."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name}: not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TAIPEI)
    return moment.astimezone(dt.UTC)


def audit_admin_routes(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/audit")
    readers = Depends(require_role(settings, "admin", "auditor"))

    @routes.get("", response_model=None)
    async def index(
        filters: Annotated[AuditFilters, Depends()],
        fmt: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
        caller: Caller = readers,
    ) -> dict[str, Any] | Response:
        """Audit entries, newest first (filters: actor, action prefix, subject, time)."""
        async with sessionmaker() as session:
            rows = await filters.rows(session)
        if fmt == "csv":
            return Response(
                to_csv(rows),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
            )
        return {"entries": [entry_view(r) for r in rows]}

    @routes.get("/verify")
    async def verify(caller: Caller = readers) -> dict[str, Any]:
        """Check the whole chain; names the first broken link."""
        async with sessionmaker() as session:
            report = await verify_chain(session)
        return {"ok": report.ok, **report.__dict__}

    return routes
