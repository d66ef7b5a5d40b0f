"""Inbound platform events, recorded once by their platform id and processed exactly once.

The webhook records an event (redacted copy for people, sealed original for the processor)
and commits before it acknowledges. Processing claims the row with a lease, naming the
process (`inbound_worker`, which beats every few seconds); a sweep picks up rows whose lease
ran out, or sooner, whose process stopped beating. Replies are stored with the result in the
same commit, so a crash after commit but before sending still delivers them; and the commit
before a reply records that the reply is being sent (`reply_started_at`), so that recovery
after a crash does not answer a second time by push what the platform may already have.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from models.base import Base
from models.outbox import ids_match

PENDING, PROCESSING, ANSWERING, DONE, FAILED = (
    "pending",
    "processing",
    "answering",
    "done",
    "failed",
)
MAX_ATTEMPTS = 5
# Not yet through the handlers: a later event of the same sender must wait for these (an
# event whose replies only wait for delivery has already updated the conversation).
_UNHANDLED = (PENDING, PROCESSING)


class InboundEvent(Base):
    __tablename__ = "inbound_event"
    __table_args__ = (
        UniqueConstraint("channel", "event_id"),
        # A sender's events not yet handled, oldest first: the claim keeps each person's order.
        Index(
            "ix_inbound_event_open_sender",
            "channel",
            "sender",
            "id",
            postgresql_where=text("status IN ('pending', 'processing')"),
            sqlite_where=text("status IN ('pending', 'processing')"),
        ),
        # Everything one person sent, whatever its status: delete-my-data finds it here.
        Index("ix_inbound_event_actor", "channel", "actor"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    # Who (LINE user or group, Telegram chat, simulator user): their events go in order.
    sender: Mapped[str | None] = mapped_column(String(80), default=None)
    # The person who acted (a LINE group's member, a Telegram user); the sender when the
    # platform names nobody else. Erasing a person deletes their rows by this column.
    actor: Mapped[str | None] = mapped_column(String(80), default=None)
    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[dt.datetime]
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    processed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Phone numbers and codes masked; what an operator may read.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The original event, encrypted with the PII key; erased once processed.
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # Replies produced but not yet confirmed sent (channel-neutral JSON).
    pending_replies: Mapped[list[Any] | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    # The process (inbound_worker.id) holding the claim; None for a claim under lease only.
    claimed_by: Mapped[str | None] = mapped_column(String(36), default=None)
    # Committed before the replies are handed to the platform and cleared when the platform
    # answered with an error: set on a claimed row means a process died with the answer in
    # flight, and the platform may have it (a spent LINE reply token then means "sent").
    reply_started_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class InboundWorker(Base):
    """A process that answers events, alive while `beat_at` is recent."""

    __tablename__ = "inbound_worker"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[dt.datetime]
    beat_at: Mapped[dt.datetime] = mapped_column(index=True)


@dataclass(frozen=True)
class Holder:
    """Who claims (this process, when it beats) and when another process counts as gone."""

    worker_id: str | None = None
    gone_before: dt.datetime | None = None  # no heartbeat since: the process is gone


def _stale_claim(stale: dt.datetime, holder: Holder) -> Any:
    """A claim another worker may take over: its lease ran out, or its process is gone."""
    expired = InboundEvent.claimed_at < stale
    if holder.gone_before is None:
        return expired
    alive = (
        select(InboundWorker.id)
        .where(
            InboundWorker.id == InboundEvent.claimed_by,
            InboundWorker.beat_at >= holder.gone_before,
        )
        .exists()
    )
    return or_(expired, and_(InboundEvent.claimed_by.is_not(None), ~alive))


async def register_worker(session: AsyncSession, *, worker_id: str, now: dt.datetime) -> None:
    """Start beating (the caller commits before claiming anything under this id)."""
    session.add(InboundWorker(id=worker_id, started_at=now, beat_at=now))
    await session.flush()


async def beat(session: AsyncSession, *, worker_id: str, now: dt.datetime) -> bool:
    """One heartbeat; False when the row is gone (purged as dead: register again)."""
    result = await session.execute(
        update(InboundWorker).where(InboundWorker.id == worker_id).values(beat_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retire_worker(session: AsyncSession, *, worker_id: str) -> None:
    """A clean stop: what the process still held is anyone's at once."""
    await session.execute(delete(InboundWorker).where(InboundWorker.id == worker_id))


