"""Verified phone numbers (one number per member, one member per number, safe against a race
for one number) and making two members one when they prove the same number."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.audit import record_audit
from models.identity.roster import sync_civil_servant
from models.identity.tables import CivilServant, OtpChallenge, VerifiedPhone, get_verified_phone
from models.members import ChannelAccount, Member
from models.otp_limits import OtpSend
from models.pii import PiiVault


def phone_subject(phone_hash: str) -> str:
    return f"phone:{phone_hash}"


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    ALREADY_VERIFIED = "already_verified"
    OWNED_BY_OTHER = "owned_by_other"  # offer to link the two accounts


@dataclass(frozen=True)
class VerificationResult:
    outcome: Outcome
    phone_hash: str
    owner_member_id: int | None = None  # for OWNED_BY_OTHER
    civil_servant: bool = False
    replaced_previous: bool = False


# -- recording a verified number ----------------------------------------------------------------
async def record_verified_phone(
    session: AsyncSession,
    *,
    vault: PiiVault,
    member_id: int,
    phone: str,
    method: str,
    channel: str,
    now: dt.datetime,
) -> VerificationResult:
    """Make `phone` the member's verified number, unless another member holds it.

    Safe against two members racing for one number: the unique hash decides, and the loser
    gets OWNED_BY_OTHER (an offer to link the accounts) instead of an error.
    """
    phone_hash = vault.lookup_hash(phone)
    owner = await session.scalar(
        select(VerifiedPhone).where(VerifiedPhone.phone_hash == phone_hash)
    )
    if owner is not None:
        if owner.member_id == member_id:
            return VerificationResult(Outcome.ALREADY_VERIFIED, phone_hash)
        return VerificationResult(Outcome.OWNED_BY_OTHER, phone_hash, owner.member_id)
    mine = await get_verified_phone(session, member_id=member_id)
    try:
        async with session.begin_nested():
            if mine is not None:
                await session.delete(mine)
                await session.flush()
            session.add(
                VerifiedPhone(
                    member_id=member_id,
                    phone_hash=phone_hash,
                    phone_sealed=vault.encrypt(phone),
                    method=method,
                    channel=channel,
                    verified_at=now,
                )
            )
            await session.flush()
    except IntegrityError:
        winner = await session.scalar(
            select(VerifiedPhone.member_id).where(VerifiedPhone.phone_hash == phone_hash)
        )
        if winner is None:
            raise
        return VerificationResult(Outcome.OWNED_BY_OTHER, phone_hash, winner)
    await record_audit(
        session,
        actor=f"member:{member_id}",
        action="phone.verified",
        subject=phone_subject(phone_hash),
        details={"method": method, "channel": channel},
        now=now,
    )
    status = await sync_civil_servant(session, member_id=member_id, now=now)
    return VerificationResult(
        Outcome.VERIFIED, phone_hash, civil_servant=status, replaced_previous=mine is not None
    )


# -- linking two accounts of one person --------------------------------------------------------
def _member_references(sync_conn: Any) -> list[tuple[str, str, list[str]]]:
    """(table, column, primary key) for every column that references member.id."""
    insp = inspect(sync_conn)
    out: list[tuple[str, str, list[str]]] = []
    for table in insp.get_table_names():
        for fk in insp.get_foreign_keys(table):
            if fk.get("referred_table") == "member" and len(fk["constrained_columns"]) == 1:
                pk = insp.get_pk_constraint(table).get("constrained_columns") or []
                out.append((table, fk["constrained_columns"][0], list(pk)))
    return out


# Tables whose member rows the merge handles itself (the rest are moved generically).
_OWN_TABLES = {"verified_phone", "otp_challenge", "otp_send", "civil_servant"}


async def merge_members(
    session: AsyncSession, *, keep_id: int, absorb_id: int, now: dt.datetime
) -> None:
    """Make two members one: `absorb`'s channel accounts and data move to `keep`.

    Every table that references member.id (including other features' tables) is moved;
    a row that would duplicate one of `keep`'s (a unique constraint says so) is dropped.
    The caller must refresh ORM objects that pointed at `absorb` (e.g. the context's account).
    """
    if keep_id == absorb_id:
        return
    keep = await session.get(Member, keep_id)
    absorb = await session.get(Member, absorb_id)
    if keep is None or absorb is None:
        raise LookupError("member to link no longer exists")
    # `keep` holds the number; `absorb`'s own number and roster link give way.
    await session.execute(delete(VerifiedPhone).where(VerifiedPhone.member_id == absorb_id))
    await session.execute(
        update(CivilServant)
        .where(CivilServant.member_id == absorb_id)
        .values(member_id=None, linked_at=None)
    )
    await session.execute(delete(OtpChallenge).where(OtpChallenge.member_id == absorb_id))
    await session.execute(
        update(OtpSend).where(OtpSend.member_id == absorb_id).values(member_id=keep_id)
    )
    conn = await session.connection()
    references = await conn.run_sync(_member_references)
    for table, column, pk in references:
        if table in _OWN_TABLES:
            continue
        await _move_rows(session, table, column, pk, keep_id=keep_id, absorb_id=absorb_id)
    keep.marketing_opt_in = keep.marketing_opt_in and absorb.marketing_opt_in
    await session.flush()
    await session.execute(delete(Member).where(Member.id == absorb_id))
    session.expunge(absorb)
    await sync_civil_servant(session, member_id=keep_id, now=now)
    await record_audit(
        session,
        actor=f"member:{keep_id}",
        action="member.linked",
        subject=f"member:{keep_id}",
        details={"absorbed_member_id": absorb_id},
        now=now,
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _move_rows(
    session: AsyncSession, table: str, column: str, pk: list[str], *, keep_id: int, absorb_id: int
) -> None:
    # Names come from the database's own catalogue, quoted; values are bound.
    move = text(f"UPDATE {_q(table)} SET {_q(column)} = :keep WHERE {_q(column)} = :absorb")  # noqa: S608
    try:
        async with session.begin_nested():
            await session.execute(move, {"keep": keep_id, "absorb": absorb_id})
        return
    except IntegrityError:
        if not pk:
            raise
    # Some rows collide with keep's (same course, same podcast, ...): move one by one.
    cols = ", ".join(_q(c) for c in pk)
    rows = (
        await session.execute(
            text(f"SELECT {cols} FROM {_q(table)} WHERE {_q(column)} = :absorb"),  # noqa: S608
            {"absorb": absorb_id},
        )
    ).all()
    where = " AND ".join(f"{_q(c)} = :pk{i}" for i, c in enumerate(pk))
    for row in rows:
        keys = {f"pk{i}": value for i, value in enumerate(row)}
        try:
            async with session.begin_nested():
                await session.execute(
                    text(f"UPDATE {_q(table)} SET {_q(column)} = :keep WHERE {where}"),  # noqa: S608
                    {"keep": keep_id, **keys},
                )
        except IntegrityError:
            await session.execute(text(f"DELETE FROM {_q(table)} WHERE {where}"), keys)  # noqa: S608


async def linked_accounts(session: AsyncSession, *, member_id: int) -> list[ChannelAccount]:
    """The member's channel accounts, oldest first."""
    rows = await session.scalars(
        select(ChannelAccount)
        .where(ChannelAccount.member_id == member_id)
        .order_by(ChannelAccount.id)
    )
    return list(rows.all())
