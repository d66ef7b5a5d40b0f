"""Admin API for broadcasts (marketers and admins): create from a broadcast file (JSON),
list, show with figures, live segment count, preview, test send, pause, resume, cancel and
pick an A/B winner. The same rules as `edoor broadcast ...`; every change is audited, and a
refused file is a 422 naming the field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, require_role
from bot import broadcasts as bot_bc
from bot.i18n import Catalog
from bot.ports import ChannelPreview
from bot.settings import Settings
from media.images import MAX_IMAGE_BYTES, ImageRefused, image_url
from models import broadcasts as bc
from models.base import utcnow
from models.identity import record_audit


class TestSend(BaseModel):
    member_id: int


class Pick(BaseModel):
    variant: str


def _refused(exc: bc.BroadcastError) -> HTTPException:
    return HTTPException(422, {"field": exc.field, "problem": exc.problem, "message": str(exc)})


# Database ids (32-bit on PostgreSQL): anything larger is a client's mistake (422), not a 500.
BroadcastId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def broadcast_admin_routes(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    channels: Sequence[str],
    render: ChannelPreview,
    wake: Callable[[], None] | None = None,
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/broadcasts")
    marketer = Depends(require_role(settings, "marketer"))
    # Auditors read everything but send nothing (DESIGN.md, "Who may do what").
    readers = Depends(require_role(settings, "marketer", "auditor"))

    async def audit(
        session: AsyncSession, caller: Caller, action: str, broadcast_id: int, details: Any
    ) -> None:
        await record_audit(
            session,
            actor=f"admin:{caller.name}",
            action=action,
            subject=f"broadcast:{broadcast_id}",
            details=details,
            now=utcnow(),
        )

    async def load(session: AsyncSession, broadcast_id: int) -> bc.Broadcast:
        row = await bc.get_broadcast(session, broadcast_id)
        if row is None:
            raise HTTPException(404, f"no broadcast {broadcast_id}")
        return row

    @routes.get("")
    async def index(caller: Caller = readers) -> dict[str, Any]:
        """The latest broadcasts, newest first."""
        async with sessionmaker() as session:
            rows = await bc.list_broadcasts(session)
            return {
                "broadcasts": [
                    {
                        "id": r.id,
                        "name": r.name,
                        "status": "paused" if r.paused else r.status,
                        "send_at": bot_bc.taipei(r.send_at),
                        "planned": r.queued,
                    }
                    for r in rows
                ]
            }

    @routes.post("", status_code=201)
    async def create(
        body: dict[str, Any] = Body(...),  # noqa: B008 (FastAPI's way)
        caller: Caller = marketer,
    ) -> dict[str, Any]:
        """Create a broadcast from a broadcast file (as JSON); 422 names a refused field."""
        now = utcnow()
        async with sessionmaker() as session:
            try:
                row = await bc.create_broadcast(session, body, created_by=caller.name, now=now)
            except bc.BroadcastError as exc:
                raise _refused(exc) from None
            await audit(session, caller, "broadcast.create", row.id, {"name": row.name})
            await session.commit()
            return {"id": row.id, "status": row.status, "send_at": bot_bc.taipei(row.send_at)}

    @routes.post(
        "/images",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def image(request: Request, caller: Caller = marketer) -> dict[str, Any]:
        """Keep a PNG or JPEG (at most 1 MB, the body itself) for a broadcast's `image`;
        answers its public URL."""
        data = await request.body()
        if len(data) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"image larger than {MAX_IMAGE_BYTES // 1024} KB")
        try:
            url = image_url(settings, data)
        except ImageRefused as exc:
            raise HTTPException(422, str(exc)) from None
        async with sessionmaker() as session:
            await record_audit(
                session,
                actor=f"admin:{caller.name}",
                action="broadcast.image",
                subject=f"media:{url.rsplit('/', 1)[-1]}",
                details={"bytes": len(data)},
                now=utcnow(),
            )
            await session.commit()
        return {"url": url}

    @routes.post("/count")
    async def count(
        body: dict[str, Any] = Body(...),  # noqa: B008
        caller: Caller = marketer,
    ) -> dict[str, Any]:
        """The live count of a segment (`{"segment": {...}}`)."""
        from models import segments

        try:
            tree = segments.validate(body.get("segment"))
        except segments.SegmentError as exc:
            raise HTTPException(422, {"field": exc.field, "problem": exc.problem}) from None
        async with sessionmaker() as session:
            try:
                n = await bc.count_segment(session, tree, now=utcnow(), channels=channels)
            except bc.BroadcastError as exc:
                raise _refused(exc) from None
        return {"count": n}

    @routes.get("/{broadcast_id}")
    async def show(broadcast_id: BroadcastId, caller: Caller = readers) -> dict[str, Any]:
        """Status and figures, with LINE's per-unit statistics where LINE gives them."""
        async with sessionmaker() as session:
            row = await load(session, broadcast_id)
            out = await bot_bc.describe(session, row)
        out["line_insight"] = await bot_bc.line_insight(settings, row, now=utcnow())
        return out

    @routes.get("/{broadcast_id}/count")
    async def count_of(broadcast_id: BroadcastId, caller: Caller = readers) -> dict[str, Any]:
        async with sessionmaker() as session:
            row = await load(session, broadcast_id)
            try:
                n = await bc.count_segment(
                    session, row.spec["segment"], now=utcnow(), channels=channels
                )
            except bc.BroadcastError as exc:
                raise _refused(exc) from None
        return {"count": n}

    @routes.get("/{broadcast_id}/preview")
    async def preview(broadcast_id: BroadcastId, caller: Caller = readers) -> dict[str, Any]:
        """Each variant and language as the LINE and Telegram renderers send it."""
        async with sessionmaker() as session:
            row = await load(session, broadcast_id)
            return await bot_bc.preview(
                session, row, catalog=catalog, settings=settings, render=render
            )

    @routes.post("/{broadcast_id}/test")
    async def test(
        broadcast_id: BroadcastId, body: TestSend, caller: Caller = marketer
    ) -> dict[str, Any]:
        """Send every variant, marked as a test, to one member's own chats."""
        now = utcnow()
        async with sessionmaker() as session:
            row = await load(session, broadcast_id)
            try:
                queued = await bot_bc.test_send(
                    session,
                    row,
                    member_id=body.member_id,
                    catalog=catalog,
                    settings=settings,
                    channels=channels,
                    now=now,
                )
            except bc.BroadcastError as exc:
                raise _refused(exc) from None
            await audit(session, caller, "broadcast.test", row.id, {"member": body.member_id})
            await session.commit()
        if wake is not None:
            wake()
        return {"queued": queued}

    def change(action: str, fn: Any) -> Any:
        async def endpoint(broadcast_id: BroadcastId, caller: Caller = marketer) -> dict[str, Any]:
            now = utcnow()
            async with sessionmaker() as session:
                await load(session, broadcast_id)
                try:
                    rows = await fn(session, broadcast_id, now=now)
                except bc.BroadcastError as exc:
                    raise _refused(exc) from None
                await audit(session, caller, f"broadcast.{action}", broadcast_id, {"rows": rows})
                await session.commit()
                row = await load(session, broadcast_id)
                return {
                    "id": broadcast_id,
                    "status": "paused" if row.paused else row.status,
                    "rows": rows,
                }

        endpoint.__name__ = action
        return endpoint

    routes.post("/{broadcast_id}/pause")(change("pause", bc.pause))
    routes.post("/{broadcast_id}/resume")(change("resume", bc.resume))
    routes.post("/{broadcast_id}/cancel")(change("cancel", bc.cancel))

    @routes.post("/{broadcast_id}/pick")
    async def pick(
        broadcast_id: BroadcastId, body: Pick, caller: Caller = marketer
    ) -> dict[str, Any]:
        """The marketer picks the variant that the rest of the segment gets."""
        now = utcnow()
        async with sessionmaker() as session:
            await load(session, broadcast_id)
            try:
                row = await bc.pick_winner(session, broadcast_id, variant=body.variant, now=now)
            except bc.BroadcastError as exc:
                raise _refused(exc) from None
            await audit(session, caller, "broadcast.pick", row.id, {"variant": body.variant})
            await session.commit()
            return {"id": row.id, "winner": row.winner}

    return routes