async def purge_workers(session: AsyncSession, *, before: dt.datetime) -> int:
    """Forget processes silent since `before` (their claims count as gone either way)."""
    result = await session.execute(delete(InboundWorker).where(InboundWorker.beat_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class NewEvent:
    event_id: str
    kind: str
    payload: dict[str, Any]
    sealed: bytes
    sender: str | None = None
    actor: str | None = None


async def record_events_multi(
    session: AsyncSession, *, events: list[tuple[str, NewEvent]], now: dt.datetime
) -> dict[tuple[str, str], int]:
    """Insert events of any channels not seen before, in one statement.

    Returns {(channel, event_id): row id} for the new ones only; an event seen before (or
    twice in this batch) is absent, so it is acknowledged and never processed again.
    """
    if not events:
        return {}
    unique: dict[tuple[str, str], NewEvent] = {}
    for channel, event in events:
        unique.setdefault((channel, event.event_id), event)
    table = cast(Table, InboundEvent.__table__)
    returning = (table.c.id, table.c.channel, table.c.event_id)
    if session.get_bind().dialect.name == "postgresql":
        # One INSERT ... SELECT FROM unnest(arrays): the same statement whatever the count,
        # so it is compiled and prepared once (a VALUES list is compiled anew per length).
        fresh = list(unique.values())
        columns: list[tuple[str, list[Any], Any]] = [
            ("channel", [channel for channel, _ in unique], String),
            ("event_id", [event_id for _, event_id in unique], String),
            ("kind", [e.kind for e in fresh], String),
            ("sender", [e.sender for e in fresh], String),
            ("actor", [e.actor for e in fresh], String),
            ("payload", [json.dumps(e.payload, ensure_ascii=False) for e in fresh], String),
            ("sealed", [e.sealed for e in fresh], LargeBinary),
        ]
        source = (
            func.unnest(*(bindparam(None, v, type_=ARRAY(t)) for _, v, t in columns))
            .table_valued(*(name for name, _, _ in columns))
            .render_derived()
        )
        stmt = (
            pg_insert(table)
            .from_select(
                [name for name, _, _ in columns] + ["received_at", "status", "attempts"],
                select(
                    source.c.channel,
                    source.c.event_id,
                    source.c.kind,
                    source.c.sender,
                    source.c.actor,
                    func.cast(source.c.payload, JSONB),
                    source.c.sealed,
                    bindparam(None, now, type_=table.c.received_at.type),
                    bindparam(None, PENDING, type_=String),
                    bindparam(None, 0, type_=Integer),
                ),
            )
            .on_conflict_do_nothing(index_elements=["channel", "event_id"])
            .returning(*returning)
        )
        rows = (await session.execute(stmt)).all()
    else:
        # executemany with RETURNING: SQLAlchemy's insertmanyvalues batches the rows into
        # one statement from a compiled form it caches.
        stmt = (
            sqlite_insert(table)
            .on_conflict_do_nothing(index_elements=["channel", "event_id"])
            .returning(*returning)
        )
        params = [
            {
                "channel": channel,
                "event_id": e.event_id,
                "kind": e.kind,
                "sender": e.sender,
                "actor": e.actor,
                "payload": e.payload,
                "sealed": e.sealed,
                "received_at": now,
                "status": PENDING,
                "attempts": 0,
            }
            for (channel, _), e in unique.items()
        ]
        rows = (await session.execute(stmt, params)).all()
    return {(r.channel, r.event_id): r.id for r in rows}


async def record_rejected(
    session: AsyncSession, *, channel: str, event_id: str, reason: str, size: int, now: dt.datetime
) -> None:
    """Note an event we refuse to process (malformed, not the platform's shape), once: what
    an operator may read is the reason and the size, never the body itself."""
    values = {
        "channel": channel,
        "event_id": event_id[:64],
        "kind": "rejected",
        "status": FAILED,
        "received_at": now,
        "processed_at": now,
        "payload": {"rejected": reason[:200], "bytes": size},
        "last_error": reason[:200],
        "attempts": 0,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(InboundEvent).values(**values).on_conflict_do_nothing())


async def purge_finished_events(session: AsyncSession, *, before: dt.datetime) -> int:
    """Drop answered and refused events received before `before` (retention job); events
    still pending or in progress are kept whatever their age."""
    result = await session.execute(
        delete(InboundEvent).where(
            InboundEvent.status.in_((DONE, FAILED)), InboundEvent.received_at < before
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def unfinished_event_ids(
    session: AsyncSession,
    *,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int = 200,
    holder: Holder = Holder(),
) -> list[int]:
    """Events recorded but not finished: never claimed, or claimed by a worker that died."""
    stale = now - lease
    rows = await session.scalars(
        select(InboundEvent.id)
        .where(
            InboundEvent.attempts < MAX_ATTEMPTS,
            or_(
                and_(InboundEvent.status == PENDING, InboundEvent.received_at < now),
                and_(
                    InboundEvent.status.in_([PROCESSING, ANSWERING]),
                    _stale_claim(stale, holder),
                ),
            ),
        )
        .order_by(InboundEvent.id)
        .limit(limit)
    )
    return list(rows.all())


async def claim_events(
    session: AsyncSession,
    *,
    row_ids: list[int],
    now: dt.datetime,
    lease: dt.timedelta,
    holder: Holder = Holder(),
) -> list[int]:
    """Take events for processing; returns those this worker now holds (others are pending
    elsewhere under a live lease, or finished)."""
    if not row_ids:
        return []
    stale = now - lease
    # Not while an earlier event of the same sender, outside this batch, has not been through
    # the handlers (another worker holds it, or it waits to be retried): one person's
    # messages are handled in the order they were sent, however many workers there are.
    # (ids_match: one statement shape on PostgreSQL whatever the batch size.)
    earlier = aliased(InboundEvent)
    overtakes = (
        select(earlier.id)
        .where(
            earlier.channel == InboundEvent.channel,
            earlier.sender == InboundEvent.sender,
            earlier.id < InboundEvent.id,
            earlier.status.in_(_UNHANDLED),
            earlier.attempts < MAX_ATTEMPTS,
            ~ids_match(session, earlier.id, row_ids),
        )
        .exists()
    )
    result = await session.execute(
        update(InboundEvent)
        .where(
            ids_match(session, InboundEvent.id, row_ids),
            or_(
                InboundEvent.status == PENDING,
                and_(
                    InboundEvent.status.in_([PROCESSING, ANSWERING]),
                    _stale_claim(stale, holder),
                ),
            ),
            or_(InboundEvent.sender.is_(None), ~overtakes),
        )
        .values(
            status=case((InboundEvent.status == ANSWERING, ANSWERING), else_=PROCESSING),
            claimed_at=now,
            claimed_by=holder.worker_id,
            attempts=InboundEvent.attempts + 1,
        )
        .returning(InboundEvent.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars().all())


async def load_events(session: AsyncSession, *, row_ids: list[int]) -> list[InboundEvent]:
    rows = await session.scalars(
        select(InboundEvent).where(InboundEvent.id.in_(row_ids)).order_by(InboundEvent.id)
    )
    return list(rows.all())


async def finish_events(
    session: AsyncSession, *, done: list[int], failed: list[int], retry: dict[int, str]
) -> None:
    """Answered rows lose their sealed original and stored replies; rows whose delivery must
    be retried keep them, with the reason, for the next sweep (the platform refused them, so
    nothing of theirs is in flight any more)."""
    if done:
        await session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(done))
            .values(status=DONE, pending_replies=None, sealed=None, last_error=None)
            .execution_options(synchronize_session=False)
        )
    if failed:
        await session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(failed))
            .values(status=FAILED, pending_replies=None, sealed=None)
            .execution_options(synchronize_session=False)
        )
    for row_id, reason in retry.items():
        await session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == row_id)
            .values(last_error=reason, reply_started_at=None)
            .execution_options(synchronize_session=False)
        )


async def forget_typed_text(session: AsyncSession, *, channel: str, event_id: str) -> None:
    """Blank what the person typed in the stored copy of one inbound event (a course password
    must rest in no table; the encrypted original is erased once the event is processed)."""
    if not event_id:
        return
    row = await session.scalar(
        select(InboundEvent).where(
            InboundEvent.channel == channel, InboundEvent.event_id == event_id
        )
    )
    if row is not None:
        row.payload = _blank_text(row.payload)


def _blank_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "***" if k in ("text", "caption") and isinstance(v, str) else _blank_text(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_blank_text(v) for v in value]
    return value
