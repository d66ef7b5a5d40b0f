"""Writing to the outbox: idempotent by `key`, one statement for a whole batch, and the
choice of each member's channel for a proactive message."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Integer, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.members import ChannelAccount, Member
from models.outbox.tables import PENDING, OutboxMessage, ids_match


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
