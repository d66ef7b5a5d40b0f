"""Reply -> Bot API calls, without any I/O, so that tests can check every call against the spec.

Each Reply becomes one or more `TgCall`s: the PTB `Bot` method to call and its keyword
arguments (without `chat_id`). Buttons become inline keyboards whose `callback_data` is the
compact action id; Cards become one numbered message with a paged keyboard (or one message
per card); AskPhone becomes a one-time reply keyboard with a `request_contact` button.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    TelegramObject,
)

from bot.messages import (
    AskPhone,
    Audio,
    Button,
    Card,
    Cards,
    Image,
    Progress,
    Reply,
    Text,
    progress_text,
)
from bot.qr import qr_png

MAX_TEXT = 4096  # sendMessage text, in UTF-16 code units after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_BYTES = 64
# Telegram refuses larger inline keyboards ("reply markup is too long"); not in the spec.
MAX_INLINE_BUTTONS = 100
# A row holds at most this many buttons and this much label width (CJK counts double), so
# that labels stay readable on a phone.
ROW_BUTTONS = 3
ROW_WIDTH = 30
CARD_BODY_CHARS = (240, 120, 60, 0)  # tried in turn until the list fits one message
EMPTY_TEXT = "⋯"  # Telegram refuses empty messages
# Telegram fetches a file given by URL only up to 20 MB; bots may upload up to 50 MB.
MAX_URL_FILE_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

Method = Literal["send_message", "send_audio", "send_photo"]
CardsMode = Literal["list", "each"]


@dataclass(frozen=True)
class TgCall:
    """One Bot API call: a PTB `Bot` method and its keyword arguments, minus `chat_id`."""

    method: Method
    params: dict[str, Any]
    media_key: str | None = None  # Audio: remember the returned file_id under this key
    url_fallback: str | None = None  # Audio sent by cached file_id: the URL if that id is stale
    # Audio over 20 MB: the channel uploads the file behind `params["audio"]` (a /media URL)
    # instead of letting Telegram fetch it, and sends `link_fallback` if it cannot.
    upload: bool = False
    link_fallback: TgCall | None = None

    @property
    def api_method(self) -> str:
        """The Bot API method name: send_message -> sendMessage."""
        head, *rest = self.method.split("_")
        return head + "".join(part.title() for part in rest)

    def api_params(self) -> dict[str, Any]:
        """The parameters the way the Bot API receives them (an upload stays an InputFile:
        it goes as a multipart part)."""
        return {
            key: value.to_dict() if isinstance(value, TelegramObject) else value
            for key, value in self.params.items()
        }

    def json_params(self) -> dict[str, Any]:
        """The parameters as JSON (an uploaded file, such as a prize's QR image, as its name
        and size), for the simulator's view and previews."""
        return {key: _as_json(value) for key, value in self.params.items()}


def _as_json(value: Any) -> Any:
    if isinstance(value, TelegramObject):
        return value.to_dict()
    if isinstance(value, InputFile):
        content = value.input_file_content
        size = len(content) if isinstance(content, bytes) else None
        return {"upload": value.filename or "file", "bytes": size}
    return value


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split text into messages of at most `limit`, at a line break or space where possible."""
    text = text.strip() or EMPTY_TEXT
    chunks: list[str] = []
    while utf16_len(text) > limit:
        # The longest prefix that fits (binary search); slicing str never halves a surrogate pair.
        lo, hi = 0, min(len(text), limit)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if utf16_len(text[:mid]) <= limit else (lo, mid - 1)
        cut = lo
        head = text[:cut]
        for sep in ("\n\n", "\n", " ", "，", "。"):
            pos = head.rfind(sep)
            if pos > limit // 2:
                cut = pos + len(sep)
                break
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    chunks.append(text or EMPTY_TEXT)
    return chunks


def _width(label: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in label)


def _inline_button(button: Button, prefix: str = "") -> InlineKeyboardButton:
    label = f"{prefix}{button.label}"
    if button.url is not None:
        return InlineKeyboardButton(text=label, url=button.url)
    assert button.action is not None
    if len(button.action.encode("utf-8")) > MAX_CALLBACK_BYTES:  # Button checks too; be sure
        raise ValueError(f"callback_data over {MAX_CALLBACK_BYTES} bytes: {button.action!r}")
    return InlineKeyboardButton(text=label, callback_data=button.action)


def pack_rows(buttons: Sequence[InlineKeyboardButton]) -> list[list[InlineKeyboardButton]]:
    """Short labels share a row; long ones get a row of their own."""
    rows: list[list[InlineKeyboardButton]] = []
    row: list[InlineKeyboardButton] = []
    width = 0
    for button in buttons:
        w = _width(button.text)
        if row and (len(row) >= ROW_BUTTONS or width + w > ROW_WIDTH):
            rows.append(row)
            row, width = [], 0
        row.append(button)
        width += w
    if row:
        rows.append(row)
    return rows


def inline_markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup | None:
    """An inline keyboard of these rows, cut to Telegram's cap; None when there is no button."""
    kept: list[list[InlineKeyboardButton]] = []
    count = 0
    for row in rows:
        if not row:
            continue
        # Keep whole rows while under the cap; the first rows carry the main actions.
        if count + len(row) > MAX_INLINE_BUTTONS:
            break
        kept.append(row)
        count += len(row)
    return InlineKeyboardMarkup(kept) if kept else None


