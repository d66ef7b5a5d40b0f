"""The outbox: one row per recipient and message, for everything the bot says unasked.

Rows are written by handlers, jobs and imports (idempotent by `key`) and sent by the
dispatcher, which claims due rows with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
sends them and records the outcome. A row claimed by a worker that died is taken over when
its lease ends. LINE groups of identical messages carry a stored `retry_key`, so a retry of
the same group (after a crash or a 5xx) reuses the key and LINE answers 409, never sends
twice; such a group always moves as one unit (claimed, retried and marked together).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.members import ChannelAccount, Member

PENDING, SENDING, SENT, FAILED, CANCELLED = "pending", "sending", "sent", "failed", "cancelled"
# Lower goes first: a reply that had to fall back to push is an answer someone waits for.
PRIORITY_REPLY, PRIORITY_REMINDER, PRIORITY_EPISODE, PRIORITY_BROADCAST = 0, 10, 15, 20
MAX_GROUP = 500  # LINE multicast: at most 500 user ids per call
# Only one worker at a time claims LINE groups that already carry a retry key, so that a
# group is never split between two workers (a split could have half of it answered 409).
_GROUP_LOCK = 0x0ED0_0B0C
_KEY_NS = uuid.UUID("0b6c5c1e-2f0e-4d55-9d7f-3a1f6f3b9e21")


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
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
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


class ChannelPause(Base):
    """A channel no worker may send on until `paused_until` (e.g. LINE's monthly quota)."""

    __tablename__ = "channel_pause"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    paused_until: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]


# -- writing -----------------------------------------------------------------------------------
def body_hash(replies: list[dict[str, Any]]) -> str:
    """A stable digest of a message body: identical bodies may go out in one multicast."""
    raw = json.dumps(replies, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Target:
    """Where a proactive message for one member goes."""

    member_id: int
    account_id: int
    channel: str
    external_id: str


@dataclass(frozen=True)
class NewMessage:
    key: str
    target: Target
    replies: list[dict[str, Any]]
    kind: str
    priority: int
    not_before: dt.datetime
    proactive: bool = True


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def enqueue_many(
    session: AsyncSession, messages: Sequence[NewMessage], *, now: dt.datetime
) -> list[str]:
    """Insert messages whose key is new; returns the keys actually inserted (idempotent)."""
    if not messages:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return await _enqueue_many_pg(session, messages, now=now)
    hashes: dict[int, str] = {}
    values = []
    for m in messages:
        digest = hashes.get(id(m.replies)) or body_hash(m.replies)
        hashes[id(m.replies)] = digest
        values.append(
            {
                "key": m.key,
                "member_id": m.target.member_id,
                "account_id": m.target.account_id,
                "channel": m.target.channel,
                "external_id": m.target.external_id,
                "kind": m.kind,
                "priority": m.priority,
                "proactive": m.proactive,
                "replies": m.replies,
                "body_hash": digest,
                "not_before": m.not_before,
                "status": PENDING,
                "attempts": 0,
                "created_at": now,
            }
        )
    # executemany: one cached statement, sent in pages ("insertmanyvalues"), not one
    # giant statement compiled anew for every call.
    stmt = (
        _insert(session)(OutboxMessage.__table__)  # Core: no ORM bookkeeping per row
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(OutboxMessage.__table__.c.key, sort_by_parameter_order=True)
    )
    rows = await session.execute(stmt, values)
    return [key for key in rows.scalars().all() if key is not None]


async def _enqueue_many_pg(
    session: AsyncSession, messages: Sequence[NewMessage], *, now: dt.datetime
) -> list[str]:
    """enqueue_many on PostgreSQL: one INSERT ... SELECT FROM unnest(arrays), with each
    distinct body serialised and hashed once (a sweep's digests share their bodies)."""
    encoded: dict[int, tuple[str, str]] = {}  # id(replies) -> (JSON text, hash)
    bodies: list[str] = []
    hashes: list[str] = []
    for m in messages:
        known = encoded.get(id(m.replies))
        if known is None:
            raw = json.dumps(m.replies, ensure_ascii=False, separators=(",", ":"))
            known = encoded[id(m.replies)] = (raw, body_hash(m.replies))
        bodies.append(known[0])
        hashes.append(known[1])
    table = OutboxMessage.__table__
    columns: list[tuple[str, list[Any], Any]] = [
        ("key", [m.key for m in messages], String),
        ("member_id", [m.target.member_id for m in messages], Integer),
        ("account_id", [m.target.account_id for m in messages], Integer),
        ("channel", [m.target.channel for m in messages], String),
        ("external_id", [m.target.external_id for m in messages], String),
        ("kind", [m.kind for m in messages], String),
        ("priority", [m.priority for m in messages], Integer),
        ("proactive", [m.proactive for m in messages], Boolean),
        ("replies", bodies, String),
        ("body_hash", hashes, String),
        ("not_before", [m.not_before for m in messages], table.c.not_before.type),
    ]
    source = (
        func.unnest(*(bindparam(None, v, type_=ARRAY(t)) for _, v, t in columns))
        .table_valued(*(name for name, _, _ in columns))
        .render_derived()
    )
    picked = [
        source.c[name] if name != "replies" else func.cast(source.c.replies, JSONB)
        for name, _, _ in columns
    ]
    stmt = (
        pg_insert(OutboxMessage)
        .from_select(
            [name for name, _, _ in columns] + ["status", "attempts", "created_at"],
            select(
                *picked,
                bindparam(None, PENDING, type_=String),
                bindparam(None, 0, type_=Integer),
                bindparam(None, now, type_=table.c.created_at.type),
            ),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.key)
    )
    added = set((await session.execute(stmt)).scalars().all())
    out: list[str] = []
    for m in messages:  # in the callers' order, each key once
        if m.key in added:
            added.discard(m.key)
            out.append(m.key)
    return out


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    target: Target,
    replies: list[dict[str, Any]],
    kind: str,
    priority: int,
    not_before: dt.datetime,
    now: dt.datetime,
    proactive: bool = True,
) -> bool:
    """Add one message unless a row with `key` exists; True when this call added it."""
    added = await enqueue_many(
        session,
        [NewMessage(key, target, replies, kind, priority, not_before, proactive)],
        now=now,
    )
    return bool(added)


