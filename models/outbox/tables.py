"""The outbox's tables (messages and channel pauses), its statuses and priorities, and the
`IN` helper the other outbox modules (and a few others) use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

PENDING, SENDING, SENT, FAILED, CANCELLED = "pending", "sending", "sent", "failed", "cancelled"
# A recipient's row inside a LINE broadcast group (migration 0023): never claimed itself; it
# goes with its group row (`group_key`), whose status is its own.
GROUPED = "grouped"
# Lower goes first: a reply that had to fall back to push is an answer someone waits for.
PRIORITY_REPLY, PRIORITY_REMINDER, PRIORITY_EPISODE, PRIORITY_BROADCAST = 0, 10, 15, 20
MAX_GROUP = 500  # LINE multicast: at most 500 user ids per call


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        # The claim reads due rows in priority order; sent rows stay out of this index.
        Index(
            "ix_outbox_due",
            "priority",
            "not_before",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_outbox_leased",
            "lease_until",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        Index(
            "ix_outbox_retry_key",
            "retry_key",
            postgresql_where=text("retry_key IS NOT NULL"),
            sqlite_where=text("retry_key IS NOT NULL"),
        ),
        Index(
            "ix_outbox_group_key",
            "group_key",
            postgresql_where=text("group_key IS NOT NULL"),
            sqlite_where=text("group_key IS NOT NULL"),
        ),
        # Broadcasts (models/broadcasts.py): pause, resume, cancel and figures by broadcast.
        Index(
            "ix_outbox_broadcast",
            "broadcast_id",
            "status",
            postgresql_where=text("broadcast_id IS NOT NULL"),
            sqlite_where=text("broadcast_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    # None on a LINE broadcast group's row (its recipients are the rows under its key).
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_account.id", ondelete="CASCADE"), default=None
    )
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # reply, reminder, episode, broadcast
    priority: Mapped[int] = mapped_column(default=PRIORITY_BROADCAST)
    # Quiet hours apply to proactive messages only (not to replies that fell back to push).
    proactive: Mapped[bool] = mapped_column(default=True)
    replies: Mapped[list[Any]] = mapped_column()  # bot.messages.dump_replies(...)
    body_hash: Mapped[str] = mapped_column(String(32))  # identical bodies may share a multicast
    not_before: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(36), default=None)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    lease_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    retry_key: Mapped[str | None] = mapped_column(String(36), default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime]
    # Broadcasts (migration 0015): the broadcast a row belongs to, and the LINE
    # customAggregationUnits name of its broadcast and variant (sent with the call).
    broadcast_id: Mapped[int | None] = mapped_column(default=None)
    aggregation_unit: Mapped[str | None] = mapped_column(String(30), default=None)
    # A grouped recipient's row: the `key` of its group's row (migration 0023).
    group_key: Mapped[str | None] = mapped_column(String(160), default=None)


class ChannelPause(Base):
    """A channel no worker may send on until `paused_until` (e.g. LINE's monthly quota)."""

    __tablename__ = "channel_pause"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    paused_until: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]


def ids_match(
    session: AsyncSession, column: Any, ids: Iterable[Any], *, item_type: Any = Integer
) -> Any:
    """`column IN ids`; on PostgreSQL `= ANY(array)`, one statement shape whatever the
    count (asyncpg prepares each distinct IN-list length anew, and SQLAlchemy renders a
    bind per value). `item_type` is the array's element type (String for text ids)."""
    values = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(item_type)))
    return column.in_(values)
