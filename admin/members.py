"""Admin API for looking up one member (admin and auditor): by channel id, by member id, or
by a phone number that is hashed for the lookup and never stored or echoed. There is no list
of members and never a whole number; each lookup is itself in the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, RowId, require_role
from bot.i18n import taipei_time
from bot.settings import Settings
from models.audit import list_audit, record_audit
from models.base import utcnow
from models.db import begin_write
from models.identity import find_phone_owner, get_civil_servant, get_verified_phone
from models.learning import Completion
from models.members import CHANNELS, ChannelAccount, Member, get_account
from models.phones import mask_phone, normalise_phone, parse_regions
from models.pii import PiiVault
from models.podcasts import PodcastSubscription


class ChannelLookup(BaseModel):
    channel: str = Field(pattern="^(line|telegram|simulator)$")
    external_id: str = Field(min_length=1, max_length=64)


class PhoneLookup(BaseModel):
    phone: str = Field(min_length=6, max_length=32)


async def member_summary(
    session: AsyncSession, *, vault: PiiVault, member_id: int
) -> dict[str, Any] | None:
    """What the office may see about one member: accounts, status, learning and the audit
    entries about them; the phone masked (0912-***-678) with its keyed hash."""
    member = await session.get(Member, member_id)
    if member is None:
        return None
    accounts = (
        await session.scalars(
            select(ChannelAccount)
            .where(ChannelAccount.member_id == member_id)
            .order_by(ChannelAccount.id)
        )
    ).all()
    phone = await get_verified_phone(session, member_id=member_id)
    servant = await get_civil_servant(session, member_id=member_id)
    completions, hours = (
        await session.execute(
            select(func.count(Completion.id), func.coalesce(func.sum(Completion.hours), 0)).where(
                Completion.member_id == member_id
            )
        )
    ).one()
    subscriptions = await session.scalar(
        select(func.count(PodcastSubscription.id)).where(
            PodcastSubscription.member_id == member_id, PodcastSubscription.active.is_(True)
        )
    )
    audit = await list_audit(session, subject=f"member:{member_id}", limit=20)
    return {
        "id": member.id,
        "language": member.language,
        "civil_servant": member.is_civil_servant,
        "agency": servant.agency if servant is not None else None,
        "marketing_opt_in": member.marketing_opt_in,
        "created_taipei": taipei_time(member.created_at),
        "accounts": [
            {
                "channel": a.channel,
                "external_id": a.external_id,
                "following": a.following,
                "unreachable": a.unreachable,
                "last_seen_taipei": taipei_time(a.last_seen_at),
            }
            for a in accounts
        ],
        "phone": (
            {
                "masked": mask_phone(vault.decrypt(phone.phone_sealed)),
                "hash": phone.phone_hash,
                "verified_taipei": taipei_time(phone.verified_at),
                "method": phone.method,
            }
            if phone is not None
            else None
        ),
        "completions": int(completions),
        "hours": float(hours),
        "podcast_subscriptions": int(subscriptions or 0),
        "audit": [
            {
                "id": e.id,
                "at": taipei_time(e.created_at),
                "actor": e.actor,
                "action": e.action,
            }
            for e in audit
        ],
    }


async def find_member_id(
    session: AsyncSession,
    *,
    settings: Settings,
    vault: PiiVault,
    channel: str | None = None,
    external_id: str | None = None,
    phone: str | None = None,
) -> int | None:
    """The member behind a channel id or a phone number (422 for a number that is none)."""
    if phone is not None:
        e164 = normalise_phone(phone, regions=parse_regions(settings.phone_allowed_regions))
        if e164 is None:
            raise HTTPException(422, "not a mobile number of an allowed region")
        row = await find_phone_owner(session, vault=vault, phone=e164)
        return row.member_id if row is not None else None
    if channel not in CHANNELS or not external_id:
        raise HTTPException(422, "give a channel and its id")
    account = await get_account(session, channel=channel, external_id=external_id)
    return account.member_id if account is not None else None


async def audited_lookup(
    session: AsyncSession, *, vault: PiiVault, member_id: int | None, caller: Caller, by: str
) -> dict[str, Any]:
    """The summary (404 when nobody matches), with the lookup recorded in the audit log."""
    summary = (
        await member_summary(session, vault=vault, member_id=member_id)
        if member_id is not None
        else None
    )
    if summary is None:
        raise HTTPException(404, "no member matches")
    await record_audit(
        session,
        actor=caller.name,
        action="members.lookup",
        subject=f"member:{member_id}",
        details={"by": by},
        now=utcnow(),
    )
    await session.commit()
    return summary


def member_admin_routes(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], vault: PiiVault
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/members")
    readers = Depends(require_role(settings, "admin", "auditor"))

    @routes.get("/{member_id}")
    async def by_id(member_id: RowId, caller: Caller = readers) -> dict[str, Any]:
        """One member by id."""
        async with sessionmaker() as session:
            await begin_write(session)  # the lookup is audited: a write follows the reads
            return await audited_lookup(
                session, vault=vault, member_id=member_id, caller=caller, by="id"
            )

    @routes.post("/lookup")
    async def by_channel(body: ChannelLookup, caller: Caller = readers) -> dict[str, Any]:
        """One member by a LINE user id, Telegram chat id or simulator user."""
        async with sessionmaker() as session:
            await begin_write(session)  # the lookup is audited: a write follows the reads
            found = await find_member_id(
                session,
                settings=settings,
                vault=vault,
                channel=body.channel,
                external_id=body.external_id,
            )
            return await audited_lookup(
                session, vault=vault, member_id=found, caller=caller, by="channel"
            )

    @routes.post("/lookup-phone")
    async def by_phone(body: PhoneLookup, caller: Caller = readers) -> dict[str, Any]:
        """One member by a verified phone number (in the body, so that it is in no URL or
        log; hashed with the PII key for the lookup)."""
        async with sessionmaker() as session:
            await begin_write(session)  # the lookup is audited: a write follows the reads
            found = await find_member_id(session, settings=settings, vault=vault, phone=body.phone)
            return await audited_lookup(
                session, vault=vault, member_id=found, caller=caller, by="phone"
            )

    return routes