async def choose_targets(
    session: AsyncSession, *, member_ids: Iterable[int], channels: Iterable[str] | None = None
) -> dict[int, Target]:
    """Each member's channel for a proactive message: the one they chose in settings if it
    is reachable, else the one they used most recently. Members with none are left out."""
    ids = list(member_ids)
    if not ids:
        return {}
    query = (
        select(
            ChannelAccount.member_id,
            ChannelAccount.id,
            ChannelAccount.channel,
            ChannelAccount.external_id,
            ChannelAccount.last_seen_at,
            Member.preferred_channel,
        )
        .join(Member, Member.id == ChannelAccount.member_id)
        .where(
            ids_match(session, ChannelAccount.member_id, ids),
            ChannelAccount.unreachable.is_(False),
            ChannelAccount.following.is_(True),
        )
    )
    if channels is not None:
        query = query.where(ChannelAccount.channel.in_(list(channels)))
    best: dict[int, tuple[tuple[bool, dt.datetime, int], Target]] = {}
    for member_id, account_id, channel, external_id, seen, preferred in await session.execute(
        query
    ):
        rank = (channel == preferred, seen, account_id)
        current = best.get(member_id)
        if current is None or rank > current[0]:
            best[member_id] = (rank, Target(member_id, account_id, channel, external_id))
    return {m: t for m, (_, t) in best.items()}


# -- claiming ----------------------------------------------------------------------------------
@dataclass
class Claimed:
    """A row a worker holds under its lease."""

    id: int
    key: str
    member_id: int
    account_id: int | None
    channel: str
    external_id: str
    kind: str
    proactive: bool
    replies: list[dict[str, Any]]
    body_hash: str
    attempts: int
    retry_key: str | None
    priority: int
    aggregation_unit: str | None = None  # broadcasts: LINE's customAggregationUnits name


_RETURNING = (
    OutboxMessage.id,
    OutboxMessage.key,
    OutboxMessage.member_id,
    OutboxMessage.account_id,
    OutboxMessage.channel,
    OutboxMessage.external_id,
    OutboxMessage.kind,
    OutboxMessage.proactive,
    OutboxMessage.replies,
    OutboxMessage.body_hash,
    OutboxMessage.attempts,
    OutboxMessage.retry_key,
    OutboxMessage.priority,
    OutboxMessage.aggregation_unit,
)


