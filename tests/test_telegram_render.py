"""Reply in, Bot API calls out: every call is checked against the Bot API spec and its limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bot.messages import AskPhone, Audio, Button, Card, Cards, Image, Reply, Text
from bot.telegram.render import (
    MAX_CALLBACK_BYTES,
    MAX_INLINE_BUTTONS,
    MAX_TEXT,
    TgCall,
    render,
    render_reply,
    split_text,
    utf16_len,
)
from tests.telegram_spec import call_errors, load_spec

SPEC = load_spec()


def checked(calls: list[TgCall]) -> list[dict[str, Any]]:
    """The calls' JSON parameters, after asserting that Telegram would accept each of them."""
    out = []
    for call in calls:
        params = {"chat_id": 5512345678, **call.api_params()}
        assert call_errors(SPEC, call.api_method, params) == []
        text = params.get("text")
        if text is not None:
            assert 1 <= utf16_len(text) <= MAX_TEXT
        if "caption" in params:
            assert utf16_len(params["caption"]) <= 1024
        for row in params.get("reply_markup", {}).get("inline_keyboard", []):
            for button in row:
                if "callback_data" in button:
                    assert 1 <= len(button["callback_data"].encode()) <= MAX_CALLBACK_BYTES
        out.append(params)
    return out


