"""Broadcasts: a marketer's message to a segment, planned into the outbox with set-based SQL.

A broadcast file (DESIGN.md "Contract: campaigns, broadcasts, the console") is checked here
and refused with the field named; a refused file changes nothing. Planning inserts one
outbox row per recipient with INSERT ... SELECT over the segment, in chunks of member ids,
each chunk committed with the broadcast's cursor: a crash resumes at the cursor, and the
outbox key (`bc:<broadcast>:<member>`) makes a repeated chunk add nothing. No ORM object is
ever made per member.

LINE recipients are planned in groups of up to 500 per body
(`outbox.groups`): each group is one outbox row, sent as one multicast, and each recipient's
own row waits under the group's key, so that a LINE send costs a row of claiming per call,
not per person.

A/B: up to 3 variants take reproducible shares of the segment (`segments.bucket`: a hash of
member id and the broadcast's seed), an optional holdout receives nothing, and the rest gets
the winner (best click or claim rate after `winner.after`, or the one a marketer picks).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models import segments
from models.base import Base
from models.courses import Course
from models.members import ChannelAccount, Member
from models.outbox import (
    CANCELLED,
    FAILED,
    GROUPED,
    MAX_GROUP,
    PENDING,
    PRIORITY_BROADCAST,
    SENDING,
    SENT,
    OutboxMessage,
    body_hash,
)

TAIPEI = ZoneInfo("Asia/Taipei")  # the same zone as bot.i18n.TAIPEI (models may not import bot)
HELD = "held"  # an outbox status: a paused broadcast's rows, claimed by no worker
KIND = "broadcast"  # marketing: subject to marketing opt-out and the frequency cap
TEST_KIND = "bc_test"  # a test send to the sender's own chats: not marketing
# Broadcast lifecycle.
SCHEDULED, PLANNING, WAITING, PLANNED, CANCELLED_BC = (
    "scheduled",
    "planning",
    "waiting",  # the A/B shares are queued; the rest waits for the winner
    "planned",
    "cancelled",
)
MAX_VARIANTS = 3
MAX_BUTTONS = 3  # LINE shows 4 buttons on a card; the 4th place is kept for 取消訂閱
MAX_COURSES = 5
LABEL_CHARS = 20  # LINE cuts labels at 20 characters
CHUNK = 20_000  # member ids per planning statement
PLAN_LEASE = dt.timedelta(minutes=5)
_VARIANT_NAME = re.compile(r"^[a-z0-9]{1,8}$")
FILE_KEYS = ("name", "segment", "message", "send_at", "variants", "holdout", "winner")


class BroadcastError(ValueError):
    """A refused broadcast file or command; `field` names the offending key."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class Broadcast(Base):
    __tablename__ = "broadcast"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column()  # the checked file (see parse_spec)
    status: Mapped[str] = mapped_column(String(12), default=SCHEDULED, index=True)
    paused: Mapped[bool] = mapped_column(default=False)
    send_at: Mapped[dt.datetime]
    seed: Mapped[int]
    phase: Mapped[int] = mapped_column(default=0)  # 0: shares (or everyone), 1: the winner
    cursor: Mapped[int] = mapped_column(default=0)  # last member id planned in this phase
    last_member: Mapped[int] = mapped_column(default=0)  # highest member id of this phase
    lease_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    winner: Mapped[str | None] = mapped_column(String(8), default=None)
    winner_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    queued: Mapped[int] = mapped_column(default=0)  # rows planned (all phases)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    planned_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime]


