"""Phone verification, account links, roster status, key rotation and erasure, end to end:
the real app over HTTP, the simulator channel, the dev SMS provider's phone inbox."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, select, text

from bot.messages import Incoming
from models.base import UTC
from models.identity import CivilServant, VerifiedPhone
from models.members import ChannelAccount
from models.pii import PiiVault
from models.privacy import rotate_pii_key
from models.roster_import import import_roster
from sms.providers import DevSmsProvider
from tests.conftest import TEST_PII_KEY
from tests.dialog import Chat, World, buttons, texts

PHONE = "0912-345-678"
E164 = "+886912345678"
OTHER = "0987-654-321"
NEW_KEY = "rotated-pii-key-9876543210fedcba9876543210"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
ROSTER = (
    "employee_id,name,agency,mobile,email,active\n"
    "E001,王小明,臺北市政府資訊局,0912345678,ming@gov.taipei,是\n"
)


def wire(api: Any) -> None:
    """The app serves verification and settings, with the dev SMS provider (the default)."""
    runtime = api.state.runtime
    assert "verify" in runtime.router.command_names()
    assert "settings" in runtime.router.command_names()
    assert isinstance(runtime.services.sms, DevSmsProvider)


@pytest.fixture
async def world(
    served: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[World]:
    async with served() as (url, api):
        wire(api)
        caplog.set_level(logging.INFO)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            w = World(api.state.runtime, http, now=T0)
            w.follow_clock()
            yield w
    # Nothing personal in any log line: numbers in every form, and every code sent.
    logged = caplog.text
    for secret in (E164, "0912345678", "912345678", "0987654321", "987654321", *w.codes):
        assert secret not in logged, "a phone number or code reached the logs"


async def verify(world: World, chat: Chat, phone: str = PHONE) -> list[dict[str, Any]]:
    await chat.say("驗證手機")
    sent = await chat.say(phone)
    assert "驗證碼已傳送" in texts(sent) or "sent a code" in texts(sent)
    return await chat.say(await world.sms_code(phone))


# -- the full flow ------------------------------------------------------------------------------
async def test_full_flow_by_typed_number(world: World) -> None:
    chat = world.chat("sim-a")
    asked = await chat.say("/verify")
    assert asked[0]["kind"] == "ask_phone"
    assert "手機號碼" in texts(asked)
    assert buttons(asked)["取消"] == "verify.cancel"
    sent = await chat.say(PHONE)
    assert "0912-***-678" in texts(sent)
    assert "0912345678" not in texts(sent)
    assert buttons(sent)["重寄"] == "verify.resend"
    done = await chat.say(await world.sms_code(PHONE))
    assert "手機：已驗證（0912-***-678）" in texts(done)
    status = texts(await chat.say("設定"))
    assert "手機：已驗證" in status
    assert "公務人員：已驗證" not in status


async def test_full_flow_in_english_with_refusals_for_bad_numbers(world: World) -> None:
    chat = world.chat("sim-en", language="en")
    await chat.say("verify")
    assert "landline" in texts(await chat.say("02-2345-6789"))
    assert "Taiwan" in texts(await chat.say("+852 9123 4567"))
    assert "does not look like" in texts(await chat.say("12345"))
    assert "0912-***-678" in texts(await chat.say(PHONE))
    code = await world.sms_code(PHONE)
    assert "4 more times" in texts(await chat.say(f"{(int(code) + 1) % 1_000_000:06d}"))
    assert "6-digit code" in texts(await chat.say("hello"))
    done = await chat.say(code)
    assert "Phone: verified" in texts(done)
    assert "Phone: verified" in texts(await chat.say("settings"))


async def test_cancel_at_any_step(world: World) -> None:
    chat = world.chat("sim-c")
    await chat.say("驗證手機")
    assert "已取消" in texts(await chat.say("取消"))
    await chat.say("驗證手機")
    await chat.say(PHONE)
    code = await world.sms_code(PHONE)
    assert "已取消" in texts(await chat.tap("verify.cancel"))
    # The step is gone and the code no longer works.
    assert "手機：已驗證" not in texts(await chat.say(code))
    assert "手機：未驗證" in texts(await chat.say("設定"))


# -- codes: lock, expiry, cool-down, reuse ---------------------------------------------------------
async def test_five_wrong_codes_lock_the_verification(world: World) -> None:
    chat = world.chat("sim-lock")
    await chat.say("驗證手機")
    await chat.say(PHONE)
    code = await world.sms_code(PHONE)
    bad = f"{(int(code) + 1) % 1_000_000:06d}"
    for remaining in (4, 3, 2, 1):
        assert f"還可以再試 {remaining} 次" in texts(await chat.say(bad))
    assert "已鎖定，請於 09:15 後再試" in texts(await chat.say(bad))
    # The right code during the lock: still the lock's answer, not accepted.
    locked = texts(await chat.say(code))
    assert "請於 09:15 後再試" in locked
    assert "手機：已驗證" not in locked
    world.advance(minutes=5)
    assert "約 10 分鐘後" in texts(await chat.say(f"/verify {PHONE}"))
    world.advance(minutes=11)
    assert "驗證碼已傳送" in texts(await chat.say(f"/verify {PHONE}"))
    assert "手機：已驗證" in texts(await chat.say(await world.sms_code(PHONE)))


async def test_wrong_codes_are_capped_per_hour_across_verifications(world: World) -> None:
    """Cancelling or starting again gives a verification five fresh checks, but not more
    guesses: ten wrong codes an hour per member and per number, then a wait in Taipei time."""
    chat = world.chat("sim-guess")

    async def wrong_four(cancel: str) -> None:
        bad = f"{(int(await world.sms_code(PHONE)) + 1) % 1_000_000:06d}"
        for _ in range(4):
            assert "不正確" in texts(await chat.say(bad))
        if cancel == "tap":
            assert "已取消" in texts(await chat.tap("verify.cancel"))
        else:
            assert "已取消" in texts(await chat.say("取消"))

    await chat.say("驗證手機")
    await chat.say(PHONE)  # 09:00 Taipei; this code expires at 09:10
    await wrong_four("tap")
    world.advance(seconds=61)
    assert "驗證碼已傳送" in texts(await chat.say(f"/verify {PHONE}"))
    await wrong_four("say")
    world.advance(seconds=61)
    assert "驗證碼已傳送" in texts(await chat.say(f"/verify {PHONE}"))
    code = await world.sms_code(PHONE)
    bad = f"{(int(code) + 1) % 1_000_000:06d}"
    assert "還可以再試 1 次" in texts(await chat.say(bad))  # the ninth wrong code this hour
    capped = texts(await chat.say(bad))
    # The first verification's guesses stop counting an hour after its code expired.
    assert "一小時內輸入錯誤的驗證碼太多次（最多 10 次）" in capped
    assert "臺北時間 10:10（約 68 分鐘後）" in capped
    held = texts(await chat.say(code))  # the step answers as capped until the wait is over
    assert "臺北時間 10:10" in held
    assert "手機：已驗證" not in held
    # Starting again sends nothing, for this member, another number, or another member.
    sent = await world.sms_count(PHONE)
    assert "太多次" in texts(await chat.say(f"/verify {PHONE}"))
    assert "太多次" in texts(await chat.say(f"/verify {OTHER}"))
    # The cap is the guesser's, not the number's (tests/test_verification_safety.py shows
    # the owner verifying it meanwhile); this number's last code is seconds old, and the
    # answer says whose it is.
    other = world.chat("sim-guess-2", language="en")
    refused = texts(await other.say(f"/verify {PHONE}"))
    assert "another verification (not your code)" in refused
    assert await world.sms_count(PHONE) == sent
    assert await world.sms_count(OTHER) == 0
    # After the wait it works again, with the right code.
    world.advance(minutes=68)
    assert "驗證碼已傳送" in texts(await chat.say(f"/verify {PHONE}"))
    assert "手機：已驗證" in texts(await chat.say(await world.sms_code(PHONE)))


async def test_expired_code(world: World) -> None:
    chat = world.chat("sim-exp")
    await chat.say("驗證手機")
    await chat.say(PHONE)
    code = await world.sms_code(PHONE)
    world.advance(minutes=9)
    await chat.say("驗證手機")  # a resend keeps the step alive; then let the new code lapse
    code = await world.sms_code(PHONE)
    world.advance(minutes=10, seconds=1)
    replies = await chat.say(code)
    assert "驗證碼已過期" in texts(replies)
    assert buttons(replies)["重寄"] == "verify.resend"
    assert "手機：未驗證" in texts(await chat.say("設定"))


async def test_resend_cooldown_and_old_code_invalid(world: World) -> None:
    chat = world.chat("sim-cool")
    await chat.say("驗證手機")
    await chat.say(PHONE)
    first = await world.sms_code(PHONE)
    world.advance(seconds=20)
    assert "40 秒後" in texts(await chat.tap("verify.resend"))
    assert await world.sms_count(PHONE) == 1
    # The cool-down is per number: another person asking for it waits too.
    other = world.chat("sim-cool-2")
    await other.say("驗證手機")
    assert "秒後" in texts(await other.say(PHONE))
    world.advance(seconds=41)
    assert "驗證碼已傳送" in texts(await chat.say("/verify"))  # /verify again resends
    second = await world.sms_code(PHONE)
    if second != first:
        assert "不正確" in texts(await chat.say(first))
    assert "手機：已驗證" in texts(await chat.say(second))


async def test_used_code_reused(world: World) -> None:
    chat = world.chat("sim-used")
    done = await verify(world, chat)
    assert "手機：已驗證" in texts(done)
    used = world.codes[-1]
    await chat.say("驗證手機")
    await chat.say(OTHER)
    refused = await chat.say(used)
    assert "手機：已驗證（0987" not in texts(refused)
    assert "0912-***-678" in texts(await chat.say("設定"))


async def test_provider_failure_asks_to_try_later_and_uses_nothing(world: World) -> None:
    class Down:
        name = "down"

        async def send(self, message: Any, *, session: Any, now: Any) -> str:
            from sms.providers import SmsError

            raise SmsError("fake: HTTP 503")

    real = world.runtime.services.sms
    world.runtime.services.sms = Down()
    chat = world.chat("sim-down")
    await chat.say("驗證手機")
    assert "稍後再試" in texts(await chat.say(PHONE))
    world.runtime.services.sms = real
    # No cool-down started and no send counted: it works at once.
    assert "驗證碼已傳送" in texts(await chat.say(f"/verify {PHONE}"))
    async with world.runtime.sessionmaker() as s:
        sends = await s.scalar(text("SELECT count(*) FROM otp_send"))
    assert sends == 1


# -- one number, one member; links -------------------------------------------------------------
async def test_two_members_racing_for_one_number_then_link(world: World) -> None:
    a, b = world.chat("sim-race-a"), world.chat("sim-race-b")
    await a.say("驗證手機")
    await a.say(PHONE)
    code_a = await world.sms_code(PHONE)
    world.advance(seconds=61)
    await b.say("驗證手機")
    await b.say(PHONE)
    code_b = await world.sms_code(PHONE)
    assert "手機：已驗證" in texts(await a.say(code_a))
    offer = await b.say(code_b)
    assert "另一個帳號" in texts(offer)
    assert buttons(offer)["連結帳號"] == "verify.link"
    linked = await b.tap("verify.link")
    assert "帳號已連結" in texts(linked)


async def test_link_after_confirmation(world: World) -> None:
    a, b = world.chat("sim-link-a"), world.chat("sim-link-b")
    await verify(world, a)
    world.advance(seconds=61)
    offer = await verify(world, b)
    assert "另一個帳號（Simulator）" in texts(offer)
    linked = await b.say("是")
    assert "帳號已連結" in texts(linked)
    async with world.runtime.sessionmaker() as s:
        rows = (
            await s.scalars(
                select(ChannelAccount).where(
                    ChannelAccount.external_id.in_(["sim-link-a", "sim-link-b"])
                )
            )
        ).all()
        assert len({r.member_id for r in rows}) == 1
    assert "手機：已驗證" in texts(await b.say("設定"))


async def test_declining_the_link_keeps_accounts_apart(world: World) -> None:
    a, b = world.chat("sim-nolink-a"), world.chat("sim-nolink-b")
    await verify(world, a)
    world.advance(seconds=61)
    await verify(world, b)
    assert "不連結" in texts(await b.tap("verify.nolink"))
    assert "手機：未驗證" in texts(await b.say("設定"))


# -- Telegram contacts (through the real router and database) ---------------------------------
async def _telegram(world: World, user: str, **fields: Any) -> str:
    runtime = world.runtime
    async with runtime.sessionmaker() as s:
        msg = Incoming(
            channel="telegram", user_id=user, event_id=f"tg-{user}-{world.now}", **fields
        )
        replies = await runtime.processor.handle(s, msg, now=world.now)
        await s.commit()
    return "\n".join(getattr(r, "text", "") for r in replies)


async def test_forwarded_or_foreign_contact_refused_own_contact_trusted(world: World) -> None:
    from pydantic import SecretStr

    refused = await _telegram(
        world, "777", kind="contact", contact_phone=SecretStr(E164), contact_is_own=False
    )
    assert "只能使用您自己的手機號碼" in refused
    own = await _telegram(
        world, "777", kind="contact", contact_phone=SecretStr(E164), contact_is_own=True
    )
    assert "手機：已驗證" in own
    assert await world.sms_count(PHONE) == 0  # trusted: no SMS
    status = await _telegram(world, "777", kind="text", text="/settings")
    assert "手機：已驗證" in status


# -- roster, rotation, erasure ------------------------------------------------------------------
async def _import(world: World, data: str) -> None:
    async with world.runtime.sessionmaker() as s:
        await import_roster(
            s,
            vault=world.runtime.services.vault,
            data=data,
            now=world.now,
        )
        await s.commit()


async def test_roster_match_mismatch_and_removal(world: World) -> None:
    await _import(world, ROSTER)
    servant, citizen = world.chat("sim-cs"), world.chat("sim-citizen")
    done = await verify(world, servant)
    assert "公務人員：已驗證" in texts(done)
    assert "公務人員：已驗證" in texts(await servant.say("設定"))
    await verify(world, citizen, OTHER)
    assert "公務人員：已驗證" not in texts(await citizen.say("設定"))
    await _import(world, ROSTER.replace(",是\n", ",否\n"))
    status = texts(await servant.say("設定"))
    assert "手機：已驗證" in status
    assert "公務人員：已驗證" not in status


async def test_wrong_country_names_the_allowed_regions(served: Callable[..., Any]) -> None:
    """PHONE_ALLOWED_REGIONS=TW,HK: a Japanese number is refused naming both, in both languages;
    a Hong Kong mobile is accepted; a region the catalogs do not name shows its English name."""

    @contextlib.asynccontextmanager
    async def client(regions: str) -> AsyncIterator[httpx.AsyncClient]:
        async with (
            served(phone_allowed_regions=regions) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield http

    async with client("TW, HK") as http:
        chat = Chat(http, "sim-regions")
        await chat.say("驗證手機")
        refused = await chat.say("+81 90-1234-5678")
        assert "目前只接受台灣、香港的手機號碼" in texts(refused)
        assert refused[0]["kind"] == "ask_phone"
        english = Chat(http, "sim-regions-en", language="en")
        await english.say("verify")
        said = texts(await english.say("+81 90-1234-5678"))
        assert "Only mobile numbers from Taiwan, Hong Kong are accepted" in said
        assert "+852 ***-567" in texts(await chat.say("+852 9123 4567"))
    async with client("FR") as http:
        chat = Chat(http, "sim-regions-fr")
        await chat.say("驗證手機")
        assert "目前只接受France的手機號碼" in texts(await chat.say("+886 912 345 678"))


async def test_key_rotation_keeps_lookups(world: World, served: Callable[..., Any]) -> None:
    await verify(world, world.chat("sim-rot"))
    old = PiiVault(TEST_PII_KEY)
    new = PiiVault(NEW_KEY, previous=[TEST_PII_KEY])
    async with world.runtime.sessionmaker() as s:
        report = await rotate_pii_key(s, old=old, new=new)
        await s.commit()
        row = await s.scalar(select(VerifiedPhone))
        assert row is not None
        assert row.phone_hash == PiiVault(NEW_KEY).lookup_hash(E164)
    assert report.rehashed["verified_phone"] == 1
    # A process with only the new key reads the number and finds it by hash.
    async with served(pii_key=NEW_KEY) as (url, api):
        wire(api)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            w2 = World(api.state.runtime, http, now=world.now + dt.timedelta(minutes=2))
            w2.follow_clock()
            assert "0912-***-678" in texts(await w2.chat("sim-rot").say("設定"))
            offer = await verify(w2, w2.chat("sim-rot-2"))
            assert "另一個帳號" in texts(offer)
            world.codes.extend(w2.codes)


async def test_delete_my_data_leaves_no_personal_data(world: World) -> None:
    await _import(world, ROSTER)
    chat = world.chat("sim-erase-me")
    await verify(world, chat)
    await chat.say("設定")
    asked = await chat.say("刪除我的資料")
    assert buttons(asked)["確認刪除"] == "settings.delete_yes"
    assert "資料都保留著" in texts(await chat.say("不要"))
    await chat.tap("settings.delete")
    assert "已刪除" in texts(await chat.tap("settings.delete_yes"))

    vault = world.runtime.services.vault
    phone_hash = vault.lookup_hash(E164)
    needles = [
        E164,
        "0912345678",
        "912345678",
        "0912-***-678",
        phone_hash,
        phone_hash[:60],
        *world.codes,
    ]
    async with world.runtime.sessionmaker() as s:
        conn = await s.connection()
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        found: dict[str, list[str]] = {}
        for table in tables:
            rows = (await s.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
            blob = "\n".join(repr(tuple(r)) for r in rows)
            hits = [n for n in needles if n in blob]
            # Sealed values are personal data too when they open to the number.
            for r in rows:
                for v in r:
                    if (
                        isinstance(v, str)
                        and ":gAAAA" in v
                        and vault.decrypt(v) == E164
                        and (table != "civil_servant")
                    ):
                        hits.append("sealed phone")
            if "sim-erase-me" in blob and table not in ("simulator_message",):
                hits.append("user id")
            if hits:
                found[table] = hits
        # The training office's roster row stays (unlinked): the office owns it.
        assert set(found) <= {"civil_servant"}, found
        roster = await s.scalar(select(CivilServant))
        assert roster is not None
        assert roster.member_id is None
        account = await s.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == "sim-erase-me")
        )
        assert account is None
