"""Bounded requests: no route reads more body than its limit, and no client may hold a
connection open by sending its headers or body slowly.

Two layers, because neither can do the other's job:
- `BodyLimit`, an ASGI middleware: refuses a declared `Content-Length` over the route's limit
  before reading anything (413), counts the bytes of a chunked body as they arrive and stops
  reading at the limit (413), and answers 408 when the body stalls. It wraps every route, so
  a handler that calls `request.body()` can never be handed more than its limit.
- `GuardedHttpToolsProtocol`, uvicorn's HTTP protocol with a header timeout: a connection
  whose request line and headers are not complete in time is closed (slowloris); an ASGI
  middleware never sees a request whose headers are still arriving.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from models import safejson


@dataclass(frozen=True)
class RouteLimit:
    """Requests whose path matches `pattern` may carry at most `max_bytes` of body."""

    pattern: re.Pattern[str]
    max_bytes: int


class _Stop(Exception):
    """The body broke its limit (413) or stalled (408); the middleware answers."""

    def __init__(self, status: int) -> None:
        self.status = status


_MESSAGES = {
    408: b'{"detail":"request body too slow"}',
    413: b'{"detail":"request body too large"}',
    400: b'{"detail":"bad Content-Length"}',
}


class BodyLimit:
    """ASGI middleware: at most `default_bytes` of body (or a matching route's own limit)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_bytes: int,
        routes: Sequence[RouteLimit] = (),
        body_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.routes = tuple(routes)
        self.body_timeout = body_timeout

    def limit_for(self, path: str) -> int:
        for route in self.routes:
            if route.pattern.match(path):
                return route.max_bytes
        return self.default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await _answer(send, 400)
            return
        if declared is not None and declared > limit:
            await _answer(send, 413)  # nothing of the body is read
            return
        state = _Guard(limit=limit, timeout=self.body_timeout, receive=receive, send=send)
        try:
            await self.app(scope, state.receive, state.send)
        except _Stop as stop:
            await state.refuse(stop.status)
            return
        except Exception:
            # The app saw the body end early (our doing) and failed on it: answer for it.
            if state.stopped is None:
                raise
            await state.refuse(state.stopped)
            return
        if state.stopped is not None and not state.started:
            await state.refuse(state.stopped)


class _Guard:
    """One request's receive and send, counting the body and timing each part of it."""

    def __init__(self, *, limit: int, timeout: float, receive: Receive, send: Send) -> None:
        self.limit, self.timeout = limit, timeout
        self._receive, self._send = receive, send
        self.seen = 0
        self.started = False  # the response has begun: too late to answer otherwise
        self.stopped: int | None = None  # 413 or 408 once the body broke its bounds

    async def receive(self) -> Message:
        if self.stopped is not None:
            raise _Stop(self.stopped)
        try:
            message: Message = await asyncio.wait_for(self._receive(), self.timeout)
        except TimeoutError:
            self.stopped = 408
            raise _Stop(408) from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.stopped = 413
                raise _Stop(413)
        return message

    async def send(self, message: Message) -> None:
        if self.stopped is not None:
            return  # the app's own answer to a body we cut short is replaced by ours
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def refuse(self, status: int) -> None:
        if self.started:
            return  # the connection closes with the app's answer
        self.started = True
        await _answer(self._send, status)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent (chunked), -1 when it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit() or len(text) > 18:
                return -1
            return int(text)
    return None


async def _answer(send: Send, status: int) -> None:
    body = _MESSAGES[status]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the header timeout, in uvicorn's own protocol ------------------------------------------
@functools.cache
def _header_timeout() -> float:
    # Read in each process (uvicorn's worker processes import this class by name).
    from bot.settings import Settings

    return Settings().http_header_timeout_seconds


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers take too long: from the
    connection's start, and again after each response on a kept-alive connection."""

    header_timeout: float | None = None  # None: HTTP_HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        timeout = self.header_timeout if self.header_timeout is not None else _header_timeout()
        self._header_timer = self.loop.call_later(timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


# -- JSON bodies read strictly ----------------------------------------------------------------
class StrictJsonBodies:
    """ASGI middleware for JSON APIs: a JSON body that Python would accept but we could not
    store (NaN, Infinity, integers of thousands of digits, nesting past MAX_DEPTH) is a 400
    here, and lone surrogates and U+0000 become U+FFFD, before any route sees it. A U+0000 in
    a query string or a URL-encoded form, which PostgreSQL text cannot hold either, is a 400
    too. Routes that read their raw body themselves (webhooks, imports) parse with
    `models.safejson` directly."""

    def __init__(self, app: ASGIApp, *, skip: Sequence[re.Pattern[str]] = ()) -> None:
        self.app = app
        self.skip = tuple(skip)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope.get("query_string", b"")):
            await _problem(send, 400, "the query string holds a NUL character")
            return
        kind = _body_kind(scope) if scope["type"] == "http" else None
        if (
            kind is None
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or any(p.match(scope["path"]) for p in self.skip)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # bounded by BodyLimit, which wraps this middleware
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if kind == "form":
            if _has_nul(body):
                await _problem(send, 400, "the form holds a NUL character")
                return
        elif body:
            try:
                body = json.dumps(safejson.loads(body), ensure_ascii=False).encode()
            except safejson.JsonRefused as refused:
                await _problem(send, 400, f"body is not usable JSON: {refused}")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _body_kind(scope: Scope) -> str | None:
    """ "json" or "form" (URL-encoded) for the bodies checked here; None for the rest
    (multipart uploads carry files, whose bytes may be anything)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            if kind == b"application/json" or kind.endswith(b"+json"):
                return "json"
            return "form" if kind == b"application/x-www-form-urlencoded" else None
    return None


def _has_nul(encoded: bytes) -> bool:
    return b"\x00" in encoded or b"%00" in encoded


async def _problem(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def validation_problem(errors: Sequence[Any]) -> dict[str, Any]:
    """FastAPI's 422 body without the offending input: it may not be JSON at all (NaN), and it
    may be personal (a phone number typed into a field)."""
    return {
        "detail": [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in errors
        ]
    }
