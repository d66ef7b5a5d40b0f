"""Named conversation steps, kept in the database so any process can continue a chat."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class ConversationState(Base):
    __tablename__ = "conversation_state"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("channel_account.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expires_at: Mapped[dt.datetime]


async def get_state(
    session: AsyncSession, *, account_id: int, now: dt.datetime
) -> ConversationState | None:
    """The account's current step, or None when there is none or it has expired."""
    row = await session.get(ConversationState, account_id)
    if row is None or row.expires_at <= now:
        return None
    return row


async def set_state(
    session: AsyncSession,
    *,
    account_id: int,
    name: str,
    data: dict[str, Any],
    expires_at: dt.datetime,
) -> None:
    row = await session.get(ConversationState, account_id)
    if row is None:
        session.add(
            ConversationState(account_id=account_id, name=name, data=data, expires_at=expires_at)
        )
    else:
        row.name, row.data, row.expires_at = name, data, expires_at


async def clear_state(session: AsyncSession, *, account_id: int) -> None:
    await session.execute(
        delete(ConversationState).where(ConversationState.account_id == account_id)
    )


async def purge_expired_states(session: AsyncSession, *, now: dt.datetime) -> int:
    result = await session.execute(
        delete(ConversationState).where(ConversationState.expires_at <= now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