def _due(now: dt.datetime) -> Any:
    return or_(
        and_(OutboxMessage.status == PENDING, OutboxMessage.not_before <= now),
        and_(OutboxMessage.status == SENDING, OutboxMessage.lease_until < now),
    )


async def paused_channels(session: AsyncSession, *, now: dt.datetime) -> dict[str, dt.datetime]:
    rows = await session.execute(
        select(ChannelPause.channel, ChannelPause.paused_until).where(
            ChannelPause.paused_until > now
        )
    )
    return {str(c): u for c, u in rows}


async def claim_batch(
    session: AsyncSession,
    *,
    worker: str,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int = 500,
    channels: Sequence[str] | None = None,
    group_line: bool = False,
) -> list[Claimed]:
    """Take up to `limit` due rows (plus whole keyed LINE groups) for `worker` until the
    lease ends; rows of a dead worker's expired lease count as due. The caller commits.

    With `group_line` (PostgreSQL), fresh LINE rows with identical bodies come back already
    grouped for multicast: each group of 2 to MAX_GROUP rows gets its retry key in the claim
    itself, instead of in a second update of the same rows (see assign_retry_keys). Such a
    key is unused until the first call (`attempts == 1`), so the caller may still take rows
    out of the group (clear_retry_keys)."""
    pg = session.get_bind().dialect.name == "postgresql"
    paused = list(await paused_channels(session, now=now))
    lease_until = now + lease
    claim_values = {
        "status": SENDING,
        "claimed_by": worker,
        "claimed_at": now,
        "lease_until": lease_until,
        "attempts": OutboxMessage.attempts + 1,
    }
    allowed = []
    if channels is not None:
        allowed.append(OutboxMessage.channel.in_(list(channels)))
    if paused:
        allowed.append(OutboxMessage.channel.not_in(paused))

    # 1. Unkeyed rows whose worker died go back to pending (their lease is over).
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == SENDING,
            OutboxMessage.lease_until < now,
            OutboxMessage.retry_key.is_(None),
        )
        .values(status=PENDING, claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    claimed: list[Claimed] = []
    # 2. Keyed LINE groups (retries and take-overs), whole, by one worker at a time.
    locked = True
    if pg:
        locked = bool(await session.scalar(select(func.pg_try_advisory_xact_lock(_GROUP_LOCK))))
    if locked:
        keys = (
            select(OutboxMessage.retry_key)
            .where(OutboxMessage.retry_key.is_not(None), _due(now), *allowed)
            .distinct()
            .limit(max(1, limit // 50))
        )
        result = await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.retry_key.in_(keys.scalar_subquery()), _due(now))
            .values(**claim_values)
            .returning(*_RETURNING)
            .execution_options(synchronize_session=False)
        )
        claimed.extend(Claimed(*row) for row in result)
    # 3. Fresh rows, in priority order, skipping rows another worker is claiming right now.
    room = limit - len(claimed)
    if room > 0:
        due = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status == PENDING,
                OutboxMessage.not_before <= now,
                OutboxMessage.retry_key.is_(None),
                *allowed,
            )
            .order_by(OutboxMessage.priority, OutboxMessage.not_before, OutboxMessage.id)
            .limit(room)
            .with_for_update(skip_locked=True)
        )
        if pg and group_line:
            stmt = _claim_grouped(due, claim_values)
        else:
            stmt = (
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(due.scalar_subquery()))
                .values(**claim_values)
            )
        result = await session.execute(
            stmt.returning(*_RETURNING).execution_options(synchronize_session=False)
        )
        claimed.extend(Claimed(*row) for row in result)
    claimed.sort(key=lambda c: (c.priority, c.id))
    return claimed


