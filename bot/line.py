"""LINE: signature check, event parsing, rendering Replies as LINE messages, sending.

Rendering uses the SDK's own models, so an object LINE would refuse fails here first; the
platform limits that the OpenAPI spec does not carry (12 bubbles, 50 KB carousels, 13 quick
replies, 5 messages a call, 20-character labels) are enforced in code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

import aiohttp
import yarl
from fastapi import APIRouter, Request, Response
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    AudioMessage,
    Configuration,
    FlexBox,
    FlexBubble,
    FlexButton,
    FlexCarousel,
    FlexMessage,
    FlexText,
    ImageMessage,
    Message,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    TextMessage,
    URIAction,
)
from linebot.v3.webhook import SignatureValidator
from linebot.v3.webhooks import (
    Event,
    FollowEvent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
)

from bot.channels import Delivery, DeliveryError, ReplyWindowClosed
from bot.inbound import InboundProcessor
from bot.messages import AskPhone, Audio, Button, Cards, Image, Incoming, Reply, Text
from bot.settings import Settings

log = logging.getLogger("edoor.line")

NAME = "line"
MAX_MESSAGES = 5
MAX_BUBBLES = 12
MAX_QUICK_REPLIES = 13
MAX_LABEL = 20
MAX_TEXT = 5000
MAX_ALT_TEXT = 1500
MAX_CAROUSEL_BYTES = 50_000
MAX_BUBBLE_BYTES = 30_000
# A namespace for deterministic retry keys: a re-sent push after a crash reuses its key.
_RETRY_NS = uuid.UUID("6f1c1f3e-4f7e-4b8a-9a47-0e5c1d9b7a10")
MAX_MULTICAST = 500
# Proactive sends wait at most this long (seconds) for LINE; the SDK default is 300.
SEND_TIMEOUT = 20


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """X-Line-Signature is Base64(HMAC-SHA256(secret, raw body)); compared in constant time."""
    if not signature:
        return False
    try:
        return bool(SignatureValidator(secret).validate(body.decode("utf-8"), signature))
    except (UnicodeDecodeError, ValueError):
        return False


# -- rendering ---------------------------------------------------------------------------------
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


# -- the channel -------------------------------------------------------------------------------
class LineChannel:
    """Parses LINE events and sends replies (reply token first, push as the fallback)."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        assert settings.line_channel_access_token is not None
        self.config = Configuration(
            host=settings.line_api_base_url.rstrip("/"),
            access_token=settings.line_channel_access_token.get_secret_value(),
        )
        self._client: AsyncApiClient | None = None

    @property
    def api(self) -> AsyncMessagingApi:
        if self._client is None:
            self._client = AsyncApiClient(self.config)
        return AsyncMessagingApi(self._client)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def to_incoming(self, event: dict[str, Any]) -> Incoming | None:
        if event.get("mode") == "standby":
            return None  # another module owns the chat; the bot must not answer
        user_id = (event.get("source") or {}).get("userId")
        if not user_id:
            return None  # group or room without a user: nothing to answer
        try:
            parsed = Event.from_dict(event)
        except (ValueError, TypeError):
            parsed = None
        base = {
            "channel": NAME,
            "user_id": user_id,
            "event_id": event.get("webhookEventId", ""),
            "reply_token": event.get("replyToken"),
        }
        if isinstance(parsed, FollowEvent):
            return Incoming(kind="follow", **base)
        if isinstance(parsed, UnfollowEvent):
            return Incoming(kind="unfollow", **base)
        if isinstance(parsed, PostbackEvent):
            return Incoming(kind="action", action=parsed.postback.data, **base)
        if isinstance(parsed, MessageEvent) and isinstance(parsed.message, TextMessageContent):
            return Incoming(kind="text", text=parsed.message.text, **base)
        return Incoming(kind="unknown", **base)

    async def deliver(
        self, external_id: str, replies: list[Reply], *, incoming: Incoming | None = None
    ) -> Delivery:
        chunks = batches(render(replies))
        if not chunks:
            return Delivery(method="none", requests=0)
        token = incoming.reply_token if incoming is not None else None
        if not token or not await self._reply(token, chunks[0]):
            # Too late to answer: the whole answer becomes a push, which the outbox sends
            # with a retry key (and the rate limits every proactive message respects).
            raise ReplyWindowClosed(replies)
        # More than 5 messages: the rest follow by push, each call with a key derived from
        # the event, so a retry after a crash is accepted by LINE at most once.
        seed = incoming.event_id if incoming is not None and incoming.event_id else None
        for index, chunk in enumerate(chunks[1:], start=1):
            key = str(uuid.uuid5(_RETRY_NS, f"{seed}:{index}")) if seed else str(uuid.uuid4())
            await self._push(external_id, chunk, retry_key=key)
        return Delivery(method="reply", requests=len(chunks))

    async def _reply(self, token: str, messages: list[Message]) -> bool:
        """True when LINE took the reply; False when the token is spent or expired."""
        try:
            await self.api.reply_message_with_http_info(
                ReplyMessageRequest(replyToken=token, messages=messages)
            )
        except ApiException as exc:
            if exc.status == 400 and "reply token" in (exc.body or "").lower():
                log.info("reply token no longer valid; pushing instead")
                return False
            raise _translate(exc) from None
        return True

    async def _push(self, user_id: str, messages: list[Message], *, retry_key: str) -> None:
        try:
            await self.api.push_message_with_http_info(
                PushMessageRequest(to=user_id, messages=messages), x_line_retry_key=retry_key
            )
        except ApiException as exc:
            if exc.status == 409:
                return  # LINE already accepted this retry key: the message went out once
            raise _translate(exc) from None

    # -- proactive sends (the dispatcher) ----------------------------------------------------
    # Rendering goes through the SDK's models (validated once per distinct message); the
    # calls themselves go out as JSON built once per message and reused for every recipient,
    # over the SDK's own connection pool: building and serialising the SDK's request models
    # for every one of 80,000 pushes cost more CPU than the calls themselves.
    def prepare(self, replies: list[Reply]) -> Prepared:
        """Render and serialise once, for any number of push/multicast calls."""
        return prepare(replies)

    async def push(
        self,
        user_id: str,
        replies: list[Reply] | Prepared,
        *,
        retry_key: str,
        aggregation_unit: str | None = None,
    ) -> int:
        """Push replies to one person with a caller-chosen retry key (stable across retries:
        a 409 "already accepted" is success). Returns the number of requests made."""
        prepared = replies if isinstance(replies, Prepared) else prepare(replies)
        to = json.dumps(user_id).encode()
        return await self._send_keyed(
            prepared, retry_key, "/v2/bot/message/push", to, aggregation_unit
        )

    async def multicast(
        self,
        user_ids: list[str],
        replies: list[Reply] | Prepared,
        *,
        retry_key: str,
        aggregation_unit: str | None = None,
    ) -> int:
        """The same replies to up to 500 people in one call per 5 messages, with a retry key
        that the caller keeps for this exact group of people. Returns requests made."""
        if not 0 < len(user_ids) <= MAX_MULTICAST:
            raise ValueError(f"multicast takes 1 to {MAX_MULTICAST} user ids")
        prepared = replies if isinstance(replies, Prepared) else prepare(replies)
        to = json.dumps(user_ids).encode()
        return await self._send_keyed(
            prepared, retry_key, "/v2/bot/message/multicast", to, aggregation_unit
        )

    async def _send_keyed(
        self,
        prepared: Prepared,
        retry_key: str,
        path: str,
        to: bytes,
        aggregation_unit: str | None = None,
    ) -> int:
        # Broadcasts: LINE's per-unit statistics (insight API) by customAggregationUnits.
        unit = (
            b',"customAggregationUnits":' + json.dumps([aggregation_unit]).encode()
            if aggregation_unit
            else b""
        )
        for index, chunk in enumerate(prepared.chunks):
            # More than 5 messages take several calls, each with its own derived key.
            key = retry_key if index == 0 else str(uuid.uuid5(uuid.UUID(retry_key), str(index)))
            body = (
                b'{"to":'
                + to
                + b',"messages":'
                + chunk
                + b',"notificationDisabled":false'
                + unit
                + b"}"
            )
            await self._post_keyed(path, body, key)
        return len(prepared.chunks)

    async def _post_keyed(self, path: str, body: bytes, key: str) -> None:
        headers = {"Content-Type": "application/json", "X-Line-Retry-Key": key}
        async with self._keyed_session().post(
            f"{self.config.host}{path}",
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT),
        ) as response:
            answer = await response.read()
            if response.status < 300 or response.status == 409:
                return  # 409: already accepted under this key, so it went out once
            exc = ApiException(status=response.status, reason=response.reason)
            exc.body = answer.decode("utf-8", "replace")
            raise _translate_send(exc)

    def _keyed_session(self) -> aiohttp.ClientSession:
        """A session over the SDK client's connection pool (closed with it by `stop`).

        The SDK's own session trusts the environment, which costs every request a netrc
        file read and a proxy lookup, each in a worker thread; here the proxy is looked up
        once (the configured one first) and the SDK's headers are set once.
        """
        self.api  # noqa: B018 (creates the SDK client, and with it the connection pool)
        client = self._client
        assert client is not None
        cached = getattr(self, "_keyed", None)
        if cached is not None and cached[0] is client and not cached[1].closed:
            return cached[1]
        proxy = self.config.proxy
        if not proxy:
            with contextlib.suppress(LookupError):
                proxy = str(aiohttp.helpers.get_env_proxy_for_url(yarl.URL(self.config.host))[0])
        session = aiohttp.ClientSession(
            connector=client.rest_client.pool_manager.connector,
            connector_owner=False,
            trust_env=False,
            headers=dict(client.default_headers),
            proxy=proxy or None,
        )
        self._keyed = (client, session)
        return session


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


