"""From a recorded platform event to delivered replies, exactly once per event.

record() runs inside the webhook request and commits before the platform gets its 200.
process() runs after the acknowledgement: claim the row, run the router in one transaction
that also stores the replies, commit, then deliver. A crash at any point leaves a row that
recover() (at start-up and periodically) finishes; the claim's lease stops two workers from
processing the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel, DeliveryError, RecipientGone
from bot.context import Context, Services
from bot.i18n import normalise_language
from bot.messages import Incoming, Reply, Text, dump_replies, load_replies
from bot.redact import redact
from bot.router import Router
from models import inbound as events_db
from models.base import utcnow
from models.conversation import get_state
from models.members import ChannelAccount, ensure_account, set_reachability

log = logging.getLogger("edoor.inbound")

Clock = Callable[[], dt.datetime]


class InboundProcessor:
    """Runs recorded events through the router and delivers the replies."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        services: Services,
        router: Router,
        channels: dict[str, Channel],
        clock: Clock = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.services = services
        self.router = router
        self.channels = channels
        self.clock = clock
        self._to_record: list[tuple[str, list[events_db.NewEvent], asyncio.Future[list[int]]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._queue: deque[int] = deque()
        self._worker: asyncio.Task[None] | None = None

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.services.settings.inbound_lease_seconds)

    # -- recording (inside the webhook request) ---------------------------------------------
    def new_event(self, *, event_id: str, kind: str, raw: dict[str, Any]) -> events_db.NewEvent:
        """A row to record: redacted payload for people, the original encrypted."""
        sealed = self.services.vault.encrypt_bytes(json.dumps(raw, ensure_ascii=False).encode())
        return events_db.NewEvent(event_id=event_id, kind=kind, payload=redact(raw), sealed=sealed)

    async def record(self, channel: str, rows: list[events_db.NewEvent]) -> list[int]:
        """Store events not seen before and commit; returns the new row ids to process.

        Concurrent requests share one INSERT and one COMMIT (group commit): under load, the
        database sees a few large transactions instead of one per webhook. Raises when the
        database does not answer: the caller must then not acknowledge.
        """
        if not rows:
            return []
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._to_record.append((channel, rows, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_pending())
        return await future

    async def _record_pending(self) -> None:
        while self._to_record:
            batch, self._to_record = self._to_record, []
            try:
                async with self.sessionmaker() as session:
                    ids = await events_db.record_events_multi(
                        session,
                        events=[(channel, row) for channel, rows, _ in batch for row in rows],
                        now=self.clock(),
                    )
                    await session.commit()
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for channel, rows, future in batch:
                mine = [
                    ids.pop((channel, row.event_id))
                    for row in rows
                    if (channel, row.event_id) in ids
                ]
                if not future.done():
                    future.set_result(mine)

    def submit(self, row_ids: list[int]) -> None:
        """Process recorded events after the acknowledgement, in arrival order, off the
        request: one worker task per process takes them in batches."""
        self._queue.extend(row_ids)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), 100))]
            await self.process_many(batch)

    async def drain(self, within: float = 10.0) -> None:
        """Wait (at most `within` s) for submitted events, e.g. at shutdown; the sweep
        finishes whatever is left."""
        for task in (self._recorder, self._worker):
            if task is not None and not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), within)

    # -- processing ----------------------------------------------------------------------------
    async def process_many(self, row_ids: list[int]) -> None:
        """Process events in order (one user's events must not overtake each other)."""
        for row_id in row_ids:
            try:
                await self.process(row_id)
            except Exception:
                # The row stays claimed; recover() retries it once the lease has passed.
                log.exception("inbound event processing failed", extra={"row_id": row_id})

    async def process(self, row_id: int) -> None:
        now = self.clock()
        async with self.sessionmaker() as session:
            if not await events_db.claim_event(session, row_id=row_id, now=now, lease=self.lease):
                await session.rollback()
                return
            await session.commit()
            row = await session.get(events_db.InboundEvent, row_id)
            assert row is not None
            channel = self.channels.get(row.channel)
            if channel is None:
                row.status, row.last_error = events_db.FAILED, "channel not configured"
                await session.commit()
                return
            incoming = None
            if row.sealed is not None:
                raw = json.loads(self.services.vault.decrypt_bytes(row.sealed))
                incoming = channel.to_incoming(raw)
            if row.pending_replies is None:
                await self._run_handlers(session, row, incoming, now)
            await self._deliver(session, row, channel, incoming)

    async def _run_handlers(
        self,
        session: AsyncSession,
        row: events_db.InboundEvent,
        incoming: Incoming | None,
        now: dt.datetime,
    ) -> None:
        replies: list[Reply] = []
        error: str | None = None
        if incoming is not None:
            try:
                replies = await self.handle(session, incoming, now=now)
            except Exception as exc:
                await session.rollback()
                log.exception("handler failed", extra={"event_id": row.event_id})
                error = f"handler: {type(exc).__name__}"
                replies = [Text(text=self.services.catalog.t("zh-TW", "common.apology"))]
                await session.refresh(row)
        row.pending_replies = dump_replies(replies)
        row.status = events_db.ANSWERING
        row.processed_at = now
        row.last_error = error
        await session.commit()

    async def handle(
        self,
        session: AsyncSession,
        msg: Incoming,
        *,
        now: dt.datetime,
    ) -> list[Reply]:
        """Route one Incoming within `session` (not committed here); returns the replies."""
        if msg.kind == "unfollow":
            await set_reachability(
                session, channel=msg.channel, external_id=msg.user_id, reachable=False
            )
            return []
        account, created = await ensure_account(
            session,
            channel=msg.channel,
            external_id=msg.user_id,
            language=normalise_language(msg.language_hint),
            now=now,
        )
        if msg.kind == "follow" or account.unreachable:
            account.unreachable, account.following = False, True
        await session.flush()
        ctx = await self.context(session, account, now=now)
        ctx.new_member = created
        return await self.router.dispatch(ctx, msg)

    async def context(
        self, session: AsyncSession, account: ChannelAccount, *, now: dt.datetime
    ) -> Context:
        state = await get_state(session, account_id=account.id, now=now)
        return Context(
            session=session, services=self.services, account=account, now=now, state=state
        )

    async def _deliver(
        self,
        session: AsyncSession,
        row: events_db.InboundEvent,
        channel: Channel,
        incoming: Incoming | None,
    ) -> None:
        replies = load_replies(row.pending_replies or [])
        if incoming is not None and (replies or incoming.callback_query_id):
            try:
                await channel.deliver(incoming.user_id, replies, incoming=incoming)
            except RecipientGone:
                await set_reachability(
                    session, channel=row.channel, external_id=incoming.user_id, reachable=False
                )
                await session.commit()
            except DeliveryError as exc:
                row.last_error = exc.reason[:200]
                await session.commit()
                raise
        handler_failed = (row.last_error or "").startswith("handler:")
        await self._finish(
            row.id, failed=handler_failed, error=row.last_error if handler_failed else None
        )

    async def _finish(self, row_id: int, *, failed: bool, error: str | None) -> None:
        """Mark an event finished. The replies are already out, so a database hiccup here is
        retried for a while rather than leaving the row to be answered a second time."""
        values = {
            "status": events_db.FAILED if failed else events_db.DONE,
            "pending_replies": None,
            "sealed": None,
            "last_error": error,
        }
        delay = 0.25
        for attempt in range(7):
            try:
                async with self.sessionmaker() as session:
                    await events_db.finish_event(session, row_id=row_id, values=values)
                    await session.commit()
                return
            except Exception:
                if attempt == 6:
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    # -- recovery ----------------------------------------------------------------------------
    async def recover(self) -> int:
        """Finish events whose processor died or never ran; returns how many were taken up."""
        async with self.sessionmaker() as session:
            ids = await events_db.unfinished_event_ids(session, now=self.clock(), lease=self.lease)
        await self.process_many(ids)
        return len(ids)
