"""Reply -> LINE message objects: the SDK's models and the platform's limits."""

from __future__ import annotations

import json
from pathlib import Path

from linebot.v3.messaging import PushMessageRequest

from bot.line.render import MAX_BUBBLES, batches, render
from bot.messages import AskPhone, Audio, Button, Card, Cards, Image, Text
from tests.openapi import line_schema_errors
from tests.render_check import line_actions, line_limit_errors


def _cards(n: int, *, body: str = "課程說明" * 20, more: bool = True) -> Cards:
    return Cards(
        alt_text="找到的課程",
        cards=[
            Card(
                title=f"資通安全教育訓練（第{i}講）" * 3,
                subtitle="資訊安全・2 小時",
                body=body,
                buttons=[
                    Button(label="看課程內容並加入我的收藏清單", action=f"course.open:{i}"),
                    Button(label="前往課程", url=f"https://elearning.taipei/c/{i}"),
                ],
            )
            for i in range(n)
        ],
        more=Button(label="更多結果", action="course.more:資安:12") if more else None,
        quick_replies=[Button(label=f"選項{i}", action=f"x:{i}") for i in range(20)],
    )


def _check(messages: list, shared_dir: Path | None) -> list[dict]:  # type: ignore[type-arg]
    bodies = []
    for chunk in batches(messages):
        request = PushMessageRequest(to="U" + "0" * 32, messages=chunk)
        body = request.to_dict()
        PushMessageRequest.from_dict(body)
        if shared_dir is not None:
            assert line_schema_errors(shared_dir, "PushMessageRequest", body) == []
        bodies.append(body)
    return bodies


def test_carousel_never_exceeds_line_limits_and_loses_no_card(shared_dir: Path | None) -> None:
    for n in (1, 11, 12, 13, 40, 200):
        messages = render([_cards(n)])
        bodies = _check(messages, shared_dir)
        sent = [m for body in bodies for m in body["messages"]]
        carousels = [m for m in sent if m["type"] == "flex" and m["contents"]["type"] == "carousel"]
        for flex in carousels:
            assert len(flex["contents"]["contents"]) <= MAX_BUBBLES
            assert len(json.dumps(flex["contents"], ensure_ascii=False).encode()) <= 50_000
        actions = line_actions(sent)
        # Every card, the "more" button and all 20 quick replies are still there.
        assert {f"course.open:{i}" for i in range(n)} <= actions
        assert {f"x:{i}" for i in range(20)} <= actions
        assert line_limit_errors(sent) == []
        assert len(sent[-1]["quickReply"]["items"]) == 13
        # The "more" bubble ends the last carousel of cards.
        (paged,) = [c for c in carousels if "course.more:資安:12" in line_actions([c])]
        last = paged["contents"]["contents"][-1]
        assert last["body"]["contents"][0]["action"]["data"] == "course.more:資安:12"


def test_a_card_with_more_than_four_buttons_continues_in_the_next_bubble() -> None:
    buttons = [Button(label=f"動作{i}", action=f"a:{i}") for i in range(7)]
    (flex,) = [m.to_dict() for m in render([Text(text="設定", buttons=buttons)])]
    bubbles = flex["contents"]["contents"]
    assert [len(b.get("footer", b.get("body", {})).get("contents", [])) for b in bubbles] == [4, 3]
    assert line_actions([flex]) == {f"a:{i}" for i in range(7)}
    assert line_limit_errors([flex]) == []


def test_quick_replies_of_every_reply_gather_under_the_last_message() -> None:
    replies = [
        Text(text="一", quick_replies=[Button(label="甲", action="q:1")]),
        Text(text="二", quick_replies=[Button(label="乙", action="q:2")]),
    ]
    messages = [m.to_dict() for m in render(replies)]
    assert "quickReply" not in messages[0]
    items = messages[-1]["quickReply"]["items"]
    assert [i["action"]["data"] for i in items] == ["q:1", "q:2"]


def test_huge_card_bodies_are_trimmed_to_fit_the_carousel_size(shared_dir: Path | None) -> None:
    messages = render([_cards(12, body="長" * 5000, more=False)])
    (body,) = _check(messages, shared_dir)
    size = len(json.dumps(body["messages"][0]["contents"], ensure_ascii=False).encode())
    assert size <= 50_000


def test_more_than_five_messages_are_split_into_calls(shared_dir: Path | None) -> None:
    replies = [Text(text=f"第 {i} 則") for i in range(7)]
    chunks = batches(render(replies))
    assert [len(c) for c in chunks] == [5, 2]
    _check(render(replies), shared_dir)


def test_every_reply_kind_renders_to_valid_messages(shared_dir: Path | None) -> None:
    replies = [
        Text(text="請選擇", buttons=[Button(label="中文", action="lang:zh-TW")]),
        Audio(
            url="https://example.org/a.m4a",
            duration_ms=61_000,
            title="第一集",
            buttons=[Button(label="下一集", action="pod.next:1")],
        ),
        Image(url="https://example.org/a.png"),
        AskPhone(
            text="請輸入手機號碼",
            share_label="分享手機",
            cancel=Button(label="取消", action="cmd:menu"),
        ),
    ]
    messages = render(replies)
    bodies = _check(messages, shared_dir)
    types = [m["type"] for b in bodies for m in b["messages"]]
    assert types == ["flex", "audio", "flex", "image", "text"]
    audio = bodies[0]["messages"][1]
    assert audio["duration"] == 61_000
    # The quick reply of the last reply rides on the last message.
    assert bodies[-1]["messages"][-1]["quickReply"]["items"][0]["action"]["label"] == "取消"


def test_long_text_is_clipped_to_line_maximum() -> None:
    (message,) = render([Text(text="字" * 6000)])
    assert len(message.to_dict()["text"]) == 5000