def _rows(buttons: Iterable[Button], prefix: str = "") -> list[list[InlineKeyboardButton]]:
    return pack_rows([_inline_button(b, prefix) for b in buttons])


def _text_calls(text: str, markup: Any | None) -> list[TgCall]:
    """Messages for a text; the keyboard goes on the last one, next to the end of the text."""
    chunks = split_text(text)
    calls = [TgCall("send_message", {"text": chunk}) for chunk in chunks[:-1]]
    last: dict[str, Any] = {"text": chunks[-1]}
    if markup is not None:
        last["reply_markup"] = markup
    calls.append(TgCall("send_message", last))
    return calls


def _render_text(reply: Text) -> list[TgCall]:
    markup = inline_markup(_rows(reply.buttons) + _rows(reply.quick_replies))
    return _text_calls(reply.text, markup)


def _card_text(number: int | None, card: Card, body_chars: int) -> str:
    head = f"{number}. {card.title}" if number is not None else card.title
    lines = [head]
    if card.subtitle:
        lines.append(card.subtitle)
    body = card.body.strip()
    if body and body_chars:
        lines.append(body if len(body) <= body_chars else body[: body_chars - 1].rstrip() + "…")
    return "\n".join(lines)


def _render_cards_list(reply: Cards) -> list[TgCall]:
    """One message: a numbered list; each card's buttons on its own rows, then 'more'."""
    numbered = len(reply.cards) > 1
    rows: list[list[InlineKeyboardButton]] = []
    for n, card in enumerate(reply.cards, start=1):
        prefix = f"{n}. " if numbered and card.buttons else ""
        rows.extend(_rows(card.buttons, prefix))
    if reply.more is not None:
        rows.append([_inline_button(reply.more)])
    markup = inline_markup(rows + _rows(reply.quick_replies))
    text = ""
    for body_chars in CARD_BODY_CHARS:
        parts = [reply.alt_text.strip()] if reply.alt_text.strip() else []
        parts += [
            _card_text(n if numbered else None, card, body_chars)
            for n, card in enumerate(reply.cards, start=1)
        ]
        text = "\n\n".join(parts)
        if utf16_len(text) <= MAX_TEXT:
            break
    return _text_calls(text, markup)


def _render_cards_each(reply: Cards) -> list[TgCall]:
    """One message per card (a photo when it has an image); 'more' goes on the last one."""
    calls: list[TgCall] = []
    for i, card in enumerate(reply.cards):
        last = i == len(reply.cards) - 1
        rows = _rows(card.buttons)
        if last and reply.more is not None:
            rows.append([_inline_button(reply.more)])
        if last:
            rows += _rows(reply.quick_replies)
        markup = inline_markup(rows)
        text = _card_text(None, card, CARD_BODY_CHARS[0])
        if card.image_url:
            params: dict[str, Any] = {
                "photo": card.image_url,
                "caption": split_text(text, MAX_CAPTION)[0],
            }
            if markup is not None:
                params["reply_markup"] = markup
            calls.append(TgCall("send_photo", params))
        else:
            calls.extend(_text_calls(text, markup))
    if not reply.cards:
        calls.extend(_text_calls(reply.alt_text, inline_markup(_rows(reply.quick_replies))))
    return calls


def _audio_link(reply: Audio, markup: Any | None) -> TgCall:
    """A message with the audio's link, for a file Telegram can neither fetch nor take."""
    text = f"{reply.title}\n{reply.url}" if reply.title else reply.url
    return _text_calls(text, markup)[0]


