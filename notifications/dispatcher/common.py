"""What the dispatcher's parts share: its settings, the drain report, the platforms' rate
limits, and the outcome of one call."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from bot.channels import Channel, DeliveryError, RecipientGone
from notifications.quiet_hours import DEFAULT_WINDOW, QuietWindow


@dataclass(frozen=True)
class PersonLinks:
    """A broadcast's tracked links (`<PUBLIC_BASE_URL>/r/<token>`) carry the recipient's
    signed tag when the row goes to one chat (not a LINE multicast, whose one body serves
    500 people), so that the redirect counts people as well as clicks."""

    prefix: str  # "<PUBLIC_BASE_URL>/r/"
    tag: Callable[[str, int], str]  # (token, member id) -> tag

    def personal(self, replies: list[dict[str, Any]], member_id: int) -> list[dict[str, Any]]:
        """A copy of the stored replies with each tracked link made this member's."""

        def walk(node: Any) -> Any:
            if isinstance(node, list):
                return [walk(item) for item in node]
            if not isinstance(node, dict):
                return node
            out = {k: walk(v) for k, v in node.items()}
            url = out.get("url")
            if isinstance(url, str) and url.startswith(self.prefix) and "?" not in url:
                token = url[len(self.prefix) :]
                out["url"] = f"{url}?p={self.tag(token, member_id)}"
            return out

        return list(walk(replies))


@dataclass
class DispatcherConfig:
    batch_size: int = 500
    # LINE broadcast group rows claimed per batch besides it (each one multicast of up to 500
    # people): 20 is a tenth of a second of LINE's multicast budget.
    group_batch: int = 20
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
    # Tracked links made personal where a message goes to one person at a time.
    person_links: PersonLinks | None = None


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
        # Paced on the shared budgets only (per-chat spacing is ChatStrategy.send's).
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


@dataclass(frozen=True)
class Sending:
    """What the channel strategies share with the dispatcher: the channels, its settings and
    budgets, the worker id, and the slots for calls in flight."""

    channels: Mapping[str, Channel]
    config: DispatcherConfig
    limits: RateLimits
    worker: str
    slots: asyncio.Semaphore


class ChannelStrategy:
    """How one kind of channel plans and sends (line.py, chats.py)."""

    def __init__(self, sending: Sending) -> None:
        self.channels = sending.channels
        self.config = sending.config
        self.limits = sending.limits
        self.worker = sending.worker
        self._sem = sending.slots


@dataclass
class Outcome:
    """How one call went (error None: sent), for the rows it carried."""

    ids: list[int]
    attempts: int
    error: BaseException | None
    channel: str
    external_ids: list[str]
    group: bool = False  # a LINE broadcast group's row: `external_ids` are its people


class CommitOutcomes(Protocol):
    """Records outcomes in a commit of their own (the dispatcher's)."""

    async def __call__(
        self,
        outcomes: Sequence[Outcome],
        now: dt.datetime,
        report: DrainReport,
        *,
        quick: bool = False,
    ) -> None: ...


class CommitDefer(Protocol):
    """Puts rows back until `now` without counting an attempt, in a commit of their own."""

    async def __call__(
        self, ids: list[int], now: dt.datetime, report: DrainReport, reason: str
    ) -> None: ...


def per_second(item: RateLimitItem) -> float:
    return float(item.amount) / float(item.get_expiry())


def loop_clock() -> float:
    return asyncio.get_running_loop().time()


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError | RecipientGone):
        return str(exc)[:200] or type(exc).__name__
    return f"{type(exc).__name__}"[:200]  # timeouts, connection errors: never the text
