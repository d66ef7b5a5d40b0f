"""The ASGI apps the webhook benchmark serves: two baselines and a fake LINE API.

`plain`: a FastAPI endpoint that answers 200. `bare`: checks the HMAC, parses the JSON and
inserts one row with SQLAlchemy Core, on an engine set up as edoor's (SQLite in WAL with
synchronous=NORMAL), so the ratio measures edoor's work, not a slower journal.
`fake_line`: answers LINE's reply/push with 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from fastapi import FastAPI, Request, Response
from sqlalchemy import Column, Integer, MetaData, String, Table, Text

from models.db import create_engine

SECRET = os.environ.get("LINE_CHANNEL_SECRET", "bench-secret")

metadata = MetaData()
bare_events = Table(
    "bench_bare_event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", String(64), unique=True),
    Column("body", Text),
)


def plain() -> FastAPI:
    api = FastAPI()

    @api.post("/webhooks/line")
    async def webhook() -> Response:
        return Response(status_code=200)

    return api


def bare() -> FastAPI:
    engine = create_engine(
        os.environ["DATABASE_URL"], pool_size=20, max_overflow=20, pool_pre_ping=False
    )
    api = FastAPI()

    @api.on_event("startup")
    async def create() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    @api.post("/webhooks/line")
    async def webhook(request: Request) -> Response:
        body = await request.body()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
        if not hmac.compare_digest(
            base64.b64encode(digest).decode(), request.headers.get("x-line-signature", "")
        ):
            return Response(status_code=401)
        payload = json.loads(body)
        event = payload["events"][0]
        async with engine.begin() as conn:
            await conn.execute(
                bare_events.insert().values(event_id=event["webhookEventId"], body=body.decode())
            )
        return Response(status_code=200)

    return api


def fake_line() -> FastAPI:
    api = FastAPI()

    @api.post("/v2/bot/message/{kind}")
    async def send(kind: str) -> Response:
        return Response(
            '{"sentMessages":[{"id":"1","quoteToken":"q"}]}', media_type="application/json"
        )

    return api
