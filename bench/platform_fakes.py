"""Fast fake LINE and Telegram APIs for the dispatcher benchmarks, in their own process.

A bare ASGI app (no framework, so the fake is not the bottleneck) that answers push,
multicast and sendMessage, counts recipients, and, with ENFORCE=1, answers 429 when a
caller exceeds the platform budgets (judged on a 0.95 s window, so only real excess counts):
LINE multicast 200/s and push 2,000/s; Telegram 30/s overall and 1/s per chat.
`GET /stats` returns the counts; `POST /reset` clears them.

Run: python -m uvicorn bench.platform_fakes:app --port PORT (the benchmarks start it).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict, deque
from typing import Any

ENFORCE = os.environ.get("ENFORCE") == "1"
WINDOW = 0.95
BUDGETS = {"multicast": 200, "push": 2000, "telegram": 30}


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.recipients: dict[str, int] = defaultdict(int)
        self.too_many: dict[str, int] = defaultdict(int)
        # LINE user ids seen, to tell distinct recipients from repeats (broadcast bench).
        self.seen: set[str] = set()
        self.repeats: dict[str, int] = defaultdict(int)
        self.recent: dict[str, deque[float]] = defaultdict(deque)
        self.chat_last: dict[str, float] = {}
        self.first: float | None = None
        self.last: float | None = None
        self.per_second: dict[int, int] = defaultdict(int)  # calls by whole second from first

    def over(self, name: str, now: float) -> bool:
        window = self.recent[name]
        while window and window[0] < now - WINDOW:
            window.popleft()
        window.append(now)
        return len(window) > BUDGETS[name]


STATE = State()
OK_LINE = b'{"sentMessages":[{"id":"1","quoteToken":"q"}]}'
TG_MESSAGE = {
    "message_id": 1,
    "date": 1767600200,
    "chat": {"id": 0, "type": "private", "first_name": "x"},
    "from": {"id": 7012345678, "is_bot": True, "first_name": "bot"},
    "text": "x",
}


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    raw = await _body(receive)
    now = time.monotonic()
    if path == "/stats":
        span = (STATE.last or 0) - (STATE.first or 0)
        stats = {
            "calls": STATE.calls,
            "recipients": STATE.recipients,
            "too_many": STATE.too_many,
            "span": span,
            "distinct": {"line": len(STATE.seen)},
            "repeats": STATE.repeats,
            "per_second": [STATE.per_second[i] for i in range(int(span) + 1)],
        }
        await _send(send, 200, json.dumps(stats).encode())
        return
    if path == "/reset":
        STATE.reset()
        await _send(send, 200, b"{}")
        return
    STATE.first = STATE.first or now
    STATE.last = now
    STATE.per_second[int(now - STATE.first)] += 1
    if path.endswith(("/v2/bot/message/push", "/v2/bot/message/multicast")):
        name = "multicast" if path.endswith("multicast") else "push"
        if ENFORCE and STATE.over(name, now):
            STATE.too_many[name] += 1
            await _send(send, 429, b'{"message":"The API rate limit has been exceeded."}')
            return
        body = json.loads(raw)
        to = body["to"]
        STATE.calls[name] += 1
        STATE.recipients["line"] += len(to) if isinstance(to, list) else 1
        for user in to if isinstance(to, list) else [to]:
            if user in STATE.seen:
                STATE.repeats["line"] += 1
            else:
                STATE.seen.add(user)
        await _send(send, 200, OK_LINE)
        return
    if path.endswith("/sendMessage"):
        params = json.loads(raw) if raw[:1] == b"{" else _form(raw)
        chat = str(params.get("chat_id"))
        if ENFORCE:
            last = STATE.chat_last.get(chat)
            STATE.chat_last[chat] = now
            crowded = STATE.over("telegram", now)
            chat_busy = last is not None and now - last < WINDOW
            if crowded or chat_busy:
                STATE.too_many["telegram"] += 1
                STATE.too_many["telegram_chat" if chat_busy else "telegram_all"] += 1
                answer = {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                }
                await _send(send, 429, json.dumps(answer).encode())
                return
        STATE.calls["telegram"] += 1
        STATE.recipients["telegram"] += 1
        message = {**TG_MESSAGE, "chat": {**TG_MESSAGE["chat"], "id": int(chat)}}
        await _send(send, 200, json.dumps({"ok": True, "result": message}).encode())
        return
    if path.endswith("/getMe"):
        me = {"id": 7012345678, "is_bot": True, "first_name": "bot", "username": "bench_bot"}
        await _send(send, 200, json.dumps({"ok": True, "result": me}).encode())
        return
    await _send(send, 404, b'{"message":"not found"}')


def _form(raw: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(raw.decode("utf-8")))
