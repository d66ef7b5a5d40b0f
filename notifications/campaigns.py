"""Telling draw winners: one outbox row per winner, a transactional message (sent whatever
the marketing opt-out, which governs broadcasts only) that waits out the person's quiet
hours like every proactive message."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Catalog, taipei_time
from bot.messages import Button, Text, dump_replies
from models.campaigns.claims import winners_to_notify
from models.members import Member
from models.outbox import PRIORITY_REMINDER, NewMessage, choose_targets, enqueue_many
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
    """Queue a message to every drawn winner not told yet; returns how many were queued."""
    winners = await winners_to_notify(session, campaign_id=campaign_id)
    member_ids = [claim.member_id for _, claim in winners if claim.member_id is not None]
    targets = await choose_targets(session, member_ids=member_ids)
    messages: list[NewMessage] = []
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
    return len(await enqueue_many(session, messages, now=now))
