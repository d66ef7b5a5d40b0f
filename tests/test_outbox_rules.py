"""Outbox rules over a real database: idempotent keys, priority order, leases and take-over,
only the claiming worker decides, channel choice."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from models import outbox
from models.members import ChannelAccount, Member
from models.outbox import PRIORITY_BROADCAST, PRIORITY_REMINDER, PRIORITY_REPLY
from tests.outbox_support import NOON, add_member, queue, text

LEASE = dt.timedelta(seconds=60)


async def test_the_same_key_is_one_row(session: AsyncSession) -> None:
    person = await add_member(session, channel="line", external_id="U1")
    assert await queue(session, [person], text("a"), key="k") == [f"k:{person.member_id}"]
    assert await queue(session, [person], text("changed"), key="k") == []
    rows = await outbox.claim_batch(session, worker="w", now=NOON, lease=LEASE)
    assert [r.replies[0]["text"] for r in rows] == ["a"]


async def test_claims_go_by_priority_then_age_and_skip_what_is_not_due(
    session: AsyncSession,
) -> None:
    person = await add_member(session, channel="line", external_id="U1")
    await queue(session, [person], text("broadcast"), key="b", priority=PRIORITY_BROADCAST)
    await queue(session, [person], text("later"), key="l", now=NOON + dt.timedelta(minutes=5))
    await queue(session, [person], text("reminder"), key="r", priority=PRIORITY_REMINDER)
    await queue(session, [person], text("reply"), key="p", priority=PRIORITY_REPLY)

    rows = await outbox.claim_batch(session, worker="w", now=NOON, lease=LEASE, limit=2)

    assert [r.replies[0]["text"] for r in rows] == ["reply", "reminder"]
    rest = await outbox.claim_batch(session, worker="w", now=NOON, lease=LEASE)
    assert [r.replies[0]["text"] for r in rest] == ["broadcast"]


async def test_a_dead_workers_rows_are_taken_over_when_its_lease_ends(
    session: AsyncSession,
) -> None:
    person = await add_member(session, channel="telegram", external_id="42")
    await queue(session, [person], text("x"), key="x")
    (row,) = await outbox.claim_batch(session, worker="dead", now=NOON, lease=LEASE)
    assert await outbox.claim_batch(session, worker="w2", now=NOON + LEASE, lease=LEASE) == []

    later = NOON + LEASE + dt.timedelta(seconds=1)
    (again,) = await outbox.claim_batch(session, worker="w2", now=later, lease=LEASE)

    assert (again.id, again.attempts) == (row.id, 2)
    # The dead worker, should it wake up, no longer decides about the row.
    assert await outbox.mark_sent(session, ids=[row.id], worker="dead", now=later) == 0
    assert await outbox.mark_sent(session, ids=[row.id], worker="w2", now=later) == 1


async def test_a_keyed_group_is_claimed_whole(session: AsyncSession) -> None:
    people = [await add_member(session, channel="line", external_id=f"U{i}") for i in range(6)]
    await queue(session, people, text("same"), key="g")
    rows = await outbox.claim_batch(session, worker="w", now=NOON, lease=LEASE)
    ids = [r.id for r in rows]
    (key,) = await outbox.assign_retry_keys(session, worker="w", groups=[ids])
    await outbox.mark_retry(session, ids=ids, worker="w", error="line 500", not_before=NOON)

    again = await outbox.claim_batch(session, worker="w2", now=NOON, lease=LEASE, limit=2)

    assert sorted(r.id for r in again) == sorted(ids)  # the limit never splits a group
    assert {r.retry_key for r in again} == {key}


async def test_proactive_messages_go_to_the_chosen_or_most_recent_channel(
    session: AsyncSession,
) -> None:
    member = Member(created_at=NOON)
    session.add(member)
    await session.flush()
    for channel, ext, seen in (("line", "U1", 1), ("telegram", "42", 3), ("simulator", "s", 2)):
        session.add(
            ChannelAccount(
                member_id=member.id,
                channel=channel,
                external_id=ext,
                created_at=NOON,
                last_seen_at=NOON + dt.timedelta(hours=seen),
            )
        )
    await session.flush()

    most_recent = await outbox.choose_targets(session, member_ids=[member.id])
    member.preferred_channel = "line"
    await session.flush()
    chosen = await outbox.choose_targets(session, member_ids=[member.id])
    only_sim = await outbox.choose_targets(session, member_ids=[member.id], channels=["simulator"])

    assert most_recent[member.id].channel == "telegram"
    assert chosen[member.id].channel == "line"
    assert only_sim[member.id].channel == "simulator"
