"""The civil-servant status: a member is one while an active roster row carries their
verified number."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.audit import record_audit
from models.identity.tables import CivilServant, get_civil_servant, get_verified_phone
from models.members import Member


async def sync_civil_servant(session: AsyncSession, *, member_id: int, now: dt.datetime) -> bool:
    """Recompute a member's civil-servant status from their verified number and the roster.

    The status holds while an active roster row carries the member's verified number; such
    a row is linked to at most one member.
    """
    member = await session.get(Member, member_id)
    if member is None:
        return False
    phone = await get_verified_phone(session, member_id=member_id)
    linked = await get_civil_servant(session, member_id=member_id)
    if linked is not None and (phone is None or linked.phone_hash != phone.phone_hash):
        linked.member_id, linked.linked_at = None, None
        await session.flush()
        linked = None
    if linked is None and phone is not None:
        linked = await session.scalar(
            select(CivilServant)
            .where(
                CivilServant.phone_hash == phone.phone_hash,
                CivilServant.active.is_(True),
                CivilServant.member_id.is_(None),
            )
            .order_by(CivilServant.id)
            .limit(1)
        )
        if linked is not None:
            linked.member_id, linked.linked_at = member_id, now
            await session.flush()
    status = linked is not None and linked.active
    if member.is_civil_servant != status:
        member.is_civil_servant = status
        await record_audit(
            session,
            actor="system",
            action="civil_servant.granted" if status else "civil_servant.removed",
            subject=f"member:{member_id}",
            details={"employee_id": linked.employee_id} if linked is not None else {},
            now=now,
        )
    return status
