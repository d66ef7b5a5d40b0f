"""Campaign prizes in chat, through the real app: who qualifies and why not, claiming with a
return from verification, one prize per real person, the card and the QR code."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.campaigns.tables import CampaignClaim, VoucherCode
from models.db import create_sessionmaker
from tests.campaign_support import (
    ADMIN_TOKEN,
    AUTH,
    Clock,
    add_course,
    campaign_file,
    campaign_id,
    complete,
    create,
    verified_member,
    verify_in_chat,
)
from tests.dialog import Chat, buttons, texts

PHONE = "0912-345-678"


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


# -- no campaign ---------------------------------------------------------------------------------
async def test_prizes_by_word_command_and_menu_button_say_no_campaign_and_offer_verification(
    chat: Chat,
) -> None:
    by_word = await chat.say("活動領獎")
    by_command = await chat.say("/prizes")
    by_button = await chat.tap("cmd:prizes")  # the rich menu's 活動領獎 area
    assert texts(by_word) == texts(by_command) == texts(by_button)
    assert "目前沒有進行中的領獎活動" in texts(by_word)
    assert "找不到" not in texts(by_word)  # not taken as a course search
    assert buttons(by_word) == {"驗證手機": "cmd:verify", "選單": "cmd:menu", "說明": "cmd:help"}
    await chat.tap("lang:en")
    english = await chat.say("prizes")
    assert "No prize campaign is running" in texts(english)
    assert buttons(english)["Verify phone"] == "cmd:verify"
    assert set(buttons(english).values()) == {"cmd:verify", "cmd:menu", "cmd:help"}


async def test_the_card_of_a_campaign_this_person_has_used_up_offers_no_claim(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """per_person 2: after two prizes the card says so and offers 我的獎品, not 領取."""
    await create(http, campaign_file(per_person=2))
    cid = await campaign_id(engine, "gender-2026")
    await verified_member(engine, "sim-twice", PHONE)
    chat = Chat(http, "sim-twice")
    for _ in range(2):
        assert "恭喜" in texts(await chat.tap(f"prize.claim:{cid}"))
    card = await chat.tap(f"prize.show:{cid}")
    assert "您已經領過「性平課程領好禮」的獎品了（每人限領 2 份" in texts(card)
    assert "您符合資格" not in texts(card)
    assert "領取" not in buttons(card)
    assert buttons(card)["我的獎品"] == "cmd:myprizes"
    assert "選單" in buttons(card)


# -- eligibility ---------------------------------------------------------------------------------
async def test_the_card_says_exactly_what_is_missing_and_links_matching_courses(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    end = dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    await create(
        http,
        campaign_file(
            ends_at=end.isoformat(),
            rule={"min_hours": 2, "categories": ["性別平等"]},
        ),
    )
    await add_course(engine, "gender-101", "性別平等入門", "性別平等")
    await add_course(engine, "ai-101", "AI 入門", "人工智慧")
    member = await verified_member(engine, "sim-gender", PHONE)
    await complete(engine, member, "gender-101", 0.5)
    await complete(engine, member, "ai-101", 3)  # another category: does not count
    chat = Chat(http, "sim-gender")

    listed = await chat.say("活動領獎")
    assert "性平課程領好禮" in texts(listed)
    cid = await campaign_id(engine, "gender-2026")
    assert buttons(listed)["性平課程領好禮"] == f"prize.show:{cid}"
    card = await chat.tap(f"prize.show:{cid}")
    shown = texts(card)
    assert "NT$200 禮券" in shown
    assert "剩餘：5 份" in shown
    assert "還差 1.5 小時「性別平等」課程，12/31 前完成即可領取" in shown
    assert buttons(card)["性別平等"] == "course.cat:性別平等"
    assert "領取" not in buttons(card)

    refused = await chat.tap(f"prize.claim:{cid}")  # an old button: still refused, with why
    assert "還差 1.5 小時「性別平等」課程" in texts(refused)
    assert "兌換碼" not in texts(refused)

    await add_course(engine, "gender-102", "性別平等進階", "性別平等")
    await complete(engine, member, "gender-102", 1.5)
    ready = await chat.tap(f"prize.show:{cid}")
    assert "您符合資格" in texts(ready)
    assert buttons(ready)["領取"] == f"prize.claim:{cid}"


async def test_each_rule_has_its_own_reason(http: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await add_course(engine, "law-1", "個資法概論", "法律")
    await create(
        http,
        campaign_file(
            slug="staff-only",
            rule={
                "civil_servants_only": True,
                "agencies": ["臺北市政府資訊局"],
                "course_ids": ["law-1"],
                "requirement": "gender",
            },
        ),
    )
    await verified_member(engine, "sim-citizen", PHONE)
    cid = await campaign_id(engine, "staff-only")
    card = texts(await Chat(http, "sim-citizen").tap(f"prize.show:{cid}"))
    assert "限已驗證的公務人員" in card
    assert "限臺北市政府資訊局的同仁" in card
    assert "個資法概論" in card
    assert "還差 1 小時「性別主流化」必修時數" in card  # the requirement's own title

    await Chat(http, "sim-english", language="en").say("hello")
    await verified_member(engine, "sim-en2", "0912-000-111")
    english = Chat(http, "sim-en2", language="en")
    await english.tap("lang:en")
    assert "civil servants only" in texts(await english.tap(f"prize.show:{cid}"))


async def test_eligibility_sql_and_the_per_member_verdict_agree(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    from models.campaigns.claims import require_campaign
    from models.campaigns.eligibility import eligible_member_ids, evaluate

    await create(http, campaign_file(rule={"min_hours": 2, "categories": ["性別平等"]}))
    await add_course(engine, "gender-101", "性別平等入門", "性別平等")
    members = [await verified_member(engine, f"sim-{i}", f"0912-100-{i:03d}") for i in range(4)]
    for i, member in enumerate(members):
        await complete(engine, member, "gender-101", float(i))  # 0, 1, 2, 3 hours
    async with create_sessionmaker(engine)() as session:
        campaign = await require_campaign(session, slug="gender-2026")
        moment = dt.datetime.now(dt.UTC)
        query = await eligible_member_ids(session, campaign=campaign, now=moment)
        by_sql = set((await session.scalars(query)).all())
        by_member = {
            m
            for m in members
            if (await evaluate(session, campaign=campaign, member_id=m, now=moment)).eligible
        }
    assert by_sql == by_member == {members[2], members[3]}


# -- claiming ------------------------------------------------------------------------------------
async def test_a_claim_without_a_phone_verifies_first_and_comes_back_to_the_claim(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await create(http, campaign_file())
    cid = await campaign_id(engine, "gender-2026")
    chat = Chat(http, "sim-new")
    card = await chat.tap(f"prize.show:{cid}")
    assert "領獎要先驗證手機" in texts(card)
    asked = await chat.tap(f"prize.claim:{cid}")
    assert "領獎前要先驗證手機" in texts(asked)
    assert any(r["kind"] == "ask_phone" for r in asked)  # verification's own question

    won = await verify_in_chat(http, chat, PHONE)
    said = texts(won)
    assert "已驗證" in said  # the verification's answer ...
    assert "恭喜獲得「NT$200 禮券」" in said  # ... and then the claim, without another tap
    assert "到臺北e大服務台出示兌換碼" in said
    assert "兌換期限" in said
    images = [r for r in won if r["kind"] == "image"]
    assert len(images) == 1
    async with create_sessionmaker(engine)() as session:
        code = await session.scalar(select(VoucherCode.code).where(VoucherCode.status == "taken"))
    assert code is not None
    assert code in said

    # The QR link is signed and expiring; it serves a PNG, and not once tampered with.
    url = images[0]["url"].replace("http://127.0.0.1:8000", "")
    png = await http.get(url)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    assert (await http.get(url.replace("prize/", "prize/9"))).status_code == 403

    again = await chat.say("我的獎品")
    assert code in texts(again)
    qr = await chat.tap(buttons(again)["顯示 QR 碼"])
    assert code in texts(qr)
    assert any(r["kind"] == "image" for r in qr)


async def test_one_prize_per_person_member_phone_and_linked_accounts(
    http: httpx.AsyncClient, engine: AsyncEngine, clock: Clock
) -> None:
    await create(http, campaign_file())
    cid = await campaign_id(engine, "gender-2026")
    first = Chat(http, "sim-first")
    await first.tap(f"prize.claim:{cid}")
    assert "恭喜" in texts(await verify_in_chat(http, first, PHONE))

    # The same member again.
    twice = await first.tap(f"prize.claim:{cid}")
    assert "您已經領過「性平課程領好禮」的獎品了" in texts(twice)
    assert "兌換碼：" not in texts(twice)

    # A second account verifying the same number is offered a link; linked, it is one person.
    clock.advance(minutes=2)  # the per-number cool-down between codes
    other = Chat(http, "sim-second")
    await other.tap(f"prize.claim:{cid}")
    offer = await verify_in_chat(http, other, PHONE)
    assert "verify.link" in buttons(offer).values()
    linked = await other.tap("verify.link")
    assert "您已經領過" in texts(linked)  # back to the claim, as the one linked person

    # The first member moves to another number; whoever verifies the old one cannot win again.
    await first.say("驗證手機")
    await verify_in_chat(http, first, "0922-000-333")
    clock.advance(minutes=2)
    third = Chat(http, "sim-third")
    await third.tap(f"prize.claim:{cid}")
    refused = await verify_in_chat(http, third, PHONE)
    assert "您已經領過" in texts(refused)

    summary = (await http.get("/admin/api/campaigns/gender-2026", headers=AUTH)).json()
    assert summary["claimed"] == 1
    assert summary["refusals"]["already_claimed"] == 3
    assert summary["refusals"]["needs_phone"] == 3
    async with create_sessionmaker(engine)() as session:
        assert await session.scalar(select(func.count()).select_from(CampaignClaim)) == 1


async def test_refusals_each_have_their_answer_and_are_counted(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    await create(http, campaign_file(prize={"generate": 1}))
    await create(
        http,
        campaign_file(
            slug="over",
            starts_at=past.isoformat(),
            ends_at=(past + dt.timedelta(days=1)).isoformat(),
        ),
    )
    cid, over = await campaign_id(engine, "gender-2026"), await campaign_id(engine, "over")
    for i in range(2):
        await verified_member(engine, f"sim-r{i}", f"0933-11{i}-222")
    assert "恭喜" in texts(await Chat(http, "sim-r0").tap(f"prize.claim:{cid}"))
    empty = await Chat(http, "sim-r1").tap(f"prize.claim:{cid}")
    assert "獎品已經全部領完了" in texts(empty)
    ended = await Chat(http, "sim-r1").tap(f"prize.claim:{over}")
    assert "已經結束了" in texts(ended)
    hammer = Chat(http, "sim-r1")
    for _ in range(9):
        await hammer.tap(f"prize.claim:{cid}")
    assert "操作太頻繁" in texts(await hammer.tap(f"prize.claim:{cid}"))
    refusals = (await http.get("/admin/api/campaigns/gender-2026", headers=AUTH)).json()["refusals"]
    # Ten taps in ten minutes (over every campaign) is the limit: the 11th and 12th are refused.
    assert refusals["out_of_stock"] == 9
    assert refusals["rate_limited"] == 2


# -- the campaigns dashboard ------------------------------------------------------------------
async def test_the_funnel_dashboard_counts_eligible_opened_verified_and_claimed(
    served,  # type: ignore[no-untyped-def]
    engine: AsyncEngine,
) -> None:
    """Five people, worked out by hand: A earned it, has a phone and claims; B earned it and
    taps without a phone; C has a phone but not the hours; D earned it, has a phone and never
    opens it; E does nothing. Revoking A's prize takes A out of `claimed` on the next run."""
    from models.members import ChannelAccount

    async with (
        served(admin_token=ADMIN_TOKEN) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=60, headers=AUTH) as http,
    ):
        await create(http, campaign_file(rule={"min_hours": 1, "categories": ["性別平等"]}))
        cid = await campaign_id(engine, "gender-2026")
        await add_course(engine, "gender-101", "性別平等入門", "性別平等")
        a = await verified_member(engine, "sim-a", "0912-000-001")
        c = await verified_member(engine, "sim-c", "0912-000-003")
        d = await verified_member(engine, "sim-d", "0912-000-004")
        await verified_member(engine, "sim-e", "0912-000-005")
        for member in (a, d):
            await complete(engine, member, "gender-101", 1.5)
        assert "恭喜" in texts(await Chat(http, "sim-a").tap(f"prize.claim:{cid}"))
        assert "驗證手機" in texts(await Chat(http, "sim-b").tap(f"prize.claim:{cid}"))
        async with create_sessionmaker(engine)() as session:
            b = await session.scalar(
                select(ChannelAccount.member_id).where(ChannelAccount.external_id == "sim-b")
            )
        assert b is not None
        await complete(engine, b, "gender-101", 1.0)
        assert "還差" in texts(await Chat(http, "sim-c").tap(f"prize.claim:{cid}"))
        assert c != d

        jobs = api.state.runtime.jobs
        start = dt.datetime.fromisoformat(campaign_file()["starts_at"])
        year = start.astimezone(dt.timezone(dt.timedelta(hours=8))).year

        async def funnel() -> list[tuple[str, int, int, int, int]]:
            await jobs.require("rollups").run(dt.datetime.now(dt.UTC))
            response = await http.get("/admin/api/dashboards/campaigns", params={"year": year})
            assert response.status_code == 200, response.text
            return [
                (r["campaign"], r["eligible"], r["opened"], r["verified"], r["claimed"])
                for r in response.json()["rows"]
            ]

        assert await funnel() == [("gender-2026", 3, 3, 2, 1)]
        assert await funnel() == [("gender-2026", 3, 3, 2, 1)]  # a re-run changes nothing

        claim = (
            (await http.get("/admin/api/campaigns/gender-2026/export", headers=AUTH))
            .text.splitlines()[1]
            .split(",")[0]
        )
        revoked = await http.post(
            f"/admin/api/campaigns/gender-2026/claims/{claim.lstrip(chr(0xFEFF))}/revoke",
            json={"reason": "a test of the funnel"},
        )
        assert revoked.status_code == 200, revoked.text
        assert await funnel() == [("gender-2026", 3, 3, 2, 0)]
