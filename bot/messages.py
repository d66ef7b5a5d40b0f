"""What a user did (Incoming) and what to show them (Reply), independent of any channel.

Replies are pydantic models so that they can rest as JSON (outbox, pending replies) and be
rendered later by any adapter. Each adapter renders every kind natively or degrades to text.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr

# Postback data must fit Telegram's callback_data (64 bytes); LINE allows 300 characters.
MAX_ACTION_BYTES = 64

IncomingKind = Literal["follow", "unfollow", "text", "action", "contact", "unknown"]


class Incoming(BaseModel):
    """One thing a user did, on any channel."""

    channel: str
    user_id: str
    kind: IncomingKind
    event_id: str = ""
    text: str = ""
    action: str = ""  # compact action id, e.g. "course.open:42"
    # A phone number the platform vouches for (Telegram contact of the sender himself).
    contact_phone: SecretStr | None = None
    contact_is_own: bool = False
    language_hint: str | None = None
    reply_token: str | None = None
    # Telegram: answer the callback query so the button stops spinning.
    callback_query_id: str | None = None
    display_name: str | None = None

    @property
    def command(self) -> str | None:
        """'/help@edoor_bot args' -> 'help'; None when the text is not a slash command."""
        if self.kind != "text" or not self.text.startswith("/"):
            return None
        head = self.text[1:].split(maxsplit=1)[0] if len(self.text) > 1 else ""
        return head.split("@", 1)[0].lower() or None

    @property
    def command_args(self) -> str:
        parts = self.text.split(maxsplit=1)
        return parts[1].strip() if len(parts) > 1 else ""


class Button(BaseModel):
    """A button: either a compact action handled by the bot, or a link opened by the client."""

    label: str
    action: str | None = None
    url: str | None = None

    def model_post_init(self, _context: object) -> None:
        if (self.action is None) == (self.url is None):
            raise ValueError("a button has exactly one of action or url")
        if self.action is not None and len(self.action.encode("utf-8")) > MAX_ACTION_BYTES:
            raise ValueError(f"action id over {MAX_ACTION_BYTES} bytes: {self.action!r}")


class Text(BaseModel):
    kind: Literal["text"] = "text"
    text: str
    buttons: list[Button] = Field(default_factory=list)  # attached to this message
    quick_replies: list[Button] = Field(default_factory=list)  # suggestions after it


class Card(BaseModel):
    title: str
    body: str = ""
    subtitle: str = ""
    image_url: str | None = None
    buttons: list[Button] = Field(default_factory=list)


class Cards(BaseModel):
    """A list of cards (LINE carousel, Telegram paged list); `more` fetches the next page."""

    kind: Literal["cards"] = "cards"
    alt_text: str
    cards: list[Card]
    more: Button | None = None
    quick_replies: list[Button] = Field(default_factory=list)


class Audio(BaseModel):
    kind: Literal["audio"] = "audio"
    url: str
    duration_ms: int
    title: str = ""
    performer: str = ""
    file_size: int | None = None
    media_key: str | None = None  # stable id of the file, for Telegram file_id reuse
    buttons: list[Button] = Field(default_factory=list)


class Image(BaseModel):
    """A picture. `url` is https (LINE fetches it; a signed, expiring link when private).
    `qr` says the picture is that text's QR code: channels that take bytes (Telegram) draw
    it themselves (bot.qr), so that they need not reach our server, and nobody draws it
    for a channel that only fetches the link."""

    kind: Literal["image"] = "image"
    url: str
    preview_url: str | None = None
    alt_text: str = ""
    qr: str | None = None


class AskPhone(BaseModel):
    """Ask the person to type or share their phone number."""

    kind: Literal["ask_phone"] = "ask_phone"
    text: str
    share_label: str
    cancel: Button | None = None


class Bar(BaseModel):
    """One progress bar: `done` of `needed` (needed 0: no goal, the value alone)."""

    label: str
    done: float
    needed: float = 0.0
    value: str = ""  # the numbers as words, e.g. "8 / 20 小時"
    note: str = ""  # e.g. "還差 12 小時，12/31 截止"

    @property
    def share(self) -> float:
        """How full the bar is, 0..1."""
        if self.needed <= 0:
            return 1.0 if self.done > 0 else 0.0
        return max(0.0, min(1.0, self.done / self.needed))


class Progress(BaseModel):
    """A picture of progress: a title, a summary line, one bar per goal, buttons (LINE Flex
    bars; Telegram compact text bars)."""

    kind: Literal["progress"] = "progress"
    title: str
    summary: str = ""
    bars: list[Bar] = Field(default_factory=list)
    footer: str = ""
    buttons: list[Button] = Field(default_factory=list)
    quick_replies: list[Button] = Field(default_factory=list)


TEXT_BAR_CELLS = 10


def text_bar(bar: Bar, cells: int = TEXT_BAR_CELLS) -> str:
    """A bar as text, '▓▓▓▓░░░░░░', for channels without drawing (one definition)."""
    full = round(bar.share * cells)
    return "▓" * full + "░" * (cells - full)


def progress_text(reply: Progress) -> str:
    """The whole picture as plain text: title, summary, each bar with its numbers, footer."""
    lines = [reply.title]
    if reply.summary:
        lines.append(reply.summary)
    for bar in reply.bars:
        lines.append("")
        lines.append(bar.label)
        numbers = " ".join(part for part in (text_bar(bar), bar.value) if part)
        lines.append(numbers if bar.needed > 0 else bar.value)
        if bar.note:
            lines.append(bar.note)
    if reply.footer:
        lines.extend(("", reply.footer))
    return "\n".join(lines)


Reply = Annotated[Text | Cards | Audio | Image | AskPhone | Progress, Field(discriminator="kind")]


class ReplyList(BaseModel):
    """Container used to (de)serialise a list of replies as JSON."""

    replies: list[Reply]


def dump_replies(replies: list[Reply]) -> list[dict[str, object]]:
    return ReplyList(replies=replies).model_dump(mode="json", exclude_none=True)["replies"]  # type: ignore[no-any-return,unused-ignore]


def load_replies(data: list[dict[str, object]]) -> list[Reply]:
    return ReplyList.model_validate({"replies": data}).replies
