"""Chats (Telegram, and LINE or the simulator where they send without retry keys): one chat
at a time and in order, about 30 messages/s overall and 1/s per chat on Telegram; each row
is marked sent in its own commit right after its call, so a crash repeats at most that one."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict, defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import DeliveryError
from bot.messages import Incoming, load_replies
from models import outbox
from models.broadcasts import KIND as MARKETING_KIND
from models.outbox import Claimed
from notifications.dispatcher.common import (
    ChannelStrategy,
    CommitDefer,
    CommitOutcomes,
    DrainReport,
    Outcome,
    Sending,
    loop_clock,
)

CHAT_MEMORY = 50_000


class ChatStrategy(ChannelStrategy):
    """Sends each chat's rows in order, spaced and paced as Telegram wants."""

    def __init__(
        self, sending: Sending, *, commit: CommitOutcomes, commit_defer: CommitDefer
    ) -> None:
        super().__init__(sending)
        self._commit = commit
        self._commit_defer = commit_defer
        self._telegram_resume = 0.0  # loop time before which Telegram is paused (429)
        # When each recent Telegram chat last got a message (1/s per chat across batches).
        self._chat_done: OrderedDict[str, float] = OrderedDict()

    async def plan(
        self, session: AsyncSession, rows: list[Claimed], now: dt.datetime
    ) -> list[Claimed]:
        """The rows to send in this batch: at most `per_chat_batch` of one Telegram chat
        (1 msg/s per chat), the rest put back for the next batch."""
        others: list[Claimed] = []
        per_chat: dict[str, int] = defaultdict(int)
        later: list[int] = []
        for row in rows:
            if (
                row.channel == "telegram"
                and per_chat[row.external_id] >= self.config.per_chat_batch
            ):
                later.append(row.id)  # 1 msg/s per chat: the rest waits for the next batch
            else:
                per_chat[row.external_id] += 1
                others.append(row)
        if later:
            await outbox.defer(
                session, ids=later, worker=self.worker, not_before=now, reason="chat busy"
            )
        return others

    async def send(self, rows: list[Claimed], now: dt.datetime, report: DrainReport) -> None:
        """One chat's rows in order; Telegram rows are marked one by one as they go."""
        async with self._sem:
            for index, row in enumerate(rows):
                channel = self.channels[row.channel]
                if row.channel == "telegram":
                    previous_done = self._chat_done.get(row.external_id)
                    if previous_done is not None and self.config.limits_on:
                        # Spaced from the previous call's end, so arrivals stay ≥1 s apart.
                        gap = previous_done + self.config.telegram_chat_gap - loop_clock()
                        if gap > 0:
                            await asyncio.sleep(gap)
                    await self._telegram_pause()
                    overall = "telegram_paid" if self.paid(row) else "telegram"
                    await self.limits.acquire((overall, "all"), ("telegram_chat", row.external_id))
                incoming = Incoming(
                    channel=row.channel,
                    user_id=row.external_id,
                    kind="unknown",
                    event_id=f"outbox:{row.id}",
                )
                paid = {"paid_broadcast": True} if self.paid(row) else {}
                replies = row.replies
                links = self.config.person_links
                if links is not None and row.kind == MARKETING_KIND and row.member_id:
                    replies = links.personal(replies, row.member_id)
                try:
                    delivery = await channel.deliver(
                        row.external_id, load_replies(replies), incoming=incoming, **paid
                    )
                    report.requests += delivery.requests
                    if row.channel == "telegram":
                        self.remember(row.external_id)
                except Exception as exc:
                    if row.channel == "telegram":
                        self.remember(row.external_id)  # a refused call counts too
                    if (
                        isinstance(exc, DeliveryError)
                        and exc.retry_after
                        and row.channel == "telegram"
                    ):
                        self._telegram_resume = max(
                            self._telegram_resume,
                            asyncio.get_running_loop().time() + exc.retry_after,
                        )
                    # The rest of this chat waits: order matters within a conversation.
                    rest = rows[index + 1 :]
                    await self._commit(
                        [Outcome([row.id], row.attempts, exc, row.channel, [row.external_id])],
                        now,
                        report,
                    )
                    if rest:
                        await self._commit_defer(
                            [r.id for r in rest], now, report, "after a failure"
                        )
                    return
                await self._commit(
                    [Outcome([row.id], row.attempts, None, row.channel, [])],
                    now,
                    report,
                    quick=True,
                )

    def paid(self, row: Claimed) -> bool:
        """A broadcast row sent as a Telegram paid broadcast (the opt-in setting)."""
        return (
            self.config.telegram_paid_broadcast
            and row.channel == "telegram"
            and row.kind == MARKETING_KIND
        )

    def remember(self, chat: str) -> None:
        self._chat_done[chat] = loop_clock()
        self._chat_done.move_to_end(chat)
        while len(self._chat_done) > CHAT_MEMORY:
            self._chat_done.popitem(last=False)

    async def _telegram_pause(self) -> None:
        wait = self._telegram_resume - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
