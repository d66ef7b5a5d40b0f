"""A won prize on every channel: the code as text and its QR image, rendered by the LINE and
Telegram renderers and checked against each platform's own spec."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.line.render import render as line_render
from bot.messages import Image, load_replies
from bot.qr import qr_png
from bot.telegram import SECRET_HEADER
from bot.telegram.render import render as tg_render
from models.campaigns.claims import create_campaign
from models.campaigns.spec import parse_campaign
from models.db import create_sessionmaker
from tests.campaign_support import campaign_file, verified_member
from tests.conftest import TG_SECRET
from tests.dialog import Chat, eventually
from tests.line_helpers import body_of, event, sign
from tests.test_line_render import _check
from tests.test_telegram_render import checked


async def _campaign(engine: AsyncEngine) -> int:
    async with create_sessionmaker(engine)() as session:
        campaign = await create_campaign(
            session, spec=parse_campaign(campaign_file()), actor="test", now=dt.datetime.now(dt.UTC)
        )
        await session.commit()
        return campaign.id


async def test_the_won_reply_renders_as_line_text_and_image_and_telegram_text_and_photo(
    served,
    engine: AsyncEngine,
    shared_dir: Path | None,  # type: ignore[no-untyped-def]
) -> None:
    cid = await _campaign(engine)
    await verified_member(engine, "sim-render", "0912-345-678")
    async with (
        served(public_base_url="https://edoor.example") as (url, _),
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        replies = load_replies(await Chat(http, "sim-render").tap(f"prize.claim:{cid}"))

    messages = line_render(replies)
    [body] = _check(messages, shared_dir)
    kinds = [m["type"] for m in body["messages"]]
    assert kinds == ["text", "image"]
    code_text = body["messages"][0]["text"]
    assert "兌換碼：" in code_text
    image = body["messages"][1]
    assert image["originalContentUrl"].startswith("https://edoor.example/media/prize/")
    assert "sig=" in image["originalContentUrl"]
    assert "exp=" in image["originalContentUrl"]
    assert image["quickReply"]["items"]  # the next step: my prizes, other campaigns

    calls = tg_render(replies)
    params = checked(calls)
    assert [c.method for c in calls] == ["send_message", "send_photo"]
    assert "兌換碼：" in params[0]["text"]
    # The bytes, no URL fetch: the picture of this code, drawn by the Telegram renderer (the
    # reply names the code, so a LINE win draws no PNG at all).
    code = code_text.split("兌換碼：", 1)[1].split()[0]
    assert [r.qr for r in replies if isinstance(r, Image)] == [code]
    assert params[1]["photo"].input_file_content == qr_png(code)


async def test_telegram_gets_the_qr_as_an_upload_and_line_as_a_signed_https_link(
    both_platforms,
    engine: AsyncEngine,
    shared_dir: Path | None,  # type: ignore[no-untyped-def]
) -> None:
    cid = await _campaign(engine)
    line_user = "U" + "5" * 32
    await verified_member(engine, line_user, "0912-345-678", channel="line")
    await verified_member(engine, "5512345678", "0955-111-222", channel="telegram")
    async with both_platforms() as (http, line, telegram, _):
        body = body_of(event("postback", user=line_user, postback={"data": f"prize.claim:{cid}"}))
        sent = await http.post(
            "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
        )
        assert sent.status_code == 200
        await eventually(lambda: line.requests)
        messages: list[dict[str, Any]] = line.requests[-1].body["messages"]
        assert [m["type"] for m in messages] == ["text", "image"]
        if shared_dir is not None:
            from tests.openapi import line_schema_errors

            assert (
                line_schema_errors(shared_dir, "ReplyMessageRequest", line.requests[-1].body) == []
            )

        user = {"id": 5512345678, "is_bot": False, "first_name": "Mei", "language_code": "zh-hant"}
        chat = {"id": 5512345678, "first_name": "Mei", "type": "private"}
        message = {"message_id": 1, "from": user, "chat": chat, "date": 1767600000, "text": "x"}
        update = {
            "update_id": 9001,
            "callback_query": {
                "id": "cq1",
                "from": user,
                "message": message,
                "chat_instance": "-1",
                "data": f"prize.claim:{cid}",
            },
        }
        headers = {"content-type": "application/json", SECRET_HEADER: TG_SECRET}
        posted = await http.post(
            "/webhooks/telegram", content=json.dumps(update).encode(), headers=headers
        )
        assert posted.status_code == 200
        await eventually(lambda: telegram.calls("sendPhoto"))
        [photo] = telegram.calls("sendPhoto")
        assert [u.method for u in telegram.uploads] == ["sendPhoto"]
        assert b"\x89PNG" in telegram.uploads[0].body
        texts = [c.params["text"] for c in telegram.calls("sendMessage")]
        assert any("兌換碼：" in t for t in texts)
        assert photo.params["chat_id"] in (5512345678, "5512345678")
