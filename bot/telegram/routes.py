"""Getting updates in (webhook route or long polling) and telling Telegram where to send them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from telegram import BotCommand, Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError

from bot.settings import Settings
from bot.telegram.channel import (
    ALLOWED_UPDATES,
    CHANNEL,
    TelegramChannel,
    TelegramConfigError,
    minimise,
    parse_update,
    retry_after_seconds,
    update_kind,
)
from models import safejson
from models.inbound import NewEvent

log = logging.getLogger("edoor.telegram")

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")

T = TypeVar("T")


class Recorder(Protocol):
    """What the intake needs of bot.inbound.InboundProcessor."""

    def new_event(
        self,
        *,
        event_id: str,
        kind: str,
        raw: dict[str, Any],
        sender: str | None = None,
        actor: str | None = None,
    ) -> NewEvent: ...

    async def record(self, channel: str, rows: list[NewEvent]) -> list[int]: ...

    async def reject(self, channel: str, *, event_id: str, reason: str, size: int) -> None: ...

    def submit(self, row_ids: list[int]) -> None: ...

    async def process_many(self, row_ids: list[int]) -> list[int]: ...


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"ok": False, "detail": detail}, status_code=status)


def event_for(recorder: Recorder, update: dict[str, Any]) -> NewEvent:
    return recorder.new_event(
        event_id=str(update["update_id"]),
        kind=update_kind(update),
        raw=minimise(update),
        sender=_sender(update),
        actor=_actor(update),
    )


def _rejected_id(data: Any, body: bytes) -> str:
    """The update_id when there is one; else the body's digest, so a redelivery is one row."""
    if isinstance(data, dict) and type(data.get("update_id")) is int:
        return str(data["update_id"])
    return "rejected-" + hashlib.sha256(body).hexdigest()[:40]


def _sender(update: dict[str, Any]) -> str | None:
    """The chat an update belongs to (a button press: the chat of its message)."""
    body = update.get(update_kind(update))
    if not isinstance(body, dict):
        return None
    message = body.get("message") if isinstance(body.get("message"), dict) else body
    chat = message.get("chat") if isinstance(message, dict) else None
    who = chat.get("id") if isinstance(chat, dict) else None
    if who is None and isinstance(body.get("from"), dict):
        who = body["from"].get("id")
    return str(who)[:80] if who is not None else None


def _actor(update: dict[str, Any]) -> str | None:
    """The user who sent the update (in a group chat, not the chat)."""
    body = update.get(update_kind(update))
    author = body.get("from") if isinstance(body, dict) else None
    who = author.get("id") if isinstance(author, dict) else None
    return str(who)[:80] if who is not None else None


def telegram_routes(
    *, processor: Recorder, settings: Settings, path: str = WEBHOOK_PATH
) -> APIRouter:
    """`POST /webhooks/telegram`: check the secret, record the update once, answer, process."""
    router = APIRouter()
    secret = settings.telegram_webhook_secret
    expected = secret.get_secret_value().encode() if secret is not None else None

    @router.post(path, include_in_schema=False)
    async def telegram_webhook(request: Request) -> Response:
        # Header values arrive decoded as latin-1; compare the original bytes in constant time.
        given = request.headers.get(SECRET_HEADER, "").encode("latin-1")
        if expected is None or not hmac.compare_digest(given, expected):
            return _problem(401, "bad secret token")
        body = await request.body()  # bounded by the app's body limit (413 beyond it)
        # Telegram delivers an update again until it gets a 2xx: one we cannot use is
        # recorded as rejected and acknowledged, never refused into a redelivery loop.
        data: Any = None
        reason: str | None = None
        try:
            data = safejson.loads(body)
        except safejson.JsonRefused as refused:
            reason = f"body is not usable JSON: {refused}"
        if reason is None and parse_update(data) is None:
            reason = "body is not a Telegram Update"
        try:
            if reason is not None:
                await processor.reject(
                    CHANNEL, event_id=_rejected_id(data, body), reason=reason, size=len(body)
                )
                log.warning("telegram update rejected: %s", reason)
                return JSONResponse({"ok": True, "rejected": reason})
            ids = await processor.record(CHANNEL, [event_for(processor, data)])
        except Exception as exc:
            # Not acknowledged, so Telegram delivers the update again later.
            log.error("telegram update not recorded: %s", type(exc).__name__)
            return _problem(503, "try again later")
        # Empty when this update_id was recorded before: acknowledge, do nothing.
        processor.submit(ids)
        return JSONResponse({"ok": True})

    return router


