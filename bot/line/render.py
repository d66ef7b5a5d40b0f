"""LINE rendering: Replies as LINE messages.

Rendering uses the SDK's own models, so an object LINE would refuse fails here first; the
platform limits that the OpenAPI spec does not carry (12 bubbles, 50 KB carousels, 13 quick
replies, 5 messages a call, 20-character labels) are enforced in code.
"""

from __future__ import annotations

import json
from typing import Any

from linebot.v3.messaging import (
    AudioMessage,
    FlexBox,
    FlexBubble,
    FlexButton,
    FlexCarousel,
    FlexMessage,
    FlexText,
    ImageMessage,
    Message,
    PostbackAction,
    QuickReply,
    QuickReplyItem,
    TextMessage,
    URIAction,
)

from bot.messages import (
    AskPhone,
    Audio,
    Bar,
    Button,
    Card,
    Cards,
    Image,
    Progress,
    Reply,
    Text,
    progress_text,
)

MAX_MESSAGES = 5
MAX_BUBBLES = 12
MAX_QUICK_REPLIES = 13
MAX_CARD_BUTTONS = 4
MAX_LABEL = 20
MAX_TEXT = 5000
MAX_ALT_TEXT = 1500
MAX_CAROUSEL_BYTES = 50_000
MAX_BUBBLE_BYTES = 30_000


def label(text: str) -> str:
    """A button label as LINE shows it: at most 20 characters (longer ones are cut)."""
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _action(button: Button) -> PostbackAction | URIAction:
    if button.url is not None:
        return URIAction(label=label(button.label), uri=button.url)
    return PostbackAction(
        label=label(button.label), data=button.action, displayText=_clip(button.label, 300)
    )


def _quick_reply(buttons: list[Button]) -> QuickReply | None:
    if not buttons:
        return None
    return QuickReply(items=[QuickReplyItem(action=_action(b)) for b in buttons])


def _chunks(buttons: list[Button], size: int = MAX_CARD_BUTTONS) -> list[list[Button]]:
    return [buttons[i : i + size] for i in range(0, len(buttons), size)]


def _footer(buttons: list[Button]) -> FlexBox | None:
    if not buttons:
        return None
    if len(buttons) > MAX_CARD_BUTTONS:  # callers split first; a card never hides a button
        raise ValueError(f"more than {MAX_CARD_BUTTONS} buttons on one LINE card")
    return FlexBox(
        layout="vertical",
        spacing="sm",
        contents=[
            FlexButton(action=_action(b), style="primary" if i == 0 else "secondary", height="sm")
            for i, b in enumerate(buttons)
        ],
    )


def _buttons_bubble(buttons: list[Button]) -> FlexBubble:
    """A bubble holding only buttons: the continuation of a card that has more than 4."""
    return FlexBubble(size="kilo", body=_footer(buttons))


def _text_bubbles(text: str, buttons: list[Button]) -> list[FlexBubble]:
    """A text and its buttons: the text with the first 4, then bubbles of 4 more each."""
    chunks = _chunks(buttons) or [[]]
    first = FlexBubble(
        body=FlexBox(layout="vertical", contents=[FlexText(text=_clip(text, 2000), wrap=True)]),
        footer=_footer(chunks[0]),
    )
    return [first, *(_buttons_bubble(c) for c in chunks[1:])]


def _card_bubbles(card: Card) -> list[FlexBubble]:
    contents: list[Any] = [
        FlexText(text=_clip(card.title, 200), weight="bold", size="md", wrap=True, maxLines=3)
    ]
    if card.subtitle:
        contents.append(
            FlexText(
                text=_clip(card.subtitle, 200), size="xs", color="#888888", wrap=True, maxLines=2
            )
        )
    if card.body:
        contents.append(FlexText(text=_clip(card.body, 500), size="sm", wrap=True, maxLines=6))
    chunks = _chunks(card.buttons) or [[]]
    first = FlexBubble(
        size="kilo",
        body=FlexBox(layout="vertical", spacing="sm", contents=contents),
        footer=_footer(chunks[0]),
    )
    return [first, *(_buttons_bubble(c) for c in chunks[1:])]


