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
from tests.conftest import TG_SECRET
from tests.dialog import eventually
from tests.fakes.line import FakeLine
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


async def test_line_user_verifies_by_sms_code(platforms: dict[str, Any], engine) -> None:  # type: ignore[no-untyped-def]
    http, line = platforms["http"], platforms["line"]
    user = "U" + "7" * 32
    assert "手機" in await _say_on_line(http, line, "驗證手機", user)
    assert "驗證碼已傳送" in await _say_on_line(http, line, PHONE, user)
    inbox = (await http.get("/simulator/api/sms", params={"phone": PHONE})).json()["messages"]
    code = re.search(r"\b(\d{6})\b", inbox[-1]["reply"]["text"])
    assert code is not None
    await _say_on_line(http, line, code.group(1), user)
    assert "手機：已驗證" in await _say_on_line(http, line, "設定", user)

    # Nothing the person typed (number, code) rests in the recorded events, once answered
    # (the row is finished just after the reply went out).
    async def finished() -> list[Any]:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(InboundEvent.payload, InboundEvent.sealed))).all()
        return list(rows) if all(r.sealed is None for r in rows) else []

    rows = await eventually(finished)
    # Only what the person sent: reply tokens and event ids are random hex that
    # may contain any digit run by chance.
    typed = json.dumps([r.payload.get("message") for r in rows], ensure_ascii=False)
    assert "設定" in typed  # the check does see the stored messages
    for secret in ("0912", "345-678", "912345678", code.group(1)):
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