async def _until(awaitable: Awaitable[T], stop_event: asyncio.Event) -> T | None:
    """The awaitable's result, or None (and the awaitable cancelled) once stop_event is set."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop_event.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TelegramError):
        await task
    return None


async def _pause(seconds: float, stop_event: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), timeout=seconds)


async def run_polling(
    channel: TelegramChannel,
    processor: Recorder,
    stop_event: asyncio.Event,
    *,
    poll_timeout: int = 25,
    max_backoff: float = 30.0,
) -> None:
    """Long-poll getUpdates until stop_event is set (TELEGRAM_MODE=polling; no public URL).

    Each batch is recorded and processed like webhook updates. The offset moves past a batch
    only once it is recorded, so a database outage loses nothing.
    """
    tg = channel.tg
    offset: int | None = None
    backoff = 1.0
    webhook_cleared = False
    while not stop_event.is_set():
        try:
            if not webhook_cleared:
                # getUpdates is refused (409) while a webhook is set.
                await tg.delete_webhook(drop_pending_updates=False)
                webhook_cleared = True
            updates: Sequence[Update] | None = await _until(
                tg.get_updates(
                    offset=offset, timeout=poll_timeout, allowed_updates=ALLOWED_UPDATES
                ),
                stop_event,
            )
        except InvalidToken:
            raise TelegramConfigError("TELEGRAM_BOT_TOKEN was rejected by Telegram") from None
        except RetryAfter as exc:
            await _pause(retry_after_seconds(exc), stop_event)
            continue
        except (NetworkError, Conflict) as exc:
            # Conflict: another poller with the same token, or a webhook set meanwhile.
            log.warning("telegram polling: %s; retrying in %.0f s", type(exc).__name__, backoff)
            webhook_cleared = webhook_cleared and not isinstance(exc, Conflict)
            await _pause(backoff, stop_event)
            backoff = min(backoff * 2, max_backoff)
            continue
        backoff = 1.0
        if not updates:
            continue
        raw = [u.to_dict() for u in updates]
        try:
            ids = await processor.record(CHANNEL, [event_for(processor, d) for d in raw])
        except Exception as exc:
            log.error("telegram updates not recorded: %s", type(exc).__name__)
            await _pause(backoff, stop_event)
            continue
        offset = max(u.update_id for u in updates) + 1
        await processor.process_many(ids)
    # Confirm the last offset so the same updates are not fetched again after a restart.
    if offset is not None:
        with contextlib.suppress(TelegramError):
            await tg.get_updates(offset=offset, timeout=0, allowed_updates=ALLOWED_UPDATES)


def _commands(pairs: Sequence[tuple[str, str]]) -> list[BotCommand]:
    out = []
    for name, description in pairs:
        if not COMMAND_NAME.fullmatch(name):
            raise TelegramConfigError(f"bad command name {name!r} (a-z, 0-9, _; 1-32)")
        if not 1 <= len(description) <= 256:
            raise TelegramConfigError(f"description of /{name} must be 1-256 characters")
        out.append(BotCommand(name, description))
    return out


async def telegram_setup(
    settings: Settings,
    commands: Sequence[tuple[str, str, str]],
    *,
    channel: TelegramChannel | None = None,
) -> dict[str, Any]:
    """Point Telegram at our webhook (with its secret) and publish the command menu.

    `commands` are (name, zh-TW description, en description). Telegram shows the zh
    descriptions to clients set to Chinese and as the default, the en ones to English clients.
    With TELEGRAM_MODE=polling the webhook is removed instead. Returns what was set.
    """
    own = channel is None
    channel = channel or TelegramChannel(settings)
    zh = _commands([(name, zh_text) for name, zh_text, _ in commands])
    en = _commands([(name, en_text) for name, _, en_text in commands])
    result: dict[str, Any] = {"commands": [c.command for c in zh]}
    await channel.start()
    try:
        if settings.telegram_mode == "webhook":
            secret = settings.telegram_webhook_secret
            if secret is None or not SECRET_TOKEN.fullmatch(secret.get_secret_value()):
                raise TelegramConfigError(
                    "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -"
                )
            url = settings.public_base_url.rstrip("/") + WEBHOOK_PATH
            await channel.tg.set_webhook(
                url=url,
                secret_token=secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
            )
            result["webhook"] = url
        else:
            await channel.tg.delete_webhook(drop_pending_updates=False)
            result["webhook"] = None
        await channel.tg.set_my_commands(zh)  # default: zh-TW first
        await channel.tg.set_my_commands(zh, language_code="zh")
        await channel.tg.set_my_commands(en, language_code="en")
        result["languages"] = ["default", "zh", "en"]
    except TelegramError as exc:
        # e.g. "bad webhook: An HTTPS URL must be provided"; Telegram's words help the operator.
        raise TelegramConfigError(f"Telegram refused the setup: {exc.message}") from None
    finally:
        if own:
            await channel.stop()
    return result
