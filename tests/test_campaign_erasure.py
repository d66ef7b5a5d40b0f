"""Delete-my-data by a member who won a prize: the claim stays for the auditors (the export
row with its masked number and hash, the code taken for good), the link to the person is cut
as the erase path promises, and the same number on a new account cannot win again."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.audit import AuditLog, verify_chain
from models.campaigns.tables import CampaignAttempt, CampaignClaim, VoucherCode
from models.db import create_sessionmaker
from models.members import Member
from tests.campaign_support import (
    ADMIN_TOKEN,
    AUTH,
    VAULT,
    Clock,
    campaign_file,
    campaign_id,
    create,
    e164,
    verified_member,
    verify_in_chat,
)
from tests.dialog import Chat, texts

PHONE = "0912-345-678"
CODE = re.compile(r"兌換碼：(\S+)")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(served, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with (
        served(admin_token=ADMIN_TOKEN) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        api.state.runtime.processor.clock = clock
        yield client


async def _export(http: httpx.AsyncClient) -> list[dict[str, str]]:
    response = await http.get("/admin/api/campaigns/gender-2026/export", headers=AUTH)
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_a_winner_who_erases_their_data_stays_auditable_and_cannot_win_again(
    http: httpx.AsyncClient, engine: AsyncEngine, clock: Clock
) -> None:
    await create(http, campaign_file(prize={"generate": 3}))
    cid = await campaign_id(engine, "gender-2026")
    winner = await verified_member(engine, "sim-erase", PHONE)
    chat = Chat(http, "sim-erase")
    won = texts(await chat.tap(f"prize.claim:{cid}"))
    match = CODE.search(won)
    assert match is not None, won
    code = match.group(1)
    before = await _export(http)
    assert [(r["phone"], r["code"], r["status"]) for r in before] == [("0912-***-678", code, "won")]

    await chat.tap("settings.delete")
    assert "個人資料已刪除" in texts(await chat.tap("settings.delete_yes"))

    # The auditors' row is unchanged: masked number, its keyed hash, the code, the status.
    assert await _export(http) == before
    assert before[0]["phone_hash"] == VAULT.lookup_hash(e164(PHONE))
    async with create_sessionmaker(engine)() as session:
        claim = await session.scalar(select(CampaignClaim))
        assert claim is not None
        voucher = await session.get(VoucherCode, claim.code_id)
        attempts = (await session.scalars(select(CampaignAttempt))).all()
        audit = (
            await session.scalars(select(AuditLog).where(AuditLog.action.startswith("claim.")))
        ).all()
        assert (await verify_chain(session)).ok
        gone = await session.get(Member, winner)
    assert gone is None
    assert voucher is not None
    assert (voucher.code, voucher.status) == (code, "taken")
    # No reference to the person's member id is left on the claim or the taps ...
    assert claim.member_id is None
    assert claim.claimant_id != winner
    assert claim.claimant_id <= 0  # not any member's id, now or later
    assert all(a.member_id is None for a in attempts)
    # ... and the audit entries of the claim keep their subject but name a pseudonym.
    assert [(a.action, a.subject) for a in audit] == [("claim.won", "campaign:gender-2026")]
    assert audit[0].actor.startswith("erased:")

    # Someone new (on SQLite the new member may well get the erased one's id) with another
    # number wins a prize of their own, and never the erased winner's code.
    stranger = await verified_member(engine, "sim-stranger", "0933-777-111")
    other = texts(await Chat(http, "sim-stranger").tap(f"prize.claim:{cid}"))
    got = CODE.search(other)
    assert got is not None, (stranger, winner, other)
    assert got.group(1) != code

    # The erased winner comes back on a new account and verifies the same number again.
    clock.advance(minutes=2)
    back = Chat(http, "sim-back")
    await back.tap(f"prize.claim:{cid}")
    again = texts(await verify_in_chat(http, back, PHONE))
    assert "您已經領過「性平課程領好禮」的獎品了" in again
    assert not CODE.search(again)
    assert "您還沒有獲得獎品" in texts(await back.say("我的獎品"))  # the old prize is not theirs

    rows = await _export(http)
    assert [(r["phone_hash"], r["code"], r["status"]) for r in rows] == [
        (before[0]["phone_hash"], code, "won"),
        (rows[1]["phone_hash"], got.group(1), "won"),
    ]
    summary = (await http.get("/admin/api/campaigns/gender-2026", headers=AUTH)).json()
    assert (summary["claimed"], summary["remaining"]) == (2, 1)
    assert summary["refusals"]["already_claimed"] == 1
