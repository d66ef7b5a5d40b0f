"""The dispatcher's loop: claim a batch, screen it (quiet hours, reachability, unsubscribes),
plan it into LINE calls and chat rows, send them by their channel's strategy (line.py,
chats.py), and record every outcome."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel, DeliveryError, QuotaExhausted, RecipientGone, Refused
from bot.ports import LinkSigner
from bot.settings import Settings
from models import outbox
from models.broadcasts import KIND as MARKETING_KIND
from models.broadcasts import UNSUBSCRIBED
from models.identity import record_audit
from models.members import ChannelAccount, Member, set_reachability
from models.outbox import Claimed
from notifications.dispatcher.chats import ChatStrategy
from notifications.dispatcher.common import (
    DispatcherConfig,
    DrainReport,
    Outcome,
    PersonLinks,
    RateLimits,
    Sending,
    reason_of,
)
from notifications.dispatcher.line import LineStrategy, LineUnit
from notifications.quiet_hours import window_for

log = logging.getLogger("edoor.dispatcher")
# member.quiet_hours (migration 0004), read by name whether or not Member maps it yet.
_QUIET: Any = literal_column("member.quiet_hours")


class Dispatcher:
    """Claims, sends and records; `drain(now)` is the `drain-outbox` job, `run()` the worker."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        *,
        config: DispatcherConfig | None = None,
        redis_url: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.channels = dict(channels)
        self.config = config or DispatcherConfig()
        self.limits = RateLimits(self.config, redis_url=redis_url)
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not crypto)
        self.worker = str(uuid.uuid4())
        self.wake = asyncio.Event()  # set by in-process writers for a prompt send
        # LINE pushes and chats share the call slots; multicasts have a pool of their own.
        slots = asyncio.Semaphore(self.config.concurrency)
        sending = Sending(self.channels, self.config, self.limits, self.worker, slots)
        self.line = LineStrategy(
            sending, multicast_slots=asyncio.Semaphore(max(2, self.config.concurrency // 4))
        )
        self.chats = ChatStrategy(sending, commit=self._commit, commit_defer=self._commit_defer)
        # Claiming ahead needs two transactions at once: PostgreSQL, not SQLite's one writer.
        bind = sessionmaker.kw.get("bind")
        self._overlap = getattr(getattr(bind, "dialect", None), "name", "") == "postgresql"

    # -- the loop ----------------------------------------------------------------------------
    async def run(
        self, stop: asyncio.Event, *, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        """Drain until `stop` is set; sleep `poll_seconds` (or until woken) when idle."""
        from models.base import utcnow

        now_fn = clock or utcnow
        while not stop.is_set():
            try:
                report = await self.drain(now_fn(), stop=stop)
            except Exception:
                log.exception("dispatcher batch failed; retrying shortly")
                report = DrainReport()
            if report.claimed == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        _first(stop.wait(), self.wake.wait()), self.config.poll_seconds
                    )

    async def drain(self, now: dt.datetime, *, stop: asyncio.Event | None = None) -> DrainReport:
        """Send everything due at `now`, batch after batch, until nothing is due.

        On PostgreSQL, while a batch of LINE calls is being sent, the next batch is claimed
        and planned (its claims and retry keys committed), so the database work between
        batches does not leave the channel budgets idle; and `line_lanes - 1` more lanes
        claim and send LINE rows alongside, as that many workers would. A batch with chat
        rows (Telegram, one chat in order) is not overlapped, and only the first lane claims
        them: the next claim must see how they ended.
        """
        report = DrainReport()
        self.line.paused = None  # the database pause (channel_pause) is what lasts
        lanes = [self._drain_lane(now, report, stop, channels=list(self.channels))]
        if self._overlap and self.line.keyed:
            lanes.extend(
                self._drain_lane(now, report, stop, channels=["line"])
                for _ in range(self.config.line_lanes - 1)
            )
        results = await asyncio.gather(*lanes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if len(lanes) > 1:
            # A LINE lane may have handed rows to another channel (the account was blocked)
            # after the first lane found nothing more to do.
            await self._drain_lane(now, report, stop, channels=list(self.channels))
        return report

    async def _drain_lane(
        self,
        now: dt.datetime,
        report: DrainReport,
        stop: asyncio.Event | None,
        *,
        channels: list[str],
    ) -> None:
        def stopped() -> bool:
            return stop is not None and stop.is_set()

        planned = None if stopped() else await self._claim_and_plan(now, report, channels)
        try:
            while planned is not None:
                current, planned = planned, None
                ahead: asyncio.Task[_Planned | None] | None = None
                if self._overlap and not current.others and not stopped():
                    ahead = asyncio.create_task(self._claim_and_plan(now, report, channels))
                try:
                    await self._deliver(current, now, report)
                except BaseException:
                    if ahead is not None:
                        # Its claims are committed: the finally below puts them back.
                        with contextlib.suppress(Exception):
                            planned = await ahead
                    raise
                planned = await ahead if ahead is not None else None
                if stopped():
                    break  # a batch claimed ahead is put back below
                if ahead is None:
                    planned = await self._claim_and_plan(now, report, channels)
        finally:
            if planned is not None:  # claimed but not sent (stop or failure): release them
                await self._release(planned, now, report)

    # -- one batch ---------------------------------------------------------------------------
    async def run_batch(self, now: dt.datetime, report: DrainReport) -> int:
        """Claim, send and record one batch; returns rows claimed (0 when nothing is due)."""
        self.line.paused = None
        planned = await self._claim_and_plan(now, report, list(self.channels))
        if planned is None:
            return 0
        await self._deliver(planned, now, report)
        return planned.claimed

    async def _claim_and_plan(
        self, now: dt.datetime, report: DrainReport, channels: list[str]
    ) -> _Planned | None:
        async with self.sessionmaker() as session:
            # Lanes claim concurrently: SKIP LOCKED may give each part of one broadcast, so a
            # group can go as one more multicast than needed. Serialising the claims avoided
            # that but cost a fifth of broadcast throughput (bench.dispatcher_bench).
            rows = await outbox.claim_batch(
                session,
                worker=self.worker,
                now=now,
                lease=self.config.lease,
                limit=self.config.batch_size,
                groups=self.config.group_batch,
                channels=channels,
                group_line=self._overlap and self.line.keyed,
            )
            if not rows:
                await session.commit()
                return None
            report.claimed += len(rows)
            claimed = len(rows)
            rows = await self._screen(session, rows, now, report)
            line_units, others = await self._plan(session, rows, now)
            await session.commit()  # claims and retry keys are durable before any call
        return _Planned(claimed, line_units, others)

    async def _deliver(self, planned: _Planned, now: dt.datetime, report: DrainReport) -> None:
        tasks: list[Any] = [self.line.send(u, now, report) for u in planned.line_units]
        by_chat: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
        for row in planned.others:
            by_chat[(row.channel, row.external_id)].append(row)
        tasks.extend(self.chats.send(chat_rows, now, report) for chat_rows in by_chat.values())
        outcomes = await asyncio.gather(*tasks)
        await self._record(outcomes, now, report)

    async def _release(self, planned: _Planned, now: dt.datetime, report: DrainReport) -> None:
        """Put back a claimed batch that will not be sent now (no attempt counted); a keyed
        group keeps its key, so whoever sends it later sends it under the same key."""
        ids = [i for u in planned.line_units for i in u.ids] + [r.id for r in planned.others]
        with contextlib.suppress(Exception):  # else the lease ends and another worker takes it
            await self._commit_defer(ids, now, report, "released")

    async def _screen(
        self, session: AsyncSession, rows: list[Claimed], now: dt.datetime, report: DrainReport
    ) -> list[Claimed]:
        """Quiet hours and reachability, checked now (they may have changed since writing)."""
        facts, opted_out = await _account_facts(session, rows)

        def quiet_until(row: Claimed) -> dt.datetime | None:
            if not row.proactive:
                return None
            window = window_for(
                facts.get(row.account_id or -1, (False, None))[1], self.config.quiet
            )
            return window.until(now)

        keep: list[Claimed] = []
        deferred: dict[dt.datetime, list[int]] = defaultdict(list)
        groups: dict[str, list[Claimed]] = defaultdict(list)
        out_of_group: list[int] = []  # keyed in this claim, but not going with their group
        gone_rows: list[Claimed] = []
        unsubscribed: list[int] = []
        for row in rows:
            if row.retry_key is not None and row.attempts > 1:
                groups[row.retry_key].append(row)
                continue
            # Broadcasts: an unsubscribe takes effect at once, also for rows already queued
            # (a keyed retry above goes as it went before: LINE may have accepted it).
            if row.kind == MARKETING_KIND and (row.account_id or -1) in opted_out:
                if row.retry_key is not None:
                    out_of_group.append(row.id)
                unsubscribed.append(row.id)
                continue
            until = quiet_until(row)
            gone = facts.get(row.account_id or -1, (False, None))[0]
            if until is None and not gone:
                keep.append(row)
                continue
            if row.retry_key is not None:
                out_of_group.append(row.id)
            if until is not None:
                deferred[until].append(row.id)
            else:
                gone_rows.append(row)
        await outbox.clear_retry_keys(session, ids=out_of_group, worker=self.worker)
        if unsubscribed:
            report.withdrawn += await outbox.withdraw(
                session, ids=unsubscribed, worker=self.worker, reason=UNSUBSCRIBED
            )
        for row in gone_rows:
            await self._reroute(session, row, now, report)
        # A keyed LINE group moves as one: quiet for one of its people holds the whole group.
        for members in groups.values():
            ends = [u for u in map(quiet_until, members) if u is not None]
            if ends:
                deferred[max(ends)].extend(r.id for r in members)
            else:
                keep.extend(members)
        for until, ids in deferred.items():
            counted = await outbox.defer(
                session, ids=ids, worker=self.worker, not_before=until, reason="quiet hours"
            )
            report.deferred += counted
        return keep

    async def _reroute(
        self, session: AsyncSession, row: Claimed, now: dt.datetime, report: DrainReport
    ) -> None:
        # Only a person's own row is rerouted (a group row's account is never gone).
        member = row.member_id or 0
        targets = await outbox.choose_targets(
            session, member_ids=[member], channels=list(self.channels)
        )
        target = targets.get(member)
        if target is not None and target.account_id != row.account_id:
            await outbox.reroute(session, row_id=row.id, worker=self.worker, target=target)
            report.deferred += 1
        else:
            counted = await outbox.mark_failed(
                session, ids=[row.id], worker=self.worker, error="recipient unreachable", now=now
            )
            report.failed += counted

    async def _plan(
        self, session: AsyncSession, rows: list[Claimed], now: dt.datetime
    ) -> tuple[list[LineUnit], list[Claimed]]:
        """LINE rows (when LINE takes retry keys) into calls, the others into chats' rows."""
        keyed_line = self.line.keyed
        if not keyed_line:  # broadcast groups need multicast: their people go one by one
            await outbox.dissolve_groups(
                session, [r for r in rows if outbox.is_group(r)], worker=self.worker
            )
            rows = [r for r in rows if not outbox.is_group(r)]
        line_rows = [r for r in rows if r.channel == "line" and keyed_line]
        chat_rows = [r for r in rows if not (r.channel == "line" and keyed_line)]
        others = await self.chats.plan(session, chat_rows, now)
        return await self.line.plan(session, line_rows, now), others

    # -- outcomes ----------------------------------------------------------------------------
    async def _commit(
        self,
        outcomes: Sequence[Outcome],
        now: dt.datetime,
        report: DrainReport,
        *,
        quick: bool = False,
    ) -> None:
        async with self.sessionmaker() as session:
            if quick and session.get_bind().dialect.name == "postgresql":
                # Outcomes only (a Telegram message, or keyed LINE calls): this commit need not
                # wait for the disk. A worker crash cannot lose it (the server has it); only a
                # crash of PostgreSQL itself within a fraction of a second could, and then one
                # Telegram call repeats (LINE answers 409 to its repeated keys).
                await session.execute(select(func.set_config("synchronous_commit", "off", True)))
            await self._apply(session, outcomes, now, report)
            await session.commit()

    async def _commit_defer(
        self, ids: list[int], now: dt.datetime, report: DrainReport, reason: str
    ) -> None:
        async with self.sessionmaker() as session:
            counted = await outbox.defer(
                session, ids=ids, worker=self.worker, not_before=now, reason=reason
            )
            report.deferred += counted
            await session.commit()

    async def _record(
        self, outcomes: Sequence[Outcome | None], now: dt.datetime, report: DrainReport
    ) -> None:
        done = [o for o in outcomes if o is not None]
        if done:
            # Every LINE call carried its retry key: were this commit lost, the rows would be
            # sent again under the same keys and LINE would answer 409. It need not wait for
            # the disk.
            keyed = all(o.channel == "line" for o in done)
            await self._commit(done, now, report, quick=keyed)

    async def _apply(
        self,
        session: AsyncSession,
        outcomes: Sequence[Outcome],
        now: dt.datetime,
        report: DrainReport,
    ) -> None:
        sent = [i for o in outcomes if o.error is None and not o.group for i in o.ids]
        counted = await outbox.mark_sent(session, ids=sent, worker=self.worker, now=now)
        report.sent += counted
        groups = [o for o in outcomes if o.error is None and o.group]
        marked = await outbox.mark_sent_ids(
            session, ids=[i for o in groups for i in o.ids], worker=self.worker, now=now
        )
        report.sent += sum(_people(o) for o in groups if o.ids[0] in marked)
        for o in outcomes:
            exc = o.error
            if exc is None:
                continue
            reason = reason_of(exc)
            report.add_error(reason)
            if isinstance(exc, QuotaExhausted):
                await self._pause_for_quota(session, o, reason, now, report)
            elif isinstance(exc, RecipientGone):
                for external_id in o.external_ids:
                    await set_reachability(
                        session, channel=o.channel, external_id=external_id, reachable=False
                    )
                counted = await outbox.mark_failed(
                    session, ids=o.ids, worker=self.worker, error=reason, now=now
                )
                report.failed += counted * _people(o)
            elif isinstance(exc, Refused) or o.attempts >= self.config.max_attempts:
                counted = await outbox.mark_failed(
                    session, ids=o.ids, worker=self.worker, error=reason, now=now
                )
                report.failed += counted * _people(o)
            else:
                await self._retry_later(session, o, exc, reason, now, report)

    async def _pause_for_quota(
        self,
        session: AsyncSession,
        o: Outcome,
        reason: str,
        now: dt.datetime,
        report: DrainReport,
    ) -> None:
        """LINE's monthly limit: the channel pauses for every worker (the admins are alerted
        once) and the rows wait until the pause ends, no attempt counted."""
        until = now + self.config.quota_pause
        if await outbox.pause_channel(
            session, channel=o.channel, until=until, reason=reason, now=now
        ):
            log.error("LINE monthly message limit reached: LINE sends paused")
            await record_audit(
                session,
                actor="system",
                action="alert.line_monthly_limit",
                subject=f"channel:{o.channel}",
                details={"paused_until": until.isoformat(), "rows": len(o.ids)},
                now=now,
            )
        counted = await outbox.defer(
            session, ids=o.ids, worker=self.worker, not_before=until, reason=reason
        )
        report.deferred += counted

    async def _retry_later(
        self,
        session: AsyncSession,
        o: Outcome,
        exc: BaseException,
        reason: str,
        now: dt.datetime,
        report: DrainReport,
    ) -> None:
        """429 with retry_after: exactly that; 5xx, timeouts, anything else: backoff."""
        retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
        delay = (
            retry_after
            if retry_after
            else outbox.backoff(
                o.attempts,
                base=self.config.backoff_base,
                cap=self.config.backoff_cap,
                rng=self.rng,
            )
        )
        counted = await outbox.mark_retry(
            session,
            ids=o.ids,
            worker=self.worker,
            error=reason,
            not_before=now + dt.timedelta(seconds=delay),
        )
        report.retried += counted


@dataclass
class _Planned:
    """A claimed batch, planned into LINE calls and chat rows, claims committed."""

    claimed: int
    line_units: list[LineUnit]
    others: list[Claimed]


def _people(o: Outcome) -> int:
    """People per row of an outcome: a broadcast group's row stands for all of its people."""
    return len(o.external_ids) if o.group else 1


async def _account_facts(
    session: AsyncSession, rows: list[Claimed]
) -> tuple[dict[int, tuple[bool, str | None]], set[int]]:
    """For the rows' accounts: ({account: (unreachable, quiet hours)}, the accounts whose
    member turned marketing off since their row was queued)."""
    account_ids = {r.account_id for r in rows if r.account_id is not None}
    facts: dict[int, tuple[bool, str | None]] = {}
    opted_out: set[int] = set()
    for i in range(0, len(account_ids), 1000):
        chunk = sorted(account_ids)[i : i + 1000]
        result = await session.execute(
            select(
                ChannelAccount.id,
                ChannelAccount.unreachable,
                _QUIET,
                Member.marketing_opt_in,
            )
            .join(Member, Member.id == ChannelAccount.member_id)
            .where(outbox.ids_match(session, ChannelAccount.id, chunk))
        )
        for a, gone, quiet, marketing in result:
            facts[a] = (bool(gone), quiet)
            if not marketing:
                opted_out.add(a)
    return facts, opted_out


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


# -- wiring (app.py and cli.py) --------------------------------------------------------------
def build_dispatcher(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: Mapping[str, Channel],
    *,
    signer: LinkSigner | None = None,
) -> Dispatcher:
    """The process's dispatcher from the settings (REDIS_URL for shared rate limits,
    QUIET_HOURS); with `signer`, broadcast links sent one by one are made personal."""
    from notifications.quiet_hours import DEFAULT_QUIET_HOURS, parse_window

    quiet = parse_window(settings.quiet_hours or DEFAULT_QUIET_HOURS)
    links = (
        PersonLinks(prefix=settings.public_base_url.rstrip("/") + "/r/", tag=signer.click_tag)
        if signer is not None
        else None
    )
    return Dispatcher(
        sessionmaker,
        channels,
        config=DispatcherConfig(
            quiet=quiet,
            telegram_paid_broadcast=settings.telegram_allow_paid_broadcast,
            person_links=links,
        ),
        redis_url=settings.redis_url,
    )


class WorkerRuntime(Protocol):
    """What `edoor worker` needs of the process's runtime (app.Runtime)."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    channels: dict[str, Channel]
    dispatcher: Dispatcher | None


async def run_worker(runtime: WorkerRuntime, *, stop: asyncio.Event) -> None:
    """`edoor worker`: drain the outbox until `stop` is set (SIGTERM/SIGINT in the CLI)."""
    dispatcher = runtime.dispatcher or build_dispatcher(
        runtime.settings, runtime.sessionmaker, runtime.channels
    )
    log.info("worker %s started (channels: %s)", dispatcher.worker, ", ".join(runtime.channels))
    await dispatcher.run(stop)
