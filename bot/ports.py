"""What the conversation core and the features need from services outside it, as Protocols
and plain values: the SMS provider (implemented in sms/) and the media link signer
(implemented in media/). app.py builds the implementations and puts them in Services."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class SmsError(Exception):
    """The provider did not take the message; `reason` is safe to log (no number, no text)."""

    def __init__(self, reason: str, *, temporary: bool = True, recipient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        # The number itself was refused (invalid, unreachable, opted out): retrying is futile.
        self.recipient = recipient


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    body: str
    # Unique per message (at most 36 characters, no personal data): lets a provider drop
    # a duplicate when we retry after a timeout.
    reference: str
    # Who asked for it, as "channel:external id" (the dev provider shows a code only to a
    # simulator session that asked for it; real providers ignore it).
    requester: str = ""


class SmsProvider(Protocol):
    """Sends one text message; returns the provider's message id."""

    name: str

    async def send(self, message: SmsMessage, *, session: AsyncSession, now: dt.datetime) -> str:
        """Raise SmsError when the message was not accepted (error, refusal or timeout)."""
        ...


class LinkSigner(Protocol):
    """Signs expiring `/media/...` links, private feed tokens and the personal tags of
    tracked links (media.files.MediaSigner)."""

    def query(self, path: str, *, expires_at: dt.datetime, member_id: int | None = None) -> str: ...

    def valid(
        self,
        path: str,
        *,
        exp: str | None,
        sig: str | None,
        now: dt.datetime,
        member: str | None = None,
    ) -> bool: ...

    def feed_token(self, token_id: int, nonce: str) -> str: ...

    def feed_token_id(self, token: str) -> tuple[int, str] | None: ...

    def feed_token_matches(self, token_id: int, nonce: str, mac: str) -> bool: ...

    def click_tag(self, token: str, member_id: int) -> str: ...

    def click_member(self, token: str, tag: str) -> int | None: ...


class ChannelPreview(Protocol):
    """Replies as each platform's renderer sends them ({"line": [...], "telegram": [...]}),
    built by app.py, so that features can show a preview without importing an adapter."""

    def __call__(self, replies: list[Any], /) -> dict[str, Any]: ...
