"""A campaign that allows more than one prize per person (`per_person: 2`): the same person,
and the same number on a second account, get at most two; the third tap is "already
claimed"; concurrent taps never oversell the stock nor give anyone a third prize."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from models.campaigns import claims
from models.campaigns.tables import CampaignClaim, VoucherCode
from models.db import begin_write, create_sessionmaker
from models.identity import VerifiedPhone
from models.phones import mask_phone
from tests.campaign_support import (
    ADMIN_TOKEN,
    AUTH,
    VAULT,
    campaign_file,
    campaign_id,
    create,
    e164,
    verified_member,
)
from tests.dialog import Chat, texts
from tests.test_campaign_concurrency import seed_members

CODE = re.compile(r"兌換碼：(\S+)")
LIMIT_REACHED = "您已經領過「性平課程領好禮」的獎品了（每人限領 2 份"
SOLD_OUT = "獎品已經全部領完了"


@pytest.fixture
async def served_app(served) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:  # type: ignore[no-untyped-def]
    async with (
        served(admin_token=ADMIN_TOKEN) as (url, api),
        httpx.AsyncClient(
            base_url=url, timeout=900, limits=httpx.Limits(max_connections=30)
        ) as client,
    ):
        yield client, api.state.runtime


@pytest.fixture
def http(served_app: tuple[httpx.AsyncClient, Any]) -> httpx.AsyncClient:
    return served_app[0]


def codes_in(answer: str) -> list[str]:
    return CODE.findall(answer)


async def move_number(engine: AsyncEngine, member_id: int, phone: str) -> None:
    """The member verified another number since (their old one is free for someone else)."""
    number = e164(phone)
    async with create_sessionmaker(engine)() as session:
        await session.execute(
            update(VerifiedPhone)
            .where(VerifiedPhone.member_id == member_id)
            .values(phone_hash=VAULT.lookup_hash(number), phone_sealed=VAULT.encrypt(number))
        )
        await session.commit()


async def test_two_per_person_the_third_tap_and_the_same_number_elsewhere_are_refused(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await create(http, campaign_file(per_person=2, prize={"generate": 10}))
    cid = await campaign_id(engine, "gender-2026")
    first = await verified_member(engine, "sim-pp-a", "0912-555-101")
    chat = Chat(http, "sim-pp-a")
    won = [texts(await chat.tap(f"prize.claim:{cid}")) for _ in range(2)]
    got = [c for answer in won for c in codes_in(answer)]
    assert len(got) == len(set(got)) == 2, won  # two prizes, two different codes
    third = texts(await chat.tap(f"prize.claim:{cid}"))
    assert LIMIT_REACHED in third
    assert not codes_in(third)
    mine = texts(await chat.say("我的獎品"))
    assert all(code in mine for code in got)

    # The member moves to another number; whoever verifies the old one is the same person.
    await move_number(engine, first, "0912-555-909")
    await verified_member(engine, "sim-pp-b", "0912-555-101")
    second_account = texts(await Chat(http, "sim-pp-b").tap(f"prize.claim:{cid}"))
    assert LIMIT_REACHED in second_account
    assert not codes_in(second_account)
    # ... and the member, under the new number, is still the person with two prizes.
    assert LIMIT_REACHED in texts(await chat.tap(f"prize.claim:{cid}"))

    # Half of the allowance on one account, the other half on a second one with the number.
    other = await verified_member(engine, "sim-pp-c", "0912-555-202")
    assert codes_in(texts(await Chat(http, "sim-pp-c").tap(f"prize.claim:{cid}")))
    await move_number(engine, other, "0912-555-808")
    await verified_member(engine, "sim-pp-d", "0912-555-202")
    d = Chat(http, "sim-pp-d")
    assert codes_in(texts(await d.tap(f"prize.claim:{cid}")))
    refused = texts(await d.tap(f"prize.claim:{cid}"))
    assert LIMIT_REACHED in refused
    assert not codes_in(refused)

    summary = (await http.get("/admin/api/campaigns/gender-2026", headers=AUTH)).json()
    assert (summary["per_person"], summary["claimed"], summary["remaining"]) == (2, 4, 6)
    assert summary["refusals"] == {"already_claimed": 4}
    async with create_sessionmaker(engine)() as session:
        by_phone = Counter(
            (await session.scalars(select(CampaignClaim.phone_hash))).all()
        ).most_common(1)
    assert by_phone[0][1] == 2


async def test_one_person_tapping_many_times_at_once_gets_exactly_two(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Each tap its own transaction: the unique keys decide the race, and a tap that lost it
    while the person still had one prize to go tries again instead of saying "already"."""
    await create(http, campaign_file(per_person=2, prize={"generate": 10}))
    [member] = await seed_members(engine, 1, "sim-pp-twin")
    maker = create_sessionmaker(engine)

    async def tap() -> tuple[claims.Outcome, str | None]:
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
            return result.outcome, result.code

    results = await asyncio.gather(*(tap() for _ in range(8)))
    outcomes = Counter(outcome for outcome, _ in results)
    assert outcomes == {claims.Outcome.WON: 2, claims.Outcome.ALREADY_CLAIMED: 6}
    won = {code for outcome, code in results if outcome is claims.Outcome.WON}
    async with maker() as session:
        rows = (await session.execute(select(CampaignClaim.seq, CampaignClaim.code_id))).all()
        taken = await session.scalar(select(func.count()).where(VoucherCode.status == "taken"))
    assert len(won) == 2
    assert None not in won
    assert sorted(seq for seq, _ in rows) == [1, 2]
    assert taken == 2


