"""The identity tables (verified phones, one-time-code challenges, the civil-servant roster)
and the one-row lookups every part of identity uses."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.pii import PiiVault

# otp_challenge.status
PENDING, VERIFIED, LOCKED, CLOSED = "pending", "verified", "locked", "closed"


# -- tables ------------------------------------------------------------------------------------
class VerifiedPhone(Base):
    """A member's verified number: one number per member, one member per number."""

    __tablename__ = "verified_phone"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), unique=True)
    phone_hash: Mapped[str] = mapped_column(String(64), unique=True)
    phone_sealed: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(16))  # "sms" or "telegram_contact"
    channel: Mapped[str] = mapped_column(String(16))
    verified_at: Mapped[dt.datetime]


class OtpChallenge(Base):
    """One verification: a number, the member and account that asked, and the current code."""

    __tablename__ = "otp_challenge"
    __table_args__ = (Index("ix_otp_challenge_member_status", "member_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_account.id", ondelete="CASCADE"))
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_sealed: Mapped[str] = mapped_column(Text)
    # Keyed hash of the current code, salted per challenge; cleared once used.
    code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    salt: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    sends: Mapped[int] = mapped_column(default=0)
    checks: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime]
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime]
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    verified_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CivilServant(Base):
    """A roster row from the training office; linked to the member who verified its mobile."""

    __tablename__ = "civil_servant"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(64), unique=True)
    name_sealed: Mapped[str] = mapped_column(Text)
    agency: Mapped[str] = mapped_column(String(200), index=True)
    email_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_sealed: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), unique=True, default=None
    )
    linked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    imported_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


# -- queries -------------------------------------------------------------------------------------
async def get_verified_phone(session: AsyncSession, *, member_id: int) -> VerifiedPhone | None:
    return await session.scalar(select(VerifiedPhone).where(VerifiedPhone.member_id == member_id))


async def find_phone_owner(
    session: AsyncSession, *, vault: PiiVault, phone: str
) -> VerifiedPhone | None:
    """The verified-phone row for a number (E.164), looked up by keyed hash."""
    return await session.scalar(
        select(VerifiedPhone).where(VerifiedPhone.phone_hash == vault.lookup_hash(phone))
    )


async def get_civil_servant(session: AsyncSession, *, member_id: int) -> CivilServant | None:
    return await session.scalar(select(CivilServant).where(CivilServant.member_id == member_id))
