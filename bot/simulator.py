"""The simulator channel: a web chat (and `edoor chat`) through the same router as LINE and
Telegram, so the bot works with no platform account and marketers can preview messages."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Delivery
from bot.inbound import InboundProcessor
from bot.messages import Incoming, Reply, dump_replies
from models.base import utcnow
from models.simulator import add_messages, messages_after

NAME = "simulator"
STATIC = Path(__file__).parent / "static"


class SimulatorChannel:
    """Delivers replies into the simulator_message table, readable from any process."""

    name = NAME

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    def to_incoming(self, event: dict[str, Any]) -> Incoming | None:
        phone = event.get("phone")
        return Incoming(
            channel=NAME,
            user_id=event["user"],
            kind=event["kind"],
            event_id=event["id"],
            text=event.get("text", ""),
            action=event.get("action", ""),
            contact_phone=SecretStr(phone) if phone else None,
            contact_is_own=bool(phone),
            language_hint=event.get("language"),
        )

    async def deliver(
        self, external_id: str, replies: list[Reply], *, incoming: Incoming | None = None
    ) -> Delivery:
        async with self.sessionmaker() as session:
            await add_messages(
                session,
                user_key=external_id,
                box="bot",
                replies=dump_replies(replies),
                now=utcnow(),
            )
            await session.commit()
        return Delivery(method="store", requests=1)


class SimulatorInput(BaseModel):
    """One thing the simulated person does."""

    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["text", "action", "contact", "follow", "unfollow"] = "text"
    text: str = Field(default="", max_length=2000)
    action: str = Field(default="", max_length=300)
    phone: str | None = Field(default=None, max_length=32)
    language: str | None = None
    after: int = 0


def simulator_routes(*, processor: InboundProcessor) -> APIRouter:
    """GET /simulator (the page) and its small JSON API."""
    routes = APIRouter()

    @routes.get("/simulator", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "simulator.html").read_text("utf-8"))

    @routes.post("/simulator/api/send")
    async def send(body: SimulatorInput) -> dict[str, Any]:
        """Runs the input through the router now and returns the messages sent since `after`."""
        if body.kind == "text" and not body.text.strip():
            raise HTTPException(status_code=400, detail="text is empty")
        if body.kind == "action" and not body.action:
            raise HTTPException(status_code=400, detail="action is empty")
        raw = body.model_dump(exclude={"after"}) | {"id": uuid.uuid4().hex}
        row = processor.new_event(event_id=raw["id"], kind=body.kind, raw=raw)
        ids = await processor.record(NAME, [row])
        await processor.process_many(ids)
        return await _messages(body.user, body.after)

    @routes.get("/simulator/api/messages")
    async def messages(
        user: str = Query(min_length=1, max_length=64), after: int = 0
    ) -> dict[str, Any]:
        """Messages for this simulated person after id `after` (replies and proactive ones)."""
        return await _messages(user, after)

    async def _messages(user: str, after: int) -> dict[str, Any]:
        async with processor.sessionmaker() as session:
            rows = await messages_after(session, user_key=user, after_id=after)
        return {
            "messages": [
                {"id": r.id, "reply": r.reply, "at": r.created_at.isoformat()} for r in rows
            ],
            "last": rows[-1].id if rows else after,
        }

    return routes
