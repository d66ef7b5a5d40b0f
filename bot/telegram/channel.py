"""The Telegram channel: Update -> Incoming, and Replies -> Bot API calls through PTB's `Bot`."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import logging
import warnings
from collections import OrderedDict
from typing import Any

from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot, InputFile, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest
from telegram.warnings import PTBDeprecationWarning

from bot.channels import Delivery, DeliveryError, RecipientGone
from bot.messages import Audio, Incoming, Reply
from bot.settings import Settings
from bot.telegram.logs import protect_logs
from bot.telegram.render import CardsMode, TgCall, opens_keyboard, removes_keyboard, render
from models.base import utcnow
from models.paths import local_media_path
from models.telegram_files import bot_hash, forget_file_id, get_file_ids, remember_file_id

log = logging.getLogger("edoor.telegram")

CHANNEL = "telegram"
# What the bot needs; my_chat_member tells us when a person blocks or unblocks the bot.
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
# Telegram fetches media given by URL itself, which can take longer than a text send.
MEDIA_READ_TIMEOUT = 60.0
# Uploading up to 50 MB takes a while on a slow uplink; PTB's default is 20 s.
MEDIA_WRITE_TIMEOUT = 300.0
# Deliveries interrupted half-way (429 on the 2nd of 3 messages) resume where they stopped.
PROGRESS_MEMORY = 2048


class TelegramConfigError(RuntimeError):
    """The Telegram settings do not work (e.g. the token is refused); the message says which."""


def update_kind(update: dict[str, Any]) -> str:
    """The update's type: the one field besides update_id ('message', 'callback_query', ...)."""
    return next((key for key in update if key != "update_id"), "empty")[:32]


def minimise(update: dict[str, Any]) -> dict[str, Any]:
    """The update as it will be stored: a shared contact keeps only its number and user id.

    The number stays (verification needs it); it is masked in the readable copy by
    bot.redact and sealed in the other. The contact's names and vCard are someone's
    address-book entry and are not needed.
    """
    message = update.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("contact"), dict):
        return update
    out = copy.deepcopy(update)
    contact = out["message"]["contact"]
    kept = {k: contact[k] for k in ("phone_number", "user_id") if k in contact}
    out["message"]["contact"] = {"first_name": "", **kept}  # first_name is required by the API
    return out


def parse_update(data: Any) -> Update | None:
    """A PTB Update for a JSON body of the right shape, else None."""
    if not isinstance(data, dict):
        return None
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        return None
    try:
        return Update.de_json(dict(data), None)
    except Exception:  # PTB raises TypeError/KeyError/AttributeError on wrong shapes
        return None


def _phone(number: str) -> str:
    """Telegram sends international numbers, some clients without the '+'."""
    number = number.strip()
    return number if number.startswith("+") else f"+{number}"


def _message_incoming(update: Update, message: Message) -> Incoming | None:
    user = message.from_user
    if user is None or message.chat.type != ChatType.PRIVATE:
        return None  # edoor talks to people one to one; groups and channels are ignored
    base: dict[str, Any] = {
        "channel": CHANNEL,
        "user_id": str(message.chat.id),
        "event_id": str(update.update_id),
        "language_hint": user.language_code,
        "display_name": user.full_name or None,
    }
    if message.contact is not None:
        contact = message.contact
        # Telegram vouches for a number only when the person shares their own contact:
        # the contact's user is the sender, and the message is not forwarded from elsewhere.
        own = (
            contact.user_id is not None
            and contact.user_id == user.id
            and message.forward_origin is None
        )
        return Incoming(
            kind="contact",
            contact_phone=SecretStr(_phone(contact.phone_number)),
            contact_is_own=own,
            **base,
        )
    if message.text is not None:
        return Incoming(kind="text", text=message.text, **base)
    return Incoming(kind="unknown", **base)


