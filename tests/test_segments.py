"""Segments against hand-computed sets: every condition, all / any / not and nesting, only
members with marketing on and a reachable account; the A/B bucket in SQL equals Python's."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models import segments
from models.broadcasts import BroadcastError, count_segment
from models.courses import Course, MemberSearchInterest, SavedCourse
from models.db import create_sessionmaker
from models.identity import CivilServant, VerifiedPhone
from models.learning import Completion
from models.members import ChannelAccount, Member
from models.podcasts import Podcast, PodcastSubscription
from tests.outbox_support import NOON, add_member

CHANNELS = ["line", "telegram"]
OLD = NOON - dt.timedelta(days=40)


async def _people(s: AsyncSession) -> dict[str, int]:
    """Seven members with known facts; returns name -> member id."""
    s.add_all(
        [
            Course(id="SEC1", title="資安基礎", category="資訊安全", hours=2),
            Course(id="CARE1", title="長照入門", category="長期照顧", hours=3),
            Podcast(slug="care-talk", title="長照談"),
        ]
    )
    await s.flush()
    podcast = await s.scalar(select(Podcast).where(Podcast.slug == "care-talk"))
    assert podcast is not None
    ids: dict[str, int] = {}
    # ann: LINE, civil servant of 資訊局, verified phone, saved a security course.
    t = await add_member(s, channel="line", external_id="U" + "a" * 32, civil_servant=True)
    ids["ann"] = t.member_id
    s.add(
        CivilServant(
            employee_id="E1",
            name_sealed="x",
            agency="資訊局",
            phone_hash="h1",
            phone_sealed="x",
            member_id=t.member_id,
            imported_at=NOON,
            updated_at=NOON,
        )
    )
    s.add(
        VerifiedPhone(
            member_id=t.member_id,
            phone_hash="p1",
            phone_sealed="x",
            method="sms",
            channel="line",
            verified_at=NOON,
        )
    )
    s.add(SavedCourse(member_id=t.member_id, course_id="SEC1", saved_at=NOON))
    # bob: Telegram, English, quiet for 40 days, completed a care course, podcast subscriber.
    t = await add_member(s, channel="telegram", external_id="1001", language="en", seen=OLD)
    ids["bob"] = t.member_id
    s.add(
        Completion(
            person=f"member:{t.member_id}",
            member_id=t.member_id,
            course_id="CARE1",
            completed_at=OLD,
            day="2026-01-21",
            hours=3,
            imported_at=OLD,
        )
    )
    s.add(
        PodcastSubscription(
            member_id=t.member_id, podcast_id=podcast.id, delivery_time="07:30", last_slot_at=OLD
        )
    )
    # cat: LINE and Telegram, searched for 長期照顧課程: but marketing is off.
    t = await add_member(s, channel="line", external_id="U" + "c" * 32)
    ids["cat"] = t.member_id
    s.add(
        ChannelAccount(
            member_id=t.member_id,
            channel="telegram",
            external_id="1003",
            created_at=NOON,
            last_seen_at=NOON,
        )
    )
    s.add(MemberSearchInterest(member_id=t.member_id, query="長期照顧課程", last_at=NOON))
    # dan: LINE, blocked the bot (unreachable): never in a segment.
    t = await add_member(s, channel="line", external_id="U" + "d" * 32, civil_servant=True)
    ids["dan"] = t.member_id
    # eve: LINE, civil servant of 教育局, searched 照顧 (part of 長期照顧), quiet for 40 days.
    t = await add_member(
        s, channel="line", external_id="U" + "e" * 32, civil_servant=True, seen=OLD
    )
    ids["eve"] = t.member_id
    s.add(
        CivilServant(
            employee_id="E5",
            name_sealed="x",
            agency="教育局",
            phone_hash="h5",
            phone_sealed="x",
            member_id=t.member_id,
            imported_at=NOON,
            updated_at=NOON,
        )
    )
    s.add(MemberSearchInterest(member_id=t.member_id, query="照顧", last_at=OLD))
    # fay: Telegram, nothing else; searched 長 (one character: too short to mean 長期照顧).
    t = await add_member(s, channel="telegram", external_id="1006")
    ids["fay"] = t.member_id
    s.add(MemberSearchInterest(member_id=t.member_id, query="長", last_at=NOON))
    # gus: simulator only (not an enabled broadcast channel here).
    t = await add_member(s, channel="simulator", external_id="sim-gus")
    ids["gus"] = t.member_id
    await s.flush()
    cat = await s.get(Member, ids["cat"])
    assert cat is not None
    cat.marketing_opt_in = False
    dan = await s.scalar(select(ChannelAccount).where(ChannelAccount.member_id == ids["dan"]))
    assert dan is not None
    dan.unreachable, dan.following = True, False
    await s.commit()
    return ids


async def _members(s: AsyncSession, tree: dict[str, Any]) -> set[int]:
    tree = segments.validate(tree)
    rows = await s.scalars(
        select(Member.id).where(segments.segment_filter(tree, now=NOON, channels=CHANNELS))
    )
    return set(rows.all())


# name sets by hand from the facts in _people (cat: marketing off; dan: blocked; gus: simulator)
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"ann", "bob", "eve", "fay"}),
    ({"all": [{"channel": "line"}]}, {"ann", "eve"}),
    ({"all": [{"channel": "telegram"}]}, {"bob", "fay"}),
    ({"all": [{"channel": ["line", "telegram"]}]}, {"ann", "bob", "eve", "fay"}),
    ({"all": [{"civil_servant": True}]}, {"ann", "eve"}),
    ({"all": [{"civil_servant": False}]}, {"bob", "fay"}),
    ({"all": [{"agencies": ["資訊局"]}]}, {"ann"}),
    ({"all": [{"agencies": ["資訊局", "教育局"]}]}, {"ann", "eve"}),
    ({"all": [{"language": "en"}]}, {"bob"}),
    ({"all": [{"language": ["zh-TW"]}]}, {"ann", "eve", "fay"}),
    ({"all": [{"interests": ["資訊安全"]}]}, {"ann"}),
    ({"all": [{"interests": ["長期照顧"]}]}, {"bob", "eve"}),
    ({"all": [{"interests": ["資訊安全", "長期照顧"]}]}, {"ann", "bob", "eve"}),
    ({"all": [{"inactive_days": 30}]}, {"bob", "eve"}),
    ({"all": [{"inactive_days": 50}]}, set()),
    ({"all": [{"podcast_subscribers": "care-talk"}]}, {"bob"}),
    ({"all": [{"podcast_subscribers": "other"}]}, set()),
    ({"all": [{"verified_phone": True}]}, {"ann"}),
    ({"all": [{"verified_phone": False}]}, {"bob", "eve", "fay"}),
    ({"all": [{"channel": "line"}, {"civil_servant": True}]}, {"ann", "eve"}),
    ({"all": [{"channel": "line"}, {"inactive_days": 30}]}, {"eve"}),
    ({"any": [{"language": "en"}, {"agencies": ["資訊局"]}]}, {"ann", "bob"}),
    ({"not": [{"channel": "line"}]}, {"bob", "fay"}),
    ({"not": [{"language": "en"}, {"verified_phone": True}]}, {"eve", "fay"}),
    (
        {"all": [{"civil_servant": True}], "not": [{"agencies": ["教育局"]}]},
        {"ann"},
    ),
    (
        {
            "all": [{"any": [{"channel": "telegram"}, {"inactive_days": 30}]}],
            "not": [{"language": "en"}],
        },
        {"eve", "fay"},
    ),
    (
        {"any": [{"all": [{"civil_servant": True}, {"verified_phone": True}]}, {"language": "en"}]},
        {"ann", "bob"},
    ),
]


async def test_every_condition_and_combination_matches_the_hand_computed_set(
    engine: AsyncEngine,
) -> None:
    async with create_sessionmaker(engine)() as s:
        ids = await _people(s)
        names = {v: k for k, v in ids.items()}
        for tree, expected in CASES:
            got = {names[i] for i in await _members(s, tree)}
            assert got == expected, tree
            assert await count_segment(
                s, segments.validate(tree), now=NOON, channels=CHANNELS
            ) == len(expected)


async def test_the_simulator_counts_only_where_it_is_a_channel(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as s:
        ids = await _people(s)
        tree = segments.validate({})
        query = select(Member.id).where(
            segments.segment_filter(tree, now=NOON, channels=["simulator"])
        )
        assert set((await s.scalars(query)).all()) == {ids["gus"]}


@pytest.mark.parametrize(
    ("tree", "field"),
    [
        ([], "segment"),
        ({"every": []}, "segment.every"),
        ({"all": {"channel": "line"}}, "segment.all"),
        ({"all": [{"channel": "fax"}]}, "segment.all[0].channel"),
        ({"all": [{"channel": "line", "language": "en"}]}, "segment.all[0]"),
        ({"any": [{"civil_servant": "yes"}]}, "segment.any[0].civil_servant"),
        ({"not": [{"inactive_days": 0}]}, "segment.not[0].inactive_days"),
        ({"all": [{"language": "fr"}]}, "segment.all[0].language"),
        ({"all": [{"favourite_colour": "blue"}]}, "segment.all[0].favourite_colour"),
        ({"all": [{"any": [{"agencies": []}]}]}, "segment.all[0].any[0].agencies"),
    ],
)
def test_bad_segments_are_refused_with_the_field_named(tree: Any, field: str) -> None:
    with pytest.raises(segments.SegmentError) as refused:
        segments.validate(tree)
    assert refused.value.field == field


async def test_campaign_eligible_uses_the_campaigns_own_rule(engine: AsyncEngine) -> None:
    """The condition is the campaigns' eligibility as SQL: a verified phone is always needed,
    and this campaign is for civil servants only, so of the reachable members with marketing
    on only ann qualifies; `not` gives the other civil servants. An unknown campaign is
    refused with the field named."""
    from models.campaigns.claims import create_campaign
    from models.campaigns.spec import parse_campaign

    doc = {
        "slug": "servants-2026",
        "title": "公務人員好禮",
        "title_en": "A gift for civil servants",
        "starts_at": (NOON - dt.timedelta(days=1)).isoformat(),
        "ends_at": (NOON + dt.timedelta(days=30)).isoformat(),
        "rule": {"civil_servants_only": True},
        "prize": {
            "name": "禮券",
            "name_en": "Voucher",
            "redeem": "服務台",
            "redeem_en": "Service desk",
            "redeem_until": (NOON + dt.timedelta(days=90)).isoformat(),
            "generate": 3,
        },
    }
    async with create_sessionmaker(engine)() as s:
        ids = await _people(s)
        await create_campaign(s, spec=parse_campaign(doc), actor="test", now=NOON)
        await s.commit()
        tree = segments.validate({"all": [{"campaign_eligible": "servants-2026"}]})
        campaigns = await segments.campaign_selects(s, tree, now=NOON)
        eligible = set(
            (
                await s.scalars(
                    select(Member.id).where(
                        segments.segment_filter(
                            tree, now=NOON, channels=CHANNELS, campaigns=campaigns
                        )
                    )
                )
            ).all()
        )
        assert eligible == {ids["ann"]}
        others = segments.validate(
            {"all": [{"civil_servant": True}], "not": [{"campaign_eligible": "servants-2026"}]}
        )
        assert await count_segment(s, others, now=NOON, channels=CHANNELS) == 1  # eve
        assert await count_segment(s, tree, now=NOON, channels=CHANNELS) == 1  # ann
        unknown = segments.validate({"any": [{"campaign_eligible": "no-such"}]})
        with pytest.raises(BroadcastError) as refused:
            await count_segment(s, unknown, now=NOON, channels=CHANNELS)
    assert refused.value.field == "segment.any[0].campaign_eligible"


async def test_the_bucket_in_sql_is_the_bucket_in_python(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as s:
        for _ in range(300):
            s.add(Member(created_at=NOON))
        await s.commit()
        seed = 987_654
        rows = (await s.execute(select(Member.id, segments.bucket_sql(seed)))).all()
    assert len(rows) == 300
    assert all(int(b) == segments.bucket(i, seed) for i, b in rows)
    assert all(0 <= int(b) < segments.BUCKETS for _, b in rows)
    # Spread: each tenth of the buckets holds some of 300 members.
    assert len({int(b) // 100 for _, b in rows}) == 10