BAR_COLOR = "#06C755"
BAR_DONE_COLOR = "#0B66C3"
BAR_TRACK = "#E6E6E6"


def _bar_box(bar: Bar) -> FlexBox:
    """A requirement as Flex boxes: its name and numbers, a track with the done part filled."""
    percent = round(bar.share * 100)
    rows: list[Any] = [
        FlexBox(
            layout="horizontal",
            contents=[
                FlexText(text=_clip(bar.label, 100), size="sm", wrap=True, flex=3),
                FlexText(text=bar.value or " ", size="sm", align="end", flex=2, color="#555555"),
            ],
        )
    ]
    if bar.needed > 0:
        fill: list[Any] = []
        if percent > 0:
            fill.append(
                FlexBox(
                    layout="vertical",
                    contents=[],
                    width=f"{percent}%",
                    height="8px",
                    backgroundColor=BAR_DONE_COLOR if percent >= 100 else BAR_COLOR,
                    cornerRadius="4px",
                )
            )
        rows.append(
            FlexBox(
                layout="vertical",
                contents=fill,
                height="8px",
                backgroundColor=BAR_TRACK,
                cornerRadius="4px",
                margin="sm",
            )
        )
    if bar.note:
        rows.append(FlexText(text=_clip(bar.note, 200), size="xs", color="#888888", wrap=True))
    return FlexBox(layout="vertical", spacing="xs", margin="lg", contents=rows)


def _progress_bubbles(reply: Progress) -> list[FlexBubble]:
    contents: list[Any] = [
        FlexText(text=_clip(reply.title, 200), weight="bold", size="lg", wrap=True)
    ]
    if reply.summary:
        contents.append(FlexText(text=_clip(reply.summary, 500), size="sm", wrap=True))
    contents.extend(_bar_box(bar) for bar in reply.bars)
    if reply.footer:
        contents.append(
            FlexText(
                text=_clip(reply.footer, 500), size="xxs", color="#888888", wrap=True, margin="lg"
            )
        )
    chunks = _chunks(reply.buttons) or [[]]
    first = FlexBubble(
        body=FlexBox(layout="vertical", spacing="sm", contents=contents),
        footer=_footer(chunks[0]),
    )
    return [first, *(_buttons_bubble(c) for c in chunks[1:])]


def _more_bubble(more: Button) -> FlexBubble:
    return FlexBubble(
        size="kilo",
        body=FlexBox(
            layout="vertical",
            justifyContent="center",
            contents=[FlexButton(action=_action(more), style="link")],
        ),
    )


def _size(obj: Any) -> int:
    return len(json.dumps(obj.to_dict(), ensure_ascii=False).encode("utf-8"))


def _carousels(bubbles: list[FlexBubble]) -> list[FlexCarousel]:
    """Bubbles packed in order into carousels of at most 12 bubbles and 50 KB, so that a
    long list becomes several carousels rather than losing its tail."""
    carousels: list[FlexCarousel] = []
    current: list[FlexBubble] = []
    size = 0
    for bubble in bubbles:
        bubble_size = _size(bubble)
        if current and (
            len(current) >= MAX_BUBBLES or size + bubble_size + 64 > MAX_CAROUSEL_BYTES
        ):
            carousels.append(FlexCarousel(contents=current))
            current, size = [], 0
        current.append(bubble)
        size += bubble_size
    if current:
        carousels.append(FlexCarousel(contents=current))
    return carousels


def _flex(alt_text: str, bubbles: list[FlexBubble]) -> list[Message]:
    """One bubble as itself; several as carousels (one message each)."""
    alt = _clip(alt_text, MAX_ALT_TEXT)
    if len(bubbles) == 1:
        return [FlexMessage(altText=alt, contents=bubbles[0])]
    return [FlexMessage(altText=alt, contents=c) for c in _carousels(bubbles)]