def _render_audio(reply: Audio, file_ids: Mapping[str, str]) -> list[TgCall]:
    cached = file_ids.get(reply.media_key) if reply.media_key else None
    size = reply.file_size or 0
    markup = inline_markup(_rows(reply.buttons))
    if cached is None and size > MAX_UPLOAD_BYTES:
        return [_audio_link(reply, markup)]
    params: dict[str, Any] = {
        "audio": cached or reply.url,
        # Bot API wants whole seconds; round up so a 0.4 s clip does not show 0:00.
        "duration": max(1, math.ceil(reply.duration_ms / 1000)),
    }
    if reply.title:
        params["title"] = reply.title
    if reply.performer:
        params["performer"] = reply.performer
    if markup is not None:
        params["reply_markup"] = markup
    big = size > MAX_URL_FILE_BYTES
    return [
        TgCall(
            "send_audio",
            params,
            media_key=reply.media_key,
            url_fallback=reply.url if cached else None,
            upload=big,
            link_fallback=_audio_link(reply, markup) if big else None,
        )
    ]


def _render_image(reply: Image) -> list[TgCall]:
    params: dict[str, Any] = {"photo": reply.url}
    if reply.qr:
        # The picture itself (a QR code), drawn here: uploaded, so Telegram needs no route
        # to our server.
        params["photo"] = InputFile(qr_png(reply.qr), filename="qr.png")
    if reply.alt_text:
        params["caption"] = split_text(reply.alt_text, MAX_CAPTION)[0]
    return [TgCall("send_photo", params)]


def _render_ask_phone(reply: AskPhone) -> list[TgCall]:
    rows = [[KeyboardButton(reply.share_label, request_contact=True)]]
    if reply.cancel is not None:
        # A reply-keyboard button sends its label as text; the router knows 取消 / cancel.
        rows.append([KeyboardButton(reply.cancel.label)])
    markup = ReplyKeyboardMarkup(rows, one_time_keyboard=True, resize_keyboard=True)
    return _text_calls(reply.text, markup)


def _render_progress(reply: Progress) -> list[TgCall]:
    """Compact text bars (▓▓▓░░░) and the buttons as an inline keyboard."""
    markup = inline_markup(_rows(reply.buttons) + _rows(reply.quick_replies))
    return _text_calls(progress_text(reply), markup)


def render_reply(
    reply: Reply, *, cards_mode: CardsMode = "list", file_ids: Mapping[str, str] | None = None
) -> list[TgCall]:
    """The Bot API calls that show one Reply."""
    if isinstance(reply, Text):
        return _render_text(reply)
    if isinstance(reply, Cards):
        return _render_cards_each(reply) if cards_mode == "each" else _render_cards_list(reply)
    if isinstance(reply, Audio):
        return _render_audio(reply, file_ids or {})
    if isinstance(reply, Image):
        return _render_image(reply)
    if isinstance(reply, AskPhone):
        return _render_ask_phone(reply)
    if isinstance(reply, Progress):
        return _render_progress(reply)
    raise TypeError(f"no Telegram rendering for {type(reply).__name__}")


def render(
    replies: Sequence[Reply],
    *,
    cards_mode: CardsMode = "list",
    file_ids: Mapping[str, str] | None = None,
    remove_keyboard: bool = False,
) -> list[TgCall]:
    """The Bot API calls for a list of replies, in order.

    `remove_keyboard` takes away a reply keyboard left open by an earlier AskPhone: it rides on
    the first plain message (a message carries one markup, and inline buttons win).
    """
    calls = [
        call
        for reply in replies
        for call in render_reply(reply, cards_mode=cards_mode, file_ids=file_ids)
    ]
    if remove_keyboard and not any(isinstance(r, AskPhone) for r in replies):
        for i, call in enumerate(calls):
            if call.method == "send_message" and "reply_markup" not in call.params:
                calls[i] = TgCall(
                    call.method, {**call.params, "reply_markup": ReplyKeyboardRemove()}
                )
                break
    return calls


def removes_keyboard(calls: Sequence[TgCall]) -> bool:
    return any(isinstance(c.params.get("reply_markup"), ReplyKeyboardRemove) for c in calls)


def opens_keyboard(calls: Sequence[TgCall]) -> bool:
    return any(isinstance(c.params.get("reply_markup"), ReplyKeyboardMarkup) for c in calls)