async def test_many_people_tapping_three_times_at_once_never_oversell_nor_get_a_third(
    served_app: tuple[httpx.AsyncClient, Any], engine: AsyncEngine, backend: str
) -> None:
    http, runtime = served_app
    people, prizes = (200, 300) if backend == "postgresql" else (30, 45)
    await create(http, campaign_file(per_person=2, prize={"generate": prizes}))
    cid = await campaign_id(engine, "gender-2026")
    member_ids = await seed_members(engine, people, "sim-pp-rush")
    users = [f"sim-pp-rush-{i}" for i in range(people)]

    async def tap(user: str) -> None:
        await Chat(http, user).tap(f"prize.claim:{cid}")

    await asyncio.gather(*(tap(u) for u in users for _ in range(3)))

    # One person's events are handled in order: a tap that came while their previous one
    # was being handled waits for the inbound sweep (run here rather than on its timer).
    for _ in range(20):
        if not await runtime.processor.recover():
            break
    else:
        raise AssertionError("the inbound sweep still finds events after 20 rounds")
    # A person's taps answered at once share one conversation: read each one's whole history.
    answers: list[tuple[str, str]] = []
    for user in users:
        history = await Chat(http, user).pending()
        said = [texts([r]) for r in history if r["kind"] == "text"]
        assert len(said) == 3, said  # one answer per tap
        answers += [(user, a) for a in said]
    codes = [c for _, a in answers for c in codes_in(a)]
    assert len(codes) == len(set(codes)) == prizes  # every code once, none oversold
    per_user = Counter(u for u, a in answers if codes_in(a))
    assert max(per_user.values()) == 2
    refused = [a for _, a in answers if not codes_in(a)]
    # Each refusal is one of the two clean answers (no apology, no error).
    assert all((LIMIT_REACHED in a) != (SOLD_OUT in a) for a in refused), Counter(refused)
    assert len(refused) == 3 * people - prizes
    async with create_sessionmaker(engine)() as session:
        per_member = Counter(
            (
                await session.scalars(
                    select(CampaignClaim.claimant_id).where(CampaignClaim.status == "won")
                )
            ).all()
        )
        taken = set(
            (
                await session.scalars(select(VoucherCode.code).where(VoucherCode.status == "taken"))
            ).all()
        )
    assert set(per_member) <= set(member_ids)
    assert max(per_member.values()) == 2
    assert sum(per_member.values()) == prizes
    assert taken == set(codes)
    summary = (await http.get("/admin/api/campaigns/gender-2026", headers=AUTH)).json()
    assert (summary["claimed"], summary["remaining"]) == (prizes, 0)
    assert sum(summary["refusals"].values()) == 3 * people - prizes
    assert set(summary["refusals"]) <= {"already_claimed", "out_of_stock"}