def to_incoming(data: dict[str, Any]) -> Incoming | None:
    """The Incoming for one Telegram update dict; None when there is nobody to answer."""
    update = parse_update(data)
    if update is None:
        return None
    if update.message is not None:
        return _message_incoming(update, update.message)
    if update.callback_query is not None:
        query = update.callback_query
        chat = query.message.chat if query.message is not None else None
        if chat is not None and chat.type != ChatType.PRIVATE:
            return None
        return Incoming(
            channel=CHANNEL,
            user_id=str(chat.id if chat is not None else query.from_user.id),
            event_id=str(update.update_id),
            # Without data (a game button) there is nothing to route, but it is still answered.
            kind="action" if query.data else "unknown",
            action=query.data or "",
            callback_query_id=query.id,
            language_hint=query.from_user.language_code,
            display_name=query.from_user.full_name or None,
        )
    if update.my_chat_member is not None:
        change = update.my_chat_member
        if change.chat.type != ChatType.PRIVATE:
            return None
        status = change.new_chat_member.status
        # In a private chat this update comes only when the person blocks or unblocks the bot.
        if status == ChatMemberStatus.BANNED:
            kind = "unfollow"
        elif status == ChatMemberStatus.MEMBER:
            kind = "follow"
        else:
            return None
        return Incoming(
            channel=CHANNEL,
            user_id=str(change.chat.id),
            event_id=str(update.update_id),
            kind=kind,  # type: ignore[arg-type]
            language_hint=change.from_user.language_code,
        )
    return None


def retry_after_seconds(exc: RetryAfter) -> float:
    # The int form of retry_after is deprecated (PTB 22.2); read it without the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def translate_error(exc: TelegramError) -> DeliveryError | RecipientGone:
    """PTB errors -> the channel contract: retry later, or stop sending to this person."""
    if isinstance(exc, RetryAfter):
        return DeliveryError("telegram: rate limited", retry_after=retry_after_seconds(exc))
    if isinstance(exc, Forbidden):  # blocked, deactivated, never started the bot
        return RecipientGone(f"telegram: {exc.message}")
    if isinstance(exc, BadRequest) and "chat not found" in exc.message.lower():
        return RecipientGone(f"telegram: {exc.message}")
    if isinstance(exc, TimedOut):
        return DeliveryError("telegram: timed out")
    if isinstance(exc, InvalidToken):
        return DeliveryError("telegram: token rejected")
    if isinstance(exc, NetworkError | BadRequest):
        return DeliveryError(f"telegram: {type(exc).__name__}: {exc.message}"[:200])
    return DeliveryError(f"telegram: {type(exc).__name__}")


def file_refused(exc: BadRequest) -> bool:
    """Telegram refused the file we named ("wrong file identifier/HTTP URL specified", "wrong
    remote file identifier", ...), as opposed to the chat or the message."""
    text = exc.message.lower()
    return ("file" in text or "identifier" in text) and "chat not found" not in text


def _chat_id(external_id: str) -> int | str:
    try:
        return int(external_id)
    except ValueError:
        return external_id  # '@channelusername' form


