"""From a recorded platform event to delivered replies, exactly once per event.

record() runs inside the webhook request and commits before the platform gets its 200.
process() runs after the acknowledgement: claim the row, run the router in one transaction
that also stores the replies and marks them as being sent, commit, then deliver. A crash at
any point leaves a row that recover() (at start-up and periodically) finishes; the claim's
lease stops two workers from processing the same event, and each process's heartbeat lets
the others take over its claims soon after it stops beating (killed, or its machine gone)
instead of when the lease runs out. A row marked as being sent whose LINE reply token is then
refused was answered before the crash: recovery does not push it a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel, DeliveryError, RecipientGone, ReplyWindowClosed
from bot.context import Context, Services
from bot.i18n import normalise_language
from bot.messages import Incoming, Reply, Text, dump_replies, load_replies
from bot.redact import redact
from bot.router import Router
from models import inbound as events_db
from models import outbox
from models.base import utcnow
from models.conversation import get_state
from models.members import ChannelAccount, ensure_account, get_account, set_reachability

log = logging.getLogger("edoor.inbound")

# Events handled in one transaction; large enough to amortise commits under load, small
# enough that a failing batch delays few people.
BATCH = 20
# On SQLite a batch holds the one write lock from its claim to its commit, and the webhook's
# group commit waits behind it: batches there are sized to hold it about this long.
SQLITE_LOCK_BUDGET = 0.04  # seconds
# An event this process recorded but could not claim (another process still handles an
# earlier message of the same person) is tried again this often, this many times; after
# that the periodic sweep (recover) takes it.
RETRY_SKIPPED_SECONDS = 0.5
RETRY_SKIPPED_TIMES = 20
# What people may read of one event (its redacted copy); larger events keep a summary.
MAX_STORED_PAYLOAD = 16 * 1024


@dataclass
class _Answer:
    """One processed event on its way out."""

    row_id: int
    channel_name: str
    channel: Channel
    incoming: Incoming | None
    replies: list[Reply]
    error: str | None
    delivered: bool = False
    gone: bool = False
    retry_reason: str | None = None
    push_instead: list[Reply] | None = None  # the reply window closed: send via the outbox
    # A process died while these replies were with the platform: it may have them.
    in_flight_before: bool = False

    @property
    def handler_failed(self) -> bool:
        return (self.error or "").startswith("handler:")


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
        # Called after replies were handed to the outbox, so a dispatcher can send at once.
        self.on_enqueued: Callable[[], None] | None = None
        self._to_record: list[tuple[str, list[events_db.NewEvent], asyncio.Future[list[int]]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._queue: deque[int] = deque()
        self._worker: asyncio.Task[None] | None = None
        # Callers of answer() waiting for their events' first turn in the worker.
        self._turns: dict[int, asyncio.Future[None]] = {}
        bind = sessionmaker.kw.get("bind")
        self._one_writer = getattr(getattr(bind, "dialect", None), "name", "") == "sqlite"
        self._seconds_per_event = SQLITE_LOCK_BUDGET / BATCH  # a running average, measured
        self._skipped: dict[int, int] = {}  # row id -> times it could not be claimed
        # This process's name on its claims, while its heartbeat runs (see _ensure_beating).
        self.worker_id = str(uuid.uuid4())
        self._beating: asyncio.Task[None] | None = None
        self._registered = False
        self._register_lock = asyncio.Lock()

    @property
    def batch_size(self) -> int:
        """Events per transaction: BATCH, or on SQLite as many as fit the lock budget."""
        if not self._one_writer:
            return BATCH
        return max(1, min(BATCH, int(SQLITE_LOCK_BUDGET / self._seconds_per_event)))

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.services.settings.inbound_lease_seconds)

    def holder(self, now: dt.datetime) -> events_db.Holder:
        """How this process claims: under its name while it beats, and taking over claims of
        processes silent for INBOUND_GONE_AFTER_SECONDS."""
        gone = dt.timedelta(seconds=self.services.settings.inbound_gone_after_seconds)
        return events_db.Holder(self.worker_id if self._registered else None, now - gone)

    # -- heartbeat -----------------------------------------------------------------------------
    async def _ensure_beating(self) -> None:
        """Register this process before its first claim, then beat every
        INBOUND_HEARTBEAT_SECONDS (a process that only acknowledges never registers)."""
        if self._registered:
            return
        async with self._register_lock:
            if self._registered:
                return
            async with self.sessionmaker() as session:
                await events_db.register_worker(session, worker_id=self.worker_id, now=self.clock())
                await session.commit()
            self._registered = True
            self._beating = asyncio.create_task(self._beat_forever())

    async def _beat_forever(self) -> None:
        every = self.services.settings.inbound_heartbeat_seconds
        while True:
            await asyncio.sleep(every)
            try:
                async with self.sessionmaker() as session:
                    if not await events_db.beat(
                        session, worker_id=self.worker_id, now=self.clock()
                    ):
                        # Purged as silent (a long stall): our claims were free for others.
                        await events_db.register_worker(
                            session, worker_id=self.worker_id, now=self.clock()
                        )
                    await session.commit()
            except Exception:
                log.warning("inbound heartbeat not recorded; retrying", exc_info=True)

    async def close(self) -> None:
        """Stop beating and say so: what this process still holds is anyone's at once."""
        for turn in self._turns.values():  # nobody waits on a worker that is stopping
            if not turn.done():
                turn.set_result(None)
        self._turns.clear()
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        if self._registered:
            self._registered = False
            try:
                async with self.sessionmaker() as session:
                    await events_db.retire_worker(session, worker_id=self.worker_id)
                    await session.commit()
            except Exception:
                log.warning("could not retire this inbound worker", exc_info=True)

    # -- recording (inside the webhook request) ---------------------------------------------
    def new_event(
        self,
        *,
        event_id: str,
        kind: str,
        raw: dict[str, Any],
        sender: str | None = None,
        actor: str | None = None,
    ) -> events_db.NewEvent:
        """A row to record: redacted payload for people, the original encrypted; `sender`
        (the platform's id of the person or chat) keeps their events in order, `actor` (the
        person, when the sender is a group; else the sender) is how delete-my-data finds
        them."""
        original = json.dumps(raw, ensure_ascii=False).encode()
        sealed = self.services.vault.encrypt_bytes(original)
        payload = redact(raw)
        if len(original) > MAX_STORED_PAYLOAD:
            # What people may read stays small: a huge event keeps only what identifies it
            # (the sealed original, erased once answered, is what the handlers see).
            payload = {
                "truncated": True,
                "bytes": len(original),
                **{k: payload[k] for k in ("type", "mode", "timestamp") if k in payload},
            }
        return events_db.NewEvent(
            event_id=event_id,
            kind=kind,
            payload=payload,
            sealed=sealed,
            sender=sender,
            actor=actor or sender,
        )

    async def reject(self, channel: str, *, event_id: str, reason: str, size: int) -> None:
        """Record an event that will not be processed (and why), so it is acknowledged once and
        an operator can see it; raises when the database does not answer."""
        async with self.sessionmaker() as session:
            await events_db.record_rejected(
                session,
                channel=channel,
                event_id=event_id,
                reason=reason,
                size=size,
                now=self.clock(),
            )
            await session.commit()

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
        request: one worker task per process takes them in batches (unless `edoor worker`
        processes answer, INBOUND_PROCESSING=worker)."""
        if self.services.settings.inbound_processing == "worker":
            return
        self._queue.extend(row_ids)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while self._queue:
            # Acknowledging comes first: let a pending group commit finish before taking
            # the database for a batch (on SQLite both need the one write lock).
            recorder = self._recorder
            if recorder is not None and not recorder.done():
                await asyncio.wait([recorder], timeout=1.0)
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))]
            try:
                skipped = await self.process_many(batch)
                self._retry_later(batch, skipped)
            finally:
                for row_id in batch:
                    turn = self._turns.pop(row_id, None)
                    if turn is not None and not turn.done():
                        turn.set_result(None)

    async def answer(self, row_ids: list[int]) -> None:
        """Process recorded events now and return once they had their turn (answered, or
        held back behind the same person's earlier event: then the retry or the sweep answers
        it). They join the worker's batches like a webhook's events, so concurrent callers
        share transactions instead of committing one by one; with INBOUND_PROCESSING=worker
        (no worker task here) they are processed inline."""
        if self.services.settings.inbound_processing == "worker":
            await self.process_many(row_ids)
            return
        loop = asyncio.get_running_loop()
        turns = [self._turns.setdefault(row_id, loop.create_future()) for row_id in row_ids]
        self.submit(row_ids)
        await asyncio.gather(*turns)

    def _retry_later(self, batch: list[int], skipped: list[int]) -> None:
        """Submit skipped events again shortly (a bounded number of times)."""
        for row_id in set(batch) - set(skipped):
            self._skipped.pop(row_id, None)
        again = []
        for row_id in skipped:
            tries = self._skipped[row_id] = self._skipped.get(row_id, 0) + 1
            if tries <= RETRY_SKIPPED_TIMES:
                again.append(row_id)
            else:
                del self._skipped[row_id]
        if again:
            asyncio.get_running_loop().call_later(RETRY_SKIPPED_SECONDS, self.submit, again)

    async def drain(self, within: float = 10.0) -> None:
        """Wait (at most `within` s) for submitted events, e.g. at shutdown; the sweep
        finishes whatever is left."""
        for task in (self._recorder, self._worker):
            if task is not None and not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), within)

    # -- processing ----------------------------------------------------------------------------
    async def process_many(self, row_ids: list[int]) -> list[int]:
        """Process events in order, in batches (one user's events never overtake each other);
        returns the ids that could not be claimed (held or finished elsewhere)."""
        skipped: list[int] = []
        i = 0
        while i < len(row_ids):
            chunk = row_ids[i : i + self.batch_size]
            i += len(chunk)
            try:
                skipped += await self.process_batch(chunk)
            except Exception:
                # The rows stay claimed; recover() retries them once the lease has passed.
                log.exception("inbound event processing failed", extra={"rows": len(chunk)})
        return skipped

    async def process(self, row_id: int) -> None:
        await self.process_batch([row_id])

    async def process_batch(self, row_ids: list[int]) -> list[int]:
        """Claim, route and answer a batch: one transaction for the claim and the handlers
        (each in its own savepoint) that also stores the replies; then delivery; then one
        update to finish. Returns the ids it could not claim."""
        await self._ensure_beating()
        now = self.clock()
        work: list[_Answer] = []
        started = time.perf_counter()
        async with self.sessionmaker() as session:
            # The claim is the transaction's first statement, so it starts as a writer (on
            # SQLite it waits for the lock instead of failing on a stale read snapshot); if
            # anything below fails, the rollback hands the events back to the sweep.
            claimed = await events_db.claim_events(
                session, row_ids=row_ids, now=now, lease=self.lease, holder=self.holder(now)
            )
            skipped = sorted(set(row_ids) - set(claimed))
            if not claimed:
                await session.rollback()
                return skipped
            for row in await events_db.load_events(session, row_ids=claimed):
                channel = self.channels.get(row.channel)
                if channel is None:
                    row.status, row.last_error = events_db.FAILED, "channel not configured"
                    continue
                incoming = None
                if row.sealed is not None:
                    raw = json.loads(self.services.vault.decrypt_bytes(row.sealed))
                    incoming = channel.to_incoming(raw)
                in_flight_before = row.reply_started_at is not None
                if row.pending_replies is None:
                    await self._run_handlers(session, row, incoming, now)
                if incoming is not None and (row.pending_replies or incoming.callback_query_id):
                    # Committed below, before the platform call: if this process dies with
                    # the answer in flight, recovery knows the platform may have it.
                    row.reply_started_at = now
                work.append(
                    _Answer(
                        row.id,
                        row.channel,
                        channel,
                        incoming,
                        load_replies(row.pending_replies or []),
                        row.last_error,
                        in_flight_before=in_flight_before,
                    )
                )
            await session.commit()
        held = (time.perf_counter() - started) / len(claimed)
        self._seconds_per_event += 0.2 * (held - self._seconds_per_event)
        by_user: dict[tuple[str, str], list[_Answer]] = {}
        for answer in work:
            user = answer.incoming.user_id if answer.incoming else f"row:{answer.row_id}"
            by_user.setdefault((answer.channel_name, user), []).append(answer)
        await asyncio.gather(*(self._deliver_in_order(items) for items in by_user.values()))
        await self._finish(work)
        return skipped

    async def _run_handlers(
        self,
        session: AsyncSession,
        row: events_db.InboundEvent,
        incoming: Incoming | None,
        now: dt.datetime,
    ) -> None:
        replies: list[Reply] = []
        error: str | None = None
        event_id = row.event_id
        if incoming is not None:
            try:
                async with session.begin_nested():
                    replies = await self.handle(session, incoming, now=now)
            except Exception as exc:
                log.exception("handler failed", extra={"event_id": event_id})
                error = f"handler: {type(exc).__name__}"
                replies = [Text(text=self.services.catalog.t("zh-TW", "common.apology"))]
        row.pending_replies = dump_replies(replies)
        row.status = events_db.ANSWERING
        row.processed_at = now
        row.last_error = error

    async def _deliver_in_order(self, answers: list[_Answer]) -> None:
        """One person's answers, in order; stop at the first that cannot go out now."""
        for answer in answers:
            incoming = answer.incoming
            if incoming is None or not (answer.replies or incoming.callback_query_id):
                answer.delivered = True
                continue
            try:
                await answer.channel.deliver(incoming.user_id, answer.replies, incoming=incoming)
                answer.delivered = True
            except RecipientGone:
                answer.delivered = answer.gone = True
            except ReplyWindowClosed as exc:
                answer.delivered = True
                if answer.in_flight_before:
                    # The reply token was handed to LINE before a crash and is spent now: the
                    # answer went out then. A push would say it a second time.
                    log.info("reply sent before a crash; not pushed again")
                else:
                    answer.push_instead = exc.replies
            except DeliveryError as exc:
                answer.retry_reason = exc.reason[:200]
                return
            except Exception as exc:
                log.exception("delivery failed", extra={"row_id": answer.row_id})
                answer.retry_reason = f"delivery: {type(exc).__name__}"
                return

    async def _finish(self, answers: list[_Answer]) -> None:
        """Record the outcome. The replies are already out, so a database hiccup here is
        retried for a while rather than leaving rows to be answered a second time."""
        delay = 0.25
        for attempt in range(7):
            try:
                async with self.sessionmaker() as session:
                    pushes = await self._enqueue_pushes(session, answers)
                    for answer in answers:
                        if answer.gone and answer.incoming is not None:
                            await set_reachability(
                                session,
                                channel=answer.channel_name,
                                external_id=answer.incoming.user_id,
                                reachable=False,
                            )
                    await events_db.finish_events(
                        session,
                        done=[a.row_id for a in answers if a.delivered and not a.handler_failed],
                        failed=[a.row_id for a in answers if a.delivered and a.handler_failed],
                        retry={
                            a.row_id: a.retry_reason
                            for a in answers
                            if not a.delivered and a.retry_reason
                        },
                    )
                    await session.commit()
                if pushes and self.on_enqueued is not None:
                    self.on_enqueued()
                return
            except Exception:
                if attempt == 6:
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    async def _enqueue_pushes(self, session: AsyncSession, answers: list[_Answer]) -> int:
        """Answers whose reply window closed become outbox rows (idempotent per event)."""
        count = 0
        for answer in answers:
            if answer.push_instead is None or answer.incoming is None:
                continue
            account = await get_account(
                session, channel=answer.channel_name, external_id=answer.incoming.user_id
            )
            if account is None:
                continue
            target = outbox.Target(
                member_id=account.member_id,
                account_id=account.id,
                channel=account.channel,
                external_id=account.external_id,
            )
            count += await outbox.enqueue(
                session,
                key=f"reply:{answer.row_id}",
                target=target,
                replies=dump_replies(answer.push_instead),
                kind="reply",
                priority=outbox.PRIORITY_REPLY,
                not_before=self.clock(),
                now=self.clock(),
                proactive=False,
            )
        return count

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

    async def run_intake(self, stop: asyncio.Event) -> None:
        """`edoor worker` with INBOUND_PROCESSING=worker: answer recorded events as they come."""
        while not stop.is_set():
            taken = 0
            try:
                now = self.clock()
                async with self.sessionmaker() as session:
                    ids = await events_db.unfinished_event_ids(
                        session,
                        now=now,
                        lease=self.lease,
                        limit=BATCH * 10,
                        holder=self.holder(now),
                    )
                taken = len(ids)
                await self.process_many(ids)
            except Exception:
                log.exception("inbound intake failed; retrying shortly")
            if taken == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.services.settings.inbound_poll_seconds)

    # -- recovery ----------------------------------------------------------------------------
    async def recover(self) -> int:
        """Finish events whose processor died or never ran; returns how many were taken up."""
        taken = 0
        tried: set[int] = set()  # claimed (or failed) in this sweep: not again
        held: set[int] = set()  # could not be claimed: again, but after the others
        while True:
            # BATCH at a time, asking again each time: a process that stops beating while
            # this sweep works through a backlog has its events taken over at the next batch,
            # not after the whole backlog (the oldest events come first).
            now = self.clock()
            async with self.sessionmaker() as session:
                # Processes silent for an hour are long gone (their claims are free anyway).
                # The write comes first: on SQLite a read-then-write transaction cannot
                # upgrade once another writer committed ("database is locked" at once).
                await events_db.purge_workers(session, before=now - dt.timedelta(hours=1))
                await session.commit()
                ids = await events_db.unfinished_event_ids(
                    session, now=now, lease=self.lease, holder=self.holder(now)
                )
            untried = [row_id for row_id in ids if row_id not in tried]
            batch = sorted(untried, key=lambda row_id: row_id in held)[:BATCH]
            if not batch:
                return taken
            skipped = set(await self.process_many(batch))
            tried.update(set(batch) - skipped)
            if skipped >= set(batch):
                return taken  # nothing could be claimed: the next sweep tries again
            held = (held | skipped) - tried
            taken += len(batch) - len(skipped)
