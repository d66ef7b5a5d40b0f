"""QR codes of prize vouchers: a PNG made by segno, served from a signed, expiring link.

LINE shows images only from https URLs it fetches itself, so a won prize's QR code is a
`/media/prize/<claim id>.png?exp=..&sig=..` link (MediaSigner; the signature names the claim,
so a link cannot be moved to another one); Telegram gets the PNG bytes, drawn by its renderer
(bot.qr) from the code the reply names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ports import LinkSigner
from bot.qr import qr_png
from bot.settings import Settings
from media.files import media_url
from models.base import utcnow
from models.campaigns.claims import HOLDS_PRIZE
from models.campaigns.tables import CampaignClaim, VoucherCode

# A prize link lives long enough to show the code at the counter later that day.
QR_LINK_TTL = dt.timedelta(hours=24)


def prize_qr_path(claim_id: int) -> str:
    return f"prize/{claim_id}.png"


def prize_qr_url(settings: Settings, signer: LinkSigner, *, claim_id: int, now: dt.datetime) -> str:
    """The signed, expiring link of a claim's QR image."""
    return media_url(settings, prize_qr_path(claim_id), signer=signer, now=now, ttl=QR_LINK_TTL)


def prize_qr_routes(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    signer: LinkSigner,
    clock: Callable[[], dt.datetime] = utcnow,
) -> APIRouter:
    """`GET /media/prize/<claim id>.png`: the QR of a won prize, with a valid signature only."""
    router = APIRouter()

    @router.get("/media/prize/{claim_id}.png")
    async def prize_qr(
        claim_id: int,
        exp: Annotated[str | None, Query()] = None,
        sig: Annotated[str | None, Query()] = None,
    ) -> Response:
        if not signer.valid(prize_qr_path(claim_id), exp=exp, sig=sig, now=clock()):
            raise HTTPException(403, "this link is not valid or has expired")
        async with sessionmaker() as session:
            claim = await session.get(CampaignClaim, claim_id)
            code = (
                await session.get(VoucherCode, claim.code_id)
                if claim is not None and claim.code_id is not None
                else None
            )
        if claim is None or code is None or claim.status not in HOLDS_PRIZE:
            raise HTTPException(404, "no such prize")
        left = max(0, int(exp or 0) - int(clock().timestamp()))
        return Response(
            qr_png(code.code),
            media_type="image/png",
            headers={
                "Cache-Control": f"private, max-age={min(left, 86400)}",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return router
