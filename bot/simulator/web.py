"""The simulator channel: a web chat (and `edoor chat`) through the same router as LINE and
Telegram, so the bot works with no platform account and marketers can preview messages.

The simulator is dev-only (off under EDOOR_ENV=production), which is why it may play
personas, such as a civil servant, without the roster check the real flow requires.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Delivery
from bot.i18n import normalise_language
from bot.inbound import InboundProcessor
from bot.messages import Incoming, Reply, dump_replies
from bot.simulator.views import views
from models.base import utcnow
from models.identity import sms_inbox_key
from models.members import ensure_account, get_account
from models.phones import check_phone, parse_regions
from models.simulator import SimulatorMessage, add_messages, messages_after

NAME = "simulator"
STATIC = Path(__file__).parent / "static"
# The page's own files; anything else under /simulator/static is a 404.
STATIC_FILES = {"simulator.js": "text/javascript", "simulator.css": "text/css"}
USER_KEY = r"^[A-Za-z0-9_.:-]+$"
SMS_BOX = "sms"

PersonaId = Literal["new", "citizen", "civil_servant"]
UserKey = Annotated[str, Query(min_length=1, max_length=64, pattern=USER_KEY)]
# Message ids are database integers: anything larger is a client's mistake, not a 500.
MAX_ID = 2**63 - 1
AfterId = Annotated[int, Query(ge=0, le=MAX_ID)]


@dataclass(frozen=True)
class Persona:
    """A simulated person the page (or `edoor chat`) can talk as."""

    id: str
    label: str
    description: str
    user: str | None  # None: a new person each time (a fresh key)
    civil_servant: bool = False

    def user_key(self) -> str:
        return self.user or f"new-{uuid.uuid4().hex[:12]}"


PERSONAS: dict[str, Persona] = {
    p.id: p
    for p in (
        Persona("new", "新朋友 New citizen", "第一次加入好友的市民", None),
        Persona("citizen", "市民 Citizen", "常來上課的市民", "citizen-1"),
        Persona(
            "civil_servant",
            "公務人員 Civil servant",
            "已驗證的公務人員",
            "civil-servant-1",
            civil_servant=True,
        ),
    )
}


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

    user: str = Field(min_length=1, max_length=64, pattern=USER_KEY)
    kind: Literal["text", "action", "contact", "follow", "unfollow"] = "text"
    text: str = Field(default="", max_length=2000)
    action: str = Field(default="", max_length=300)
    phone: str | None = Field(default=None, max_length=32)
    language: str | None = Field(default=None, max_length=16)
    persona: PersonaId | None = None
    after: int = Field(default=0, ge=0, le=MAX_ID)


class SimulatorInputError(ValueError):
    """The input says nothing (empty text, action or phone); the page shows it as a 400."""


# -- the one path every simulated input takes (web page and `edoor chat`) -------------------
async def simulate(processor: InboundProcessor, body: SimulatorInput) -> None:
    """Record the input as an inbound event and run it through the router now, exactly as a
    webhook would (record, then the worker's batches), so the simulator exercises the real
    pipeline; returns once the event had its turn."""
    if body.kind == "text" and not body.text.strip():
        raise SimulatorInputError("text is empty")
    if body.kind == "action" and not body.action:
        raise SimulatorInputError("action is empty")
    if body.kind == "contact" and not (body.phone or "").strip():
        raise SimulatorInputError("phone is empty")
    if body.persona is not None:
        await apply_persona(processor, user=body.user, persona=body.persona, language=body.language)
    raw = body.model_dump(exclude={"after", "persona"}) | {"id": uuid.uuid4().hex}
    row = processor.new_event(event_id=raw["id"], kind=body.kind, raw=raw, sender=body.user)
    ids = await processor.record(NAME, [row])
    await processor.answer(ids)


async def apply_persona(
    processor: InboundProcessor, *, user: str, persona: str, language: str | None = None
) -> None:
    """Give the simulated member what the persona implies before the bot sees the input."""
    if not PERSONAS[persona].civil_servant:
        return
    async with processor.sessionmaker() as session:
        account = await get_account(session, channel=NAME, external_id=user)
        if account is not None and account.member.is_civil_servant:
            return
        account, _ = await ensure_account(
            session,
            channel=NAME,
            external_id=user,
            language=normalise_language(language) if language else None,
            now=utcnow(),
        )
        account.member.is_civil_servant = True
        await session.commit()


async def read_messages(
    sessionmaker: async_sessionmaker[AsyncSession], *, user_key: str, after: int, box: str = "bot"
) -> dict[str, Any]:
    """{'messages': [{'id', 'reply', 'at'}], 'last': id} for rows after id `after`."""
    async with sessionmaker() as session:
        rows = await messages_after(session, user_key=user_key, after_id=after, box=box)
    rendered = box == "bot"
    return {
        "messages": [_row(r, rendered=rendered) for r in rows],
        "last": rows[-1].id if rows else after,
    }


def _row(r: SimulatorMessage, *, rendered: bool) -> dict[str, Any]:
    row = {"id": r.id, "reply": r.reply, "at": r.created_at.isoformat()}
    # The page's LINE and Telegram views draw what those renderers really send.
    return row | views(r.reply) if rendered else row


# -- the phone inbox of the dev SMS provider -------------------------------------------------
def e164(number: str, *, regions: str = "TW") -> str | None:
    """'0912-345-678' -> '+886912345678'; None when it cannot be a phone number.

    Tolerant on purpose: the inbox should open however the number was typed. The
    verification flow's reading (mobiles of the allowed regions) comes first; any other
    possible number still opens its (then empty) inbox.
    """
    checked = check_phone(number, regions=regions)
    if checked.e164 is not None:
        return checked.e164
    try:
        parsed = phonenumbers.parse(
            unicodedata.normalize("NFKC", number), parse_regions(regions)[0]
        )
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def simulator_routes(*, processor: InboundProcessor) -> APIRouter:
    """GET /simulator (the page), its static files and its small JSON API."""
    routes = APIRouter()

    @routes.get("/simulator", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            (STATIC / "simulator.html").read_text("utf-8"),
            headers={"Cache-Control": "no-store"},
        )

    @routes.get("/simulator/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404)
        return FileResponse(
            STATIC / name,
            media_type=f"{media_type}; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    @routes.get("/simulator/api/personas")
    async def personas() -> dict[str, Any]:
        """The personas the page offers, each with the user key to talk as."""
        return {
            "personas": [
                {
                    "id": p.id,
                    "label": p.label,
                    "description": p.description,
                    "user": p.user,
                    "civil_servant": p.civil_servant,
                }
                for p in PERSONAS.values()
            ]
        }

    @routes.post("/simulator/api/send")
    async def send(body: SimulatorInput) -> dict[str, Any]:
        """Runs the input through the router now and returns the messages sent since `after`."""
        try:
            await simulate(processor, body)
        except SimulatorInputError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return await read_messages(processor.sessionmaker, user_key=body.user, after=body.after)

    @routes.get("/simulator/api/messages")
    async def messages(user: UserKey, after: AfterId = 0) -> dict[str, Any]:
        """Messages for this simulated person after id `after` (replies and proactive ones)."""
        return await read_messages(processor.sessionmaker, user_key=user, after=after)

    @routes.get("/simulator/api/sms")
    async def sms_inbox(
        user: UserKey,
        phone: Annotated[str, Query(max_length=40)] = "",
        after: AfterId = 0,
    ) -> dict[str, Any]:
        """The dev SMS provider's messages to this number that this simulated person (`user`)
        asked for, typed in any common form; codes asked for by anyone else never show.

        A number that cannot be read gives an empty inbox (valid: false), not an error, so
        that the page can poll while the person is still typing.
        """
        number = e164(phone, regions=processor.services.settings.phone_allowed_regions)
        if number is None:
            return {"valid": False, "phone": None, "messages": [], "last": after}
        data = await read_messages(
            processor.sessionmaker,
            user_key=sms_inbox_key(processor.services.vault, number, requester=f"{NAME}:{user}"),
            after=after,
            box=SMS_BOX,
        )
        parsed = phonenumbers.parse(number)
        shown = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        return {"valid": True, "phone": shown} | data

    return routes
