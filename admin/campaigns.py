"""Admin API for prize campaigns: the twin of `edoor campaign ...`, with the same rules.

Campaign files (YAML or JSON) and CSVs travel as the request body; a refused one is a 422
that lists every problem and changes nothing. Masked phone numbers (export, flags) are shown
to admin and auditor only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, require_role
from bot.settings import Settings
from models.base import utcnow
from models.campaigns import claims as campaigns
from models.campaigns.claims import CampaignError
from models.campaigns.spec import (
    CampaignFileError,
    CodesFileError,
    parse_campaign,
    parse_codes,
    parse_redemptions,
)
from models.db import begin_write

log = logging.getLogger("edoor.admin.campaigns")
# Called after a committed draw with the campaign id: queues the winners' messages.
OnDrawn = Callable[[int, dt.datetime], Awaitable[int]]


class Revocation(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class Review(BaseModel):
    approve: bool


class DrawRequest(BaseModel):
    seed: str | None = Field(default=None, min_length=1, max_length=64)


def _refused(message: str, errors: list[str]) -> HTTPException:
    return HTTPException(422, {"message": f"{message}, nothing changed", "errors": errors})


def _sees_phones(caller: Caller) -> bool:
    return bool(caller.roles & {"admin", "auditor"})


def campaign_admin_routes(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    on_drawn: OnDrawn | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/campaigns")
    editors = Depends(require_role(settings, "admin", "marketer"))
    readers = Depends(require_role(settings, "admin", "marketer", "auditor"))
    auditors = Depends(require_role(settings, "admin", "auditor"))
    revokers = Depends(require_role(settings, "admin", "marketer", "auditor"))

    async def body(request: Request) -> bytes:
        data = await request.body()
        if not data:
            raise HTTPException(400, "empty body: send the file as the request body")
        if len(data) > settings.max_import_bytes:
            raise HTTPException(413, f"file larger than {settings.max_import_bytes} bytes")
        return data

    def shown(summary: campaigns.Summary, caller: Caller) -> dict[str, Any]:
        data = summary.as_json()
        if not _sees_phones(caller):
            for flag in data["flags"]:
                flag.pop("phone", None)
        return data

    async def load(session: AsyncSession, slug: str) -> Any:
        found = await campaigns.get_campaign(session, slug=slug)
        if found is None:
            raise HTTPException(404, f"no campaign {slug!r}")
        return found

    @routes.get("")
    async def list_all(caller: Caller = readers) -> list[dict[str, Any]]:
        """Every campaign with its stock, claims and refusals."""
        async with sessionmaker() as session:
            return [
                shown(await campaigns.summary(session, campaign=c), caller)
                for c in await campaigns.list_campaigns(session)
            ]

    async def save(data: bytes, caller: Caller, *, slug: str | None) -> dict[str, Any]:
        try:
            spec = parse_campaign(data)
        except CampaignFileError as exc:
            raise _refused("campaign file refused", exc.errors) from None
        if slug is not None and spec.slug != slug:
            raise _refused("campaign file refused", [f"slug: the file is for {spec.slug!r}"])
        now = clock()
        async with sessionmaker() as session:
            await begin_write(session)
            try:
                if slug is None:
                    campaign = await campaigns.create_campaign(
                        session, spec=spec, actor=caller.name, now=now
                    )
                else:
                    campaign = await campaigns.update_campaign(
                        session, spec=spec, actor=caller.name, now=now
                    )
            except CampaignError as exc:
                raise _refused("campaign file refused", [str(exc)]) from None
            summary = await campaigns.summary(session, campaign=campaign)
            await session.commit()
        return shown(summary, caller)

    @routes.post("", status_code=201)
    async def create(request: Request, caller: Caller = editors) -> dict[str, Any]:
        """Create a campaign from its file (YAML or JSON) in the body."""
        return await save(await body(request), caller, slug=None)

    @routes.get("/{slug}")
    async def show(slug: str, caller: Caller = readers) -> dict[str, Any]:
        """Stock, claimed, remaining, refusals by reason, flagged claims and draws."""
        async with sessionmaker() as session:
            return shown(
                await campaigns.summary(session, campaign=await load(session, slug)), caller
            )

    @routes.put("/{slug}")
    async def update(slug: str, request: Request, caller: Caller = editors) -> dict[str, Any]:
        """Change a campaign from its file (the file's slug must be this one)."""
        return await save(await body(request), caller, slug=slug)

    @routes.post("/{slug}/codes")
    async def codes(slug: str, request: Request, caller: Caller = editors) -> dict[str, Any]:
        """Load the vendor's codes (CSV with a `code` column)."""
        data = await body(request)
        try:
            parsed = parse_codes(data)
        except CodesFileError as exc:
            raise _refused("codes file refused", [str(e) for e in exc.errors]) from None
        async with sessionmaker() as session:
            await begin_write(session)
            campaign = await load(session, slug)
            try:
                added = await campaigns.load_codes(
                    session, campaign=campaign, codes=parsed, actor=caller.name, now=clock()
                )
            except CampaignError as exc:
                raise _refused("codes file refused", [str(exc)]) from None
            left = await campaigns.stock(session, campaign_id=campaign.id)
            await session.commit()
        return {"added": added, "stock": left["total"], "remaining": left["free"]}

    @routes.get("/{slug}/export")
    async def export(slug: str, caller: Caller = auditors) -> Response:
        """The auditors' CSV: one row per claim, phones masked plus their keyed hash."""
        async with sessionmaker() as session:
            rows = await campaigns.export_rows(session, campaign=await load(session, slug))
        return Response(
            campaigns.export_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{slug}-claims.csv"'},
        )

    @routes.post("/{slug}/claims/{claim_id}/revoke")
    async def revoke(
        slug: str, claim_id: int, request_body: Revocation, caller: Caller = revokers
    ) -> dict[str, Any]:
        """Revoke a claim; its code is never handed out again."""
        async with sessionmaker() as session:
            await begin_write(session)
            campaign = await load(session, slug)
            try:
                claim = await campaigns.revoke(
                    session,
                    campaign=campaign,
                    claim_id=claim_id,
                    reason=request_body.reason,
                    actor=caller.name,
                    now=clock(),
                )
            except CampaignError as exc:
                raise HTTPException(409, str(exc)) from None
            await session.commit()
        return {"claim_id": claim.id, "status": claim.status}

    @routes.post("/{slug}/claims/{claim_id}/review")
    async def review(
        slug: str, claim_id: int, request_body: Review, caller: Caller = editors
    ) -> dict[str, Any]:
        """Approve or reject a flagged claim."""
        async with sessionmaker() as session:
            await begin_write(session)
            campaign = await load(session, slug)
            try:
                claim, _ = await campaigns.review(
                    session,
                    campaign=campaign,
                    claim_id=claim_id,
                    approve=request_body.approve,
                    actor=caller.name,
                    now=clock(),
                )
            except CampaignError as exc:
                raise HTTPException(409, str(exc)) from None
            await session.commit()
        return {"claim_id": claim.id, "status": claim.status}

    @routes.post("/{slug}/redemptions")
    async def redemptions(slug: str, request: Request, caller: Caller = editors) -> dict[str, Any]:
        """The vendor's `code,redeemed_at` CSV marks codes redeemed."""
        data = await body(request)
        now = clock()
        try:
            parsed = parse_redemptions(data, now=now)
        except CodesFileError as exc:
            raise _refused("redemptions refused", [str(e) for e in exc.errors]) from None
        async with sessionmaker() as session:
            await begin_write(session)
            campaign = await load(session, slug)
            try:
                count = await campaigns.import_redemptions(
                    session, campaign=campaign, redemptions=parsed, actor=caller.name, now=now
                )
            except CampaignError as exc:
                raise _refused("redemptions refused", [str(exc)]) from None
            await session.commit()
        return {"redeemed": count}

    @routes.post("/{slug}/draw")
    async def draw(
        slug: str, request_body: DrawRequest | None = None, caller: Caller = editors
    ) -> dict[str, Any]:
        """Draw the winners (or redraw unclaimed prizes); the seed is recorded and returned."""
        now = clock()
        async with sessionmaker() as session:
            await begin_write(session)
            campaign = await load(session, slug)
            try:
                result = await campaigns.draw(
                    session,
                    campaign=campaign,
                    actor=caller.name,
                    now=now,
                    seed=request_body.seed if request_body else None,
                )
            except CampaignError as exc:
                raise HTTPException(409, str(exc)) from None
            await session.commit()
        out: dict[str, Any] = {
            "round": result.round,
            "seed": result.seed,
            "entries": result.entries,
            "prizes": result.prizes,
            "winners": [w.id for w in result.winners],
            "lapsed": result.lapsed,
        }
        # The draw is committed and stands whatever happens next: telling the winners is a
        # step of its own, which the campaign-winners job (or /notify) finishes.
        try:
            out["notified"] = await on_drawn(campaign.id, now) if on_drawn is not None else 0
        except Exception as exc:  # any failure: the answer must still say the draw stands
            log.warning("telling the winners of %s failed: %s", slug, type(exc).__name__)
            out["notified"] = None
            out["problem"] = (
                "the draw is recorded, but telling the winners failed: the campaign-winners "
                f"job tells them within a minute, or POST /admin/api/campaigns/{slug}/notify"
            )
        return out

    @routes.post("/{slug}/notify")
    async def notify(slug: str, caller: Caller = editors) -> dict[str, Any]:
        """Tell every drawn winner not told yet (the twin of `edoor campaign notify`); each
        winner is told once, however often this runs."""
        async with sessionmaker() as session:
            campaign = await load(session, slug)
        return {"notified": await on_drawn(campaign.id, clock()) if on_drawn is not None else 0}

    return routes
