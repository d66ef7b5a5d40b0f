"""A fake SMS gateway (Twilio and Mitake shapes) served by uvicorn on 127.0.0.1:<random port>.

It records every request exactly as it arrived (method, path, query, headers, raw body) and
answers with queued responses, so tests can check the wire format and simulate failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)


@dataclass
class Canned:
    status: int = 200
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    delay: float = 0.0


@dataclass
class FakeSmsGateway:
    """Answers each request with the next queued response (or `default`)."""

    default: Canned = field(default_factory=Canned)
    requests: list[Recorded] = field(default_factory=list)
    _queue: deque[Canned] = field(default_factory=deque)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    port: int = 0

    def queue(
        self,
        status: int = 200,
        body: str = "",
        *,
        content_type: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self._queue.append(Canned(status, body, content_type or self.default.content_type, delay))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.requests.append(
            Recorded(
                method=scope["method"],
                path=scope["path"],
                query=parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True),
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                body=body,
            )
        )
        canned = self._queue.popleft() if self._queue else self.default
        if canned.delay:
            await asyncio.sleep(canned.delay)
        payload = canned.body.encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": canned.status,
                "headers": [
                    (b"content-type", canned.content_type.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __aenter__(self) -> FakeSmsGateway:
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        assert self._task is not None
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
