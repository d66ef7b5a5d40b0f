"""A generic recording HTTP server for fake platforms, served by uvicorn on 127.0.0.1.

It runs as an asyncio task in the test's own event loop (so a test stays in one loop), on a
free port chosen by the OS. Subclasses answer in `respond()`; every request is recorded first.

    fake = MyFake()
    base_url = await fake.start()
    ...
    hit = await fake.wait_for(lambda r: r.path.endswith("/send"))
    await fake.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class RecordedRequest:
    """One request as it arrived, plus its decoded body (JSON, urlencoded or multipart form)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any | None = None
    form: dict[str, str] | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The request's parameters, whichever way they were sent."""
        if isinstance(self.json, dict):
            return self.json
        return {**self.query, **(self.form or {})}


class _QuietServer(uvicorn.Server):
    # pytest owns the signal handlers, not a fake inside a test.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FakeServer:
    """Records every request and answers with `respond()`; start() returns the base URL."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=methods)])

    # -- to override -------------------------------------------------------------------------
    async def respond(self, request: RecordedRequest) -> Response:
        return JSONResponse({"message": "not found"}, status_code=404)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(500):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if not self._server.started:
            await self.stop()
            raise RuntimeError("fake server did not start")
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=10)
        self._server = self._task = None

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- inspection --------------------------------------------------------------------------
    async def wait_for(
        self,
        predicate: Callable[[RecordedRequest], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (the shared fake API names it so)
    ) -> RecordedRequest:
        """The first recorded request matching `predicate`, waiting for it up to `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Cleared before the scan (no await in between), so no arrival is missed.
            self._arrived.clear()
            for request in self.requests:
                if predicate(request):
                    return request
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [f"{r.method} {r.path}" for r in self.requests]
                raise AssertionError(f"no matching request within {timeout}s; seen: {seen}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)

    # -- plumbing ----------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers=dict(request.headers),
            body=body,
        )
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json") and body:
            with contextlib.suppress(ValueError):
                recorded.json = json.loads(body)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            recorded.form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        elif content_type.startswith("multipart/form-data"):
            recorded.form = _multipart(content_type, body)
        self.requests.append(recorded)
        self._arrived.set()
        return await self.respond(recorded)


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    """Form fields of a multipart body (stdlib parser: python-multipart is not installed)."""
    message = BytesParser(policy=default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    out: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        out[name] = f"<file {filename}>" if filename else data.decode("utf-8")
    return out
