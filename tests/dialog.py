"""Test harness: serve an ASGI app on a loopback port, and talk to the bot like a person.

Tests read like transcripts:

    replies = await chat.say("help")
    assert "找課程" in texts(replies)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select

from bot.messages import Progress, progress_text
from models.base import utcnow
from models.members import ChannelAccount


class _QuietServer(uvicorn.Server):
    # The test process owns signal handling (pytest's Ctrl-C), not each in-test server.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def,override]
        yield


@contextlib.asynccontextmanager
async def serve(asgi_app: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Run `asgi_app` with uvicorn on 127.0.0.1 and a free port; yields its base URL."""
    config = uvicorn.Config(
        asgi_app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan, access_log=False
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        if task.done() and task.exception() is not None:
            raise RuntimeError("test server did not start") from task.exception()
        task.cancel()
        raise RuntimeError("test server did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def texts(replies: list[dict[str, Any]]) -> str:
    """All the words a person would read in these replies, one block per reply."""
    out: list[str] = []
    for r in replies:
        if r["kind"] in ("text", "ask_phone"):
            out.append(r["text"])
        elif r["kind"] == "cards":
            out.append(r["alt_text"])
            out.extend(
                f"{c['title']}\n{c.get('subtitle', '')}\n{c.get('body', '')}" for c in r["cards"]
            )
        elif r["kind"] == "audio":
            out.append(r.get("title", ""))
        elif r["kind"] == "progress":
            out.append(progress_text(Progress.model_validate(r)))
    return "\n".join(out)


def buttons(replies: list[dict[str, Any]]) -> dict[str, str]:
    """label -> action (or url) of every button and quick reply in these replies."""
    found: dict[str, str] = {}

    def add(items: list[dict[str, Any]]) -> None:
        for b in items:
            found[b["label"]] = b.get("action") or b.get("url") or ""

    for r in replies:
        add(r.get("buttons", []))
        add(r.get("quick_replies", []))
        for card in r.get("cards", []):
            add(card.get("buttons", []))
        if r.get("more"):
            add([r["more"]])
        if r.get("cancel"):
            add([r["cancel"]])
    return found


class Chat:
    """One simulated person talking to the bot through the real HTTP API."""

    def __init__(self, http: httpx.AsyncClient, user: str, *, language: str | None = None) -> None:
        self.http = http
        self.user = user
        self.language = language
        self.after = 0

    async def _send(self, **body: Any) -> list[dict[str, Any]]:
        payload = {"user": self.user, "after": self.after, "language": self.language, **body}
        response = await self.http.post("/simulator/api/send", json=payload)
        response.raise_for_status()
        data = response.json()
        self.after = data["last"]
        return [m["reply"] for m in data["messages"]]

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await self._send(kind="text", text=text)

    async def tap(self, action: str) -> list[dict[str, Any]]:
        return await self._send(kind="action", action=action)

    async def share_phone(self, phone: str) -> list[dict[str, Any]]:
        return await self._send(kind="contact", phone=phone)

    async def follow(self) -> list[dict[str, Any]]:
        return await self._send(kind="follow")

    async def pending(self) -> list[dict[str, Any]]:
        """Messages that arrived without being asked (outbox deliveries)."""
        response = await self.http.get(
            "/simulator/api/messages", params={"user": self.user, "after": self.after}
        )
        response.raise_for_status()
        data = response.json()
        self.after = data["last"]
        return [m["reply"] for m in data["messages"]]


async def eventually(check: Any, *, within: float = 5.0, interval: float = 0.02) -> Any:
    """Poll `check()` (sync or async) until it returns a truthy value; fail after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@dataclass
class World:
    """The running app over real HTTP, the clock its events are handled at (after
    `follow_clock`), and what a test collected on the way (the codes sent, which no log
    may hold)."""

    runtime: Any
    http: httpx.AsyncClient
    now: dt.datetime = field(default_factory=utcnow)
    codes: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def follow_clock(self) -> None:
        """Every event is handled at the world's time, so a test can let an hour pass."""
        self.runtime.processor.clock = lambda: self.now

    def chat(self, user: str, language: str | None = None) -> Chat:
        self.users.append(user)
        return Chat(self.http, user, language=language)

    def advance(self, by: dt.timedelta | None = None, **delta: float) -> None:
        self.now += (by or dt.timedelta()) + dt.timedelta(**delta)

    async def member_id(self, chat: Chat) -> int:
        async with self.runtime.sessionmaker() as s:
            account = await s.scalar(
                select(ChannelAccount).where(ChannelAccount.external_id == chat.user)
            )
            assert account is not None
            return int(account.member_id)

    async def _inbox(self, phone: str) -> list[dict[str, Any]]:
        """The texts to `phone` that any of this world's people asked for, oldest first (each
        person's simulator inbox shows only their own)."""
        messages = []
        for user in dict.fromkeys(self.users):
            response = await self.http.get(
                "/simulator/api/sms", params={"phone": phone, "user": user}
            )
            response.raise_for_status()
            messages += response.json()["messages"]
        return sorted(messages, key=lambda m: m["id"])

    async def sms_code(self, phone: str) -> str:
        """The code in the last text message the dev SMS provider delivered to `phone`."""
        messages = await self._inbox(phone)
        assert messages, "no text message arrived"
        code = re.search(r"\b(\d{6})\b", messages[-1]["reply"]["text"])
        assert code is not None
        self.codes.append(code.group(1))
        return code.group(1)

    async def sms_count(self, phone: str) -> int:
        return len(await self._inbox(phone))