class TelegramChannel:
    """Telegram through PTB's `Bot`; one instance per process, shared by all events."""

    name = CHANNEL

    def __init__(
        self,
        settings: Settings,
        *,
        cards_mode: CardsMode = "list",
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        """`sessionmaker` keeps learned file_ids in the database for every process; without
        it they live in this process only."""
        if settings.telegram_bot_token is None:
            raise TelegramConfigError("TELEGRAM_BOT_TOKEN is not set")
        token = settings.telegram_bot_token.get_secret_value()
        secret = settings.telegram_webhook_secret
        # Before the Bot exists: its constructor logs the base URL, token included.
        protect_logs(token, secret.get_secret_value() if secret else "")
        self.settings = settings
        self.cards_mode: CardsMode = cards_mode
        self.tg = Bot(
            token,
            base_url=settings.telegram_api_base_url,
            request=request,
            get_updates_request=get_updates_request,
        )
        # media_key -> Telegram file_id, so an episode is uploaded once and re-sent by id: a
        # cache over the telegram_file table, which every process and restart shares.
        self.file_ids: dict[str, str] = {}
        # media_key -> file size as the replies give it; the table keys a file by both.
        self._sizes: dict[str, int] = {}
        self.sessionmaker = sessionmaker
        # file_ids belong to one bot: rows are kept per bot token (hashed, never the token).
        self._bot = bot_hash(token)
        # One upload per file at a time: others wait for its file_id instead of uploading too.
        self._uploads: dict[str, asyncio.Lock] = {}
        # Chats with a reply keyboard (AskPhone) still open; the next plain message removes it.
        self._keyboard_open: set[str] = set()
        # event id -> calls already sent, so a retried delivery does not repeat them.
        self._progress: OrderedDict[str, int] = OrderedDict()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the HTTP clients and check the token (getMe)."""
        try:
            await self.tg.initialize()
        except InvalidToken:
            # PTB's own message contains the token; never let it reach a log.
            raise TelegramConfigError("TELEGRAM_BOT_TOKEN was rejected by Telegram") from None
        except NetworkError as exc:
            # Telegram unreachable at start-up must not stop the app; sends retry later.
            log.warning("Telegram not reachable at start-up: %s", type(exc).__name__)

    async def stop(self) -> None:
        await self.tg.shutdown()

    @property
    def username(self) -> str | None:
        """The bot's @username once started (for t.me deep links)."""
        try:
            return self.tg.username
        except RuntimeError:  # not initialised
            return None

    # -- inbound --------------------------------------------------------------------------
    def to_incoming(self, event: dict[str, Any]) -> Incoming | None:
        return to_incoming(event)

    # -- outbound -------------------------------------------------------------------------
    async def deliver(
        self,
        external_id: str,
        replies: list[Reply],
        *,
        incoming: Incoming | None = None,
        paid_broadcast: bool = False,
    ) -> Delivery:
        """Answer the callback query (if any), then send the replies in order.

        `paid_broadcast` (broadcasts, when TELEGRAM_ALLOW_PAID_BROADCAST is on) sends each
        call with `allow_paid_broadcast`, which lifts Telegram's rate limit for a fee."""
        chat_id = _chat_id(external_id)
        requests = 0
        if incoming is not None and incoming.callback_query_id:
            requests += await self._answer_callback(incoming.callback_query_id)
        await self._recall_file_ids(replies)
        calls = render(
            replies,
            cards_mode=self.cards_mode,
            file_ids=self.file_ids,
            remove_keyboard=external_id in self._keyboard_open,
        )
        if paid_broadcast:
            calls = [
                dataclasses.replace(c, params={**c.params, "allow_paid_broadcast": True})
                for c in calls
            ]
        key = incoming.event_id if incoming is not None and incoming.event_id else None
        done = self._progress.get(key, 0) if key else 0
        sent: list[str] = []
        for index, call in enumerate(calls):
            if index < done:
                continue
            try:
                await self._send(chat_id, call)
            except TelegramError as exc:
                if key:
                    self._remember(key, index)
                raise translate_error(exc) from exc
            sent.append(call.api_method)
        if key:
            self._progress.pop(key, None)
        if opens_keyboard(calls):
            self._keyboard_open.add(external_id)
        elif removes_keyboard(calls):
            self._keyboard_open.discard(external_id)
        return Delivery(method="send", requests=requests + len(sent), details={"calls": sent})

    def _remember(self, key: str, index: int) -> None:
        self._progress[key] = index
        self._progress.move_to_end(key)
        while len(self._progress) > PROGRESS_MEMORY:
            self._progress.popitem(last=False)

    async def _answer_callback(self, query_id: str) -> int:
        """Stop the button's spinner. Failure here must not cost the person their answer."""
        try:
            await self.tg.answer_callback_query(query_id)
        except BadRequest as exc:  # "query is too old" on a late retry
            log.info("callback query not answered: %s", exc.message)
        except TelegramError as exc:
            log.warning("callback query not answered: %s", type(exc).__name__)
        return 1

    # -- file_ids ---------------------------------------------------------------------------
    async def _recall_file_ids(self, replies: list[Reply]) -> None:
        """Read through to the stored file_ids of the audio about to be sent (one query for
        the files this process does not know yet)."""
        wanted: list[tuple[str, int]] = []
        for reply in replies:
            if not isinstance(reply, Audio) or not reply.media_key:
                continue
            key, size = reply.media_key, reply.file_size or 0
            if self._sizes.get(key, size) != size:
                self.file_ids.pop(key, None)  # another file behind the same key
            self._sizes[key] = size
            if key not in self.file_ids:
                wanted.append((key, size))
        if not wanted or self.sessionmaker is None:
            return
        try:
            async with self.sessionmaker() as session:
                found = await get_file_ids(session, bot=self._bot, keys=wanted)
        except (SQLAlchemyError, OSError) as exc:
            # Without the stored ids the audio still goes, by URL or upload, as on first send.
            log.warning("stored Telegram file_ids unavailable: %s", type(exc).__name__)
            return
        for (key, _size), file_id in found.items():
            self.file_ids.setdefault(key, file_id)

    async def _learn(self, call: TgCall, message: Message, *, by_id: bool) -> None:
        """Remember the file_id Telegram returned; stored after a send by URL or upload (a
        send by a known id changes nothing worth a write)."""
        if not call.media_key or message.audio is None:
            return
        file_id = message.audio.file_id
        self.file_ids[call.media_key] = file_id
        if by_id or self.sessionmaker is None:
            return
        key = (call.media_key, self._sizes.get(call.media_key, 0))
        try:
            async with self.sessionmaker() as session:
                await remember_file_id(
                    session, bot=self._bot, key=key, file_id=file_id, now=utcnow()
                )
                await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            # The audio is out: a lost id costs one more upload later, never a failed send.
            log.warning("Telegram file_id not stored: %s", type(exc).__name__)

    async def _forget(self, call: TgCall, file_id: str) -> None:
        """Telegram refused a remembered file_id (another bot, purged): drop it everywhere."""
        if not call.media_key:
            return
        if self.file_ids.get(call.media_key) == file_id:
            del self.file_ids[call.media_key]
        if self.sessionmaker is None:
            return
        key = (call.media_key, self._sizes.get(call.media_key, 0))
        try:
            async with self.sessionmaker() as session:
                await forget_file_id(session, bot=self._bot, key=key, file_id=file_id)
                await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            # The send that follows stores its new id over this one anyway.
            log.warning("refused Telegram file_id not dropped: %s", type(exc).__name__)

    # -- sending ----------------------------------------------------------------------------
    async def _send(self, chat_id: int | str, call: TgCall) -> Message:
        if call.method == "send_message":
            return await self.tg.send_message(chat_id=chat_id, **call.params)
        if call.method == "send_photo":
            return await self.tg.send_photo(
                chat_id=chat_id, read_timeout=MEDIA_READ_TIMEOUT, **call.params
            )
        if call.upload:
            return await self._send_large_audio(chat_id, call)
        # render names a remembered file_id only with the URL to fall back on.
        by_id = call.url_fallback is not None
        try:
            message = await self.tg.send_audio(
                chat_id=chat_id, read_timeout=MEDIA_READ_TIMEOUT, **call.params
            )
        except BadRequest as exc:
            if call.url_fallback is None or not file_refused(exc):
                raise
            # The remembered file_id is no longer valid: send by URL once and store its new id.
            await self._forget(call, str(call.params["audio"]))
            params = {**call.params, "audio": call.url_fallback}
            message = await self.tg.send_audio(
                chat_id=chat_id, read_timeout=MEDIA_READ_TIMEOUT, **params
            )
            by_id = False
        await self._learn(call, message, by_id=by_id)
        return message

    async def _send_large_audio(self, chat_id: int | str, call: TgCall) -> Message:
        """Audio over 20 MB, which Telegram will not fetch by URL: upload the file from
        MEDIA_DIR once (multipart, up to 50 MB) and send it by its file_id from then on."""
        lock = self._uploads.setdefault(call.media_key or str(call.params["audio"]), asyncio.Lock())
        async with lock:
            cached = self.file_ids.get(call.media_key) if call.media_key else None
            if cached is not None:  # stored, or uploaded by another delivery while this one waited
                try:
                    return await self.tg.send_audio(
                        chat_id=chat_id,
                        read_timeout=MEDIA_READ_TIMEOUT,
                        **{**call.params, "audio": cached},
                    )
                except BadRequest as exc:
                    if not file_refused(exc):
                        raise
                    await self._forget(call, cached)
            url = str(call.url_fallback or call.params["audio"])
            path = local_media_path(
                url,
                public_base_url=self.settings.public_base_url,
                media_dir=self.settings.media_dir,
            )
            if path is None:
                # Not one of our files (or gone): a link is all that can be offered.
                log.warning("audio over 20 MB is not under MEDIA_DIR; sending its link")
                if call.link_fallback is None:
                    raise BadRequest("audio over 20 MB and no local file to upload")
                return await self._send(chat_id, call.link_fallback)
            data = await asyncio.to_thread(path.read_bytes)
            message = await self.tg.send_audio(
                chat_id=chat_id,
                read_timeout=MEDIA_READ_TIMEOUT,
                write_timeout=MEDIA_WRITE_TIMEOUT,
                **{**call.params, "audio": InputFile(data, filename=path.name)},
            )
            await self._learn(call, message, by_id=False)
            return message
