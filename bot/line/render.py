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

from bot.messages import AskPhone, Audio, Button, Cards, Image, Reply, Text

MAX_MESSAGES = 5
MAX_BUBBLES = 12
MAX_QUICK_REPLIES = 13
MAX_LABEL = 20
MAX_TEXT = 5000
MAX_ALT_TEXT = 1500
MAX_CAROUSEL_BYTES = 50_000
MAX_BUBBLE_BYTES = 30_000


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _action(button: Button) -> PostbackAction | URIAction:
    if button.url is not None:
        return URIAction(label=_label(button.label), uri=button.url)
    return PostbackAction(
        label=_label(button.label), data=button.action, displayText=_clip(button.label, 300)
    )


def _quick_reply(buttons: list[Button]) -> QuickReply | None:
    if not buttons:
        return None
    return QuickReply(
        items=[QuickReplyItem(action=_action(b)) for b in buttons[:MAX_QUICK_REPLIES]]
    )


def _footer(buttons: list[Button]) -> FlexBox | None:
    if not buttons:
        return None
    return FlexBox(
        layout="vertical",
        spacing="sm",
        contents=[
            FlexButton(action=_action(b), style="primary" if i == 0 else "secondary", height="sm")
            for i, b in enumerate(buttons[:4])
        ],
    )


def _text_bubble(text: str, buttons: list[Button]) -> FlexBubble:
    return FlexBubble(
        body=FlexBox(layout="vertical", contents=[FlexText(text=_clip(text, 2000), wrap=True)]),
        footer=_footer(buttons),
    )


def _card_bubble(card: Any) -> FlexBubble:
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
    return FlexBubble(
        size="kilo",
        body=FlexBox(layout="vertical", spacing="sm", contents=contents),
        footer=_footer(card.buttons),
    )


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


def _carousel(reply: Cards) -> FlexCarousel:
    room = MAX_BUBBLES - (1 if reply.more else 0)
    bubbles = [_card_bubble(c) for c in reply.cards[:room]]
    bubbles = [b for b in bubbles if _size(b) <= MAX_BUBBLE_BYTES]
    if reply.more:
        bubbles.append(_more_bubble(reply.more))
    carousel = FlexCarousel(contents=bubbles)
    while _size(carousel) > MAX_CAROUSEL_BYTES and len(bubbles) > 1:
        bubbles.pop(-2 if reply.more else -1)
        carousel = FlexCarousel(contents=bubbles)
    return carousel


def render(replies: list[Reply]) -> list[Message]:
    """Replies as LINE message objects; quick replies ride on the last message only."""
    messages: list[Message] = []
    quick: list[Button] = []
    for reply in replies:
        if isinstance(reply, Text):
            text = _clip(reply.text, MAX_TEXT)
            if reply.buttons:
                messages.append(
                    FlexMessage(
                        altText=_clip(reply.text, MAX_ALT_TEXT),
                        contents=_text_bubble(text, reply.buttons),
                    )
                )
            else:
                messages.append(TextMessage(text=text))
            quick = reply.quick_replies or quick
        elif isinstance(reply, Cards):
            if not reply.cards:
                continue
            messages.append(
                FlexMessage(altText=_clip(reply.alt_text, MAX_ALT_TEXT), contents=_carousel(reply))
            )
            quick = reply.quick_replies or quick
        elif isinstance(reply, Audio):
            messages.append(AudioMessage(originalContentUrl=reply.url, duration=reply.duration_ms))
            if reply.title or reply.buttons:
                messages.append(
                    FlexMessage(
                        altText=_clip(reply.title or "audio", MAX_ALT_TEXT),
                        contents=_text_bubble(reply.title or "🎧", reply.buttons),
                    )
                )
        elif isinstance(reply, Image):
            messages.append(
                ImageMessage(
                    originalContentUrl=reply.url, previewImageUrl=reply.preview_url or reply.url
                )
            )
        elif isinstance(reply, AskPhone):
            # LINE cannot share a contact: the person types the number.
            messages.append(TextMessage(text=_clip(reply.text, MAX_TEXT)))
            quick = [reply.cancel] if reply.cancel else quick
    if messages and quick:
        messages[-1].quick_reply = _quick_reply(quick)
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
