"""Verification that strangers cannot turn against people, through the real webhooks and both
renderers (LINE Flex / quick replies, Telegram inline keyboards), in both languages:

- a locked verification answers "locked until HH:MM" for the whole lock, and a sixth code is
  never taken for a course search (issue 14, item 3);
- a number cooling down for someone else's code says so, and Resend then sends this
  person's own code (issue 14, item 4);
- a stranger who guesses wrong at a number locks only themselves: the number's owner still
  gets a code and verifies with it (issue 10, item 3).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram import SECRET_HEADER
from models.base import UTC
from models.inbound import ANSWERING, PENDING, PROCESSING, InboundEvent
from models.members import ChannelAccount, Member
from models.phones import check_phone
from tests.conftest import TG_SECRET
from tests.dialog import Chat, eventually, texts
from tests.fakes.line import FakeLine
from tests.fakes.sms import FakeSmsGateway
from tests.fakes.telegram import CHAT, FakeTelegram
from tests.line_helpers import body_of, event, sign, text_event

PHONE = "0912-345-678"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Taipei
_ids = itertools.count(870_000_001)


@dataclass
class Said:
    """What one person read after one message: the words and the buttons' action ids."""

    text: str
    actions: list[str]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@dataclass
class World:
    http: httpx.AsyncClient
    line: FakeLine
    tg: FakeTelegram
    engine: AsyncEngine
    api: Any
    gateway: FakeSmsGateway
    now: dt.datetime = T0

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)

    def _texts_to(self, phone: str) -> list[str]:
        """What the SMS gateway was asked to send to `phone` (LINE and Telegram people get
        real texts: the dev provider delivers only to the simulator)."""
        to = check_phone(phone, regions=["TW"]).e164
        return [r.form["Body"][0] for r in self.gateway.requests if r.form.get("To") == [to]]

    async def code_for(self, phone: str = PHONE) -> str:
        found = re.search(r"\b(\d{6})\b", self._texts_to(phone)[-1])
        assert found is not None
        return found.group(1)

    async def sms_count(self, phone: str = PHONE) -> int:
        return len(self._texts_to(phone))

    async def settled(self) -> bool:
        async with self.engine.connect() as conn:
            open_rows = (
                await conn.execute(
                    select(InboundEvent.id).where(
                        InboundEvent.status.in_([PENDING, PROCESSING, ANSWERING])
                    )
                )
            ).all()
        return not open_rows


class LinePerson:
    """Someone on LINE: each message is a signed webhook; the answer is the reply LINE got."""

    def __init__(self, world: World, user: str) -> None:
        self.world, self.user = world, user

    async def _post(self, ev: dict[str, Any]) -> Said:
        body = body_of(ev)
        response = await self.world.http.post(
            "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
        )
        assert response.status_code == 200
        token = ev["replyToken"]
        (sent,) = await eventually(
            lambda: [r for r in self.world.line.sent("/reply") if r.body["replyToken"] == token]
        )
        await eventually(self.world.settled)
        nodes = list(_walk(sent.body["messages"]))
        words = [n["text"] for n in nodes if n.get("type") == "text" and "text" in n]
        actions = [n["data"] for n in nodes if n.get("type") == "postback"]
        return Said("\n".join(words), actions)

    async def say(self, text: str) -> Said:
        return await self._post(text_event(text, user=self.user))

    async def tap(self, action: str) -> Said:
        return await self._post(event("postback", user=self.user, postback={"data": action}))


