"""The office's imports through the admin API (what the console's Imports and Requirements
pages send): all-or-nothing, every bad row named, the person in the audit log; member
look-ups by channel id and by a hashed phone number, masked, and audited."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from models.audit import AuditLog
from models.base import utcnow
from models.db import create_sessionmaker
from models.identity import CivilServant, VerifiedPhone
from models.members import ensure_account
from models.pii import PiiVault
from tests.admin_support import bearer, make_account
from tests.conftest import TEST_PII_KEY

ROSTER = (
    "employee_id,name,agency,mobile,email,active\n"
    "E001,王小明,臺北市政府資訊局,0912-345-678,ming@gov.taipei,是\n"
    "E002,李美華,臺北市政府社會局,0922 333 444,,1\n"
)
BAD_ROSTER = "employee_id,name,agency,mobile,email,active\nE003,,社會局,12,,maybe\n"
COMPLETIONS = "employee_id,course_id,completed_at,hours\nE001,sec-1,2026-03-01,3\n"


async def test_roster_completions_and_requirements(served, engine) -> None:  # type: ignore[no-untyped-def]
    admin = await make_account(engine, "alice@example.org", "admin")
    analyst = await make_account(engine, "ann@example.org", "analyst")
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        refused = await http.post(
            "/admin/api/imports/roster", content=BAD_ROSTER.encode(), headers=bearer(admin)
        )
        assert refused.status_code == 422
        errors = refused.json()["detail"]["errors"]
        assert any("line 2" in e for e in errors)
        async with engine.connect() as conn:
            assert (
                await conn.execute(select(func.count()).select_from(CivilServant))
            ).scalar() == 0
        done = await http.post(
            "/admin/api/imports/roster", content=ROSTER.encode(), headers=bearer(admin)
        )
        assert done.status_code == 200, done.text
        assert done.json()["added"] == 2
        assert (
            await http.post("/admin/api/imports/roster", content=b"", headers=bearer(admin))
        ).status_code == 400
        completions = await http.post(
            "/admin/api/imports/completions", content=COMPLETIONS.encode(), headers=bearer(admin)
        )
        assert completions.json()["added"] == 1
        again = await http.post(
            "/admin/api/imports/completions", content=COMPLETIONS.encode(), headers=bearer(admin)
        )
        assert again.json() == {**again.json(), "added": 0, "already_known": 1}
        future = "employee_id,course_id,completed_at,hours\nE001,sec-1,2999-01-01,1\n"
        assert (
            await http.post(
                "/admin/api/imports/completions", content=future.encode(), headers=bearer(admin)
            )
        ).status_code == 422
        # Requirements: which active courses each matches; none yet, so every one warns.
        listed = await http.get("/admin/api/requirements", headers=bearer(analyst))
        body = listed.json()
        assert body["requirements"]
        assert set(body["unmatched"]) == {r["code"] for r in body["requirements"]}
        catalog = "id,title,category,hours\nsec-1,資通安全管理實務,資訊安全,3\n"
        await http.post(
            "/admin/api/courses/import",
            content=catalog.encode(),
            headers={**bearer(admin), "content-type": "text/csv"},
        )
        matched = (await http.get("/admin/api/requirements", headers=bearer(analyst))).json()
        security = [
            r for r in matched["requirements"] if "sec-1" in {c["id"] for c in r["matching"]}
        ]
        assert security
        assert all(not r["unmatched"] for r in security)
        assert (
            await http.post("/admin/api/requirements", content=b"- {}\n", headers=bearer(admin))
        ).status_code == 422
        assert (
            await http.post("/admin/api/requirements", content=b"[]", headers=bearer(admin))
        ).status_code == 422
    async with engine.connect() as conn:
        actions = (await conn.execute(select(AuditLog.actor, AuditLog.action))).all()
    assert ("admin:alice@example.org", "roster.imported") in actions
    assert ("admin:alice@example.org", "completions.imported") in actions
    assert ("admin:alice@example.org", "courses.import") in actions


async def test_member_look_up_by_channel_and_by_hashed_phone(served, engine) -> None:  # type: ignore[no-untyped-def]
    auditor = await make_account(engine, "audrey@example.org", "auditor")
    marketer = await make_account(engine, "mark@example.org", "marketer")
    vault = PiiVault(TEST_PII_KEY)
    async with create_sessionmaker(engine)() as session:
        account, _ = await ensure_account(
            session, channel="line", external_id="U" + "a" * 32, now=utcnow()
        )
        await session.flush()
        session.add(
            VerifiedPhone(
                member_id=account.member_id,
                phone_hash=vault.lookup_hash("+886912345678"),
                phone_sealed=vault.encrypt("+886912345678"),
                method="sms",
                channel="line",
                verified_at=utcnow(),
            )
        )
        await session.commit()
        member_id = account.member_id
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        by_channel = await http.post(
            "/admin/api/members/lookup",
            json={"channel": "line", "external_id": "U" + "a" * 32},
            headers=bearer(auditor),
        )
        assert by_channel.status_code == 200
        assert by_channel.json()["id"] == member_id
        by_phone = await http.post(
            "/admin/api/members/lookup-phone",
            json={"phone": "0912 345 678"},
            headers=bearer(auditor),
        )
        found = by_phone.json()
        assert found["id"] == member_id
        assert found["phone"]["masked"] == "0912-***-678"
        assert "0912345678" not in by_phone.text
        assert "+886912345678" not in by_phone.text
        missing = await http.post(
            "/admin/api/members/lookup-phone", json={"phone": "0933111222"}, headers=bearer(auditor)
        )
        assert missing.status_code == 404
        not_a_number = await http.post(
            "/admin/api/members/lookup-phone",
            json={"phone": "hello there"},
            headers=bearer(auditor),
        )
        assert not_a_number.status_code == 422
        assert (
            await http.get(f"/admin/api/members/{member_id}", headers=bearer(marketer))
        ).status_code == 403
    async with engine.connect() as conn:
        lookups = (
            await conn.execute(
                select(AuditLog.actor, AuditLog.details).where(AuditLog.action == "members.lookup")
            )
        ).all()
    assert [(a, d["by"]) for a, d in lookups] == [
        ("admin:audrey@example.org", "channel"),
        ("admin:audrey@example.org", "phone"),
    ]


async def test_concurrent_member_look_ups_are_each_answered_and_audited(served, engine) -> None:  # type: ignore[no-untyped-def]
    """Each look-up reads, then writes its audit entry: on SQLite a read snapshot cannot be
    upgraded once another look-up has committed (the whole-API fuzzer met a 500 there), so
    the look-up takes the write lock up front."""
    auditor = await make_account(engine, "ann@example.org", "auditor")
    async with create_sessionmaker(engine)() as session:
        account, _ = await ensure_account(
            session, channel="line", external_id="U" + "b" * 32, now=utcnow()
        )
        await session.commit()
        member_id = account.member_id
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        answers = await asyncio.gather(
            *(
                http.get(f"/admin/api/members/{member_id}", headers=bearer(auditor))
                for _ in range(20)
            )
        )
    assert [a.status_code for a in answers] == [200] * 20
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "members.lookup")
        )
    assert count == 20
