"""LINE broadcast groups: one outbox row per multicast of up to MAX_GROUP people.

The broadcast planner (models/broadcasts.py) writes each LINE recipient's row as `grouped`
under a group's key (without the body, which the group row holds), and one group row (no
member, `external_id` empty) that the dispatcher claims, sends and settles like any row, so
that a send of 1.5 million costs 3,000 rows of claiming and settling instead of 1.5
million. A recipient's status is its group row's.

Before a group's first call, its people are screened as a single row would be: whoever
turned marketing off, can no longer be reached on LINE or is inside their own quiet hours
now leaves the group and becomes an ordinary row again (`pending`), which the usual screen
then withdraws, reroutes or defers. (The group row itself waits out the default quiet
hours.) From the first call on, the group is frozen: a retry goes to the same people under
the same retry key, so LINE can answer 409.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.members import ChannelAccount, Member
from models.outbox.claim import Claimed, withdraw
from models.outbox.tables import (
    CANCELLED,
    FAILED,
    GROUPED,
    PENDING,
    SENT,
    OutboxMessage,
    ids_match,
)


def is_group(row: Claimed) -> bool:
    """Whether a claimed row is a LINE broadcast group's row."""
    return row.member_id is None


async def people(
    session: AsyncSession,
    groups: Sequence[Claimed],
    *,
    worker: str,
    quiet: Callable[[str | None], bool],
) -> dict[str, list[str]]:
    """{group key: the LINE user ids it goes to}. Groups before their first call are
    screened (see the module; `quiet` tells whether a member's quiet hours setting makes
    now quiet); a group left with nobody is withdrawn and not returned."""
    if not groups:
        return {}
    keys = [g.key for g in groups]
    fresh = {g.key for g in groups if g.attempts <= 1}
    reachable = and_(
        Member.marketing_opt_in.is_(True),
        ChannelAccount.following.is_(True),
        ChannelAccount.unreachable.is_(False),
    )
    # Through the connection: thousands of plain tuples, without the ORM's row processing.
    connection = await session.connection()
    result = await connection.execute(
        select(
            OutboxMessage.group_key,
            OutboxMessage.id,
            OutboxMessage.external_id,
            reachable,
            Member.quiet_hours,
        )
        .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
        .join(Member, Member.id == OutboxMessage.member_id)
        .where(
            ids_match(session, OutboxMessage.group_key, keys, item_type=OutboxMessage.key.type),
            OutboxMessage.status == GROUPED,
        )
        .order_by(OutboxMessage.id)
    )
    out: dict[str, list[str]] = defaultdict(list)
    leaving: list[int] = []
    for key, row_id, external_id, ok, hours in result:
        if key not in fresh or (ok and not quiet(hours)):
            out[str(key)].append(str(external_id))
        else:
            leaving.append(int(row_id))
    await release(session, leaving)
    empty = [g.id for g in groups if g.key not in out]
    if empty:
        await withdraw(session, ids=empty, worker=worker, reason="no recipients left")
    return dict(out)


async def release(session: AsyncSession, ids: Sequence[int]) -> None:
    """Grouped rows leave their group and become ordinary rows, due as they were."""
    for i in range(0, len(ids), 5000):
        await session.execute(
            update(OutboxMessage)
            .where(ids_match(session, OutboxMessage.id, ids[i : i + 5000]))
            .where(OutboxMessage.status == GROUPED)
            .values(**_ungrouped())
            .execution_options(synchronize_session=False)
        )


def _ungrouped() -> dict[str, Any]:
    """A grouped row on its own again: pending, with its group's body (it kept none)."""
    groups = OutboxMessage.__table__.alias("grp")
    body = select(groups.c.replies).where(groups.c.key == OutboxMessage.group_key)
    return {"status": PENDING, "group_key": None, "replies": body.scalar_subquery()}


async def dissolve(session: AsyncSession, groups: Sequence[Claimed], *, worker: str) -> None:
    """Groups that cannot go as a multicast (LINE without retry keys here): every person's
    row goes on its own, and the group rows are withdrawn. Only before a first call."""
    keys = [g.key for g in groups]
    if not keys:
        return
    await session.execute(
        update(OutboxMessage)
        .where(
            ids_match(session, OutboxMessage.group_key, keys, item_type=OutboxMessage.key.type),
            OutboxMessage.status == GROUPED,
        )
        .values(**_ungrouped())
        .execution_options(synchronize_session=False)
    )
    await withdraw(session, ids=[g.id for g in groups], worker=worker, reason="sent one by one")


async def purge_grouped(session: AsyncSession, *, before: dt.datetime) -> int:
    """Delete grouped rows (written before `before`) whose group row has finished; the
    retention job runs this before it deletes the finished group rows themselves."""
    groups = OutboxMessage.__table__.alias("grp")
    unfinished = exists().where(
        groups.c.key == OutboxMessage.group_key,
        groups.c.status.not_in([SENT, FAILED, CANCELLED]),
    )
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.status == GROUPED,
            OutboxMessage.created_at < before,
            ~unfinished,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
