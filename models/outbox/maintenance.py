"""Beside the send loop: channel pauses, cancelling rows that became moot, figures and
retention."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.outbox.tables import CANCELLED, FAILED, PENDING, SENT, ChannelPause, OutboxMessage


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
    """Delete rows finished (sent, failed, cancelled) before `now - keep` (retention job),
    and the grouped rows of finished LINE groups."""
    from models.outbox.groups import purge_grouped

    grouped = await purge_grouped(session, before=now - keep)
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.status.in_([SENT, FAILED, CANCELLED]),
            OutboxMessage.created_at < now - keep,
        )
    )
    await session.execute(delete(ChannelPause).where(ChannelPause.paused_until < now - keep))
    return grouped + int(result.rowcount or 0)  # type: ignore[attr-defined]
