"""Never oversold, under load: many people tap 領取 at once through the real app (each tap
its own transaction), and the database hands out each code once and one prize per person."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.campaigns import claims
from models.campaigns.tables import CampaignClaim, VoucherCode
from models.db import begin_write, create_sessionmaker
from models.identity import VerifiedPhone
from models.members import ChannelAccount, Member
from models.phones import mask_phone
from tests.campaign_support import ADMIN_TOKEN, AUTH, VAULT, campaign_file, campaign_id, create
from tests.dialog import Chat, texts


@pytest.fixture
async def http(served) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with (
        served(admin_token=ADMIN_TOKEN) as (url, _),
        httpx.AsyncClient(
            base_url=url,
            timeout=900,
            limits=httpx.Limits(max_connections=30),  # the app pool: 10 + 20
        ) as client,
    ):
        yield client


async def seed_members(engine: AsyncEngine, count: int, prefix: str) -> list[int]:
    """`count` simulator members with verified numbers far apart (no SIM-farm block)."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    async with create_sessionmaker(engine)() as session:
        ids = [Member(language="zh-TW", created_at=when) for _ in range(count)]
        session.add_all(ids)
        await session.flush()
        member_ids = [m.id for m in ids]
        await session.execute(
            insert(ChannelAccount),
            [
                {
                    "member_id": m,
                    "channel": "simulator",
                    "external_id": f"{prefix}-{i}",
                    "following": True,
                    "unreachable": False,
                    "created_at": when,
                    "last_seen_at": when,
                }
                for i, m in enumerate(member_ids)
            ],
        )
        rows = []
        for i, m in enumerate(member_ids):
            number = f"+8869{i:04d}{i % 97:02d}{i % 7}{i % 3}"[:13]
            rows.append(
                {
                    "member_id": m,
                    "phone_hash": VAULT.lookup_hash(number),
                    "phone_sealed": VAULT.encrypt(number),
                    "method": "sms",
                    "channel": "simulator",
                    "verified_at": when,
                }
            )
        await session.execute(insert(VerifiedPhone), rows)
        await session.commit()
        return member_ids


async def _claim_all(http: httpx.AsyncClient, users: list[str], action: str) -> list[str]:
    async def one(user: str) -> str:
        return texts(await Chat(http, user).tap(action))

    return list(await asyncio.gather(*(one(u) for u in users)))


async def test_concurrent_claims_hand_out_each_code_once(
    http: httpx.AsyncClient, engine: AsyncEngine, backend: str
) -> None:
    people, prizes = (1000, 100) if backend == "postgresql" else (150, 15)
    await create(http, campaign_file(prize={"generate": prizes}))
    cid = await campaign_id(engine, "gender-2026")
    await seed_members(engine, people, "sim-rush")
    answers = await _claim_all(http, [f"sim-rush-{i}" for i in range(people)], f"prize.claim:{cid}")

    codes = [m.group(1) for a in answers if (m := re.search(r"兌換碼：(\S+)", a))]
    assert len(codes) == len(set(codes)) == prizes
    sold_out = [a for a in answers if "獎品已經全部領完了" in a]
    assert len(sold_out) == people - prizes  # clean refusals, no apology, no error
    async with create_sessionmaker(engine)() as session:
        taken = set(
            (
                await session.scalars(select(VoucherCode.code).where(VoucherCode.status == "taken"))
            ).all()
        )
        won = await session.scalar(select(func.count()).select_from(CampaignClaim))
    assert taken == set(codes)
    assert won == prizes
    summary = (await http.get("/admin/api/campaigns/gender-2026", headers=AUTH)).json()
    assert (summary["claimed"], summary["remaining"]) == (prizes, 0)
    assert summary["refusals"] == {"out_of_stock": people - prizes}


async def test_one_person_tapping_many_times_at_once_wins_once(
    engine: AsyncEngine, http: httpx.AsyncClient, backend: str
) -> None:
    """The unique (campaign, claimant) key decides a race the code checks cannot see."""
    await create(http, campaign_file(prize={"generate": 10}))
    [member] = await seed_members(engine, 1, "sim-twin")
    maker = create_sessionmaker(engine)

    async def tap() -> claims.Outcome:
        async with maker() as session:
            await begin_write(session)  # BEGIN IMMEDIATE on SQLite
            campaign = await claims.require_campaign(session, slug="gender-2026")
            result = await claims.claim_prize(
                session,
                vault=VAULT,
                campaign=campaign,
                member_id=member,
                channel="simulator",
                mask=mask_phone,
                now=dt.datetime.now(dt.UTC),
            )
            await session.commit()
            return result.outcome

    outcomes = Counter(await asyncio.gather(*(tap() for _ in range(8))))
    assert outcomes == {claims.Outcome.WON: 1, claims.Outcome.ALREADY_CLAIMED: 7}
