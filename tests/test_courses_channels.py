"""Course search and course cards through the real webhooks and both renderers: what the fake
LINE received (a Flex carousel) and what the fake Telegram received (a paged list with an
inline keyboard), each checked against the platform's own schema."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from linebot.v3.messaging import ReplyMessageRequest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.telegram import SECRET_HEADER
from models.catalog_import import parse_csv, read_catalog
from models.courses import apply_catalog
from models.inbound import DONE, InboundEvent
from models.search import demo_catalog_path
from tests.conftest import TG_SECRET
from tests.dialog import eventually
from tests.fakes.line import FakeLine
from tests.fakes.telegram import CHAT, FakeTelegram, TgCall
from tests.line_helpers import body_of, event, sign, text_event
from tests.openapi import line_schema_errors
from tests.telegram_spec import call_errors, load_spec

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
EXTRA = (
    "id,title,category,hours,audience,password\ncs-1,公務機密維護講習,資訊安全,1,civil_servant,\n"
)
LINE_USER = "U" + "c" * 32
SPEC = load_spec()
_update_ids = itertools.count(830_000_001)


@dataclass
class Channels:
    http: httpx.AsyncClient
    line: FakeLine
    tg: FakeTelegram
    engine: AsyncEngine

    async def all_done(self) -> bool:
        async with self.engine.connect() as conn:
            statuses = (await conn.execute(select(InboundEvent.status))).scalars().all()
        return bool(statuses) and all(s == DONE for s in statuses)


@pytest.fixture
async def channels(
    session: AsyncSession,
    engine: AsyncEngine,
    both_platforms,  # type: ignore[no-untyped-def]
) -> AsyncIterator[Channels]:
    """The real app with LINE and Telegram switched on, both pointed at loopback fakes."""
    await apply_catalog(session, parsed=read_catalog(demo_catalog_path()), now=NOW)
    await apply_catalog(session, parsed=parse_csv(EXTRA.encode()), now=NOW)
    await session.commit()
    async with both_platforms() as (http, line, tg, api):
        assert "telegram" in api.state.runtime.channels
        yield Channels(http, line, tg, engine)


# -- LINE ----------------------------------------------------------------------------------


async def _line_says(
    ch: Channels, ev: dict[str, Any], shared_dir: Path | None
) -> list[dict[str, Any]]:
    """Post one signed event; the messages of the reply LINE got for it, schema-checked."""
    body = body_of(ev)
    headers = {"content-type": "application/json", "x-line-signature": sign(body)}
    assert (await ch.http.post("/webhooks/line", content=body, headers=headers)).status_code == 200
    token = ev["replyToken"]
    (sent,) = await eventually(
        lambda: [r for r in ch.line.sent("/reply") if r.body.get("replyToken") == token]
    )
    ReplyMessageRequest.from_dict(sent.body)  # the SDK's own model accepts it
    if shared_dir is not None:
        assert line_schema_errors(shared_dir, "ReplyMessageRequest", sent.body) == []
    messages: list[dict[str, Any]] = sent.body["messages"]
    assert 1 <= len(messages) <= 5
    return messages


def _actions(node: Any) -> Iterator[dict[str, Any]]:
    """Every action object (postback, uri, ...) anywhere in a LINE message."""
    if isinstance(node, dict):
        if isinstance(node.get("action"), dict):
            yield node["action"]
        for value in node.values():
            yield from _actions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _actions(value)


def _postbacks(node: Any) -> list[str]:
    return [a["data"] for a in _actions(node) if a.get("type") == "postback"]


def _carousel(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (flex,) = [m for m in messages if m["type"] == "flex" and m["contents"]["type"] == "carousel"]
    return flex


def _opened(data: list[str]) -> list[str]:
    return [d.removeprefix("course.open:") for d in data if d.startswith("course.open:")]


async def test_line_search_pages_and_opens_a_course_card(
    channels: Channels, shared_dir: Path | None
) -> None:
    found = await _line_says(channels, text_event("資安", user=LINE_USER), shared_dir)
    flex = _carousel(found)
    assert flex["altText"].startswith("找到")
    assert "「資安」" in flex["altText"]
    bubbles = flex["contents"]["contents"]
    assert 2 <= len(bubbles) <= 12
    assert len(json.dumps(flex["contents"], ensure_ascii=False).encode()) <= 50_000
    first_page = _opened(_postbacks(bubbles))
    assert len(first_page) == 5
    assert "cs-1" not in first_page  # a citizen's carousel holds no civil-servant course
    # "More results" rides in the carousel; filters and recommendations are quick replies.
    more = [d for d in _postbacks(bubbles) if d.startswith("course.more:")]
    assert more == ["course.more:5:資安"]
    quick = found[-1]["quickReply"]["items"]
    assert 1 <= len(quick) <= 13
    assert "course.rec" in _postbacks(quick)

    page2 = await _line_says(
        channels, event("postback", user=LINE_USER, postback={"data": more[0]}), shared_dir
    )
    second_page = _opened(_postbacks(_carousel(page2)["contents"]))
    assert second_page
    assert not set(first_page) & set(second_page)

    card = await _line_says(
        channels,
        event("postback", user=LINE_USER, postback={"data": f"course.open:{first_page[0]}"}),
        shared_dir,
    )
    (bubble_message,) = [m for m in card if m["type"] == "flex"]
    shown = json.dumps(bubble_message, ensure_ascii=False)
    assert "小時" in shown  # category and hours
    actions = list(_actions(bubble_message))
    links = [a for a in actions if a.get("type") == "uri"]
    # The demo courses have no page of their own: the button says it opens the portal.
    assert [a["label"] for a in links] == ["前往臺北e大"]
    assert links[0]["uri"] == "https://elearning.taipei/"
    assert f"course.save:{first_page[0]}" in _postbacks(bubble_message)
    assert f"course.sim:{first_page[0]}" in _postbacks(bubble_message)


async def test_line_tells_a_citizen_about_civil_servant_courses(
    channels: Channels, shared_dir: Path | None
) -> None:
    told = await _line_says(channels, text_event("公務機密", user=LINE_USER), shared_dir)
    assert "公務機密維護講習" not in json.dumps(told, ensure_ascii=False)
    assert "cmd:verify" in _postbacks(told)
    card = await _line_says(
        channels,
        event("postback", user=LINE_USER, postback={"data": "course.open:cs-1"}),
        shared_dir,
    )
    assert "限已驗證身分的公務人員" in json.dumps(card, ensure_ascii=False)
    assert _postbacks(card) == ["cmd:verify"]


# -- Telegram ------------------------------------------------------------------------------

_TG_USER = {"id": CHAT, "is_bot": False, "first_name": "Mei", "language_code": "zh-hant"}
_TG_CHAT = {"id": CHAT, "first_name": "Mei", "type": "private"}


def _tg_text(text: str) -> dict[str, Any]:
    n = next(_update_ids)
    message = {"message_id": n, "from": _TG_USER, "chat": _TG_CHAT, "date": 1767600000}
    return {"update_id": n, "message": {**message, "text": text}}


def _tg_tap(data: str) -> dict[str, Any]:
    n = next(_update_ids)
    message = {"message_id": 1, "from": _TG_USER, "chat": _TG_CHAT, "date": 1767600000}
    query = {"id": f"cq{n}", "from": _TG_USER, "message": {**message, "text": "x"}}
    return {"update_id": n, "callback_query": {**query, "chat_instance": "-1", "data": data}}


async def _tg_says(ch: Channels, update: dict[str, Any]) -> list[TgCall]:
    """Post one update; the sendMessage calls it caused, each checked against the Bot API."""
    before = len(ch.tg.calls("sendMessage"))
    headers = {"content-type": "application/json", SECRET_HEADER: TG_SECRET}
    body = json.dumps(update, ensure_ascii=False).encode()
    response = await ch.http.post("/webhooks/telegram", content=body, headers=headers)
    assert response.status_code == 200
    await eventually(lambda: len(ch.tg.calls("sendMessage")) > before)
    await eventually(ch.all_done)  # the whole answer, not only its first message
    if "callback_query" in update:
        await eventually(
            lambda: [
                c
                for c in ch.tg.calls("answerCallbackQuery")
                if c.params["callback_query_id"] == update["callback_query"]["id"]
            ]
        )
    calls = ch.tg.calls("sendMessage")[before:]
    for call in calls:
        assert call.params["chat_id"] == CHAT
        assert call_errors(SPEC, "sendMessage", call.params) == []
    return calls


def _keyboard(call: TgCall) -> list[dict[str, Any]]:
    rows = call.params.get("reply_markup", {}).get("inline_keyboard", [])
    return [button for row in rows for button in row]


def _callbacks(call: TgCall) -> list[str]:
    return [b["callback_data"] for b in _keyboard(call) if "callback_data" in b]


async def test_telegram_search_is_a_paged_list_with_an_inline_keyboard(
    channels: Channels,
) -> None:
    found, notice = await _tg_says(channels, _tg_text("資安"))
    # The list, then the note that civil-servant courses match too, with the verify button.
    assert "限公務人員的課程" in notice.params["text"]
    assert _callbacks(notice) == ["cmd:verify"]
    text = found.params["text"]
    assert text.startswith("找到")
    assert "\n\n1. " in text
    assert "\n\n5. " in text
    assert "\n\n6. " not in text
    first_page = _opened(_callbacks(found))
    assert len(first_page) == 5
    assert "cs-1" not in first_page
    labels = [b["text"] for b in _keyboard(found)]
    assert labels[:2] == ["1. 查看", "2. 查看"]
    assert "更多結果" in labels
    assert "course.more:5:資安" in _callbacks(found)
    assert "course.rec" in _callbacks(found)
    assert all(len(d.encode()) <= 64 for d in _callbacks(found))

    (page2,) = await _tg_says(channels, _tg_tap("course.more:5:資安"))
    second_page = _opened(_callbacks(page2))
    assert second_page
    assert not set(first_page) & set(second_page)

    (card,) = await _tg_says(channels, _tg_tap(f"course.open:{first_page[0]}"))
    buttons = {b["text"]: b for b in _keyboard(card)}
    assert buttons["前往臺北e大"]["url"] == "https://elearning.taipei/"
    assert buttons["收藏"]["callback_data"] == f"course.save:{first_page[0]}"
    assert buttons["類似課程"]["callback_data"] == f"course.sim:{first_page[0]}"
    assert "小時" in card.params["text"]


async def test_telegram_browse_and_civil_servant_notice(channels: Channels) -> None:
    (asked,) = await _tg_says(channels, _tg_text("/search"))
    assert {"course.browse:new", "course.browse:short", "course.cats"} <= set(_callbacks(asked))
    (short,) = await _tg_says(channels, _tg_tap("course.browse:short"))
    assert short.params["text"].startswith("一小時內的短課程")
    assert "course.browse:short|5" in _callbacks(short)
    told = await _tg_says(channels, _tg_text("公務機密"))
    assert "公務機密維護講習" not in " ".join(c.params["text"] for c in told)
    assert any("cmd:verify" in _callbacks(c) for c in told)


async def test_a_sentence_with_a_homophone_typo_is_echoed_as_understood_on_both(
    channels: Channels, shared_dir: Path | None
) -> None:
    """「我想找一門關於資案的課程」: filler dropped, 資案 heard as 資安, echoed as 資訊安全."""
    sentence = "我想找一門關於資案的課程"
    found = await _line_says(channels, text_event(sentence, user=LINE_USER), shared_dir)
    said = "\n".join(m.get("text") or m.get("altText") or "" for m in found)
    assert "您是不是要找「資訊安全」" in said
    assert "「資訊安全」有關的課程" in _carousel(found)["altText"]
    assert sentence not in said  # (the buttons' data keep the query as typed, for paging)
    assert _opened(_postbacks(_carousel(found)))
    calls = await _tg_says(channels, _tg_text(sentence))
    sent = "\n".join(c.params["text"] for c in calls)
    assert "您是不是要找「資訊安全」" in sent
    assert "「資訊安全」有關的課程" in sent
    assert sentence not in sent
    assert any(d.startswith("course.open:") for c in calls for d in _callbacks(c))


async def test_the_civil_servant_notice_is_shown_once_per_session_on_both(
    channels: Channels, shared_dir: Path | None
) -> None:
    first = await _line_says(channels, text_event("資安", user=LINE_USER), shared_dir)
    assert "另有" in json.dumps(first, ensure_ascii=False)
    again = await _line_says(channels, text_event("資安社交工程", user=LINE_USER), shared_dir)
    assert _carousel(again)  # the cards still come, without the notice
    assert "限公務人員的課程" not in json.dumps(again, ensure_ascii=False)

    _found, notice = await _tg_says(channels, _tg_text("資安"))
    assert "另有" in notice.params["text"]
    later = await _tg_says(channels, _tg_text("資安社交工程"))
    assert later[0].params["text"].startswith("找到")
    assert not any("限公務人員的課程" in c.params["text"] for c in later)
