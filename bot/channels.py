"""The seam between the conversation core and each platform adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.messages import Incoming, Reply


class DeliveryError(Exception):
    """Sending failed in a way worth retrying later (5xx, timeout, 429)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class QuotaExhausted(DeliveryError):
    """The platform's message quota (LINE's monthly one) is used up: retrying cannot help
    until it is raised."""


class Refused(DeliveryError):
    """The platform refused the request itself (4xx other than 429/409): retrying the same
    request fails again."""


class ReplyWindowClosed(Exception):
    """The platform no longer takes an answer to this event (LINE's reply token is spent or
    expired): the replies must go out as a proactive push, through the outbox."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__("reply window closed")
        self.replies = replies


class RecipientGone(Exception):
    """The person blocked the bot or no longer exists on the platform; stop sending."""


@dataclass
class Delivery:
    """What an adapter did with a set of replies (for records and tests)."""

    method: str  # "reply", "push", "send", "store"
    requests: int = 1
    details: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    """One platform: turns its sealed events into Incoming and delivers Replies natively."""

    name: str

    def to_incoming(self, event: dict[str, Any]) -> Incoming | None:
        """The Incoming for one recorded raw event; None for events that need no handling."""
        ...

    async def deliver(
        self, external_id: str, replies: list[Reply], *, incoming: Incoming | None = None
    ) -> Delivery:
        """Send replies to one person, answering `incoming` when given (reply token, callback).

        Raises DeliveryError when a later retry may succeed, RecipientGone when it never will.
        """
        ...
