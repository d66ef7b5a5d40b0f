"""The `podcast-drops` job: outbox rows at each subscriber's Taipei delivery time."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import Catalog
from bot.messages import Reply, Text, dump_replies
from bot.ports import LinkSigner
from bot.settings import Settings
from media.episodes import episode_audio, episode_title
from media.feeds import duration_text
from models import outbox
from models.members import Member
from models.outbox import Target
from models.podcasts import Episode, due_drops, episodes_of


class Enqueue(Protocol):
    """models.outbox.enqueue: adds one row unless its key exists (True when added)."""

    async def __call__(
        self,
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
    ) -> bool: ...


def drop_key(*, podcast_id: int, member_id: int, episode_id: int) -> str:
    """One episode reaches one member once, whichever scheduler fires or how often."""
    return f"podcast:{podcast_id}:member:{member_id}:episode:{episode_id}"


async def podcast_drops(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: dt.datetime,
    settings: Settings,
    catalog: Catalog,
    signer: LinkSigner,
    enqueue: Enqueue = outbox.enqueue,
) -> int:
    """The `podcast-drops` job: an outbox row for every subscription whose Taipei delivery
    time has come, carrying the next episode the member has not finished, not before that
    time (the dispatcher holds it through quiet hours). Idempotent; returns rows written."""
    written = 0
    async with sessionmaker() as session:
        drops = await due_drops(session, now=now)
        targets = await outbox.choose_targets(
            session, member_ids={d.subscription.member_id for d in drops}
        )
        listing: dict[int, list[Episode]] = {}
        for drop in drops:
            sub, ep = drop.subscription, drop.episode
            target = targets.get(sub.member_id)
            member = await session.get(Member, sub.member_id)
            if target is None or member is None:
                # Nobody to send to now: keep the episode for their next slot.
                sub.next_number = ep.number
                continue
            t = functools.partial(catalog.t, member.language)
            if ep.podcast_id not in listing:
                listing[ep.podcast_id] = await episodes_of(
                    session, podcast_id=ep.podcast_id, now=now
                )
            replies: list[Reply] = [
                Text(
                    text=t(
                        "podcasts.drop",
                        podcast=ep.podcast.title,
                        title=episode_title(t, ep),
                        duration=duration_text(ep.duration_ms),
                    )
                ),
                episode_audio(
                    t,
                    settings,
                    ep,
                    episodes=listing[ep.podcast_id],
                    now=now,
                    signer=signer,
                    member_id=member.id,
                ),
            ]
            added = await enqueue(
                session,
                key=drop_key(podcast_id=ep.podcast_id, member_id=member.id, episode_id=ep.id),
                target=target,
                replies=dump_replies(replies),
                kind="episode",
                priority=outbox.PRIORITY_EPISODE,
                not_before=drop.slot,
                now=now,
            )
            written += int(added)
        await session.commit()
    return written
