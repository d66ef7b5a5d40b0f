"""A member is one person; a channel account is how they reach us on one platform."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow

CHANNELS = ("line", "telegram", "simulator")


class Member(Base):
    __tablename__ = "member"

    id: Mapped[int] = mapped_column(primary_key=True)
    language: Mapped[str] = mapped_column(String(8), default="zh-TW")
    is_civil_servant: Mapped[bool] = mapped_column(default=False)
    marketing_opt_in: Mapped[bool] = mapped_column(default=True)
    preferred_channel: Mapped[str | None] = mapped_column(String(16), default=None)
    reminder_time: Mapped[str | None] = mapped_column(String(5), default=None)  # "HH:MM" Taipei
    # The member's own quiet window, "HH:MM-HH:MM" Taipei; None = QUIET_HOURS.
    quiet_hours: Mapped[str | None] = mapped_column(String(11), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    accounts: Mapped[list[ChannelAccount]] = relationship(back_populates="member")


class ChannelAccount(Base):
    __tablename__ = "channel_account"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    # LINE user id, Telegram chat id, or the simulator's user key.
    external_id: Mapped[str] = mapped_column(String(64))
    following: Mapped[bool] = mapped_column(default=True)
    unreachable: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship(back_populates="accounts", lazy="joined")


async def get_account(
    session: AsyncSession, *, channel: str, external_id: str
) -> ChannelAccount | None:
    """The account for a platform user, or None if we have never seen them."""
    return await session.scalar(
        select(ChannelAccount).where(
            ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
        )
    )


async def ensure_account(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    language: str | None = None,
    now: dt.datetime,
) -> tuple[ChannelAccount, bool]:
    """The account for a platform user, created with a new member on first contact.

    Returns (account, created). Safe against two processes meeting the same new user:
    the loser of the unique-constraint race reads the winner's row.
    """
    from sqlalchemy.exc import IntegrityError

    account = await get_account(session, channel=channel, external_id=external_id)
    if account is not None:
        account.last_seen_at = now
        return account, False
    try:
        async with session.begin_nested():
            member = Member(language=language or "zh-TW", created_at=now)
            account = ChannelAccount(
                member=member,
                channel=channel,
                external_id=external_id,
                created_at=now,
                last_seen_at=now,
            )
            session.add(account)
    except IntegrityError:
        account = await get_account(session, channel=channel, external_id=external_id)
        if account is None:
            raise
        return account, False
    return account, True


async def set_reachability(
    session: AsyncSession, *, channel: str, external_id: str, reachable: bool
) -> int:
    """Mark an account (un)reachable (LINE unfollow, Telegram kicked); returns rows changed."""
    result = await session.execute(
        update(ChannelAccount)
        .where(ChannelAccount.channel == channel, ChannelAccount.external_id == external_id)
        .values(unreachable=not reachable, following=reachable)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
