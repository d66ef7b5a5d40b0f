"""Telling draw winners: one outbox row per winner, a transactional message (sent whatever
the marketing opt-out, which governs broadcasts only) that waits out the person's quiet
hours like every proactive message.

Telling is its own unit of work, after the draw's commit, and can run again at any time
(`edoor campaign notify SLUG`, every draw, the `campaign-winners` job): it queues a message
only to winners with neither a message under their outbox key nor a record that they were
told, and records each one it queues in the same transaction. A process killed between the
draw and the telling, or a telling that failed, leaves winners that the next run tells;
none is told twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import Catalog, taipei_time
from bot.messages import Button, Text, dump_replies
from models.campaigns.claims import record_winner_told, winners_to_notify
from models.campaigns.tables import Campaign, CampaignClaim
from models.db import begin_write
from models.members import Member
from models.outbox import (
    PRIORITY_REMINDER,
    NewMessage,
    OutboxMessage,
    choose_targets,
    enqueue_many,
)
from notifications.quiet_hours import DEFAULT_WINDOW, QuietWindow, window_for

KIND = "prize"


def winner_key(claim_id: int) -> str:
    """The outbox key of a winner's message: a second draw run or notify never repeats it."""
    return f"prize-winner:{claim_id}"


async def notify_winners(
    session: AsyncSession,
    *,
    catalog: Catalog,
    now: dt.datetime,
    campaign_id: int | None = None,
    quiet: QuietWindow = DEFAULT_WINDOW,
) -> int:
    """Queue a message to every drawn winner not told yet (of one campaign, or of all);
    returns how many were queued. The caller commits."""
    winners = await winners_to_notify(session, now=now, campaign_id=campaign_id)
    if winners:
        queued = set(
            (
                await session.scalars(
                    select(OutboxMessage.key).where(
                        OutboxMessage.key.in_([winner_key(claim.id) for _, claim in winners])
                    )
                )
            ).all()
        )
        winners = [(c, claim) for c, claim in winners if winner_key(claim.id) not in queued]
    member_ids = [claim.member_id for _, claim in winners if claim.member_id is not None]
    targets = await choose_targets(session, member_ids=member_ids)
    messages: list[NewMessage] = []
    told: dict[str, tuple[Campaign, CampaignClaim]] = {}
    for campaign, claim in winners:
        if claim.member_id is None or claim.member_id not in targets or claim.claim_until is None:
            continue
        member = await session.get(Member, claim.member_id)
        if member is None:
            continue
        lang = member.language
        english = lang == "en"
        prize = campaign.prize.get("name_en") if english and campaign.prize.get("name_en") else None
        text = catalog.t(
            lang,
            "campaigns.winner",
            title=campaign.title_en if english else campaign.title,
            prize=prize or campaign.prize["name"],
            date=taipei_time(claim.claim_until, "%m/%d %H:%M"),
        )
        reply = Text(
            text=text,
            buttons=[
                Button(
                    label=catalog.t(lang, "campaigns.button_claim"),
                    action=f"prize.claim:{campaign.id}",
                )
            ],
        )
        window = window_for(member.quiet_hours, quiet)
        messages.append(
            NewMessage(
                key=winner_key(claim.id),
                target=targets[claim.member_id],
                replies=dump_replies([reply]),
                kind=KIND,
                priority=PRIORITY_REMINDER,
                not_before=window.next_allowed(now),
                proactive=True,
            )
        )
        told[winner_key(claim.id)] = (campaign, claim)
    # Only the keys inserted now: a concurrent run that queued one first records it itself.
    inserted = await enqueue_many(session, messages, now=now)
    for key in inserted:
        campaign, claim = told[key]
        await record_winner_told(session, campaign=campaign, claim=claim, now=now)
    return len(inserted)


def winners_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    catalog: Catalog,
    quiet: QuietWindow = DEFAULT_WINDOW,
    on_queued: Callable[[], object] | None = None,
) -> Callable[[dt.datetime], Awaitable[int]]:
    """The `campaign-winners` job: tells every drawn winner not told yet (of any campaign),
    so that winners whose telling failed after a draw are told without anyone noticing."""

    async def run(now: dt.datetime) -> int:
        async with sessionmaker() as session:  # a read first: most minutes there is no one
            if not await winners_to_notify(session, now=now):
                return 0
        async with sessionmaker() as session:
            await begin_write(session)  # read, then write: the SQLite lock up front
            queued = await notify_winners(session, catalog=catalog, now=now, quiet=quiet)
            await session.commit()
        if queued and on_queued is not None:
            on_queued()
        return queued

    return run