def _key(button: Button) -> str | None:
    return button.action if button.action is not None else button.url


def _merge(groups: list[list[Button]]) -> list[Button]:
    """Quick replies of several replies in one list (LINE shows them under the last message
    only), without repeating an action."""
    seen: set[str | None] = set()
    merged: list[Button] = []
    for group in groups:
        for button in group:
            if _key(button) not in seen:
                seen.add(_key(button))
                merged.append(button)
    return merged


def render(replies: list[Reply]) -> list[Message]:
    """Replies as LINE message objects. No action is dropped: a card shows at most 4
    buttons and continues in the next bubble; a long list continues in the next carousel;
    quick replies (LINE shows them under the last message only) are gathered there, and
    those beyond 13 follow as one more card of buttons."""
    messages: list[Message] = []
    quick: list[list[Button]] = []
    for reply in replies:
        if isinstance(reply, Text):
            text = _clip(reply.text, MAX_TEXT)
            if reply.buttons:
                messages.extend(_flex(reply.text, _text_bubbles(text, reply.buttons)))
            else:
                messages.append(TextMessage(text=text))
            quick.append(reply.quick_replies)
        elif isinstance(reply, Cards):
            bubbles = [b for card in reply.cards for b in _card_bubbles(card)]
            if reply.more:
                bubbles.append(_more_bubble(reply.more))
            if not bubbles:
                if reply.quick_replies:
                    messages.append(TextMessage(text=_clip(reply.alt_text or "⋯", MAX_TEXT)))
                    quick.append(reply.quick_replies)
                continue
            alt = reply.alt_text or (reply.cards[0].title if reply.cards else "⋯")
            messages.extend(
                FlexMessage(altText=_clip(alt, MAX_ALT_TEXT), contents=c)
                for c in _carousels(bubbles)
            )
            quick.append(reply.quick_replies)
        elif isinstance(reply, Audio):
            messages.append(AudioMessage(originalContentUrl=reply.url, duration=reply.duration_ms))
            if reply.title or reply.buttons:
                messages.extend(
                    _flex(reply.title or "audio", _text_bubbles(reply.title or "🎧", reply.buttons))
                )
        elif isinstance(reply, Image):
            messages.append(
                ImageMessage(
                    originalContentUrl=reply.url, previewImageUrl=reply.preview_url or reply.url
                )
            )
        elif isinstance(reply, Progress):
            messages.extend(_flex(progress_text(reply), _progress_bubbles(reply)))
            quick.append(reply.quick_replies)
        elif isinstance(reply, AskPhone):
            # LINE cannot share a contact: the person types the number.
            messages.append(TextMessage(text=_clip(reply.text, MAX_TEXT)))
            if reply.cancel:
                quick.append([reply.cancel])
    buttons = _merge(quick)
    if messages and buttons:
        kept, rest = buttons[:MAX_QUICK_REPLIES], buttons[MAX_QUICK_REPLIES:]
        if rest:
            messages.extend(_flex("⋯", _text_bubbles("⋯", rest)))
        messages[-1].quick_reply = _quick_reply(kept)
    return messages


def batches(messages: list[Message]) -> list[list[Message]]:
    return [messages[i : i + MAX_MESSAGES] for i in range(0, len(messages), MAX_MESSAGES)]


class Prepared:
    """Replies rendered for LINE and serialised once: the JSON array of each call's (at most
    5) messages, reusable for any number of recipients."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        self.chunks = chunks


def prepare(replies: list[Reply]) -> Prepared:
    """Render (through the SDK's models, so LINE's rules are checked) and serialise once."""
    return Prepared(
        tuple(
            json.dumps([m.to_dict() for m in chunk], ensure_ascii=False).encode("utf-8")
            for chunk in batches(render(replies))
        )
    )
