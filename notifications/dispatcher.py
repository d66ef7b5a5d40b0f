"""The dispatcher: claims due outbox rows, sends them within the platforms' limits, records
every outcome. Any number of these may run (in-process under `make run`, or `edoor worker`
on several machines); the outbox's claims and leases keep them from sending a row twice.

- LINE: identical messages go out as multicast calls of at most 500 people, others as push;
  every call carries an X-Line-Retry-Key stored with (or derived from) the rows, so a retry
  after a crash or a 5xx reuses it and LINE answers 409 (already accepted) instead of sending
  again. "Monthly limit reached" pauses LINE for every worker and alerts the admins.
- Telegram: one chat at a time, about 30 messages/s overall and 1/s per chat (shared through
  Redis when REDIS_URL is set); 429 pauses Telegram sends for `retry_after`. Each row is marked
  sent in its own commit right after its call, so a crash can repeat at most that one call.
- Quiet hours are checked again at send time; a member who blocked the bot is marked
  unreachable and their other channel (if any) takes the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel, DeliveryError, QuotaExhausted, RecipientGone, Refused
from bot.messages import Incoming, Reply, load_replies
from bot.settings import Settings
from models import outbox
from models.broadcasts import KIND as MARKETING_KIND
from models.broadcasts import UNSUBSCRIBED
from models.identity import record_audit
from models.members import ChannelAccount, Member, set_reachability
from models.outbox import Claimed
from notifications.quiet_hours import DEFAULT_WINDOW, QuietWindow, window_for

log = logging.getLogger("edoor.dispatcher")
PREPARED_MEMORY = 2048  # LINE bodies kept rendered and serialised, by body hash
BATCH_FLOOR = 0.05  # seconds a batch takes whatever its calls (claim, plan, record)
# member.quiet_hours (migration 0004), read by name whether or not Member maps it yet.
_QUIET: Any = literal_column("member.quiet_hours")
CHAT_MEMORY = 50_000


class KeyedSender(Protocol):
    """A channel that accepts an idempotency key per call (LINE); `replies` are Replies, or
    what `prepare` made of them when the channel has it (see PreparingSender)."""

    name: str

    async def push(self, user_id: str, replies: Any, *, retry_key: str) -> int: ...

    async def multicast(self, user_ids: list[str], replies: Any, *, retry_key: str) -> int: ...


@runtime_checkable
class PreparingSender(KeyedSender, Protocol):
    """A keyed sender that renders and serialises a body once for many recipients."""

    def prepare(self, replies: list[Reply]) -> Any: ...


@dataclass
class DispatcherConfig:
    batch_size: int = 500
    lease: dt.timedelta = dt.timedelta(seconds=120)
    poll_seconds: float = 1.0
    max_attempts: int = 10
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0
    concurrency: int = 32  # calls in flight at once (LINE pushes, Telegram chats)
    per_chat_batch: int = 5  # rows of one Telegram chat per batch (1/s keeps the lease short)
    limits_on: bool = True
    # A little under the platforms' limits (Telegram ~30/s and 1/s per chat; LINE push
    # 2,000/s, multicast 200/s), so that network jitter never makes us the cause of a 429.
    telegram_rate: str = "28/second"
    telegram_chat_rate: str = "1/second"
    telegram_chat_gap: float = 1.05  # seconds between two calls to one chat, end to start
    line_push_rate: str = "1900/second"
    # Broadcasts: Telegram paid broadcasts (TELEGRAM_ALLOW_PAID_BROADCAST), opt-in; their
    # rows go with allow_paid_broadcast at up to 1,000 messages/s instead of ~30.
    telegram_paid_broadcast: bool = False
    telegram_paid_rate: str = "950/second"
    line_multicast_rate: str = "190/second"
    # Small groups of identical messages go as pushes when multicasts would be the bound.
    balance_multicast: bool = True
    # PostgreSQL: lanes claiming and sending LINE rows side by side in one worker (the
    # database work of a batch is most of its time; the call itself is short).
    line_lanes: int = 2
    quiet: QuietWindow = DEFAULT_WINDOW
    quota_pause: dt.timedelta = dt.timedelta(hours=1)


@dataclass
class DrainReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    withdrawn: int = 0  # marketing rows of members who unsubscribed after queueing
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


class RateLimits:
    """Moving-window limits through `limits`: Redis when configured (shared by every worker),
    memory otherwise. `acquire` waits until every named budget has room."""

    def __init__(self, config: DispatcherConfig, *, redis_url: str | None = None) -> None:
        self.on = config.limits_on
        storage: Storage
        if redis_url:
            uri = redis_url.replace("redis://", "async+redis://", 1)
            storage = RedisStorage(uri, implementation="redispy")
        else:
            storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(storage)
        self.items: dict[str, RateLimitItem] = {
            "telegram": parse(config.telegram_rate),
            "telegram_chat": parse(config.telegram_chat_rate),
            "line_push": parse(config.line_push_rate),
            "line_multicast": parse(config.line_multicast_rate),
            "telegram_paid": parse(config.telegram_paid_rate),
        }
        self.waited = 0.0
        # In-process pacing: the moving window allows a whole second's budget in one burst,
        # which network jitter can squeeze into less than a second; spacing the calls evenly
        # (1/rate apart) keeps arrivals within the budget. `limits` still holds the shared
        # budget across processes.
        self._next_slot: dict[str, float] = {}

    async def _pace(self, name: str) -> None:
        item = self.items[name]
        interval = item.get_expiry() / item.amount
        now = time.monotonic()
        slot = max(now, self._next_slot.get(name, 0.0))
        self._next_slot[name] = slot + interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def acquire(self, *budgets: tuple[str, str]) -> None:
        """Take one unit of each (budget, identifier), waiting for room in all of them."""
        if not self.on:
            return
        # Paced on the shared budgets only (per-chat spacing is the caller's, see _send_chat).
        for name, ident in budgets:
            if ident == "all":
                await self._pace(name)
        while True:
            wait = 0.0
            for name, ident in budgets:
                item = self.items[name]
                if not await self.limiter.test(item, "edoor", name, ident):
                    stats = await self.limiter.get_window_stats(item, "edoor", name, ident)
                    wait = max(wait, stats.reset_time - time.time())
            if wait <= 0:
                taken = []
                for name, ident in budgets:
                    if await self.limiter.hit(self.items[name], "edoor", name, ident):
                        taken.append(name)
                    else:
                        break
                if len(taken) == len(budgets):
                    return
                wait = 0.01  # another worker took the room between test and hit
            self.waited += wait
            await asyncio.sleep(min(max(wait, 0.002), 1.0))


@dataclass
class _LineUnit:
    ids: list[int]
    user_ids: list[str]
    replies: list[dict[str, Any]]
    key: str
    attempts: int
    body_hash: str
    aggregation_unit: str | None = None  # broadcasts: LINE's customAggregationUnits


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
        self._sem = asyncio.Semaphore(self.config.concurrency)
        self._multicast_sem = asyncio.Semaphore(max(2, self.config.concurrency // 4))
        self._telegram_resume = 0.0  # loop time before which Telegram is paused (429)
        self._line_paused: QuotaExhausted | None = None  # quota hit during this batch
        # When each recent Telegram chat last got a message (1/s per chat across batches).
        self._chat_done: OrderedDict[str, float] = OrderedDict()
        # LINE bodies rendered and serialised once (channel.prepare), by body hash: the same
        # reminder digest or broadcast goes to many people, batch after batch.
        self._prepared: OrderedDict[str, Any] = OrderedDict()
        # Claiming ahead needs two transactions at once: PostgreSQL, not SQLite's one writer.
        bind = sessionmaker.kw.get("bind")
        self._overlap = getattr(getattr(bind, "dialect", None), "name", "") == "postgresql"

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, clock: Any = None) -> None:
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
        self._line_paused = None  # the database pause (channel_pause) is what lasts
        lanes = [self._drain_lane(now, report, stop, channels=list(self.channels))]
        if self._overlap and hasattr(self.channels.get("line"), "multicast"):
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
        self._line_paused = None
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
                channels=channels,
                group_line=self._overlap and hasattr(self.channels.get("line"), "multicast"),
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
        tasks: list[Any] = [self._send_line(u, now, report) for u in planned.line_units]
        by_chat: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
        for row in planned.others:
            by_chat[(row.channel, row.external_id)].append(row)
        tasks.extend(self._send_chat(chat_rows, now, report) for chat_rows in by_chat.values())
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
        account_ids = {r.account_id for r in rows if r.account_id is not None}
        facts: dict[int, tuple[bool, str | None]] = {}
        # Broadcasts: members who turned marketing off since their row was queued.
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
        targets = await outbox.choose_targets(
            session, member_ids=[row.member_id], channels=list(self.channels)
        )
        target = targets.get(row.member_id)
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
    ) -> tuple[list[_LineUnit], list[Claimed]]:
        """LINE rows into calls (keyed groups as they were; identical bodies into multicast
        groups of ≤500 with a stored key; the rest as pushes with a key from the row id)."""
        units: list[_LineUnit] = []
        others: list[Claimed] = []
        keyed: dict[str, list[Claimed]] = defaultdict(list)
        fresh: dict[str, list[Claimed]] = defaultdict(list)
        per_chat: dict[str, int] = defaultdict(int)
        later: list[int] = []
        keyed_line = hasattr(self.channels.get("line"), "multicast")
        for row in rows:
            if row.channel == "line" and keyed_line and row.retry_key:
                keyed[row.retry_key].append(row)
            elif row.channel == "line" and keyed_line and row.attempts > 1:
                # Tried before without a group key: it went as a push under its row key (a
                # group stores its key before any call), so it goes alone again under that
                # key; in a new group LINE could not tell it was already accepted.
                units.append(_unit([row], outbox.row_key(row.id)))
            elif row.channel == "line" and keyed_line:
                fresh[row.body_hash].append(row)
            elif (
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
        groups: list[list[Claimed]] = []
        for key, members in keyed.items():
            if all(r.attempts == 1 for r in members):
                groups.append(members)  # keyed in this claim, never sent: still open to plan
            else:
                units.append(_unit(members, key))  # a retry goes exactly as it went before
        for members in fresh.values():
            for i in range(0, len(members), outbox.MAX_GROUP):
                chunk = members[i : i + outbox.MAX_GROUP]
                if len(chunk) == 1:
                    units.append(_unit(chunk, outbox.row_key(chunk[0].id)))
                else:
                    groups.append(chunk)
        pushes = sum(1 for u in units if len(u.ids) == 1)
        groups, alone = self._balance(groups, pushes)
        await outbox.clear_retry_keys(
            session, ids=[r.id for r in alone if r.retry_key], worker=self.worker
        )
        units.extend(_unit([r], outbox.row_key(r.id)) for r in alone)
        unkeyed = [g for g in groups if g[0].retry_key is None]
        keys = await outbox.assign_retry_keys(
            session, worker=self.worker, groups=[[r.id for r in g] for g in unkeyed]
        )
        units.extend(_unit(g, k) for g, k in zip(unkeyed, keys, strict=True))
        units.extend(_unit(g, g[0].retry_key) for g in groups if g[0].retry_key is not None)
        return units, others

    def _balance(
        self, groups: list[list[Claimed]], pushes: int
    ) -> tuple[list[list[Claimed]], list[Claimed]]:
        """Which identical-message groups go as multicast, and which rows as single pushes.

        LINE allows 2,000 pushes but only 200 multicasts a second, so a multicast of 3
        people uses the scarcer budget for what pushes would do at a tenth of the cost.
        Largest groups first, a group goes as one multicast while the batch's multicasts
        fit in the time its pushes take anyway (or in a small floor, so that a few identical
        messages are always one call); the rest go as pushes, each with its own row key.
        With the limits off (no budgets), every group is a multicast.
        """
        if not self.config.limits_on or not self.config.balance_multicast or not groups:
            return groups, []
        push_rate = _per_second(self.limits.items["line_push"])
        multicast_rate = _per_second(self.limits.items["line_multicast"])
        pushes += sum(len(g) for g in groups)  # as if every row went alone
        chosen: list[list[Claimed]] = []
        alone: list[Claimed] = []
        for group in sorted(groups, key=len, reverse=True):
            left = pushes - len(group)
            fits = (len(chosen) + 1) / multicast_rate <= max(left / push_rate, BATCH_FLOOR)
            if fits and not alone:
                chosen.append(group)
                pushes = left
            else:
                alone.extend(group)
        return chosen, alone

    # -- sending -----------------------------------------------------------------------------
    async def _send_line(self, unit: _LineUnit, now: dt.datetime, report: DrainReport) -> _Outcome:
        line = cast(KeyedSender, self.channels["line"])
        replies = self._prepare_line(line, unit)
        budget = "line_multicast" if len(unit.user_ids) > 1 else "line_push"
        # Multicasts take their slots from a pool of their own: one waiting for its (scarcer)
        # budget must not hold a slot that a push could use meanwhile. The budget is taken
        # holding the slot, so that the call goes out when its budget says.
        slots = self._sem if budget == "line_push" else self._multicast_sem
        async with slots:
            if self._line_paused:
                return _Outcome(unit.ids, unit.attempts, self._line_paused, "line", unit.user_ids)
            await self.limits.acquire((budget, "all"))
            try:
                # Broadcasts: each broadcast and variant is its own LINE aggregation unit.
                tagged = (
                    {"aggregation_unit": unit.aggregation_unit} if unit.aggregation_unit else {}
                )
                if len(unit.user_ids) > 1:
                    counted = await line.multicast(
                        unit.user_ids, replies, retry_key=unit.key, **tagged
                    )
                    report.requests += counted
                else:
                    counted = await line.push(
                        unit.user_ids[0], replies, retry_key=unit.key, **tagged
                    )
                    report.requests += counted
            except Exception as exc:
                if isinstance(exc, QuotaExhausted):
                    self._line_paused = exc  # the rest of this batch waits too
                return _Outcome(unit.ids, unit.attempts, exc, "line", unit.user_ids)
        return _Outcome(unit.ids, unit.attempts, None, "line", unit.user_ids)

    async def _send_chat(
        self, rows: list[Claimed], now: dt.datetime, report: DrainReport
    ) -> _Outcome | None:
        """One chat's rows in order; Telegram rows are marked one by one as they go."""
        async with self._sem:
            for index, row in enumerate(rows):
                channel = self.channels[row.channel]
                if row.channel == "telegram":
                    previous_done = self._chat_done.get(row.external_id)
                    if previous_done is not None and self.config.limits_on:
                        # Spaced from the previous call's end, so arrivals stay ≥1 s apart.
                        gap = previous_done + self.config.telegram_chat_gap - _clock()
                        if gap > 0:
                            await asyncio.sleep(gap)
                    await self._telegram_pause()
                    overall = "telegram_paid" if self._paid(row) else "telegram"
                    await self.limits.acquire((overall, "all"), ("telegram_chat", row.external_id))
                incoming = Incoming(
                    channel=row.channel,
                    user_id=row.external_id,
                    kind="unknown",
                    event_id=f"outbox:{row.id}",
                )
                paid = {"paid_broadcast": True} if self._paid(row) else {}
                try:
                    delivery = await channel.deliver(
                        row.external_id, load_replies(row.replies), incoming=incoming, **paid
                    )
                    report.requests += delivery.requests
                    if row.channel == "telegram":
                        self._remember_chat(row.external_id)
                except Exception as exc:
                    if row.channel == "telegram":
                        self._remember_chat(row.external_id)  # a refused call counts too
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
                        [_Outcome([row.id], row.attempts, exc, row.channel, [row.external_id])],
                        now,
                        report,
                    )
                    if rest:
                        await self._commit_defer(
                            [r.id for r in rest], now, report, "after a failure"
                        )
                    return None
                await self._commit(
                    [_Outcome([row.id], row.attempts, None, row.channel, [])],
                    now,
                    report,
                    quick=True,
                )
        return None

    def _paid(self, row: Claimed) -> bool:
        """A broadcast row sent as a Telegram paid broadcast (the opt-in setting)."""
        return (
            self.config.telegram_paid_broadcast
            and row.channel == "telegram"
            and row.kind == MARKETING_KIND
        )

    def _prepare_line(self, line: KeyedSender, unit: _LineUnit) -> Any:
        """The unit's body rendered and serialised, once per distinct body (bounded)."""
        if not isinstance(line, PreparingSender):
            return load_replies(unit.replies)
        prepared = self._prepared.get(unit.body_hash)
        if prepared is None:
            prepared = line.prepare(load_replies(unit.replies))
            self._prepared[unit.body_hash] = prepared
            while len(self._prepared) > PREPARED_MEMORY:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(unit.body_hash)
        return prepared

    def _remember_chat(self, chat: str) -> None:
        self._chat_done[chat] = _clock()
        self._chat_done.move_to_end(chat)
        while len(self._chat_done) > CHAT_MEMORY:
            self._chat_done.popitem(last=False)

    async def _telegram_pause(self) -> None:
        wait = self._telegram_resume - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- outcomes ----------------------------------------------------------------------------
    async def _commit(
        self,
        outcomes: Sequence[_Outcome],
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
        self, outcomes: Sequence[_Outcome | None], now: dt.datetime, report: DrainReport
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
        outcomes: Sequence[_Outcome],
        now: dt.datetime,
        report: DrainReport,
    ) -> None:
        sent = [i for o in outcomes if o.error is None for i in o.ids]
        counted = await outbox.mark_sent(session, ids=sent, worker=self.worker, now=now)
        report.sent += counted
        for o in outcomes:
            exc = o.error
            if exc is None:
                continue
            reason = _reason(exc)
            report.add_error(reason)
            if isinstance(exc, QuotaExhausted):
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
            elif isinstance(exc, RecipientGone):
                for external_id in o.external_ids:
                    await set_reachability(
                        session, channel=o.channel, external_id=external_id, reachable=False
                    )
                counted = await outbox.mark_failed(
                    session, ids=o.ids, worker=self.worker, error=reason, now=now
                )
                report.failed += counted
            elif isinstance(exc, Refused) or o.attempts >= self.config.max_attempts:
                counted = await outbox.mark_failed(
                    session, ids=o.ids, worker=self.worker, error=reason, now=now
                )
                report.failed += counted
            else:
                # 429 with retry_after: exactly that; 5xx, timeouts, anything else: backoff.
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
    line_units: list[_LineUnit]
    others: list[Claimed]


