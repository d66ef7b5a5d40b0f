"""Phone verification through the real platform webhooks, not only the simulator:
LINE (typed number, SMS code, typed code) and Telegram (the person's own shared contact,
and a contact of someone else refused)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models.inbound import InboundEvent
from models.members import get_account
from models.simulator import SimulatorMessage
from tests.conftest import TG_SECRET
from tests.dialog import Chat, eventually
from tests.fakes.line import FakeLine
from tests.fakes.sms import FakeSmsGateway
from tests.fakes.telegram import CHAT, FakeTelegram
from tests.line_helpers import body_of, sign, text_event

PHONE = "0912-345-678"


@pytest.fixture
async def platforms(both_platforms) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with both_platforms() as (http, line, telegram, _):
        yield {"http": http, "line": line, "telegram": telegram}


def _line_texts(fake: FakeLine) -> list[str]:
    out = []
    for request in fake.requests:
        for message in request.body.get("messages", []):
            out.append(message.get("text") or message.get("altText", ""))
    return out


async def _say_on_line(http: httpx.AsyncClient, fake: FakeLine, text: str, user: str) -> str:
    before = len(fake.requests)
    body = body_of(text_event(text, user=user))
    response = await http.post(
        "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
    )
    assert response.status_code == 200
    await eventually(lambda: len(fake.requests) > before)
    return "\n".join(_line_texts(fake)[before:])


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    async with FakeSmsGateway() as fake:
        yield fake


def twilio(gateway: FakeSmsGateway) -> dict[str, object]:
    return {
        "sms_provider": "twilio",
        "twilio_account_sid": "AC00112233445566778899aabbccddeeff",
        "twilio_auth_token": "twilio-auth-token-for-tests",
        "twilio_from": "+15005550006",
        "twilio_api_base_url": gateway.base_url,
    }


def _sms_code(gateway: FakeSmsGateway) -> str:
    code = re.search(r"\b(\d{6})\b", gateway.requests[-1].form["Body"][0])
    assert code is not None
    return code.group(1)


async def test_line_user_verifies_by_sms_code(both_platforms, gateway, engine) -> None:  # type: ignore[no-untyped-def]
    user = "U" + "7" * 32
    async with both_platforms(**twilio(gateway)) as (http, line, _, _):
        assert "手機" in await _say_on_line(http, line, "驗證手機", user)
        assert "驗證碼已傳送" in await _say_on_line(http, line, PHONE, user)
        code = _sms_code(gateway)
        await _say_on_line(http, line, code, user)
        assert "手機：已驗證" in await _say_on_line(http, line, "設定", user)
    # Nothing the person typed (number, code) rests in the recorded events.
    await _nothing_typed_rests_in_events(engine, code)


async def test_no_one_can_read_codes_or_take_over_a_member_when_a_real_channel_is_on(
    both_platforms,
    gateway,  # type: ignore[no-untyped-def]
) -> None:
    """The attack: with the README's settings and a real channel, an outsider reads the
    victim's verification code from the simulator's phone inbox, verifies the victim's number
    and accepts the link offer. Neither the default nor an explicit simulator allows it."""
    victim, attacker = "U" + "1" * 32, "U" + "2" * 32
    # Defaults (EDOOR_ENV=dev, SMS_PROVIDER=dev) with LINE on: no simulator, no phone inbox.
    async with both_platforms() as (http, line, _, api):
        assert not api.state.runtime.settings.simulator_on
        for path in ("/simulator", "/simulator/api/sms", "/simulator/api/send"):
            assert (await http.get(path, params={"phone": PHONE, "user": "x"})).status_code == 404
        # The dev provider does not deliver a code asked for on LINE: the person is told to
        # try later, and nothing readable is stored anywhere.
        await _say_on_line(http, line, "驗證手機", victim)
        answer = await _say_on_line(http, line, "0987-654-321", victim)
        assert "驗證碼已傳送" not in answer
        assert "稍後" in answer
        async with api.state.runtime.sessionmaker() as session:
            assert (await session.scalars(select(SimulatorMessage))).all() == []
    # Asked for explicitly, the simulator needs a real SMS provider, and its inbox never shows
    # a code somebody else asked for: the victim's code goes to the victim's phone only.
    async with both_platforms(**twilio(gateway), simulator_enabled=True) as (http, line, _, api):
        await _say_on_line(http, line, "驗證手機", victim)
        await _say_on_line(http, line, PHONE, victim)
        code = _sms_code(gateway)
        assert gateway.requests[-1].form["To"] == ["+886912345678"]
        for user in ("x", victim, f"line:{victim}", "citizen-1"):
            inbox = await http.get("/simulator/api/sms", params={"phone": PHONE, "user": user})
            assert inbox.status_code == 200
            assert code not in inbox.text
        assert "已驗證" in await _say_on_line(http, line, code, victim)
        # The attacker asks for a code from LINE and from the simulator: both go to the
        # victim's phone, so the attacker has nothing to type.
        await _say_on_line(http, line, "驗證手機", attacker)
        await _say_on_line(http, line, PHONE, attacker)
        chat = Chat(http, "attacker")
        await chat.say("驗證手機")
        await chat.say(PHONE)
        inbox = await http.get("/simulator/api/sms", params={"phone": PHONE, "user": "attacker"})
        assert inbox.json()["messages"] == []
        assert all(r.form["To"] == ["+886912345678"] for r in gateway.requests)
        async with api.state.runtime.sessionmaker() as session:
            owner = await get_account(session, channel="line", external_id=victim)
            intruder = await get_account(session, channel="line", external_id=attacker)
            assert owner is not None
            assert intruder is not None
            assert owner.member_id != intruder.member_id


async def _nothing_typed_rests_in_events(engine, code: str) -> None:  # type: ignore[no-untyped-def]
    # Once answered: the row is finished just after the reply went out.
    async def finished() -> list[Any]:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(InboundEvent.payload, InboundEvent.sealed))).all()
        return list(rows) if all(r.sealed is None for r in rows) else []

    rows = await eventually(finished)
    # Only what the person sent: reply tokens and event ids are random hex that
    # may contain any digit run by chance.
    typed = json.dumps([r.payload.get("message") for r in rows], ensure_ascii=False)
    assert "設定" in typed  # the check does see the stored messages
    for secret in ("0912", "345-678", "912345678", code):
        assert secret not in typed
    assert all(r.sealed is None for r in rows)  # originals erased once answered


def _contact_update(update_id: int, *, owner: int) -> dict[str, Any]:
    user = {"id": CHAT, "is_bot": False, "first_name": "Mei", "language_code": "zh-hant"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1767600000,
            "from": user,
            "chat": {"id": CHAT, "type": "private", "first_name": "Mei"},
            "contact": {"phone_number": "886912345678", "first_name": "Mei", "user_id": owner},
        },
    }


async def _tg_post(http: httpx.AsyncClient, update: dict[str, Any]) -> None:
    response = await http.post(
        "/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    )
    assert response.status_code == 200


def _tg_texts(fake: FakeTelegram) -> str:
    return "\n".join(str(c.params.get("text", "")) for c in fake.calls("sendMessage"))


async def test_telegram_own_contact_verifies_and_a_foreign_one_is_refused(
    platforms: dict[str, Any],
) -> None:
    http, telegram = platforms["http"], platforms["telegram"]
    await _tg_post(
        http,
        {
            "update_id": 900001,
            "message": {
                "message_id": 1,
                "date": 1767600000,
                "text": "/verify",
                "from": {"id": CHAT, "is_bot": False, "first_name": "Mei"},
                "chat": {"id": CHAT, "type": "private", "first_name": "Mei"},
                "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
            },
        },
    )
    ask = await eventually(lambda: telegram.calls("sendMessage"))
    markup = ask[-1].params.get("reply_markup") or {}
    assert any(b.get("request_contact") for row in markup.get("keyboard", []) for b in row)

    await _tg_post(http, _contact_update(900002, owner=CHAT + 1))  # someone else's card
    await eventually(lambda: len(telegram.calls("sendMessage")) >= 2)
    assert "已驗證" not in _tg_texts(telegram).split("\n")[-1]

    await _tg_post(http, _contact_update(900003, owner=CHAT))  # the sender's own number
    await eventually(lambda: "已驗證" in _tg_texts(telegram))
