"""Messages the simulator channel 'sent', so the web chat can show them from any process."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class SimulatorMessage(Base):
    __tablename__ = "simulator_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_key: Mapped[str] = mapped_column(String(64), index=True)
    # "bot" for replies, "sms" for the dev SMS provider's phone inbox.
    box: Mapped[str] = mapped_column(String(8), default="bot")
    reply: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime]


async def add_messages(
    session: AsyncSession,
    *,
    user_key: str,
    box: str,
    replies: list[dict[str, Any]],
    now: dt.datetime,
) -> None:
    session.add_all(
        SimulatorMessage(user_key=user_key, box=box, reply=r, created_at=now) for r in replies
    )


async def messages_after(
    session: AsyncSession, *, user_key: str, after_id: int, box: str = "bot", limit: int = 200
) -> list[SimulatorMessage]:
    rows = await session.scalars(
        select(SimulatorMessage)
        .where(
            SimulatorMessage.user_key == user_key,
            SimulatorMessage.box == box,
            SimulatorMessage.id > after_id,
        )
        .order_by(SimulatorMessage.id)
        .limit(limit)
    )
    return list(rows.all())


async def purge_simulator_messages(session: AsyncSession, *, before: dt.datetime) -> int:
    """Drop simulated chats and dev text messages older than `before` (retention job)."""
    result = await session.execute(
        delete(SimulatorMessage).where(SimulatorMessage.created_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
