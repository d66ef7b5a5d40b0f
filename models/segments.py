"""Segments: `{all: [...], any: [...], not: [...]}` trees of conditions over our own data,
compiled to one SQL boolean over `member` (correlated EXISTS subqueries, SQLAlchemy Core),
the same on SQLite and PostgreSQL. Never a per-member loop in Python.

A condition is a one-key mapping (`{channel: line}`); a nested group (`{any: [...]}`) is a
condition too. `all`: every condition holds; `any`: at least one does; `not`: none does;
the three parts of one group must all hold. Only members with marketing messages on and a
reachable account are ever in a segment (see `segment_filter`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from models.courses import Course, MemberSearchInterest, SavedCourse
from models.identity import CivilServant, VerifiedPhone
from models.learning import Completion
from models.members import CHANNELS, ChannelAccount, Member
from models.podcasts import Podcast, PodcastSubscription

GROUP_KEYS = ("all", "any", "not")
CONDITIONS = (
    "channel",
    "civil_servant",
    "agencies",
    "language",
    "interests",
    "inactive_days",
    "campaign_eligible",
    "podcast_subscribers",
    "verified_phone",
)
LANGUAGES = ("zh-TW", "en")


class SegmentError(ValueError):
    """A segment that cannot be compiled; `field` names where (e.g. `segment.all[1].channel`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def validate(tree: Any, *, field: str = "segment") -> dict[str, list[Any]]:
    """The tree with its values checked and normalised (lists where lists are meant)."""
    if not isinstance(tree, Mapping):
        raise SegmentError(field, "must be a mapping with all / any / not")
    unknown = [k for k in tree if k not in GROUP_KEYS]
    if unknown:
        raise SegmentError(f"{field}.{unknown[0]}", "unknown key (use all, any or not)")
    out: dict[str, list[Any]] = {}
    for part in GROUP_KEYS:
        items = tree.get(part)
        if items is None:
            continue
        if not isinstance(items, list):
            raise SegmentError(f"{field}.{part}", "must be a list of conditions")
        out[part] = [_condition(item, f"{field}.{part}[{i}]") for i, item in enumerate(items)]
    return out


def _condition(item: Any, field: str) -> dict[str, Any]:
    if not isinstance(item, Mapping) or len(item) != 1:
        raise SegmentError(field, "a condition is one key and its value, e.g. {channel: line}")
    ((name, value),) = item.items()
    where = f"{field}.{name}"
    if name in GROUP_KEYS:
        return {name: validate({name: value}, field=field)[name]}
    if name not in CONDITIONS:
        raise SegmentError(where, f"unknown condition (known: {', '.join(CONDITIONS)})")
    if name in ("civil_servant", "verified_phone"):
        if not isinstance(value, bool):
            raise SegmentError(where, "must be true or false")
        return {name: value}
    if name == "inactive_days":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SegmentError(where, "must be a whole number of days, 1 or more")
        return {name: value}
    if name in ("campaign_eligible", "podcast_subscribers"):
        if not isinstance(value, str) or not value.strip():
            raise SegmentError(where, "must be a slug")
        return {name: value.strip()}
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise SegmentError(where, "must be a text or a non-empty list of texts")
    if name == "channel" and (bad := [v for v in values if v not in CHANNELS]):
        raise SegmentError(where, f"unknown channel {bad[0]!r} (line, telegram or simulator)")
    if name == "language" and (bad := [v for v in values if v not in LANGUAGES]):
        raise SegmentError(where, f"unknown language {bad[0]!r} (zh-TW or en)")
    return {name: [v.strip() for v in values]}


# Campaign eligibility is one rule (models.campaigns.eligibility), as SQL: loading a campaign
# and its requirement is async, so the selects are made first and the compiler takes them.
CampaignSelects = Mapping[str, Any]


def _campaign_slugs(tree: Mapping[str, Any], field: str = "segment") -> list[tuple[str, str]]:
    """(field, slug) of every campaign_eligible condition, with fields named as compile_tree
    names them."""
    out: list[tuple[str, str]] = []
    for part in GROUP_KEYS:
        for i, cond in enumerate(tree.get(part) or []):
            ((name, value),) = cond.items()
            where = f"{field}.{part}[{i}]"
            if name in GROUP_KEYS:
                out += _campaign_slugs({name: value}, where)
            elif name == "campaign_eligible":
                out.append((f"{where}.{name}", value))
    return out


async def campaign_selects(
    session: AsyncSession, tree: Mapping[str, Any], *, now: dt.datetime
) -> dict[str, Any]:
    """{slug: SELECT of eligible member ids} for every campaign the tree names (SegmentError
    naming the field for a campaign that does not exist)."""
    from models.campaigns.claims import get_campaign
    from models.campaigns.eligibility import eligible_member_ids

    out: dict[str, Any] = {}
    for where, slug in _campaign_slugs(tree):
        if slug in out:
            continue
        campaign = await get_campaign(session, slug=slug)
        if campaign is None:
            raise SegmentError(where, f"no campaign {slug!r}")
        out[slug] = await eligible_member_ids(session, campaign=campaign, now=now)
    return out


def campaign_eligible_clause(
    slug: str, *, field: str, campaigns: CampaignSelects
) -> ColumnElement[bool]:
    """Members eligible for campaign `slug`, by the campaigns' own rule (the same SQL the
    export and the chat's card use)."""
    if slug not in campaigns:
        raise SegmentError(field, f"no campaign {slug!r}")
    return Member.id.in_(campaigns[slug])


def _reachable(channels: Sequence[str] | None = None) -> ColumnElement[bool]:
    cond = [
        ChannelAccount.member_id == Member.id,
        ChannelAccount.following.is_(True),
        ChannelAccount.unreachable.is_(False),
    ]
    if channels is not None:
        cond.append(ChannelAccount.channel.in_(list(channels)))
    return exists().where(*cond)


def _interest(categories: list[str]) -> ColumnElement[bool]:
    """Course categories the member showed interest in: saved, completed or searched."""
    saved = exists().where(
        SavedCourse.member_id == Member.id,
        SavedCourse.course_id == Course.id,
        Course.category.in_(categories),
    )
    completed = exists().where(
        Completion.member_id == Member.id,
        Completion.course_id == Course.id,
        Course.category.in_(categories),
    )
    # A search counts when the query names the category ("長期照顧課程") or is a part of it
    # of two characters or more ("長照" is not, "照顧" is).
    searched_terms = []
    for category in categories:
        searched_terms.append(MemberSearchInterest.query.contains(category, autoescape=True))
        searched_terms.append(
            and_(
                literal(category).contains(MemberSearchInterest.query),
                func.length(MemberSearchInterest.query) >= 2,
            )
        )
    searched = exists().where(MemberSearchInterest.member_id == Member.id, or_(*searched_terms))
    return or_(saved, completed, searched)


def _compile_condition(
    cond: Mapping[str, Any], *, field: str, now: dt.datetime, campaigns: CampaignSelects
) -> Any:
    ((name, value),) = cond.items()
    if name in GROUP_KEYS:
        return compile_tree({name: value}, field=field, now=now, campaigns=campaigns)
    if name == "channel":
        return _reachable(value)
    if name == "civil_servant":
        return Member.is_civil_servant.is_(value)
    if name == "agencies":
        return exists().where(
            CivilServant.member_id == Member.id,
            CivilServant.active.is_(True),
            CivilServant.agency.in_(value),
        )
    if name == "language":
        return Member.language.in_(value)
    if name == "interests":
        return _interest(value)
    if name == "inactive_days":
        since = now - dt.timedelta(days=value)
        return not_(
            exists().where(
                ChannelAccount.member_id == Member.id, ChannelAccount.last_seen_at >= since
            )
        )
    if name == "campaign_eligible":
        return campaign_eligible_clause(value, field=f"{field}.{name}", campaigns=campaigns)
    if name == "podcast_subscribers":
        return exists().where(
            PodcastSubscription.member_id == Member.id,
            PodcastSubscription.active.is_(True),
            PodcastSubscription.podcast_id == Podcast.id,
            Podcast.slug == value,
        )
    if name == "verified_phone":
        has = exists().where(VerifiedPhone.member_id == Member.id)
        return has if value else not_(has)
    raise SegmentError(f"{field}.{name}", "unknown condition")  # validate() refuses it first


def compile_tree(
    tree: Mapping[str, Any],
    *,
    field: str = "segment",
    now: dt.datetime,
    campaigns: CampaignSelects | None = None,
) -> Any:
    """The boolean of one (validated) group over `Member` (`campaigns` from campaign_selects
    when the tree names any)."""
    parts: list[Any] = []
    for part in GROUP_KEYS:
        items = tree.get(part)
        if not items:
            continue
        compiled = [
            _compile_condition(c, field=f"{field}.{part}[{i}]", now=now, campaigns=campaigns or {})
            for i, c in enumerate(items)
        ]
        if part == "all":
            parts.append(and_(*compiled))
        elif part == "any":
            parts.append(or_(*compiled))
        else:
            parts.append(not_(or_(*compiled)))
    return and_(*parts) if parts else true()


def required_channels(tree: Mapping[str, Any]) -> list[str] | None:
    """Channels the whole segment is limited to (`channel` conditions in its top `all`): the
    message then goes to that account, not to the member's most recent one."""
    chosen: set[str] | None = None
    for cond in tree.get("all") or []:
        if "channel" in cond:
            values = set(cond["channel"])
            chosen = values if chosen is None else chosen & values
    return sorted(chosen) if chosen is not None else None


def segment_filter(
    tree: Mapping[str, Any],
    *,
    now: dt.datetime,
    channels: Sequence[str],
    reachable: bool = True,
    campaigns: CampaignSelects | None = None,
) -> ColumnElement[bool]:
    """Members in the segment: the tree, marketing on, and an account we can reach on one of
    `channels` (the process's enabled channels). `reachable=False` leaves the last test to
    the caller (planning joins each member to the account it sends to anyway)."""
    allowed = list(channels)
    limit = required_channels(tree)
    if limit is not None:
        allowed = [c for c in allowed if c in limit]
    parts = [Member.marketing_opt_in.is_(True), compile_tree(tree, now=now, campaigns=campaigns)]
    if reachable:
        parts.append(_reachable(allowed) if allowed else false())
    return and_(*parts)


def count_query(
    tree: Mapping[str, Any],
    *,
    now: dt.datetime,
    channels: Sequence[str],
    campaigns: CampaignSelects | None = None,
) -> Any:
    """`SELECT count(*) FROM member WHERE <segment>`: the live count, one query."""
    return (
        select(func.count())
        .select_from(Member)
        .where(segment_filter(tree, now=now, channels=channels, campaigns=campaigns))
    )


# -- A/B shares -------------------------------------------------------------------------------
BUCKETS = 1000  # shares are in tenths of a percent
_MULT = 2654435761  # Knuth's multiplicative hash (2^32 / golden ratio)
SEED_LIMIT = 1 << 20  # keeps (member id + seed) * _MULT within 64 bits for ids below 2^31


def bucket(member_id: int, seed: int) -> int:
    """A member's reproducible bucket (0..999) for one broadcast's seed; `bucket_sql` is the
    same function in SQL (integer arithmetic, identical on SQLite and PostgreSQL)."""
    return ((member_id + seed) * _MULT) % (1 << 32) // 4294968


def bucket_sql(seed: int) -> Any:
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError("seed out of range")
    # Integers only, written into the statement: no bind whose type a driver could guess.
    return literal_column(f"(((member.id + {int(seed)}) * {_MULT}) % 4294967296) / 4294968")