@dataclass
class _Outcome:
    ids: list[int]
    attempts: int
    error: BaseException | None
    channel: str
    external_ids: list[str]


def _per_second(item: RateLimitItem) -> float:
    return float(item.amount) / float(item.get_expiry())


def _clock() -> float:
    return asyncio.get_running_loop().time()


def _unit(rows: list[Claimed], key: str) -> _LineUnit:
    return _LineUnit(
        ids=[r.id for r in rows],
        user_ids=[r.external_id for r in rows],
        replies=rows[0].replies,
        key=key,
        attempts=max(r.attempts for r in rows),
        body_hash=rows[0].body_hash,
        aggregation_unit=rows[0].aggregation_unit,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError | RecipientGone):
        return str(exc)[:200] or type(exc).__name__
    return f"{type(exc).__name__}"[:200]  # timeouts, connection errors: never the text


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
) -> Dispatcher:
    """The process's dispatcher from the settings (REDIS_URL for shared rate limits,
    QUIET_HOURS)."""
    from notifications.quiet_hours import DEFAULT_QUIET_HOURS, parse_window

    quiet = parse_window(settings.quiet_hours or DEFAULT_QUIET_HOURS)
    return Dispatcher(
        sessionmaker,
        channels,
        config=DispatcherConfig(
            quiet=quiet,
            telegram_paid_broadcast=settings.telegram_allow_paid_broadcast,
        ),
        redis_url=settings.redis_url,
    )


async def run_worker(runtime: Any, *, stop: asyncio.Event) -> None:
    """`edoor worker`: drain the outbox until `stop` is set (SIGTERM/SIGINT in the CLI)."""
    dispatcher = getattr(runtime, "dispatcher", None) or build_dispatcher(
        runtime.settings, runtime.sessionmaker, runtime.channels
    )
    log.info("worker %s started (channels: %s)", dispatcher.worker, ", ".join(runtime.channels))
    await dispatcher.run(stop)
