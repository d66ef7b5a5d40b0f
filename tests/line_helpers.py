"""Build and sign LINE webhook bodies the way the LINE platform does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

from tests.conftest import LINE_SECRET


def sign(body: bytes, secret: str = LINE_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def event(kind: str, user: str = "U" + "a" * 32, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "mode": "active",
        "timestamp": 1767600300555,
        "source": {"type": "user", "userId": user},
        "webhookEventId": uuid.uuid4().hex[:26].upper(),
        "deliveryContext": {"isRedelivery": False},
    }
    if kind != "unfollow":
        base["replyToken"] = uuid.uuid4().hex
    base.update(extra)
    return base


def text_event(text: str, **kw: Any) -> dict[str, Any]:
    return event(
        "message", message={"type": "text", "id": "1", "quoteToken": "q", "text": text}, **kw
    )


def body_of(*events: dict[str, Any]) -> bytes:
    return json.dumps(
        {"destination": "U" + "0" * 32, "events": list(events)}, ensure_ascii=False
    ).encode()
