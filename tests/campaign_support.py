"""Campaign test helpers: campaign files, members with a verified phone (set up directly in
the database, as if they had verified earlier), completions and courses."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from models.courses import Course
from models.db import create_sessionmaker
from models.identity import VerifiedPhone, record_audit
from models.learning import Completion
from models.members import ChannelAccount, Member
from models.pii import PiiVault
from tests.conftest import TEST_PII_KEY
from tests.dialog import Chat, texts

ADMIN_TOKEN = "campaign-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
VAULT = PiiVault(TEST_PII_KEY)
UTC = dt.UTC


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


class Clock:
    """The app's notion of now, moved forward by tests (SMS cool-downs, campaign ends)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


def campaign_file(slug: str = "gender-2026", **overrides: Any) -> dict[str, Any]:
    """A running campaign: started a day ago, ends in 30 days, 5 generated codes."""
    start = now() - dt.timedelta(days=1)
    doc: dict[str, Any] = {
        "slug": slug,
        "title": "性平課程領好禮",
        "title_en": "Gender equality course gift",
        "starts_at": start.isoformat(),
        "ends_at": (start + dt.timedelta(days=31)).isoformat(),
        "prize": {
            "name": "NT$200 禮券",
            "name_en": "NT$200 voucher",
            "redeem": "到臺北e大服務台出示兌換碼",
            "redeem_en": "Show the code at the service desk",
            "redeem_until": (start + dt.timedelta(days=90)).isoformat(),
            "generate": 5,
        },
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


def as_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


async def create(http: httpx.AsyncClient, doc: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/admin/api/campaigns", content=as_yaml(doc), headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def campaign_id(engine: AsyncEngine, slug: str) -> int:
    from models.campaigns.claims import require_campaign

    async with create_sessionmaker(engine)() as session:
        return (await require_campaign(session, slug=slug)).id


def e164(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return "+886" + digits[1:]


async def verified_member(
    engine: AsyncEngine,
    user: str,
    phone: str,
    *,
    channel: str = "simulator",
    civil_servant: bool = False,
    at: dt.datetime | None = None,
) -> int:
    """A member with account `user` whose phone was verified earlier; returns the member id."""
    when = at or now() - dt.timedelta(days=2)
    async with create_sessionmaker(engine)() as session:
        member = Member(language="zh-TW", is_civil_servant=civil_servant, created_at=when)
        session.add(
            ChannelAccount(
                member=member, channel=channel, external_id=user, created_at=when, last_seen_at=when
            )
        )
        await session.flush()
        number = e164(phone)
        session.add(
            VerifiedPhone(
                member_id=member.id,
                phone_hash=VAULT.lookup_hash(number),
                phone_sealed=VAULT.encrypt(number),
                method="sms",
                channel=channel,
                verified_at=when,
            )
        )
        await record_audit(
            session,
            actor=f"member:{member.id}",
            action="phone.verified",
            subject=f"phone:{VAULT.lookup_hash(number)}",
            details={"method": "sms", "channel": channel},
            now=when,
        )
        await session.commit()
        return member.id


async def add_course(engine: AsyncEngine, course_id: str, title: str, category: str) -> None:
    async with create_sessionmaker(engine)() as session:
        session.add(Course(id=course_id, title=title, category=category, hours=1.0, tags=[]))
        await session.commit()


async def complete(
    engine: AsyncEngine,
    member_id: int,
    course_id: str,
    hours: float,
    *,
    at: dt.datetime | None = None,
) -> None:
    when = at or now() - dt.timedelta(hours=1)
    async with create_sessionmaker(engine)() as session:
        session.add(
            Completion(
                person=f"member:{member_id}",
                member_id=member_id,
                course_id=course_id,
                completed_at=when,
                day=when.date().isoformat(),
                hours=hours,
                imported_at=when,
            )
        )
        await session.commit()


async def verify_in_chat(http: httpx.AsyncClient, chat: Chat, phone: str) -> list[dict[str, Any]]:
    """Answer the verification the bot asked for: the number, then the code from the SMS."""
    sent = await chat.say(phone)
    assert "驗證碼" in texts(sent), texts(sent)
    inbox = (
        await http.get("/simulator/api/sms", params={"phone": phone, "user": chat.user})
    ).json()
    code = re.search(r"\b(\d{6})\b", inbox["messages"][-1]["reply"]["text"])
    assert code is not None
    return await chat.say(code.group(1))