def keyboard(params: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Inline keyboard as rows of (label, callback_data or url)."""
    return [
        [(b["text"], b.get("callback_data") or b.get("url")) for b in row]
        for row in params["reply_markup"]["inline_keyboard"]
    ]


def test_text_with_buttons_is_one_message_with_an_inline_keyboard() -> None:
    reply = Text(
        text="找到 2 門課程",
        buttons=[
            Button(label="報名", action="course.enroll:CIV101"),
            Button(label="課程網頁", url="https://elearning.taipei/course/CIV101"),
        ],
    )
    [params] = checked(render_reply(reply))
    assert params["text"] == "找到 2 門課程"
    assert keyboard(params) == [
        [("報名", "course.enroll:CIV101"), ("課程網頁", "https://elearning.taipei/course/CIV101")]
    ]


def test_quick_replies_become_inline_rows_after_the_buttons() -> None:
    reply = Text(
        text="還需要什麼？",
        buttons=[Button(label="收聽第 3 集", action="pod.play:7")],
        quick_replies=[Button(label=w, action=f"menu.{w}") for w in ("a", "b", "c", "d")],
    )
    [params] = checked(render_reply(reply))
    rows = keyboard(params)
    assert rows[0] == [("收聽第 3 集", "pod.play:7")]
    assert rows[1:] == [
        [("a", "menu.a"), ("b", "menu.b"), ("c", "menu.c")],
        [("d", "menu.d")],
    ]


def test_long_labels_get_a_row_of_their_own() -> None:
    long = "數位公民素養與資訊安全入門課程"  # 15 CJK characters: 30 columns
    reply = Text(text="x", buttons=[Button(label=long, action="a"), Button(label="b", action="b")])
    [params] = checked(render_reply(reply))
    assert keyboard(params) == [[(long, "a")], [("b", "b")]]


def test_callback_data_is_limited_to_64_bytes_not_characters() -> None:
    # A Chinese character is 3 bytes in UTF-8: 21 fit, 22 do not.
    Button(label="ok", action="字" * 21)
    with pytest.raises(ValidationError, match="64 bytes"):
        Button(label="too long", action="字" * 22)
    assert len(b"course.open:CIV101") < MAX_CALLBACK_BYTES


def test_long_text_is_split_at_line_breaks_and_the_keyboard_goes_last() -> None:
    paragraph = "臺北e大提供超過兩千門線上課程，歡迎市民與公務人員一起學習。\n"
    text = paragraph * 300  # 9,300 characters: three messages
    reply = Text(text=text, buttons=[Button(label="更多", action="more:2")])
    calls = checked(render_reply(reply))
    assert len(calls) == 3
    assert all("reply_markup" not in c for c in calls[:-1])
    assert keyboard(calls[-1]) == [[("更多", "more:2")]]
    # Nothing lost, and every cut is at a line break.
    assert "\n".join(c["text"] for c in calls) == text.strip()
    assert all(c["text"].endswith("。") for c in calls)


def test_text_length_counts_utf16_units_like_telegram() -> None:
    emoji = "🎧" * 3000  # 6,000 UTF-16 code units, 3,000 Python characters
    chunks = split_text(emoji)
    assert [utf16_len(c) for c in chunks] == [4096, 6000 - 4096]
    assert "".join(chunks) == emoji  # no surrogate pair cut in half


def test_empty_text_is_never_sent_empty() -> None:
    [params] = checked(render_reply(Text(text="  ", buttons=[Button(label="選單", action="m")])))
    assert params["text"].strip()


def _cards(n: int, *, body: str = "三小時的入門課程", more: bool = True) -> Cards:
    return Cards(
        alt_text=f"找到 {n} 門課程",
        cards=[
            Card(
                title=f"課程 {i}",
                subtitle="公務人員限定" if i % 2 else "",
                body=body,
                buttons=[Button(label="報名", action=f"course.enroll:C{i:03d}")],
            )
            for i in range(1, n + 1)
        ],
        more=Button(label="下一頁 ▶", action="search.page:2") if more else None,
        quick_replies=[Button(label="選單", action="menu")],
    )


def test_cards_become_one_numbered_message_with_a_paged_keyboard() -> None:
    [params] = checked(render_reply(_cards(3)))
    assert params["text"].startswith("找到 3 門課程\n\n1. 課程 1\n公務人員限定\n三小時的入門課程")
    assert "\n\n3. 課程 3\n" in params["text"]
    assert keyboard(params) == [
        [("1. 報名", "course.enroll:C001")],
        [("2. 報名", "course.enroll:C002")],
        [("3. 報名", "course.enroll:C003")],
        [("下一頁 ▶", "search.page:2")],
        [("選單", "menu")],
    ]


def test_many_long_cards_still_fit_one_message() -> None:
    [params] = checked(render_reply(_cards(12, body="很長的課程介紹。" * 300)))
    assert utf16_len(params["text"]) <= MAX_TEXT
    assert all(f"{i}. 課程 {i}" in params["text"] for i in range(1, 13))
    assert keyboard(params)[-2] == [("下一頁 ▶", "search.page:2")]


def test_cards_one_message_each_uses_photos_and_puts_more_on_the_last() -> None:
    reply = _cards(2)
    reply.cards[0].image_url = "https://media.example/c1.jpg"
    calls = render_reply(reply, cards_mode="each")
    assert [c.method for c in calls] == ["send_photo", "send_message"]
    first, second = checked(calls)
    assert first["photo"] == "https://media.example/c1.jpg"
    assert first["caption"].startswith("課程 1")
    assert keyboard(first) == [[("報名", "course.enroll:C001")]]
    assert keyboard(second)[-2:] == [[("下一頁 ▶", "search.page:2")], [("選單", "menu")]]


def test_inline_keyboards_are_capped_at_whole_rows() -> None:
    reply = Text(
        text="x",
        buttons=[Button(label=f"{i}", action=f"a:{i}") for i in range(MAX_INLINE_BUTTONS + 5)],
    )
    [params] = checked(render_reply(reply))
    count = sum(len(row) for row in params["reply_markup"]["inline_keyboard"])
    assert count <= MAX_INLINE_BUTTONS
    assert params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a:0"


def test_audio_is_sent_by_url_then_by_remembered_file_id() -> None:
    reply = Audio(
        url="https://media.example/ep3.mp3",
        duration_ms=61_200,
        title="第 3 集",
        performer="臺北e大",
        media_key="ep:3",
        buttons=[Button(label="下一集", action="pod.play:4")],
    )
    [call] = render_reply(reply)
    [params] = checked([call])
    assert call.method == "send_audio"
    assert call.media_key == "ep:3"
    assert params["audio"] == "https://media.example/ep3.mp3"
    assert params["duration"] == 62  # seconds, rounded up
    assert (params["title"], params["performer"]) == ("第 3 集", "臺北e大")
    assert keyboard(params) == [[("下一集", "pod.play:4")]]

    [again] = render_reply(reply, file_ids={"ep:3": "CQACAgUAAxkDAAI-known"})
    assert again.params["audio"] == "CQACAgUAAxkDAAI-known"
    assert again.url_fallback == "https://media.example/ep3.mp3"


def test_image_is_a_photo() -> None:
    [call] = render_reply(Image(url="https://media.example/poster.png", alt_text="poster"))
    assert call.method == "send_photo"
    assert checked([call])[0]["photo"] == "https://media.example/poster.png"


def test_ask_phone_is_a_one_time_contact_keyboard() -> None:
    reply = AskPhone(
        text="請分享您的手機號碼",
        share_label="📱 分享手機",
        cancel=Button(label="取消", action="x"),
    )
    [params] = checked(render_reply(reply))
    markup = params["reply_markup"]
    assert markup["keyboard"] == [
        [{"text": "📱 分享手機", "request_contact": True}],
        [{"text": "取消"}],
    ]
    assert markup["one_time_keyboard"] is True
    assert markup["resize_keyboard"] is True


def test_remove_keyboard_rides_on_the_first_plain_message() -> None:
    replies: list[Reply] = [
        Text(text="驗證碼已寄出", buttons=[Button(label="重寄", action="verify.resend")]),
        Text(text="請輸入 6 位數驗證碼"),
    ]
    first, second = checked(render(replies, remove_keyboard=True))
    assert "inline_keyboard" in first["reply_markup"]
    assert second["reply_markup"] == {"remove_keyboard": True}
    # Not while asking for the phone again.
    calls = render([AskPhone(text="再試一次", share_label="分享"), *replies], remove_keyboard=True)
    assert all(
        c.params.get("reply_markup") is None or "remove" not in str(c.api_params()) for c in calls
    )


REPLIES: list[Reply] = [
    Text(text="hi"),
    Text(text="x" * 5000, quick_replies=[Button(label="ok", action="ok")]),
    _cards(1, more=False),
    _cards(5),
    Cards(alt_text="empty", cards=[]),
    Audio(url="https://m.example/a.mp3", duration_ms=1),
    Image(url="https://m.example/i.jpg"),
    AskPhone(text="phone?", share_label="share"),
]


@pytest.mark.parametrize("mode", ["list", "each"])
def test_every_reply_kind_renders_to_calls_the_spec_accepts(mode: str) -> None:
    calls = render(REPLIES, cards_mode=mode)  # type: ignore[arg-type]
    assert len(checked(calls)) >= len(REPLIES)
