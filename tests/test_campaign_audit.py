"""The office side of campaigns: refused files change nothing, codes, the auditors' export,
revoke, redemptions, draws reproduced from their seed, winners told once, abuse flags."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.i18n import TAIPEI
from models.campaigns.claims import pick_winners
from models.campaigns.tables import CampaignClaim, CampaignDraw
from models.db import create_sessionmaker
from models.members import Member
from models.outbox import OutboxMessage
from tests.campaign_support import (
    ADMIN_TOKEN,
    AUTH,
    VAULT,
    Clock,
    as_yaml,
    campaign_file,
    campaign_id,
    create,
    e164,
    verified_member,
)
from tests.dialog import Chat, texts
from tests.test_cli import edoor


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


async def _summary(http: httpx.AsyncClient, slug: str = "gender-2026") -> dict:  # type: ignore[type-arg]
    response = await http.get(f"/admin/api/campaigns/{slug}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_refused_campaign_file_or_codes_csv_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/admin/api/campaigns")).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert (await http.get("/admin/api/campaigns", headers=wrong)).status_code == 401

    bad = campaign_file(slug="Bad Slug", mode="lottery", colour="red")
    bad["prize"] = {**bad["prize"], "generate": 0}
    bad["ends_at"] = bad["starts_at"]
    refused = await http.post("/admin/api/campaigns", content=as_yaml(bad), headers=AUTH)
    assert refused.status_code == 422
    errors = refused.json()["detail"]["errors"]
    joined = "\n".join(errors)
    for field in ("slug:", "mode:", "colour: unknown field", "prize.generate:", "ends_at:"):
        assert field in joined
    assert "nothing changed" in refused.json()["detail"]["message"]
    assert (await http.get("/admin/api/campaigns", headers=AUTH)).json() == []
    broken = await http.post("/admin/api/campaigns", content="slug: [", headers=AUTH)
    assert broken.status_code == 422

    await create(http, campaign_file(prize={"generate": None}))
    assert (await _summary(http))["stock"] == 0
    dup_in_file = "code\nAAA-1\nBBB-2\nAAA-1\n"
    response = await http.post(
        "/admin/api/campaigns/gender-2026/codes", content=dup_in_file, headers=AUTH
    )
    assert response.status_code == 422
    assert "line 4, column code: duplicate of line 2" in response.json()["detail"]["errors"]
    ok = await http.post(
        "/admin/api/campaigns/gender-2026/codes", content="\ufeffcode\nAAA-1\nBBB-2\n", headers=AUTH
    )
    assert ok.json() == {"added": 2, "stock": 2, "remaining": 2}
    clash = await http.post(
        "/admin/api/campaigns/gender-2026/codes", content="code\nCCC-3\nBBB-2\n", headers=AUTH
    )
    assert clash.status_code == 422
    no_column = await http.post(
        "/admin/api/campaigns/gender-2026/codes", content="voucher\nX\n", headers=AUTH
    )
    assert no_column.status_code == 422
    assert (await _summary(http))["stock"] == 2  # CCC-3 did not slip in
    same = await http.post("/admin/api/campaigns", content=as_yaml(campaign_file()), headers=AUTH)
    assert same.status_code == 422  # the slug exists
    missing = await http.get("/admin/api/campaigns/nope", headers=AUTH)
    assert missing.status_code == 404


async def test_export_is_masked_revoke_voids_the_code_and_redemptions_mark_codes(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await create(http, campaign_file(prize={"generate": 3}))
    cid = await campaign_id(engine, "gender-2026")
    phones = ["0912-345-678", "0955-111-222"]
    for i, phone in enumerate(phones):
        await verified_member(engine, f"sim-x{i}", phone)
        assert "恭喜" in texts(await Chat(http, f"sim-x{i}").tap(f"prize.claim:{cid}"))

    export = await http.get("/admin/api/campaigns/gender-2026/export", headers=AUTH)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert list(rows[0]) == [
        "claim_id",
        "claimed_at",
        "channel",
        "phone",
        "phone_hash",
        "code",
        "status",
    ]
    assert [r["phone"] for r in rows] == ["0912-***-678", "0955-***-222"]
    assert [r["phone_hash"] for r in rows] == [VAULT.lookup_hash(e164(p)) for p in phones]
    for whole in ("912345678", "0912345678", "955111222"):
        assert whole not in export.text
    assert {r["status"] for r in rows} == {"won"}

    first = rows[0]
    revoked = await http.post(
        f"/admin/api/campaigns/gender-2026/claims/{first['claim_id']}/revoke",
        json={"reason": "duplicate person found by the office"},
        headers=AUTH,
    )
    assert revoked.json()["status"] == "revoked"
    summary = await _summary(http)
    assert (summary["remaining"], summary["revoked_codes"]) == (1, 1)  # never handed out again
    await verified_member(engine, "sim-x9", "0977-000-999")
    third = texts(await Chat(http, "sim-x9").tap(f"prize.claim:{cid}"))
    assert first["code"] not in third
    assert "恭喜" in third
    again = texts(await Chat(http, "sim-x0").tap(f"prize.claim:{cid}"))
    assert "您已經領過" in again  # a revoked claim is still that person's one claim
    x0 = Chat(http, "sim-x0")
    await x0.pending()  # only what the next message brings
    mine = texts(await x0.say("我的獎品"))
    assert first["code"] not in mine  # a revoked prize is no longer shown as won
    assert "您還沒有獲得獎品" in mine

    bad = f"code,redeemed_at\n{rows[1]['code']},2026-01-05T10:00\nNOT-OURS,2026-01-05T10:00\n"
    refused = await http.post(
        "/admin/api/campaigns/gender-2026/redemptions", content=bad, headers=AUTH
    )
    assert refused.status_code == 422
    assert "line 3" in refused.text
    good = f"code,redeemed_at\n{rows[1]['code']},2026-01-05T10:00\n"
    done = await http.post(
        "/admin/api/campaigns/gender-2026/redemptions", content=good, headers=AUTH
    )
    assert done.json() == {"redeemed": 1}
    after = list(
        csv.DictReader(
            io.StringIO(
                (await http.get("/admin/api/campaigns/gender-2026/export", headers=AUTH)).text
            )
        )
    )
    assert [r["status"] for r in after] == ["revoked", "redeemed", "won"]


async def test_consecutive_numbers_and_a_number_on_three_accounts_wait_for_review(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    from models.identity import record_audit

    await create(http, campaign_file())
    cid = await campaign_id(engine, "gender-2026")
    for i in range(3):
        await verified_member(engine, f"sim-farm{i}", f"0912-345-60{i}")
    assert "恭喜" in texts(await Chat(http, "sim-farm0").tap(f"prize.claim:{cid}"))
    assert "恭喜" in texts(await Chat(http, "sim-farm1").tap(f"prize.claim:{cid}"))
    held = texts(await Chat(http, "sim-farm2").tap(f"prize.claim:{cid}"))
    assert "人工確認" in held
    assert "兌換碼" not in held

    hopper = await verified_member(
        engine, "sim-hop", "0988-765-432", at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    async with create_sessionmaker(engine)() as session:  # the number was on two more accounts
        for actor in ("member:900", "member:901"):
            await record_audit(
                session,
                actor=actor,
                action="phone.verified",
                subject=f"phone:{VAULT.lookup_hash(e164('0988-765-432'))}",
                now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3),
            )
        await session.commit()
    assert "人工確認" in texts(await Chat(http, "sim-hop").tap(f"prize.claim:{cid}"))
    flags = (await _summary(http))["flags"]
    assert [f["flag"] for f in flags] == ["number_block", "phone_many_accounts"]
    assert flags[0]["phone"] == "0912-***-602"
    assert (await _summary(http))["claimed"] == 2
    assert hopper

    approved = await http.post(
        f"/admin/api/campaigns/gender-2026/claims/{flags[0]['claim_id']}/review",
        json={"approve": True},
        headers=AUTH,
    )
    assert approved.json()["status"] == "won"
    assert "兌換碼" in texts(await Chat(http, "sim-farm2").say("我的獎品"))


async def test_a_draw_is_reproducible_and_winners_are_told_once_outside_quiet_hours(
    http: httpx.AsyncClient, engine: AsyncEngine, clock: Clock
) -> None:
    await create(
        http, campaign_file(slug="lucky", mode="draw", prize={"generate": 2}, claim_days=3)
    )
    cid = await campaign_id(engine, "lucky")
    members = [await verified_member(engine, f"sim-d{i}", f"0933-2{i}0-{i}11") for i in range(5)]
    async with create_sessionmaker(engine)() as session:  # transactional: opt-out is no matter
        await session.execute(update(Member).values(marketing_opt_in=False))
        await session.commit()
    for i in range(5):
        assert "已登記參加「性平課程領好禮」抽獎" in texts(
            await Chat(http, f"sim-d{i}").tap(f"prize.claim:{cid}")
        )
    twice = await Chat(http, "sim-d0").tap(f"prize.claim:{cid}")
    assert "已經登記過" in texts(twice)
    early = await http.post("/admin/api/campaigns/lucky/draw", json={}, headers=AUTH)
    assert early.status_code == 409  # not before the end

    ends = dt.datetime.fromisoformat((await _summary(http, "lucky"))["ends_at"])
    # The draw at 23:00 Taipei the day after the end: inside the default quiet hours.
    draw_at = dt.datetime.combine(
        (ends + dt.timedelta(days=1)).astimezone(TAIPEI).date(), dt.time(23), tzinfo=TAIPEI
    )
    clock.offset = draw_at - dt.datetime.now(dt.UTC)
    drawn = (
        await http.post(
            "/admin/api/campaigns/lucky/draw", json={"seed": "audit-2026"}, headers=AUTH
        )
    ).json()
    async with create_sessionmaker(engine)() as session:
        entries = list(
            (await session.scalars(select(CampaignClaim.id).order_by(CampaignClaim.id))).all()
        )
        record = await session.scalar(select(CampaignDraw))
        told = list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())
    assert drawn["seed"] == "audit-2026"
    assert drawn["prizes"] == 2
    assert record is not None
    assert record.entries == entries
    assert record.winners == pick_winners(entries, seed="audit-2026", prizes=2)  # re-run: same
    assert sorted(drawn["winners"]) == sorted(record.winners)
    assert drawn["notified"] == 2
    assert sorted(m.key for m in told) == sorted(f"prize-winner:{w}" for w in drawn["winners"])
    morning = dt.datetime.combine(draw_at.date() + dt.timedelta(days=1), dt.time(8), tzinfo=TAIPEI)
    assert all(m.not_before == morning and m.proactive for m in told)
    assert (await _summary(http, "lucky"))["draws"][0]["reproduced"] is True

    by_claim = dict(zip(entries, members, strict=True))
    winner = next(i for i, m in enumerate(members) if m == by_claim[drawn["winners"][0]])
    loser = next(
        i for i, m in enumerate(members) if m not in {by_claim[w] for w in drawn["winners"]}
    )
    won = texts(await Chat(http, f"sim-d{winner}").tap(f"prize.claim:{cid}"))
    assert "恭喜獲得" in won
    assert "沒有抽中" in texts(await Chat(http, f"sim-d{loser}").tap(f"prize.claim:{cid}"))

    # The other winner lets the claim window pass: a redraw gives that prize to someone else.
    clock.advance(days=4)
    redraw = (await http.post("/admin/api/campaigns/lucky/draw", json={}, headers=AUTH)).json()
    assert (redraw["round"], redraw["prizes"], redraw["lapsed"]) == (2, 1, 1)
    assert re.fullmatch(r"[0-9a-f]{32}", redraw["seed"])
    again = await http.post("/admin/api/campaigns/lucky/draw", json={}, headers=AUTH)
    assert again.status_code == 409  # nothing left to draw until this winner lapses
    async with create_sessionmaker(engine)() as session:
        keys = list((await session.scalars(select(OutboxMessage.key))).all())
    assert len(keys) == len(set(keys)) == 3  # every winner told once


def test_campaign_commands(database_url: str, tmp_path: Path) -> None:
    assert edoor("migrate", database_url=database_url).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(as_yaml(campaign_file(slug="x", prize={"name": ""})), encoding="utf-8")
    refused = edoor("campaign", "create", str(bad), database_url=database_url)
    assert refused.returncode == 1
    assert "prize.name: required text" in refused.stderr
    good = tmp_path / "good.json"
    import json

    good.write_text(json.dumps(campaign_file(slug="cli-gift")), encoding="utf-8")
    made = edoor("campaign", "create", str(good), database_url=database_url)
    assert made.returncode == 0, made.stderr
    assert "created campaign cli-gift (5 codes)" in made.stdout
    codes = tmp_path / "codes.csv"
    codes.write_text("code\nV-1\nV-1\n", encoding="utf-8")
    dup = edoor("campaign", "codes", "cli-gift", str(codes), database_url=database_url)
    assert dup.returncode == 1
    assert "line 3, column code: duplicate of line 2" in dup.stderr
    listed = edoor("campaign", "list", database_url=database_url)
    assert "cli-gift" in listed.stdout
    assert "remaining 5" in listed.stdout
    shown = edoor("campaign", "show", "cli-gift", database_url=database_url)
    assert "stock 5, claimed 0, remaining 5" in shown.stdout
    assert "refusals by reason: none" in shown.stdout
    out = tmp_path / "claims.csv"
    exported = edoor("campaign", "export", "cli-gift", "--out", str(out), database_url=database_url)
    assert exported.returncode == 0
    assert out.read_text("utf-8").startswith(
        "claim_id,claimed_at,channel,phone,phone_hash,code,status"
    )
    unknown = edoor("campaign", "show", "nope", database_url=database_url)
    assert unknown.returncode == 1
    assert "no campaign 'nope'" in unknown.stderr
    draw = edoor("campaign", "draw", "cli-gift", database_url=database_url)
    assert draw.returncode == 1
    assert "not a draw campaign" in draw.stderr
