"""A fake Telegram Bot API on loopback: records every call, answers like Telegram, fails on cue.

PTB talks to it when the Bot's `base_url` is `fake.api_base_url` (`http://127.0.0.1:PORT/bot`;
PTB appends the token). Answers use the recorded bodies in ../shared/platform/samples
(tg_api_*.json) when that folder exists, else built-in copies of them.

    async with FakeTelegram() as fake:
        fake.fail(status=403, chat_id=42)            # the next send to chat 42: blocked
        ...
        call = await fake.wait_call("sendMessage")
        assert call.params["text"] == "..."
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.fakes.server import FakeServer, RecordedRequest

CHAT = 5512345678  # the person in the samples
TOKEN = "7012345678:AAFakeTokenForTests_0123456789abcdefXYZ"
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "platform" / "samples"

_BUILTIN: dict[str, dict[str, Any]] = {
    "get_me_ok": {
        "ok": True,
        "result": {
            "id": 7012345678,
            "is_bot": True,
            "first_name": "City eLearning",
            "username": "city_elearning_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        },
    },
    "send_message_ok": {
        "ok": True,
        "result": {
            "message_id": 9,
            "from": {
                "id": 7012345678,
                "is_bot": True,
                "first_name": "City eLearning",
                "username": "city_elearning_bot",
            },
            "chat": {"id": 5512345678, "first_name": "Mei", "type": "private"},
            "date": 1767600200,
            "text": "已為您報名 CIV101",
        },
    },
    "error_403_blocked": {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    },
    "error_400_chat_not_found": {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: chat not found",
    },
    "error_429_retry_after": {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 5",
        "parameters": {"retry_after": 5},
    },
}

# Parameters PTB sends as plain strings even when they look like numbers.
_TEXT_PARAMS = {
    "text",
    "caption",
    "title",
    "performer",
    "description",
    "callback_query_id",
    "secret_token",
    "url",
    "audio",
    "photo",
    "language_code",
}
_ROUTE = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")


def sample(name: str) -> dict[str, Any]:
    """A tg_api_<name>.json body from the shared samples, or the built-in copy."""
    path = SAMPLES / f"tg_api_{name}.json"
    if path.is_file():
        return json.loads(path.read_text("utf-8"))  # type: ignore[no-any-return,unused-ignore]
    return copy.deepcopy(_BUILTIN[name])


def sample_update(name: str) -> dict[str, Any]:
    """A recorded update (tg_<name>.json) from the shared samples, or an equivalent."""
    path = SAMPLES / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text("utf-8"))  # type: ignore[no-any-return,unused-ignore]
    user = {"id": CHAT, "is_bot": False, "first_name": "Mei", "language_code": "zh-hant"}
    chat = {"id": CHAT, "first_name": "Mei", "type": "private"}
    message = {"message_id": 1, "from": user, "chat": chat, "date": 1767600000}
    built: dict[str, dict[str, Any]] = {
        "tg_start_deeplink": {"message": {**message, "text": "/start ref_portal_CIV101"}},
        "tg_callback_query": {
            "callback_query": {
                "id": "2368201827364519872",
                "from": user,
                "message": {**message, "text": "x"},
                "chat_instance": "-1",
                "data": "enroll:CIV101",
            }
        },
        "tg_contact": {
            "message": {
                **message,
                "contact": {"phone_number": "886912345678", "first_name": "Mei", "user_id": CHAT},
            }
        },
        "tg_contact_foreign": {
            "message": {
                **message,
                "contact": {"phone_number": "+886922333444", "first_name": "W", "user_id": 66},
            }
        },
        "tg_contact_no_user_id": {
            "message": {**message, "contact": {"phone_number": "+886933444555", "first_name": "H"}}
        },
    }
    for status, name_ in (
        ("kicked", "tg_my_chat_member_blocked"),
        ("member", "tg_my_chat_member_unblocked"),
    ):
        me = {"id": 7012345678, "is_bot": True, "first_name": "Bot"}
        built[name_] = {
            "my_chat_member": {
                "chat": chat,
                "from": user,
                "date": 1767603600,
                "old_chat_member": {"user": me, "status": "member"},
                "new_chat_member": {"user": me, "status": status, "until_date": 0},
            }
        }
    # Distinct ids, as in the shared samples, so that dedupe by update_id keeps them apart.
    ids = {
        "tg_start_deeplink": 820001231,
        "tg_callback_query": 820001233,
        "tg_contact": 820001234,
        "tg_contact_foreign": 820001235,
        "tg_contact_no_user_id": 820001236,
        "tg_my_chat_member_blocked": 820001237,
        "tg_my_chat_member_unblocked": 820001238,
    }
    return {"update_id": ids[name], **built[name]}


def _decode(key: str, value: Any) -> Any:
    """PTB sends every non-string parameter as a JSON string inside a form field."""
    if not isinstance(value, str):
        return value
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in _TEXT_PARAMS:
        return value
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in ("true", "false"):
        return value == "true"
    return value


@dataclass
class TgCall:
    """One Bot API call as the fake saw it."""

    method: str  # Bot API name, e.g. "sendMessage"
    token: str
    params: dict[str, Any]
    request: RecordedRequest


@dataclass
class Upload:
    """A file a bot uploaded (multipart/form-data)."""

    method: str
    field: str  # the parameter carrying it, e.g. "audio"
    filename: str
    body: bytes  # the whole multipart body (the file is most of it)


# What Telegram takes: files it fetches by URL up to 20 MB, uploads up to 50 MB.
URL_FILE_LIMIT = 20 * 1024 * 1024
UPLOAD_LIMIT = 50 * 1024 * 1024


@dataclass
class Failure:
    status: int
    chat_id: str | None
    method: str | None
    times: int | None  # None: every matching call
    retry_after: int
    description: str | None
    match: Callable[[dict[str, Any]], bool] | None = None


class FakeTelegram(FakeServer):
    """The Bot API methods edoor uses, with state a test can read and failures it can script."""

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.me = sample("get_me_ok")["result"]
        self.updates: list[dict[str, Any]] = []  # served by getUpdates
        self.webhook: dict[str, Any] | None = None
        self.commands: dict[str, list[dict[str, Any]]] = {}  # language_code ("" default)
        self.file_ids: set[str] = set()  # file_ids this "Telegram" has issued
        self.uploads: list[Upload] = []
        # Sizes of files behind URLs, as Telegram would find them when fetching (default 0).
        self.url_sizes: dict[str, int] = {}
        self._failures: list[Failure] = []
        self._message_id = 100
        self._new_update = asyncio.Event()

    @property
    def api_base_url(self) -> str:
        """What to pass as PTB's base_url (TELEGRAM_API_BASE_URL)."""
        return f"{self.base_url}/bot"

    # -- scripting ---------------------------------------------------------------------------
    def fail(
        self,
        *,
        status: int,
        chat_id: int | str | None = None,
        method: str | None = None,
        times: int | None = 1,
        retry_after: int = 5,
        description: str | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer matching calls with an error: 429 retry_after, 403 blocked, 400 chat not found,
        or any status (5xx...). `times=None` keeps failing; `match` looks at the parameters."""
        self._failures.append(
            Failure(
                status,
                None if chat_id is None else str(chat_id),
                method,
                times,
                retry_after,
                description,
                match,
            )
        )

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (polling)."""
        self.updates.append(update)
        self._new_update.set()

    # -- inspection --------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[TgCall]:
        out = []
        for request in self.requests:
            m = _ROUTE.match(request.path)
            if m is None or (method is not None and m["method"] != method):
                continue
            params = {k: _decode(k, v) for k, v in request.params.items()}
            out.append(TgCall(m["method"], m["token"], params, request))
        return out

    async def wait_call(self, method: str, timeout: float = 5.0) -> TgCall:  # noqa: ASYNC109
        await self.wait_for(lambda r: r.path.endswith(f"/{method}"), timeout)
        return self.calls(method)[0]

    # -- answers -----------------------------------------------------------------------------
    async def respond(self, request: RecordedRequest) -> Response:
        m = _ROUTE.match(request.path)
        if m is None:
            return _error(404, "Not Found")
        if m["token"] != self.token:
            return _error(401, "Unauthorized")
        method = m["method"]
        params = {k: _decode(k, v) for k, v in request.params.items()}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            if len(request.body) > UPLOAD_LIMIT:
                return _error(413, "Request Entity Too Large")
            for name, value in params.items():
                if isinstance(value, str) and value.startswith("<file "):
                    self.uploads.append(Upload(method, name, value[6:-1], request.body))
        failure = self._failure_for(method, params)
        if failure is not None:
            return failure
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = await handler(params)
        if isinstance(result, Response):
            return result
        return JSONResponse({"ok": True, "result": result})

    def _failure_for(self, method: str, params: dict[str, Any]) -> Response | None:
        for failure in self._failures:
            if failure.method is not None and failure.method != method:
                continue
            if failure.chat_id is not None and str(params.get("chat_id")) != failure.chat_id:
                continue
            if failure.match is not None and not failure.match(params):
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times == 0:
                    self._failures.remove(failure)
            return _error_body(failure)
        return None

    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        self._message_id += 1
        base = sample("send_message_ok")["result"]
        base.pop("text", None)
        chat_id = params.get("chat_id")
        base["chat"] = {**base["chat"], "id": chat_id}
        base["message_id"] = self._message_id
        base["date"] = int(time.time())
        if isinstance(params.get("reply_markup"), dict) and "inline_keyboard" in params.get(
            "reply_markup", {}
        ):
            base["reply_markup"] = params["reply_markup"]
        base.update(content)
        return base

    def _file(self, kind: str) -> dict[str, str]:
        file_id = f"{kind}-{len(self.file_ids) + 1:04d}-fake"
        self.file_ids.add(file_id)
        return {"file_id": file_id, "file_unique_id": f"u{file_id}"}

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self.me

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        return self._message(params, text=text)

    async def _m_sendAudio(self, params: dict[str, Any]) -> Any:
        audio = str(params.get("audio", ""))
        uploaded = audio.startswith("<file ")
        by_url = audio.startswith(("http://", "https://"))
        if not (uploaded or by_url) and audio not in self.file_ids:
            return _error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if by_url and self.url_sizes.get(audio, 0) > URL_FILE_LIMIT:
            return _error(400, "Bad Request: failed to get HTTP URL content")
        file = {"file_id": audio, "file_unique_id": f"u{audio}"} if audio in self.file_ids else None
        file = file or self._file("CQACAgUAAxkDAAI")
        meta = {k: params[k] for k in ("duration", "title", "performer") if k in params}
        return self._message(params, audio={**file, "duration": 0, **meta})

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        photo = {**self._file("AgACAgUAAxkDAAI"), "width": 320, "height": 240}
        caption = {"caption": params["caption"]} if "caption" in params else {}
        return self._message(params, photo=[photo], **caption)

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        self.commands[str(params.get("language_code", ""))] = params["commands"]
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = params.get("offset")
        if isinstance(offset, int):
            # Telegram forgets updates below the offset: they count as confirmed.
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and params.get("timeout"):
            # Long poll, but briefly, so that stopping the fake never waits long.
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), min(float(params["timeout"]), 0.5))
        return list(self.updates[: int(params.get("limit") or 100)])


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error_code": status, "description": description}, status_code=status
    )


def _error_body(failure: Failure) -> JSONResponse:
    if failure.status == 429:
        body = sample("error_429_retry_after")
        body["parameters"]["retry_after"] = failure.retry_after
        body["description"] = f"Too Many Requests: retry after {failure.retry_after}"
    elif failure.status == 403:
        body = sample("error_403_blocked")
    elif failure.status == 400:
        body = sample("error_400_chat_not_found")
    else:
        body = {"ok": False, "error_code": failure.status, "description": "Internal Server Error"}
    if failure.description is not None:
        body["description"] = failure.description
    return JSONResponse(body, status_code=failure.status)
