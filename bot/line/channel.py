"""LINE: the channel (event parsing, sending replies and pushes through the async SDK
client, multicast for the dispatcher). Rendering is bot/line/render.py, the webhook
bot/line/routes.py."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

import aiohttp
import yarl
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    Message,
    PushMessageRequest,
    ReplyMessageRequest,
)
from linebot.v3.webhooks import (
    Event,
    FollowEvent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
)

from bot.channels import Delivery, DeliveryError, QuotaExhausted, Refused, ReplyWindowClosed
from bot.line.render import (
    Prepared,
    batches,
    prepare,
    render,
)
from bot.messages import Incoming, Reply
from bot.settings import Settings

log = logging.getLogger("edoor.line")

NAME = "line"
# A namespace for deterministic retry keys: a re-sent push after a crash reuses its key.
_RETRY_NS = uuid.UUID("6f1c1f3e-4f7e-4b8a-9a47-0e5c1d9b7a10")
MAX_MULTICAST = 500
# Proactive sends wait at most this long (seconds) for LINE; the SDK default is 300.
SEND_TIMEOUT = 20


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