def _claim_grouped(due: Select[Any], claim_values: dict[str, Any]) -> Any:
    """The claim of fresh rows that also keys LINE multicast groups (PostgreSQL): rows of one
    body, in id order, in chunks of MAX_GROUP; a chunk of two or more shares a key."""
    picked = due.add_columns(
        OutboxMessage.body_hash, OutboxMessage.channel, OutboxMessage.attempts
    ).subquery("picked")
    groupable = and_(picked.c.channel == "line", picked.c.attempts == 0)
    numbered = select(
        picked.c.id,
        picked.c.body_hash,
        groupable.label("groupable"),
        (
            (
                func.row_number().over(
                    partition_by=(groupable, picked.c.body_hash), order_by=picked.c.id
                )
                - 1
            )
            // MAX_GROUP
        ).label("chunk"),
    ).subquery("numbered")
    size = func.count().over(
        partition_by=(numbered.c.groupable, numbered.c.body_hash, numbered.c.chunk)
    )
    token = str(uuid.uuid4())  # this claim's; the key is a UUID, like group_key's
    key = func.cast(
        func.cast(
            func.md5(
                literal(token)
                + ":"
                + numbered.c.body_hash
                + ":"
                + func.cast(numbered.c.chunk, String)
            ),
            UUID,
        ),
        String,
    )
    grouped = select(
        numbered.c.id,
        case((and_(numbered.c.groupable, size > 1), key), else_=None).label("group_key"),
    ).subquery("grouped")
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id == grouped.c.id)
        .values(**claim_values, retry_key=grouped.c.group_key)
    )


async def clear_retry_keys(session: AsyncSession, *, ids: Sequence[int], worker: str) -> None:
    """Take rows out of a multicast group keyed in this claim (never used in a call)."""
    if ids:
        await session.execute(
            update(OutboxMessage)
            .where(*_mine(session, ids, worker), OutboxMessage.attempts == 1)
            .values(retry_key=None)
            .execution_options(synchronize_session=False)
        )


def group_key(ids: Iterable[int]) -> str:
    """The X-Line-Retry-Key of a group: derived from its rows, so it is the same on retry."""
    return str(uuid.uuid5(_KEY_NS, ",".join(str(i) for i in sorted(ids))))


def row_key(row_id: int) -> str:
    """The retry key of a message sent to one person alone (push): derived from the row."""
    return str(uuid.uuid5(_KEY_NS, f"row:{row_id}"))


async def assign_retry_keys(
    session: AsyncSession, *, worker: str, groups: Sequence[Sequence[int]]
) -> list[str]:
    """Store a retry key on each group of rows before it is sent (the caller commits first)."""
    keys = [group_key(ids) for ids in groups]
    if keys and session.get_bind().dialect.name == "postgresql":
        # One statement for every group of the batch (a batch may hold a thousand groups).
        pairs = [(i, key) for ids, key in zip(groups, keys, strict=True) for i in ids]
        source = (
            func.unnest(
                bindparam(None, [i for i, _ in pairs], type_=ARRAY(Integer)),
                bindparam(None, [k for _, k in pairs], type_=ARRAY(String)),
            )
            .table_valued("id", "key")
            .render_derived()
        )
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == source.c.id, OutboxMessage.claimed_by == worker)
            .values(retry_key=source.c.key)
            .execution_options(synchronize_session=False)
        )
        return keys
    for ids, key in zip(groups, keys, strict=True):
        await session.execute(
            update(OutboxMessage)
            .where(ids_match(session, OutboxMessage.id, ids), OutboxMessage.claimed_by == worker)
            .values(retry_key=key)
            .execution_options(synchronize_session=False)
        )
    return keys


# -- outcomes ----------------------------------------------------------------------------------
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


def _mine(session: AsyncSession, ids: Sequence[int], worker: str) -> tuple[Any, ...]:
    # A worker whose lease ran out may no longer decide about rows another worker took over.
    return (
        ids_match(session, OutboxMessage.id, ids),
        OutboxMessage.claimed_by == worker,
        OutboxMessage.status == SENDING,
    )


