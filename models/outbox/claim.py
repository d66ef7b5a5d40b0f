"""Claiming due rows under a lease (whole keyed LINE groups by one worker at a time), their
retry keys, and settling them: sent, retried, deferred, failed, withdrawn or rerouted."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from models.outbox.tables import (
    CANCELLED,
    FAILED,
    MAX_GROUP,
    PENDING,
    SENDING,
    SENT,
    ChannelPause,
    OutboxMessage,
    ids_match,
)
from models.outbox.write import Target

# Only one worker at a time claims LINE groups that already carry a retry key, so that a
# group is never split between two workers (a split could have half of it answered 409).
_GROUP_LOCK = 0x0ED0_0B0C
_KEY_NS = uuid.UUID("0b6c5c1e-2f0e-4d55-9d7f-3a1f6f3b9e21")


# -- claiming ----------------------------------------------------------------------------------
@dataclass
class Claimed:
    """A row a worker holds under its lease."""

    id: int
    key: str
    member_id: int | None  # None: a LINE broadcast group's row (models.outbox.groups)
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
    groups: int = 20,
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

    await _release_expired(session, now=now)
    claimed: list[Claimed] = []
    # Keyed LINE groups (retries and take-overs), whole, by one worker at a time.
    locked = True
    if pg:
        locked = bool(await session.scalar(select(func.pg_try_advisory_xact_lock(_GROUP_LOCK))))
    if locked:
        claimed.extend(
            await _claim_keyed_groups(session, claim_values, allowed, now=now, limit=limit)
        )
    room = limit - len(claimed)
    if room > 0:
        claimed.extend(
            await _claim_fresh(
                session, claim_values, allowed, now=now, room=room, grouped=pg and group_line
            )
        )
    # Up to `groups` LINE broadcast groups (one row, up to MAX_GROUP people each) besides.
    if groups > 0:
        claimed.extend(await claim_groups(session, claim_values, allowed, now=now, limit=groups))
    claimed.sort(key=lambda c: (c.priority, c.id))
    return claimed


async def _release_expired(session: AsyncSession, *, now: dt.datetime) -> None:
    """Unkeyed rows whose worker died go back to pending (their lease is over)."""
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


async def _claim_keyed_groups(
    session: AsyncSession,
    claim_values: dict[str, Any],
    allowed: list[Any],
    *,
    now: dt.datetime,
    limit: int,
) -> list[Claimed]:
    """Due rows of keyed LINE groups, every row of each group (the caller holds the lock)."""
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
    return [Claimed(*row) for row in result]


async def _claim_fresh(
    session: AsyncSession,
    claim_values: dict[str, Any],
    allowed: list[Any],
    *,
    now: dt.datetime,
    room: int,
    grouped: bool,
) -> list[Claimed]:
    """Fresh rows, in priority order, skipping rows another worker is claiming right now;
    `grouped` keys LINE multicast groups in the same statement (see _claim_grouped)."""
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == PENDING,
            OutboxMessage.not_before <= now,
            OutboxMessage.retry_key.is_(None),
            OutboxMessage.member_id.is_not(None),  # group rows: claim_groups
            *allowed,
        )
        .order_by(OutboxMessage.priority, OutboxMessage.not_before, OutboxMessage.id)
        .limit(room)
        .with_for_update(skip_locked=True)
    )
    if grouped:
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
    return [Claimed(*row) for row in result]


async def claim_groups(
    session: AsyncSession,
    claim_values: dict[str, Any],
    allowed: list[Any],
    *,
    now: dt.datetime,
    limit: int,
) -> list[Claimed]:
    """Due LINE broadcast group rows (no member; their people are the `grouped` rows under
    their key, see models.outbox.groups), skipping rows another worker is claiming now."""
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == PENDING,
            OutboxMessage.not_before <= now,
            OutboxMessage.member_id.is_(None),
            *allowed,
        )
        .order_by(OutboxMessage.priority, OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(**claim_values)
        .returning(*_RETURNING)
        .execution_options(synchronize_session=False)
    )
    return [Claimed(*row) for row in result]


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


async def mark_sent_ids(
    session: AsyncSession, *, ids: Sequence[int], worker: str, now: dt.datetime
) -> set[int]:
    """mark_sent that tells which rows it marked (a group row stands for its people)."""
    if not ids:
        return set()
    result = await session.execute(
        update(OutboxMessage)
        .where(*_mine(session, ids, worker))
        .values(status=SENT, sent_at=now, lease_until=None, last_error=None)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return {int(i) for (i,) in result}


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
