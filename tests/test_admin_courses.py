"""The admin catalog API: roles on every call, all-or-nothing imports, course passwords."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.courses import Course, CoursePasswordAttempt
from models.identity import AuditLog
from tests.dialog import Chat, buttons, texts

TOKEN = "test-admin-token-0123456789"
GOOD = (
    "id,title,category,hours,description,audience,tags,password_protected\n"
    "adm-1,資通安全管理實務,資訊安全,2,,public,資安,false\n"
    "adm-2,長期照顧服務導論,長期照顧,1.5,,public,長照,false\n"
)
BAD = (
    "id,title,category,hours,description,audience,tags,password_protected\n"
    "adm-3,新課程,資訊安全,two,,public,,false\n"
    "adm-4,,資訊安全,1,,everyone,,false\n"
)


@pytest.fixture
async def admin(served) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with (
        served(admin_token=TOKEN) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Course))).scalar())


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc", "Bearer"])
async def test_every_call_needs_the_admin_token(admin, engine, auth) -> None:  # type: ignore[no-untyped-def]
    headers = {"authorization": auth} if auth else {}
    response = await admin.post(
        "/admin/api/courses/import",
        content=GOOD.encode(),
        headers={**headers, "content-type": "text/csv"},
    )
    assert response.status_code == 401
    response = await admin.put(
        "/admin/api/courses/adm-1/password", json={"password": "abcd"}, headers=headers
    )
    assert response.status_code == 401
    assert await _count(engine) == 0


async def test_import_then_a_refused_file_changes_nothing(admin, engine) -> None:  # type: ignore[no-untyped-def]
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "text/csv"}
    ok = await admin.post(
        "/admin/api/courses/import", content=GOOD.encode("utf-8-sig"), headers=auth
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["created"] == 2
    refused = await admin.post(
        "/admin/api/courses/import",
        content=(GOOD + BAD[BAD.index("\n") + 1 :]).encode(),
        headers=auth,
    )
    assert refused.status_code == 422
    errors = refused.json()["detail"]["errors"]
    assert any("line 4" in e and "hours" in e for e in errors)
    assert any("line 5" in e for e in errors)
    assert await _count(engine) == 2
    assert (
        await admin.post("/admin/api/courses/import", content=b"", headers=auth)
    ).status_code == 400
    async with engine.connect() as conn:
        actions = (await conn.execute(select(AuditLog.action))).scalars().all()
    assert actions == ["courses.import"]


async def test_password_set_by_admin_is_asked_in_chat(admin, engine) -> None:  # type: ignore[no-untyped-def]
    auth = {"authorization": f"Bearer {TOKEN}"}
    await admin.post(
        "/admin/api/courses/import",
        content=GOOD.encode(),
        headers={**auth, "content-type": "text/csv"},
    )
    response = await admin.put(
        "/admin/api/courses/adm-1/password", json={"password": "tp-2026"}, headers=auth
    )
    assert response.json() == {"id": "adm-1", "password_protected": True}
    assert (
        await admin.put("/admin/api/courses/nope/password", json={"password": "abcd"}, headers=auth)
    ).status_code == 404
    async with engine.connect() as conn:
        stored = (
            await conn.execute(select(Course.password_hash).where(Course.id == "adm-1"))
        ).scalar()
    assert stored is not None
    assert "tp-2026" not in stored
    chat = Chat(admin, "sim-admin-check")
    card = await chat.tap("course.open:adm-1")
    assert "tp-2026" not in texts(card)
    assert any("pw" in action or "password" in action for action in buttons(card).values())
    # The right password unlocks the course for this member; a new password undoes that.
    await chat.tap("course.pw:adm-1")
    assert "密碼正確" in texts(await chat.say("tp-2026"))
    assert await _unlocks(engine, "adm-1") == 1
    await admin.put("/admin/api/courses/adm-1/password", json={"password": "tp-2027"}, headers=auth)
    assert await _unlocks(engine, "adm-1") == 0


async def _unlocks(engine, course_id: str) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(CoursePasswordAttempt)
                    .where(
                        CoursePasswordAttempt.course_id == course_id,
                        CoursePasswordAttempt.success.is_(True),
                    )
                )
            ).scalar()
            or 0
        )
