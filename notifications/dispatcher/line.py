"""LINE: identical messages as multicast calls of at most 500 people, the others as pushes,
every call under an X-Line-Retry-Key stored with (or derived from) its rows, so that a retry
reuses it and LINE answers 409 instead of sending twice."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import QuotaExhausted
from bot.messages import Reply, load_replies
from models import outbox
from models.outbox import Claimed
from notifications.dispatcher.common import (
    ChannelStrategy,
    DrainReport,
    Outcome,
    Sending,
    per_second,
)
from notifications.quiet_hours import window_for

PREPARED_MEMORY = 2048  # LINE bodies kept rendered and serialised, by body hash
BATCH_FLOOR = 0.05  # seconds a batch takes whatever its calls (claim, plan, record)


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
class LineUnit:
    """One LINE call: a push to one person or a multicast, under its retry key."""

    ids: list[int]
    user_ids: list[str]
    replies: list[dict[str, Any]]
    key: str
    attempts: int
    body_hash: str
    aggregation_unit: str | None = None  # broadcasts: LINE's customAggregationUnits
    group: bool = False  # a broadcast group's row (one id, many people)


class LineStrategy(ChannelStrategy):
    """Plans claimed LINE rows into calls and makes them, within LINE's budgets."""

    def __init__(self, sending: Sending, *, multicast_slots: asyncio.Semaphore) -> None:
        super().__init__(sending)
        self._multicast_sem = multicast_slots
        self.paused: QuotaExhausted | None = None  # quota hit during this batch
        # LINE bodies rendered and serialised once (channel.prepare), by body hash: the same
        # reminder digest or broadcast goes to many people, batch after batch.
        self._prepared: OrderedDict[str, Any] = OrderedDict()

    @property
    def keyed(self) -> bool:
        """Whether LINE is here with retry keys and multicast (its rows are planned here)."""
        return hasattr(self.channels.get("line"), "multicast")

    # -- planning ----------------------------------------------------------------------------
    async def plan(
        self, session: AsyncSession, rows: list[Claimed], now: dt.datetime
    ) -> list[LineUnit]:
        """LINE rows into calls (broadcast group rows and keyed groups as they were; identical
        bodies into multicast groups of ≤500 with a stored key; the rest as pushes with a key
        from the row id)."""
        units: list[LineUnit] = []
        # Broadcast groups planned as such: one multicast each, under the group row's key.
        planned = [r for r in rows if outbox.is_group(r)]
        if planned:
            config, known = self.config, dict[str | None, bool]()

            def quiet(hours: str | None) -> bool:  # a member's setting (None: the default)
                if hours not in known:
                    known[hours] = window_for(hours, config.quiet).until(now) is not None
                return known[hours]

            people = await outbox.group_people(session, planned, worker=self.worker, quiet=quiet)
            units.extend(_group_unit(g, people[g.key]) for g in planned if g.key in people)
        keyed: dict[str, list[Claimed]] = defaultdict(list)
        fresh: dict[str, list[Claimed]] = defaultdict(list)
        for row in rows:
            if outbox.is_group(row):
                continue
            if row.retry_key:
                keyed[row.retry_key].append(row)
            elif row.attempts > 1:
                # Tried before without a group key: it went as a push under its row key (a
                # group stores its key before any call), so it goes alone again under that
                # key; in a new group LINE could not tell it was already accepted.
                units.append(_unit([row], outbox.row_key(row.id)))
            else:
                fresh[row.body_hash].append(row)
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
        groups, alone = self.balance(groups, pushes)
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
        return units

    def balance(
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
        push_rate = per_second(self.limits.items["line_push"])
        multicast_rate = per_second(self.limits.items["line_multicast"])
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
    async def send(self, unit: LineUnit, now: dt.datetime, report: DrainReport) -> Outcome:
        line = cast(KeyedSender, self.channels["line"])
        replies = self.prepare(line, unit)
        budget = "line_multicast" if len(unit.user_ids) > 1 else "line_push"
        # Multicasts take their slots from a pool of their own: one waiting for its (scarcer)
        # budget must not hold a slot that a push could use meanwhile. The budget is taken
        # holding the slot, so that the call goes out when its budget says.
        slots = self._sem if budget == "line_push" else self._multicast_sem
        async with slots:
            if self.paused:
                return Outcome(
                    unit.ids, unit.attempts, self.paused, "line", unit.user_ids, unit.group
                )
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
                    self.paused = exc  # the rest of this batch waits too
                return Outcome(unit.ids, unit.attempts, exc, "line", unit.user_ids, unit.group)
        return Outcome(unit.ids, unit.attempts, None, "line", unit.user_ids, unit.group)

    def prepare(self, line: KeyedSender, unit: LineUnit) -> Any:
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


def _unit(rows: list[Claimed], key: str) -> LineUnit:
    return LineUnit(
        ids=[r.id for r in rows],
        user_ids=[r.external_id for r in rows],
        replies=rows[0].replies,
        key=key,
        attempts=max(r.attempts for r in rows),
        body_hash=rows[0].body_hash,
        aggregation_unit=rows[0].aggregation_unit,
    )


def _group_unit(row: Claimed, user_ids: list[str]) -> LineUnit:
    """A broadcast group's call: its people, under a key derived from the group's row (the
    same on every attempt; the people are frozen from the first call on)."""
    return LineUnit(
        ids=[row.id],
        user_ids=user_ids,
        replies=row.replies,
        key=outbox.row_key(row.id),
        attempts=row.attempts,
        body_hash=row.body_hash,
        aggregation_unit=row.aggregation_unit,
        group=True,
    )
