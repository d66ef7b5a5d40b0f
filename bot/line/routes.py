"""POST /webhooks/line: signature check, record each event once, acknowledge, process."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from linebot.v3.webhook import SignatureValidator

from bot.inbound import InboundProcessor
from bot.line.channel import NAME
from bot.settings import Settings
from models import safejson

log = logging.getLogger("edoor.line")


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """X-Line-Signature is Base64(HMAC-SHA256(secret, raw body)); compared in constant time."""
    if not signature:
        return False
    try:
        return bool(SignatureValidator(secret).validate(body.decode("utf-8"), signature))
    except (UnicodeDecodeError, ValueError):
        return False


def _event_id(event: dict[str, Any]) -> str:
    """LINE's webhookEventId (a 26-character ULID); anything that cannot be one is refused."""
    value = event["webhookEventId"]
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ValueError("webhookEventId is not an event id")
    return value


def _sender(event: dict[str, Any]) -> str | None:
    """Whose event it is: the group or room it came from, else the user."""
    source = event.get("source")
    if not isinstance(source, dict):
        return None
    who = source.get("groupId") or source.get("roomId") or source.get("userId")
    return str(who)[:80] if who else None


def _actor(event: dict[str, Any]) -> str | None:
    """The person behind the event (a group's member), when LINE names one."""
    source = event.get("source")
    who = source.get("userId") if isinstance(source, dict) else None
    return str(who)[:80] if who else None


def line_routes(*, processor: InboundProcessor, settings: Settings) -> APIRouter:
    """POST /webhooks/line: verify, record once, acknowledge, then process."""
    assert settings.line_channel_secret is not None
    secret = settings.line_channel_secret.get_secret_value()
    routes = APIRouter()

    @routes.post("/webhooks/line", include_in_schema=False)
    async def webhook(request: Request) -> Response:
        body = await request.body()
        if not verify_signature(secret, body, request.headers.get("x-line-signature")):
            return Response(status_code=401)
        try:
            payload = safejson.loads(body)
            events = payload["events"]
            if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
                raise TypeError
            rows = [
                processor.new_event(
                    event_id=_event_id(e),
                    kind=str(e["type"])[:32],
                    raw=e,
                    sender=_sender(e),
                    actor=_actor(e),
                )
                for e in events
            ]
        except (ValueError, KeyError, TypeError):
            return Response(status_code=400)
        try:
            ids = await processor.record(NAME, rows)
        except Exception:
            # Not committed, so not acknowledged: LINE redelivers (when enabled) later.
            log.exception("could not record LINE events")
            return Response(status_code=503)
        processor.submit(ids)
        return Response(status_code=200)

    return routes