class BroadcastLink(Base):
    """A link in a broadcast, sent as `/r/<token>` under PUBLIC_BASE_URL; counts clicks (a
    LINE multicast carries one body for up to 500 people: clicks, not people)."""

    __tablename__ = "broadcast_link"
    __table_args__ = (Index("ix_broadcast_link_broadcast", "broadcast_id", "variant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(24), unique=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcast.id", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(String(8))
    position: Mapped[int]  # the button's place in its variant's message
    url: Mapped[str] = mapped_column(Text)
    clicks: Mapped[int] = mapped_column(default=0)


class BroadcastClicker(Base):
    """Who followed a tracked link, where the message went to one person at a time (Telegram,
    the simulator): the link's URL carried that person's signed tag. One row per person and
    link, so `clicks` counts clicks and these rows count people."""

    __tablename__ = "broadcast_clicker"

    link_id: Mapped[int] = mapped_column(
        ForeignKey("broadcast_link.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    first_at: Mapped[dt.datetime]


# -- the file ----------------------------------------------------------------------------------
def _time(value: Any, field: str, *, now: dt.datetime) -> dt.datetime:
    if value == "now":
        return now
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise BroadcastError(field, f"not `now` or an ISO 8601 time: {value!r}") from None
    else:
        raise BroadcastError(field, "must be `now` or a time like 2026-12-24 09:00")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TAIPEI)
    return moment.astimezone(dt.UTC)


def _text(value: Any, field: str, *, limit: int, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BroadcastError(field, "must be a non-empty text")
    if len(value) > limit:
        raise BroadcastError(field, f"at most {limit} characters")
    return value.strip()


def _url(value: Any, field: str) -> str:
    url = _text(value, field, limit=1000)
    assert url is not None
    if not re.match(r"^https?://[^\s/]+", url):
        raise BroadcastError(field, "must be an http(s) URL")
    return url


def _message(raw: Any, field: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise BroadcastError(field, "must be a mapping with text, text_en, ...")
    known = ("text", "text_en", "image", "courses", "buttons")
    for key in raw:
        if key not in known:
            raise BroadcastError(f"{field}.{key}", f"unknown key (known: {', '.join(known)})")
    out: dict[str, Any] = {"text": _text(raw.get("text"), f"{field}.text", limit=2000)}
    out["text_en"] = _text(raw.get("text_en"), f"{field}.text_en", limit=2000, required=False)
    if raw.get("image") is not None:
        out["image"] = _url(raw["image"], f"{field}.image")
    courses = raw.get("courses") or []
    if not isinstance(courses, list) or not all(isinstance(c, str | int) for c in courses):
        raise BroadcastError(f"{field}.courses", "must be a list of course ids")
    if len(courses) > MAX_COURSES:
        raise BroadcastError(f"{field}.courses", f"at most {MAX_COURSES} courses")
    out["courses"] = [str(c) for c in courses]
    buttons = raw.get("buttons") or []
    if not isinstance(buttons, list):
        raise BroadcastError(f"{field}.buttons", "must be a list")
    if len(buttons) > MAX_BUTTONS:
        raise BroadcastError(f"{field}.buttons", f"at most {MAX_BUTTONS} buttons")
    out["buttons"] = [_button(b, f"{field}.buttons[{i}]") for i, b in enumerate(buttons)]
    return out


def _button(raw: Any, field: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise BroadcastError(field, "must be a mapping with label and url, course or campaign")
    for key in raw:
        if key not in ("label", "label_en", "url", "course", "campaign"):
            raise BroadcastError(f"{field}.{key}", "unknown key")
    out: dict[str, Any] = {"label": _text(raw.get("label"), f"{field}.label", limit=LABEL_CHARS)}
    out["label_en"] = _text(
        raw.get("label_en"), f"{field}.label_en", limit=LABEL_CHARS, required=False
    )
    targets = [k for k in ("url", "course", "campaign") if raw.get(k) is not None]
    if len(targets) != 1:
        raise BroadcastError(field, "needs exactly one of url, course or campaign")
    target = targets[0]
    if target == "url":
        out["url"] = _url(raw["url"], f"{field}.url")
    else:
        value = _text(str(raw[target]), f"{field}.{target}", limit=40)
        if target == "campaign" and not re.match(r"^[a-z0-9-]+$", value or ""):
            raise BroadcastError(f"{field}.campaign", "must be a campaign slug ([a-z0-9-]+)")
        out[target] = value
    return out


def _share(value: Any, field: str, *, low: float) -> int:
    """A percentage with at most one decimal, as buckets (tenths of a percent)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BroadcastError(field, "must be a percentage")
    if not low <= value <= 100:
        raise BroadcastError(field, f"must be between {low:g} and 100")
    tenths = round(value * 10)
    if abs(tenths - value * 10) > 1e-6:
        raise BroadcastError(field, "at most one decimal")
    return tenths


def parse_spec(raw: Any, *, now: dt.datetime) -> dict[str, Any]:
    """The broadcast file checked and normalised (JSON-safe), or BroadcastError naming the
    field. Shares become bucket ranges: variant i gets [start, end) of 0..999."""
    if not isinstance(raw, Mapping):
        raise BroadcastError("", "a broadcast file is a mapping (YAML or JSON)")
    for key in raw:
        if key not in FILE_KEYS:
            raise BroadcastError(str(key), f"unknown key (known: {', '.join(FILE_KEYS)})")
    for key in ("name", "segment", "send_at"):
        if raw.get(key) is None:
            raise BroadcastError(key, "is required")
    spec: dict[str, Any] = {"name": _text(raw["name"], "name", limit=200)}
    try:
        spec["segment"] = segments.validate(raw["segment"])
    except segments.SegmentError as exc:
        raise BroadcastError(exc.field, exc.problem) from None
    spec["send_at"] = _time(raw["send_at"], "send_at", now=now).isoformat()
    holdout = 0 if raw.get("holdout") is None else _share(raw["holdout"], "holdout", low=0)
    variants = _variants(raw, holdout=holdout)
    start = 0
    for v in variants:
        v["start"], v["end"] = start, start + v["share"]
        start = v["end"]
    if start + holdout > 1000:
        raise BroadcastError("variants", "shares and holdout add up to more than 100")
    spec["variants"] = variants
    spec["holdout"] = {"start": start, "end": start + holdout}
    spec["rest"] = {"start": start + holdout, "end": 1000}
    if raw.get("winner") is not None:
        spec["winner"] = _winner(raw["winner"], send_at=spec["send_at"], now=now)
    elif start + holdout < 1000 and raw.get("variants") is not None:
        spec["winner"] = {"at": None, "by": "pick"}  # the marketer picks one
    return spec


def _variants(raw: Mapping[str, Any], *, holdout: int) -> list[dict[str, Any]]:
    """The variants with their shares (one variant "a" of everything but the holdout when
    the file has a message and no variants); a variant without a message takes the file's."""
    raw_variants = raw.get("variants")
    if raw_variants is None:
        if raw.get("message") is None:
            raise BroadcastError("message", "is required")
        message = _message(raw["message"], "message")
        return [{"name": "a", "share": 1000 - holdout, "message": message}]
    if not isinstance(raw_variants, list) or not 1 <= len(raw_variants) <= MAX_VARIANTS:
        raise BroadcastError("variants", f"must be a list of 1 to {MAX_VARIANTS} variants")
    variants: list[dict[str, Any]] = []
    default = raw.get("message")
    for i, item in enumerate(raw_variants):
        where = f"variants[{i}]"
        if not isinstance(item, Mapping):
            raise BroadcastError(where, "must be a mapping with name, share and message")
        name = item.get("name")
        if not isinstance(name, str) or not _VARIANT_NAME.match(name):
            raise BroadcastError(f"{where}.name", "1 to 8 of a-z and 0-9")
        if any(v["name"] == name for v in variants):
            raise BroadcastError(f"{where}.name", f"variant {name!r} appears twice")
        if item.get("share") is None:
            raise BroadcastError(f"{where}.share", "is required")
        share = _share(item["share"], f"{where}.share", low=0.1)
        body = item.get("message", default)
        if body is None:
            raise BroadcastError(f"{where}.message", "is required (or a top-level message)")
        variants.append(
            {"name": name, "share": share, "message": _message(body, f"{where}.message")}
        )
    return variants


def _winner(winner: Any, *, send_at: str, now: dt.datetime) -> dict[str, Any]:
    """When the A/B winner is chosen (hours after send_at, or a time) and by what."""
    if not isinstance(winner, Mapping):
        raise BroadcastError("winner", "must be a mapping with after and by")
    by = winner.get("by", "clicks")
    if by not in ("clicks", "claims"):
        raise BroadcastError("winner.by", "must be clicks or claims")
    after = winner.get("after")
    if isinstance(after, int | float) and not isinstance(after, bool) and after > 0:
        at = _time(send_at, "send_at", now=now) + dt.timedelta(hours=after)
    elif after is not None:
        at = _time(after, "winner.after", now=now)
    else:
        raise BroadcastError("winner.after", "hours after send_at, or a time")
    if at <= _time(send_at, "send_at", now=now):
        raise BroadcastError("winner.after", "must be after send_at")
    return {"at": at.isoformat(), "by": by}


# -- creating and finding ----------------------------------------------------------------------
async def create_broadcast(
    session: AsyncSession, raw: Any, *, created_by: str, now: dt.datetime
) -> Broadcast:
    """Check the file (course ids must exist), store it and its tracked links. The caller
    commits; nothing is written when the file is refused."""
    spec = parse_spec(raw, now=now)
    for i, v in enumerate(spec["variants"]):
        where = "message" if len(spec["variants"]) == 1 else f"variants[{i}].message"
        wanted = list(v["message"]["courses"]) + [
            b["course"] for b in v["message"]["buttons"] if "course" in b
        ]
        if wanted:
            found = set(
                (await session.scalars(select(Course.id).where(Course.id.in_(wanted)))).all()
            )
            missing = [c for c in wanted if c not in found]
            if missing:
                raise BroadcastError(f"{where}.courses", f"unknown course {missing[0]!r}")
    # The compiler refuses what it cannot serve (an unknown campaign) before storing.
    try:
        campaigns = await segments.campaign_selects(session, spec["segment"], now=now)
        segments.compile_tree(spec["segment"], now=now, campaigns=campaigns)
    except segments.SegmentError as exc:
        raise BroadcastError(exc.field, exc.problem) from None
    row = Broadcast(
        name=spec["name"],
        spec=spec,
        status=SCHEDULED,
        send_at=dt.datetime.fromisoformat(spec["send_at"]),
        seed=secrets.randbelow(segments.SEED_LIMIT),
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    for v in spec["variants"]:
        for position, b in enumerate(v["message"]["buttons"]):
            if "url" in b:
                session.add(
                    BroadcastLink(
                        token=secrets.token_urlsafe(9),
                        broadcast_id=row.id,
                        variant=v["name"],
                        position=position,
                        url=b["url"],
                    )
                )
    await session.flush()
    return row


async def get_broadcast(session: AsyncSession, broadcast_id: int) -> Broadcast | None:
    return await session.get(Broadcast, broadcast_id)


async def require_broadcast(
    session: AsyncSession, broadcast_id: int, *, lock: bool = False
) -> Broadcast:
    row = await session.get(Broadcast, broadcast_id, with_for_update=lock, populate_existing=lock)
    if row is None:
        raise BroadcastError("id", f"no broadcast {broadcast_id}")
    return row


async def list_broadcasts(session: AsyncSession, *, limit: int = 100) -> list[Broadcast]:
    return list(
        (await session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit))).all()
    )


async def links_of(session: AsyncSession, broadcast_id: int) -> dict[tuple[str, int], str]:
    """(variant, button position) -> token."""
    rows = await session.execute(
        select(BroadcastLink.variant, BroadcastLink.position, BroadcastLink.token).where(
            BroadcastLink.broadcast_id == broadcast_id
        )
    )
    return {(v, p): t for v, p, t in rows}


async def record_click(
    session: AsyncSession,
    *,
    token: str,
    member_id: int | None = None,
    now: dt.datetime | None = None,
) -> str | None:
    """Count one click on a tracked link, and the person behind it when the link was that
    person's own (`member_id`, from its verified tag); the original URL, or None for an
    unknown token."""
    found = (
        await session.execute(
            update(BroadcastLink)
            .where(BroadcastLink.token == token)
            .values(clicks=BroadcastLink.clicks + 1)
            .returning(BroadcastLink.id, BroadcastLink.url)
        )
    ).first()
    if found is None:
        return None
    if member_id is not None and now is not None:
        stmt = _insert(session)(BroadcastClicker).values(
            link_id=found[0], member_id=member_id, first_at=now
        )
        # A member erased since the message was sent is no longer there to count.
        exists = await session.scalar(select(Member.id).where(Member.id == member_id))
        if exists is not None:
            await session.execute(stmt.on_conflict_do_nothing())
    return str(found[1])


async def count_segment(
    session: AsyncSession, segment: Mapping[str, Any], *, now: dt.datetime, channels: Sequence[str]
) -> int:
    """The live count of a segment (marketing on, reachable): one query."""
    try:
        campaigns = await segments.campaign_selects(session, segment, now=now)
        query = segments.count_query(segment, now=now, channels=channels, campaigns=campaigns)
    except segments.SegmentError as exc:
        raise BroadcastError(exc.field, exc.problem) from None
    return int(await session.scalar(query) or 0)


# -- planning ----------------------------------------------------------------------------------
def aggregation_unit(broadcast_id: int, variant: str, *, phase: int = 0) -> str:
    """LINE's customAggregationUnits name of one broadcast and variant (^[a-zA-Z0-9_]{1,30}$);
    the winner's send to the rest has its own, so the test shares' figures stay apart."""
    return f"edoor_bc{broadcast_id}_{variant}" + ("_w" if phase else "")


@dataclass(frozen=True)
class Body:
    """One variant's replies per language (bot.messages.dump_replies), built by the caller."""

    zh: list[dict[str, Any]]
    en: list[dict[str, Any]]


@dataclass
class PlanSettings:
    channels: Sequence[str]
    not_before: dt.datetime  # the send time, or the end of the quiet window it falls in
    cap: int = 2  # marketing messages per member
    cap_window: dt.timedelta = dt.timedelta(days=7)
    chunk: int = CHUNK


async def claim_due(
    session: AsyncSession, *, now: dt.datetime, lease: dt.timedelta = PLAN_LEASE
) -> list[Broadcast]:
    """Broadcasts due for planning now, each taken under a lease by this run only (a second
    scheduler running the same job at the same moment gets none of them). Caller commits."""
    due = (
        (Broadcast.status == SCHEDULED) & (Broadcast.send_at <= now)
        | (Broadcast.status == PLANNING) & (Broadcast.lease_until < now)
        | (Broadcast.status == WAITING)
        & (Broadcast.winner_at.is_not(None))
        & (Broadcast.winner_at <= now)
    )
    # One compare-and-set statement: of two runs at once, one changes the rows and the other
    # finds none (on SQLite it takes the write lock at once, so the other waits, then sees 0).
    result = await session.execute(
        update(Broadcast)
        .where(due, Broadcast.paused.is_(False))
        .values(status=PLANNING, lease_until=now + lease, updated_at=now)
        .returning(Broadcast.id)
        .execution_options(synchronize_session=False)
    )
    ids = sorted(int(i) for i in result.scalars().all())
    taken = [await require_broadcast(session, i) for i in ids]
    for row in taken:
        await session.refresh(row)
    return taken


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _ranges(spec: Mapping[str, Any], phase: int, winner: str | None) -> list[tuple[str, int, int]]:
    """(variant, start, end) bucket ranges planned in `phase`."""
    if phase == 0:
        return [
            (v["name"], v["start"], v["end"]) for v in spec["variants"] if v["end"] > v["start"]
        ]
    rest = spec["rest"]
    if winner is None or rest["end"] <= rest["start"]:
        return []
    return [(winner, rest["start"], rest["end"])]


def plan_statement(
    session: AsyncSession,
    broadcast: Broadcast,
    *,
    variant: str,
    start: int,
    end: int,
    body: Body,
    lo: int,
    hi: int,
    settings: PlanSettings,
    now: dt.datetime,
    campaigns: segments.CampaignSelects | None = None,
) -> Any:
    """INSERT INTO outbox ... SELECT over members `lo..hi` of the segment whose bucket is in
    [start, end), each to their chosen account (the one picked in settings, else the most
    recent), skipping members at the frequency cap; ON CONFLICT (key) DO NOTHING."""
    spec = broadcast.spec
    channels = list(settings.channels)
    limit = segments.required_channels(spec["segment"])
    if limit is not None:
        channels = [c for c in channels if c in limit]
    chosen = _chosen_accounts(channels, lo=lo, hi=hi)
    capped = _at_frequency_cap(broadcast, settings=settings, now=now, lo=lo, hi=hi)
    unit = aggregation_unit(broadcast.id, variant, phase=broadcast.phase)
    bucket = segments.bucket_sql(broadcast.seed)
    values = _outbox_values(
        broadcast, chosen, body=body, unit=unit, settings=settings, now=now, group=(lo, hi)
    )
    source = (
        select(*values)
        .select_from(Member)
        .join(chosen, and_(chosen.c.member_id == Member.id, chosen.c.rank == 1))
        .where(
            Member.id.between(lo, hi),
            # Reachability is the join to `chosen` (an account we can send to).
            segments.segment_filter(
                spec["segment"], now=now, channels=channels, reachable=False, campaigns=campaigns
            ),
            bucket >= start,
            bucket < end,
            ~capped.exists(),
        )
    )
    return (
        _insert(session)(OutboxMessage.__table__)
        .from_select(list(_OUTBOX_COLUMNS), source)
        .on_conflict_do_nothing(index_elements=["key"])
        # The groups this chunk filled (their rows are inserted next, see _add_groups).
        .returning(OutboxMessage.group_key, OutboxMessage.body_hash)
    )


def _chosen_accounts(channels: Sequence[str], *, lo: int, hi: int) -> Any:
    """Each member's accounts we can send to on `channels`, ranked: the channel picked in
    settings first, then the most recently seen (rank 1 is the one a broadcast goes to)."""
    account = ChannelAccount.__table__.alias("target")
    owner = Member.__table__.alias("owner")
    return (
        select(
            account.c.member_id,
            account.c.id.label("account_id"),
            account.c.channel,
            account.c.external_id,
            func.row_number()
            .over(
                partition_by=account.c.member_id,
                order_by=(
                    case((account.c.channel == owner.c.preferred_channel, 1), else_=0).desc(),
                    account.c.last_seen_at.desc(),
                    account.c.id.desc(),
                ),
            )
            .label("rank"),
        )
        .join(owner, owner.c.id == account.c.member_id)
        .where(
            account.c.following.is_(True),
            account.c.unreachable.is_(False),
            account.c.channel.in_(list(channels)),
            account.c.member_id.between(lo, hi),
        )
        .subquery("ranked")
    )


def _at_frequency_cap(
    broadcast: Broadcast, *, settings: PlanSettings, now: dt.datetime, lo: int, hi: int
) -> Any:
    """Members who got `settings.cap` marketing messages in the cap window (correlated with
    the outer member: NOT EXISTS is an anti-join, NOT IN over a subquery is not on
    PostgreSQL)."""
    return (
        select(OutboxMessage.member_id)
        .where(
            OutboxMessage.member_id == Member.id,
            OutboxMessage.kind == KIND,
            OutboxMessage.created_at >= now - settings.cap_window,
            OutboxMessage.status != CANCELLED,
            OutboxMessage.member_id.between(lo, hi),
            # This broadcast's own rows (a resumed chunk) are not a second message.
            or_(OutboxMessage.broadcast_id.is_(None), OutboxMessage.broadcast_id != broadcast.id),
        )
        .group_by(OutboxMessage.member_id)
        .having(func.count() >= settings.cap)
    )


# The outbox columns a broadcast fills, in the order of _outbox_values.
_OUTBOX_COLUMNS = (
    "key",
    "member_id",
    "account_id",
    "channel",
    "external_id",
    "kind",
    "priority",
    "proactive",
    "replies",
    "body_hash",
    "not_before",
    "status",
    "attempts",
    "created_at",
    "broadcast_id",
    "aggregation_unit",
    "group_key",
)


def _outbox_values(
    broadcast: Broadcast,
    chosen: Any,
    *,
    body: Body,
    unit: str,
    settings: PlanSettings,
    now: dt.datetime,
    group: tuple[int, int],
) -> tuple[Any, ...]:
    """One outbox row per member, in _OUTBOX_COLUMNS' order: keyed by broadcast and member,
    to the chosen account, the body in the member's language. A LINE recipient is `grouped`:
    numbered within the chunk `group` (member ids lo..hi) and language, 500 to a group,
    under the group's key."""
    table = OutboxMessage.__table__
    english = Member.language == "en"
    hash_zh, hash_en = _body_hashes(body, unit)
    replies_type = table.c.replies.type
    grouped = chosen.c.channel == "line"
    language = case((english, literal("en")), else_=literal("zh"))
    number = func.row_number().over(partition_by=(grouped, language), order_by=Member.id) - 1
    prefix = f"{group_prefix(broadcast.id, unit)}{group[0]}-{group[1]}:"
    group_key = case(
        (grouped, literal(prefix) + language + ":" + cast(number // MAX_GROUP, String)),
        else_=None,
    )
    return (
        literal(f"bc:{broadcast.id}:") + cast(Member.id, String),
        Member.id,
        chosen.c.account_id,
        chosen.c.channel,
        chosen.c.external_id,
        literal(KIND),
        literal(PRIORITY_BROADCAST),
        literal(True),
        # A grouped row keeps no body: its group row has it (and gives it back to a row that
        # leaves the group), so 1.5 million rows do not carry 1.5 million copies.
        case(
            (grouped, literal([], type_=replies_type)),
            (english, literal(body.en, type_=replies_type)),
            else_=literal(body.zh, type_=replies_type),
        ),
        case((english, literal(hash_en)), else_=literal(hash_zh)),
        literal(settings.not_before, type_=table.c.not_before.type),
        case((grouped, literal(GROUPED)), else_=literal(PENDING)),
        literal(0),
        literal(now, type_=table.c.created_at.type),
        literal(broadcast.id),
        literal(unit),
        group_key,
    )


def _body_hashes(body: Body, unit: str) -> tuple[str, str]:
    """(zh, en) body hashes; they cover the unit too, so two variants never share a call."""
    return body_hash([*body.zh, {"unit": unit}]), body_hash([*body.en, {"unit": unit}])


def group_prefix(broadcast_id: int, unit: str) -> str:
    """The start of the keys of a broadcast unit's LINE groups (`bcg:` rows)."""
    return f"bcg:{broadcast_id}:{unit}:"


async def _add_groups(
    session: AsyncSession,
    broadcast: Broadcast,
    filled: set[tuple[str, str]],
    *,
    body: Body,
    unit: str,
    settings: PlanSettings,
    now: dt.datetime,
) -> None:
    """One outbox row per LINE group that a chunk filled: no member, the group's body, due
    when its recipients are; it is what a worker claims and sends as one multicast."""
    if not filled:
        return
    hash_zh, hash_en = _body_hashes(body, unit)
    bodies = {hash_zh: body.zh, hash_en: body.en}
    rows = [
        {
            "key": key,
            "member_id": None,
            "account_id": None,
            "channel": "line",
            "external_id": "",
            "kind": KIND,
            "priority": PRIORITY_BROADCAST,
            "proactive": True,
            "replies": bodies[digest],
            "body_hash": digest,
            "not_before": settings.not_before,
            "status": PENDING,
            "attempts": 0,
            "created_at": now,
            "broadcast_id": broadcast.id,
            "aggregation_unit": unit,
        }
        for key, digest in sorted(filled)
    ]
    await session.execute(
        _insert(session)(OutboxMessage.__table__)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["key"])
    )


async def start_phase(session: AsyncSession, broadcast: Broadcast) -> None:
    """Fix the member id range of a phase when it begins (later members are not in it)."""
    if broadcast.last_member == 0 or broadcast.cursor == 0:
        broadcast.last_member = int(await session.scalar(select(func.max(Member.id))) or 0)


async def plan_chunk(
    session: AsyncSession,
    broadcast: Broadcast,
    *,
    bodies: Mapping[str, Body],
    settings: PlanSettings,
    now: dt.datetime,
) -> bool:
    """Plan the next chunk of member ids; True while the phase has more. The caller commits
    (the rows and the cursor together, so a crash resumes where it left off)."""
    lo = broadcast.cursor + 1
    if lo > broadcast.last_member:
        return False
    hi = min(broadcast.last_member, lo + settings.chunk - 1)
    added = 0
    campaigns = await segments.campaign_selects(session, broadcast.spec["segment"], now=now)
    for variant, start, end in _ranges(broadcast.spec, broadcast.phase, broadcast.winner):
        stmt = plan_statement(
            session,
            broadcast,
            campaigns=campaigns,
            variant=variant,
            start=start,
            end=end,
            body=bodies[variant],
            lo=lo,
            hi=hi,
            settings=settings,
            now=now,
        )
        inserted = (await session.execute(stmt)).all()
        added += len(inserted)
        await _add_groups(
            session,
            broadcast,
            {(str(k), str(h)) for k, h in inserted if k is not None},
            body=bodies[variant],
            unit=aggregation_unit(broadcast.id, variant, phase=broadcast.phase),
            settings=settings,
            now=now,
        )
    broadcast.cursor = hi
    broadcast.queued += added
    broadcast.lease_until = now + PLAN_LEASE
    broadcast.updated_at = now
    return hi < broadcast.last_member


def finish_phase(broadcast: Broadcast, *, now: dt.datetime) -> None:
    """After the last chunk: done, or waiting for the A/B winner."""
    spec = broadcast.spec
    rest = spec["rest"]
    broadcast.lease_until = None
    broadcast.updated_at = now
    if broadcast.phase == 0 and rest["end"] > rest["start"]:
        broadcast.status = WAITING
        winner = spec.get("winner") or {}
        broadcast.winner_at = dt.datetime.fromisoformat(winner["at"]) if winner.get("at") else None
        return
    broadcast.status = PLANNED
    broadcast.planned_at = now


async def choose_winner(
    session: AsyncSession, broadcast: Broadcast, *, now: dt.datetime, claims: Mapping[str, int]
) -> str:
    """The variant with the best click (or claim) rate per message sent; ties: the first."""
    by = (broadcast.spec.get("winner") or {}).get("by", "clicks")
    figures = await variant_figures(session, broadcast)
    best, best_rate = broadcast.spec["variants"][0]["name"], -1.0
    for v in broadcast.spec["variants"]:
        name = v["name"]
        sent = figures.get(name, {}).get("sent", 0)
        hits = claims.get(name, 0) if by == "claims" else figures.get(name, {}).get("clicks", 0)
        rate = hits / sent if sent else 0.0
        if rate > best_rate:
            best, best_rate = name, rate
    return best


def begin_winner_phase(broadcast: Broadcast, winner: str, *, now: dt.datetime) -> None:
    names = [v["name"] for v in broadcast.spec["variants"]]
    if winner not in names:
        raise BroadcastError("variant", f"no variant {winner!r} (known: {', '.join(names)})")
    broadcast.winner = winner
    broadcast.phase = 1
    broadcast.cursor = 0
    broadcast.last_member = 0
    broadcast.updated_at = now


async def pick_winner(
    session: AsyncSession, broadcast_id: int, *, variant: str, now: dt.datetime
) -> Broadcast:
    """A marketer picks the variant the rest gets; the next `broadcasts` run plans it."""
    row = await require_broadcast(session, broadcast_id, lock=True)
    if row.status != WAITING:
        raise BroadcastError("status", f"broadcast {row.id} is {row.status}, not waiting")
    begin_winner_phase(row, variant, now=now)
    row.status = PLANNING
    row.lease_until = now - dt.timedelta(seconds=1)  # due for the next run
    return row


# -- pause, resume, cancel ---------------------------------------------------------------------
async def _rows(session: AsyncSession, broadcast_id: int, old: Sequence[str], **values: Any) -> int:
    """The broadcast's rows moved from `old` to `values`, LINE group rows among them;
    returns the recipients moved (a group's recipients move with their group's row)."""
    mine = (OutboxMessage.broadcast_id == broadcast_id, OutboxMessage.status.in_(list(old)))
    in_groups = await session.scalar(
        select(func.count()).where(
            OutboxMessage.broadcast_id == broadcast_id,
            OutboxMessage.status == GROUPED,
            OutboxMessage.group_key.in_(_group_keys(broadcast_id, old)),
        )
    )
    groups = await session.scalar(  # group rows are not recipients
        select(func.count()).where(*mine, OutboxMessage.member_id.is_(None))
    )
    result = await session.execute(
        update(OutboxMessage)
        .where(*mine)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    moved = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return moved - int(groups or 0) + int(in_groups or 0)


def _group_keys(broadcast_id: int, statuses: Sequence[str]) -> Any:
    """The keys of the broadcast's LINE group rows in `statuses`."""
    groups = OutboxMessage.__table__.alias("grp")
    return select(groups.c.key).where(
        groups.c.broadcast_id == broadcast_id,
        groups.c.member_id.is_(None),
        groups.c.status.in_(list(statuses)),
    )


async def pause(session: AsyncSession, broadcast_id: int, *, now: dt.datetime) -> int:
    """Stop planning and sending (rows being sent this second still go); rows held."""
    row = await require_broadcast(session, broadcast_id, lock=True)
    if row.status == CANCELLED_BC:
        raise BroadcastError("status", f"broadcast {row.id} is cancelled")
    row.paused, row.updated_at = True, now
    return await _rows(session, row.id, [PENDING], status=HELD)


async def resume(session: AsyncSession, broadcast_id: int, *, now: dt.datetime) -> int:
    row = await require_broadcast(session, broadcast_id, lock=True)
    if row.status == CANCELLED_BC:
        raise BroadcastError("status", f"broadcast {row.id} is cancelled")
    row.paused, row.updated_at = False, now
    if row.status == PLANNING:
        row.lease_until = now - dt.timedelta(seconds=1)  # planning resumes on the next run
    return await _rows(session, row.id, [HELD], status=PENDING)


async def cancel(session: AsyncSession, broadcast_id: int, *, now: dt.datetime) -> int:
    """Cancel: nothing more is planned, unsent rows are withdrawn; returns rows withdrawn."""
    row = await require_broadcast(session, broadcast_id, lock=True)
    row.status, row.paused, row.lease_until, row.updated_at = CANCELLED_BC, False, None, now
    # Grouped recipients of unsent groups are withdrawn with them (the frequency cap counts
    # the rows that are not cancelled).
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.broadcast_id == row.id,
            OutboxMessage.status == GROUPED,
            OutboxMessage.group_key.in_(_group_keys(row.id, [PENDING, HELD])),
        )
        .values(status=CANCELLED, last_error="broadcast cancelled")
        .execution_options(synchronize_session=False)
    )
    grouped = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return grouped + await _rows(
        session,
        row.id,
        [PENDING, HELD],
        status=CANCELLED,
        last_error="broadcast cancelled",
        lease_until=None,
    )


# A claim this many days after receiving a broadcast is counted as the broadcast's.
CLAIM_DAYS = 7


# -- figures -----------------------------------------------------------------------------------
async def variant_figures(session: AsyncSession, broadcast: Broadcast) -> dict[str, dict[str, int]]:
    """{variant: {sent, queued, clicks}} for the A/B comparison."""
    out: dict[str, dict[str, int]] = {v["name"]: {} for v in broadcast.spec["variants"]}
    units = {
        aggregation_unit(broadcast.id, v["name"], phase=p): v["name"]
        for v in broadcast.spec["variants"]
        for p in (0, 1)
    }
    rows_of = deliveries(broadcast.id)
    rows = await session.execute(
        select(rows_of.c.aggregation_unit, rows_of.c.status, func.count()).group_by(
            rows_of.c.aggregation_unit, rows_of.c.status
        )
    )
    for unit, status, count in rows:
        name = units.get(str(unit))
        if name is None:
            continue
        key = (
            "sent" if status == SENT else "queued" if status in (PENDING, HELD, SENDING) else status
        )
        out[name][key] = out[name].get(key, 0) + int(count)
    clicks = await session.execute(
        select(BroadcastLink.variant, func.sum(BroadcastLink.clicks))
        .where(BroadcastLink.broadcast_id == broadcast.id)
        .group_by(BroadcastLink.variant)
    )
    for name, total in clicks:
        out.setdefault(str(name), {})["clicks"] = int(total or 0)
    return out


async def figures(session: AsyncSession, broadcast: Broadcast) -> dict[str, Any]:
    """Recipients, queued, sent, failed by reason, unreachable, withdrawn, clicks, per variant."""
    rows_of = deliveries(broadcast.id)
    rows = await session.execute(
        select(rows_of.c.status, rows_of.c.last_error, ChannelAccount.unreachable, func.count())
        .select_from(rows_of)
        .outerjoin(ChannelAccount, ChannelAccount.id == rows_of.c.account_id)
        .group_by(rows_of.c.status, rows_of.c.last_error, ChannelAccount.unreachable)
    )
    out: dict[str, Any] = {
        "recipients": 0,
        "queued": 0,
        "held": 0,
        "sent": 0,
        "failed": 0,
        "failed_by_reason": {},
        "unreachable": 0,
        "withdrawn": 0,
        "unsubscribed": 0,
    }
    for status, error, gone, count in rows:
        n = int(count)
        out["recipients"] += n
        if status in (PENDING, SENDING):
            out["queued"] += n
        elif status == HELD:
            out["held"] += n
        elif status == SENT:
            out["sent"] += n
        elif status == FAILED:
            out["failed"] += n
            reason = str(error or "unknown")
            out["failed_by_reason"][reason] = out["failed_by_reason"].get(reason, 0) + n
            if gone:
                out["unreachable"] += n
        elif status == CANCELLED:
            out["unsubscribed" if error == UNSUBSCRIBED else "withdrawn"] += n
    out["clicks"] = int(
        await session.scalar(
            select(func.coalesce(func.sum(BroadcastLink.clicks), 0)).where(
                BroadcastLink.broadcast_id == broadcast.id
            )
        )
        or 0
    )
    # People, where links went one person at a time (LINE's multicasts count clicks only).
    out["people_clicked"] = int(
        await session.scalar(
            select(func.count(func.distinct(BroadcastClicker.member_id)))
            .join(BroadcastLink, BroadcastLink.id == BroadcastClicker.link_id)
            .where(BroadcastLink.broadcast_id == broadcast.id)
        )
        or 0
    )
    out["variants"] = await variant_figures(session, broadcast)
    return out


UNSUBSCRIBED = "unsubscribed"  # last_error of a marketing row withdrawn at send time


def deliveries(broadcast_id: int) -> Any:
    """The broadcast's rows, one per recipient, as each stands: a grouped recipient has its
    group row's status, error and time (a group row no longer kept was sent)."""
    rows = OutboxMessage.__table__
    groups = rows.alias("grp")
    grouped = rows.c.status == GROUPED
    return (
        select(
            rows.c.member_id,
            rows.c.account_id,
            rows.c.aggregation_unit,
            case((grouped, func.coalesce(groups.c.status, SENT)), else_=rows.c.status).label(
                "status"
            ),
            case((grouped, groups.c.last_error), else_=rows.c.last_error).label("last_error"),
            case((grouped, groups.c.sent_at), else_=rows.c.sent_at).label("sent_at"),
        )
        .select_from(rows.outerjoin(groups, groups.c.key == rows.c.group_key))
        .where(rows.c.broadcast_id == broadcast_id, rows.c.member_id.is_not(None))
        .subquery("deliveries")
    )


async def claims_attributed(session: AsyncSession, broadcast: Broadcast) -> dict[str, int] | None:
    """Claims per variant made within 7 days after the member received this broadcast (one
    query: the broadcast's sent rows joined to prize claims by member)."""
    from models.campaigns.claims import HOLDS_PRIZE
    from models.campaigns.tables import CampaignClaim

    units = {
        aggregation_unit(broadcast.id, v["name"], phase=p): v["name"]
        for v in broadcast.spec["variants"]
        for p in (0, 1)
    }
    # The 7-day window is applied here: interval arithmetic differs between the databases
    # (and the rows are only the claims of this broadcast's recipients).
    rows_of = deliveries(broadcast.id)
    claimed = (
        select(rows_of.c.aggregation_unit, rows_of.c.sent_at, CampaignClaim.claimed_at)
        .join(CampaignClaim, CampaignClaim.member_id == rows_of.c.member_id)
        .where(
            rows_of.c.status == SENT,
            CampaignClaim.status.in_(HOLDS_PRIZE),
            CampaignClaim.claimed_at >= rows_of.c.sent_at,
        )
    )
    window = dt.timedelta(days=CLAIM_DAYS)
    out = {v["name"]: 0 for v in broadcast.spec["variants"]}
    for unit, sent_at, claimed_at in await session.execute(claimed):
        name = units.get(str(unit))
        if name is not None and sent_at is not None and claimed_at <= sent_at + window:
            out[name] += 1
    return out