class QuotaExhausted(DeliveryError):
    """LINE's monthly message quota is used up: retrying cannot help until it is raised."""


class Refused(DeliveryError):
    """LINE refused the request itself (4xx other than 429/409): retrying the same fails."""


def _translate_send(exc: ApiException) -> Exception:
    status = exc.status or 0
    if status == 429 and "monthly limit" in (exc.body or "").lower():
        return QuotaExhausted("line 429: monthly limit reached")
    if status == 429 or status >= 500:
        return DeliveryError(f"line {status}")
    return Refused(f"line {status} (not retryable)")


def _translate(exc: ApiException) -> Exception:
    """SDK errors as the core's delivery errors (never with the request body in the text)."""
    status = exc.status or 0
    if status == 429 or status >= 500:
        return DeliveryError(f"line {status}")
    return DeliveryError(f"line {status} (not retryable)")


# -- the webhook -------------------------------------------------------------------------------
def _sender(event: dict[str, Any]) -> str | None:
    """Whose event it is: the group or room it came from, else the user."""
    source = event.get("source")
    if not isinstance(source, dict):
        return None
    who = source.get("groupId") or source.get("roomId") or source.get("userId")
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
            payload = json.loads(body)
            events = payload["events"]
            if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
                raise TypeError
            rows = [
                processor.new_event(
                    event_id=str(e["webhookEventId"]), kind=str(e["type"]), raw=e, sender=_sender(e)
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