class TelegramPerson:
    """Someone on Telegram: each message is an update; the answer is the sendMessage calls."""

    def __init__(self, world: World, chat_id: int) -> None:
        self.world, self.chat_id = world, chat_id
        self.user = {
            "id": chat_id,
            "is_bot": False,
            "first_name": "Mei",
            "language_code": "zh-hant",
        }

    async def _post(self, update: dict[str, Any]) -> Said:
        before = len(self.world.tg.calls("sendMessage"))
        response = await self.world.http.post(
            "/webhooks/telegram",
            content=json.dumps(update, ensure_ascii=False).encode(),
            headers={"content-type": "application/json", SECRET_HEADER: TG_SECRET},
        )
        assert response.status_code == 200
        await eventually(lambda: len(self.world.tg.calls("sendMessage")) > before)
        await eventually(self.world.settled)
        calls = list(self.world.tg.calls("sendMessage")[before:])
        assert all(c.params["chat_id"] == self.chat_id for c in calls)
        words = [str(c.params.get("text", "")) for c in calls]
        actions = [
            b["callback_data"]
            for c in calls
            for row in (c.params.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
            if "callback_data" in b
        ]
        return Said("\n".join(words), actions)

    def _message(self, n: int) -> dict[str, Any]:
        chat = {"id": self.chat_id, "first_name": "Mei", "type": "private"}
        return {"message_id": n, "from": self.user, "chat": chat, "date": 1767600000}

    async def say(self, text: str) -> Said:
        n = next(_ids)
        return await self._post({"update_id": n, "message": {**self._message(n), "text": text}})

    async def tap(self, action: str) -> Said:
        n = next(_ids)
        query = {"id": f"cq{n}", "from": self.user, "message": {**self._message(1), "text": "x"}}
        return await self._post(
            {"update_id": n, "callback_query": {**query, "chat_instance": "-1", "data": action}}
        )


Person = LinePerson | TelegramPerson


@pytest.fixture
async def world(both_platforms, engine: AsyncEngine) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    async with (
        FakeSmsGateway() as gateway,
        both_platforms(
            sms_provider="twilio",
            twilio_account_sid="AC00112233445566778899aabbccddeeff",
            twilio_auth_token="twilio-auth-token-for-tests",
            twilio_from="+15005550006",
            twilio_api_base_url=gateway.base_url,
            simulator_enabled=True,  # strangers below also come from the simulator
        ) as (http, line, tg, api),
    ):
        w = World(http=http, line=line, tg=tg, engine=engine, api=api, gateway=gateway)
        api.state.runtime.processor.clock = lambda: w.now
        yield w


@pytest.fixture(params=["line", "telegram"])
def platform(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["zh-TW", "en"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# What each language says (the catalogs' words the person must see).
WORDS = {
    "zh-TW": {
        "sent": "驗證碼已傳送",
        "wrong": "驗證碼不正確",
        "locked": "已鎖定，請於 {time} 後再試",
        "until": "請於 {time} 後再試",
        "capped": "臺北時間 {time}",
        "other": "另一次驗證的簡訊（不是您的驗證碼）",
        "verified": "手機：已驗證",
        "search": "找到",
        "no_search": "找不到",
    },
    "en": {
        "sent": "sent a code",
        "wrong": "That code is not correct",
        "locked": "locked. Please try again after {time} Taipei time",
        "until": "after {time} Taipei time",
        "capped": "after {time} Taipei time",
        "other": "another verification (not your code)",
        "verified": "Phone: verified",
        "search": "Found",
        "no_search": "No course",
    },
}


async def person(world: World, platform: str, language: str, n: int = 1) -> Person:
    """A new person on the platform, speaking `language`."""
    who: Person = (
        LinePerson(world, "U" + f"{n:x}" * 32)
        if platform == "line"
        else TelegramPerson(world, CHAT + n)
    )
    if language == "en":
        assert "English" in (await who.say("語言")).text
        await who.say("2")
    return who


async def sim_person(world: World, user: str) -> Chat:
    return Chat(world.http, user)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def looks_like_search(said: Said, words: dict[str, str]) -> bool:
    return words["search"] in said.text or words["no_search"] in said.text


async def test_a_locked_verification_answers_locked_until_the_lock_is_over(
    world: World, platform: str, language: str
) -> None:
    words = WORDS[language]
    mei = await person(world, platform, language)
    await mei.say("驗證手機")
    assert words["sent"] in (await mei.say(PHONE)).text
    code = await world.code_for()
    for _ in range(4):
        assert words["wrong"] in (await mei.say(wrong(code))).text
    locked = await mei.say(wrong(code))
    assert words["locked"].format(time="09:15") in locked.text
    assert "verify.cancel" in locked.actions  # a way out, always
    # The sixth code, and the right one, a minute and ten minutes later: still the lock's
    # answer with the same time, never a course search echoing the digits.
    for minutes in (1, 9):
        world.advance(minutes=minutes)
        again = await mei.say(code)
        assert words["until"].format(time="09:15") in again.text
        assert words["verified"] not in again.text
        assert not looks_like_search(again, words)
        assert code not in again.text
    # Once the lock is over the step has ended: a new verification works.
    world.advance(minutes=6)
    assert words["sent"] in (await mei.say(f"/verify {PHONE}")).text
    assert words["verified"] in (await mei.say(await world.code_for())).text


async def test_hourly_wrong_code_cap_also_answers_as_locked(
    world: World, platform: str, language: str
) -> None:
    words = WORDS[language]
    mei = await person(world, platform, language)
    await mei.say("驗證手機")
    await mei.say(PHONE)  # this code expires at 09:10; its guesses count until 10:10
    for _ in range(4):
        await mei.say(wrong(await world.code_for()))
    await mei.tap("verify.cancel")
    world.advance(seconds=61)
    await mei.say(f"/verify {PHONE}")
    for _ in range(4):
        await mei.say(wrong(await world.code_for()))
    await mei.say("取消")
    world.advance(seconds=61)
    await mei.say(f"/verify {PHONE}")
    code = await world.code_for()
    await mei.say(wrong(code))
    capped = await mei.say(wrong(code))
    assert words["capped"].format(time="10:10") in capped.text
    world.advance(minutes=30)
    held = await mei.say(code)
    assert words["capped"].format(time="10:10") in held.text
    assert not looks_like_search(held, words)


async def test_a_number_cooling_down_for_someone_else_then_resend_sends_my_own_code(
    world: World, platform: str, language: str
) -> None:
    words = WORDS[language]
    stranger = await sim_person(world, "sim-stranger")
    await stranger.say("驗證手機")
    assert "驗證碼已傳送" in texts(await stranger.say(PHONE))
    assert await world.sms_count() == 1

    world.advance(seconds=15)
    owner = await person(world, platform, language)
    await owner.say("驗證手機")
    told = await owner.say(PHONE)
    assert words["other"] in told.text
    assert "45" in told.text  # seconds left, for this person to wait
    assert "verify.resend" in told.actions
    # Tapping too early: the same true answer, and still a Resend that will work.
    world.advance(seconds=20)
    early = await owner.tap("verify.resend")
    assert words["other"] in early.text
    assert "verify.resend" in early.actions
    assert await world.sms_count() == 1
    # After the cool-down, Resend sends the owner's own code (not "no verification").
    world.advance(seconds=26)
    resent = await owner.tap("verify.resend")
    assert words["sent"] in resent.text
    assert await world.sms_count() == 2
    assert words["verified"] in (await owner.say(await world.code_for())).text


async def test_a_stranger_guessing_wrong_does_not_lock_the_owner_out(
    world: World, platform: str, language: str
) -> None:
    """A stranger starts two verifications of the owner's number and guesses wrong nine
    times, locked for 15 minutes; the owner, on a platform, verifies the number meanwhile."""
    words = WORDS[language]
    stranger = await sim_person(world, "sim-guesser")
    await stranger.say(f"/verify {PHONE}")
    bad = wrong(await world.code_for())
    for _ in range(4):
        await stranger.say(bad)
    await stranger.say("取消")
    world.advance(seconds=61)
    await stranger.say(f"/verify {PHONE}")
    bad = wrong(await world.code_for())
    for _ in range(5):
        await stranger.say(bad)
    world.advance(seconds=61)
    assert "已鎖定" in texts(await stranger.say(f"/verify {PHONE}"))
    sent = await world.sms_count()

    owner = await person(world, platform, language)
    await owner.say("驗證手機")
    assert words["sent"] in (await owner.say(PHONE)).text
    assert await world.sms_count() == sent + 1
    assert words["verified"] in (await owner.say(await world.code_for())).text


# -- the throwaway-chat exhaustion, through the app -----------------------------------------------
@pytest.fixture
async def tight(served: Callable[..., Any]) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app with a small global budget (20 texts an hour; newcomers may use 6)."""
    async with (
        served(otp_max_global_hour=20) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        clock = [T0]
        api.state.runtime.processor.clock = lambda: clock[0]
        yield http, api


async def test_throwaway_chats_cannot_use_up_what_established_members_need(
    tight: tuple[httpx.AsyncClient, Any], engine: AsyncEngine
) -> None:
    http, _api = tight
    # A member since last month (no verified number yet) is known to us.
    regular = Chat(http, "sim-regular")
    await regular.say("說明")
    async with engine.begin() as conn:
        member_id = (
            await conn.execute(
                select(ChannelAccount.member_id).where(ChannelAccount.external_id == "sim-regular")
            )
        ).scalar_one()
        await conn.execute(
            update(Member)
            .where(Member.id == member_id)
            .values(created_at=T0 - dt.timedelta(days=40))
        )
    # Thirty fresh chats, each asking for a different number in a different block.
    refused = 0
    for i in range(30):
        chat = Chat(http, f"sim-throwaway-{i}")
        answer = texts(await chat.say(f"/verify 09{i + 10:02d}-{i:03d}-{i:03d}"))
        if "驗證碼已傳送" not in answer:
            assert "目前要求驗證的人很多" in answer
            refused += 1
    assert refused == 30 - 6  # the newcomers' share of 20 is 6
    # The established member still gets a code, and it works.
    assert "驗證碼已傳送" in texts(await regular.say(f"/verify {PHONE}"))
    inbox = (
        await http.get("/simulator/api/sms", params={"phone": PHONE, "user": regular.user})
    ).json()["messages"]
    code = re.search(r"\b(\d{6})\b", inbox[-1]["reply"]["text"])
    assert code is not None
    assert "手機：已驗證" in texts(await regular.say(code.group(1)))