async def _settle(session: AsyncSession, ids: Sequence[int], worker: str, **values: Any) -> int:
    """Record the outcome of rows this worker still holds; returns rows changed."""
    if not ids:
        return 0
    result = await session.execute(
        update(OutboxMessage)
        .where(*_mine(session, ids, worker))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def mark_sent(
    session: AsyncSession, *, ids: Sequence[int], worker: str, now: dt.datetime
) -> int:
    return await _settle(
        session, ids, worker, status=SENT, sent_at=now, lease_until=None, last_error=None
    )


def backoff(
    attempts: int, *, base: float = 5.0, cap: float = 3600.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait after `attempts` failed tries: exponential, capped, half of it jittered
    so that rows that failed together do not come back together."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


async def mark_retry(
    session: AsyncSession,
    *,
    ids: Sequence[int],
    worker: str,
    error: str,
    not_before: dt.datetime,
) -> int:
    """Back to pending until `not_before` (the caller chose backoff, jitter or retry_after)."""
    return await _settle(
        session,
        ids,
        worker,
        status=PENDING,
        not_before=not_before,
        lease_until=None,
        claimed_by=None,
        last_error=error[:200],
    )


async def defer(
    session: AsyncSession, *, ids: Sequence[int], worker: str, not_before: dt.datetime, reason: str
) -> int:
    """Put rows back without counting an attempt (quiet hours, a paused channel)."""
    return await _settle(
        session,
        ids,
        worker,
        status=PENDING,
        not_before=not_before,
        lease_until=None,
        claimed_by=None,
        attempts=OutboxMessage.attempts - 1,
        last_error=reason[:200],
    )


async def mark_failed(
    session: AsyncSession, *, ids: Sequence[int], worker: str, error: str, now: dt.datetime
) -> int:
    """Give up on rows (recipient gone, refused by the platform, too many attempts)."""
    return await _settle(
        session, ids, worker, status=FAILED, lease_until=None, last_error=error[:200], sent_at=None
    )


async def withdraw(session: AsyncSession, *, ids: Sequence[int], worker: str, reason: str) -> int:
    """Cancel claimed rows that must not go out any more (e.g. a marketing message to a
    member who unsubscribed after it was queued); no attempt is counted."""
    return await _settle(
        session,
        ids,
        worker,
        status=CANCELLED,
        lease_until=None,
        attempts=OutboxMessage.attempts - 1,
        last_error=reason[:200],
    )


async def reroute(session: AsyncSession, *, row_id: int, worker: str, target: Target) -> int:
    """Send an unkeyed row to another of the member's accounts (the first one is gone)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(*_mine(session, [row_id], worker), OutboxMessage.retry_key.is_(None))
        .values(
            status=PENDING,
            account_id=target.account_id,
            channel=target.channel,
            external_id=target.external_id,
            lease_until=None,
            claimed_by=None,
            attempts=OutboxMessage.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def pause_channel(
    session: AsyncSession, *, channel: str, until: dt.datetime, reason: str, now: dt.datetime
) -> bool:
    """Pause a channel for every worker; True when it was not paused already (alert once)."""
    current = await session.get(ChannelPause, channel, with_for_update=True)
    if current is not None and current.paused_until > now:
        current.paused_until = max(current.paused_until, until)
        return False
    if current is None:
        session.add(
            ChannelPause(channel=channel, paused_until=until, reason=reason, created_at=now)
        )
    else:
        current.paused_until, current.reason, current.created_at = until, reason, now
    await session.flush()
    return True


async def resume_channel(session: AsyncSession, *, channel: str) -> None:
    """An operator lifts a pause (e.g. after raising LINE's monthly quota)."""
    await session.execute(delete(ChannelPause).where(ChannelPause.channel == channel))


async def cancel_pending(
    session: AsyncSession, *, member_ids: Sequence[int], kind: str, now: dt.datetime
) -> int:
    """Withdraw not-yet-sent messages of one kind (e.g. reminders that became moot)."""
    if not member_ids:
        return 0
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.member_id.in_(list(member_ids)),
            OutboxMessage.kind == kind,
            OutboxMessage.status == PENDING,
            OutboxMessage.retry_key.is_(None),
        )
        .values(status=CANCELLED, last_error="no longer needed", lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- figures and retention -------------------------------------------------------------------
async def stats(session: AsyncSession) -> dict[str, dict[str, int]]:
    """{channel: {status: rows}} for the admin console and the CLI."""
    out: dict[str, dict[str, int]] = {}
    rows = await session.execute(
        select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(
            OutboxMessage.channel, OutboxMessage.status
        )
    )
    for channel, status, count in rows:
        out.setdefault(channel, {})[status] = int(count)
    return out


async def purge_finished(
    session: AsyncSession, *, now: dt.datetime, keep: dt.timedelta = dt.timedelta(days=30)
) -> int:
    """Delete rows finished (sent, failed, cancelled) before `now - keep` (retention job)."""
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.status.in_([SENT, FAILED, CANCELLED]),
            OutboxMessage.created_at < now - keep,
        )
    )
    await session.execute(delete(ChannelPause).where(ChannelPause.paused_until < now - keep))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
