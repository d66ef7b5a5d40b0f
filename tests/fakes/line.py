"""A fake LINE Messaging API on loopback that records every request and can be told to fail."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0  # what the fake answered (reply, push, multicast)
    answered: bool = False  # the answer has gone back (False: in flight, see reply_delay)


@dataclass
class FakeLine:
    """State of the fake: what was sent, and scripted answers for the next calls."""

    requests: list[Recorded] = field(default_factory=list)
    # Reply tokens LINE should treat as spent or expired (400 Invalid reply token).
    invalid_tokens: set[str] = field(default_factory=set)
    # Scripted (status, body) answers for push/multicast, consumed in order.
    scripted: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    accepted_retry_keys: set[str] = field(default_factory=set)
    # Seconds each push/multicast takes (to catch a worker mid-batch).
    delay: float = 0.0
    # Seconds LINE takes to answer a reply it has already taken (to catch a process with
    # replies in flight: LINE has them, the process has not heard back).
    reply_delay: float = 0.0

    def answered(self) -> dict[str, int]:
        """user id -> messages LINE accepted for them: replies (by the token's owner, as
        given in `token_users`) and pushes/multicasts."""
        counts = self.delivered()
        for r in self.requests:
            if r.path.endswith("/reply") and r.status == 200:
                user = self.token_users.get(r.body.get("replyToken", ""), "?")
                counts[user] = counts.get(user, 0) + 1
        return counts

    # reply token -> user id, for answered() (the test fills it in as it sends events).
    token_users: dict[str, str] = field(default_factory=dict)

    def delivered(self) -> dict[str, int]:
        """user id -> times a push or multicast that LINE accepted (200) was addressed to them."""
        counts: dict[str, int] = {}
        for r in self.requests:
            if r.status != 200 or not r.path.endswith(("/push", "/multicast")):
                continue
            to = r.body.get("to")
            for user in to if isinstance(to, list) else [to]:
                counts[user] = counts.get(user, 0) + 1
        return counts

    def sent(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    def app(self) -> Starlette:
        async def reply(request: Request) -> JSONResponse:
            body = await self._record(request)
            recorded = self.requests[-1]
            if not request.headers.get("authorization", "").startswith("Bearer "):
                recorded.status = 401
                return JSONResponse({"message": "Authentication failed"}, status_code=401)
            if body.get("replyToken") in self.invalid_tokens:
                recorded.status = 400
                return JSONResponse({"message": "Invalid reply token"}, status_code=400)
            self.invalid_tokens.add(body.get("replyToken", ""))  # single use
            recorded.status = 200  # taken: the person sees it, whoever hears back
            if self.reply_delay:
                await asyncio.sleep(self.reply_delay)
            recorded.answered = True
            return JSONResponse({"sentMessages": [{"id": "1", "quoteToken": "q"}]})

        async def push_like(request: Request) -> JSONResponse:
            await self._record(request)
            recorded = self.requests[-1]
            if self.delay:
                await asyncio.sleep(self.delay)
            key = request.headers.get("x-line-retry-key")
            if self.scripted:
                status, answer = self.scripted.popleft()
                if status == 200 and key:
                    self.accepted_retry_keys.add(key)
                recorded.status = status
                return JSONResponse(answer, status_code=status)
            if key and key in self.accepted_retry_keys:
                recorded.status = 409
                return JSONResponse(
                    {"message": "The retry key is already accepted"},
                    status_code=409,
                    headers={"x-line-accepted-request-id": "abc"},
                )
            if key:
                self.accepted_retry_keys.add(key)
            recorded.status = 200
            return JSONResponse({"sentMessages": [{"id": "2", "quoteToken": "q"}]})

        async def unit_statistics(request: Request) -> JSONResponse:
            # GET /v2/bot/insight/message/event/aggregation (insight.yml): per-unit figures of
            # the accepted pushes and multicasts tagged with that customAggregationUnits name;
            # as LINE does, values under 20 people come back null.
            unit = request.query_params.get("customAggregationUnit", "")
            if not unit or not request.query_params.get("from"):
                return JSONResponse({"message": "bad request"}, status_code=400)
            people: set[str] = set()
            for r in self.requests:
                if r.status == 200 and unit in (r.body.get("customAggregationUnits") or []):
                    to = r.body.get("to")
                    people.update(to if isinstance(to, list) else [to])
            shown = len(people) if len(people) >= 20 else None
            return JSONResponse(
                {
                    "overview": {
                        "uniqueImpression": shown,
                        "uniqueClick": None,
                        "uniqueMediaPlayed": None,
                        "uniqueMediaPlayed100Percent": None,
                    },
                    "messages": [],
                    "clicks": [],
                }
            )

        return Starlette(
            routes=[
                Route(
                    "/v2/bot/insight/message/event/aggregation", unit_statistics, methods=["GET"]
                ),
                Route("/v2/bot/message/reply", reply, methods=["POST"]),
                Route("/v2/bot/message/push", push_like, methods=["POST"]),
                Route("/v2/bot/message/multicast", push_like, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        self.requests.append(
            Recorded(path=request.url.path, headers=dict(request.headers), body=body)
        )
        return body
