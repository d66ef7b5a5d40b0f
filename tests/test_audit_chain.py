"""The audit log is append-only and hash-chained: verify catches an edited, removed or
reordered entry; appends from concurrent writers stay one linear chain; delete-my-data
pseudonymises entries instead of deleting them; the API and CLI report the chain."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.audit import AuditLog, record_audit, verify_chain
from models.base import utcnow
from models.db import create_sessionmaker
from models.members import Member
from models.pii import PiiVault
from models.privacy import erase_member
from tests.admin_support import bearer, make_account
from tests.conftest import TEST_PII_KEY
from tests.test_cli import edoor

T0 = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)


async def _append(engine: AsyncEngine, n: int, *, actor: str = "admin:alice@example.org") -> None:
    async with create_sessionmaker(engine)() as session:
        for i in range(n):
            await record_audit(
                session,
                actor=actor,
                action="courses.import",
                subject=f"course:c-{i}",
                details={"added": i, "ratio": 0.1 + 0.2, "名稱": "資安"},
                now=T0 + dt.timedelta(seconds=i),
            )
        await session.commit()


async def _verify(engine: AsyncEngine):  # type: ignore[no-untyped-def]
    async with create_sessionmaker(engine)() as session:
        return await verify_chain(session)


async def test_each_entry_holds_the_hash_of_the_one_before(engine) -> None:  # type: ignore[no-untyped-def]
    await _append(engine, 5)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(AuditLog).order_by(AuditLog.id))).all()
    assert rows[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.row_hash
    report = await _verify(engine)
    assert report.ok
    assert report.rows == 5


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("UPDATE audit_log SET details = '{\"added\": 99}' WHERE id = {id}", "content changed"),
        ("UPDATE audit_log SET actor = 'admin:mallory' WHERE id = {id}", "actor changed"),
        ("UPDATE audit_log SET subject = 'course:other' WHERE id = {id}", "subject changed"),
        ("UPDATE audit_log SET action = 'courses.password' WHERE id = {id}", "content changed"),
        (
            "UPDATE audit_log SET created_at = created_at + interval '1 hour' WHERE id = {id}",
            "content changed",
        ),
        ("DELETE FROM audit_log WHERE id = {id}", "prev_hash"),
    ],
)
async def test_verify_names_the_first_broken_link(engine, backend, tamper, reason) -> None:  # type: ignore[no-untyped-def]
    await _append(engine, 6)
    async with engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(select(AuditLog.id).order_by(AuditLog.id))]
    target = ids[2]
    sql = tamper.replace("{id}", str(target))
    if backend == "sqlite":
        sql = sql.replace("created_at + interval '1 hour'", "datetime(created_at, '+1 hour')")
    async with engine.begin() as conn:
        await conn.execute(text(sql))
    report = await _verify(engine)
    assert not report.ok
    # A deleted entry shows at the next one, whose prev_hash no longer matches.
    assert report.broken_at == (ids[3] if sql.startswith("DELETE") else target)
    assert reason in (report.reason or "")


async def test_removing_the_newest_entries_is_noticed(engine) -> None:  # type: ignore[no-untyped-def]
    await _append(engine, 4)
    async with engine.begin() as conn:
        last = (await conn.execute(select(func.max(AuditLog.id)))).scalar_one()
        await conn.execute(text(f"DELETE FROM audit_log WHERE id = {last}"))  # noqa: S608
    report = await _verify(engine)
    assert not report.ok
    assert report.broken_at == last
    assert "head" in (report.reason or "")


async def test_concurrent_writers_extend_one_linear_chain(engine, backend) -> None:  # type: ignore[no-untyped-def]
    makers = create_sessionmaker(engine)
    writers = 24 if backend == "postgresql" else 8

    async def write(n: int) -> None:
        async with makers() as session:
            if backend == "postgresql":
                # Reads before the append, as a real unit of work does. (On SQLite a read
                # snapshot cannot be upgraded to a write under concurrent writers at all,
                # whatever the table: writers there write first, see models/db.py.)
                await session.execute(select(func.count()).select_from(Member))
            await record_audit(
                session, actor="system", action="test.concurrent", subject=f"n:{n}", now=utcnow()
            )
            await asyncio.sleep(0.01)  # hold the chain's lock a moment: others must wait
            await session.commit()

    await asyncio.gather(*(write(n) for n in range(writers)))
    report = await _verify(engine)
    assert report.ok, report
    assert report.rows == writers


async def test_delete_my_data_pseudonymises_the_audit_entries(engine) -> None:  # type: ignore[no-untyped-def]
    makers = create_sessionmaker(engine)
    vault = PiiVault(TEST_PII_KEY)
    async with makers() as session:
        member = Member()
        session.add(member)
        await session.flush()
        mid = member.id
        await record_audit(
            session,
            actor=f"member:{mid}",
            action="settings.language",
            subject=f"member:{mid}",
            now=T0,
        )
        await record_audit(
            session,
            actor="admin:alice@example.org",
            action="members.lookup",
            subject=f"member:{mid}",
            now=T0,
        )
        await record_audit(
            session, actor=f"member:{mid}", action="claim.won", subject=f"member:{mid}", now=T0
        )
        await record_audit(session, actor="system", action="other", subject="member:999", now=T0)
        await session.commit()
    async with makers() as session:
        report = await erase_member(session, vault=vault, member_id=mid, now=T0)
        await session.commit()
    assert report.audit_pseudonymised == 3
    async with engine.connect() as conn:
        rows = (await conn.execute(select(AuditLog).order_by(AuditLog.id))).all()
    assert len(rows) == 5  # nothing deleted; the erasure itself is appended
    names = [(r.actor, r.subject) for r in rows]
    assert all(f"member:{mid}" != a for a, _ in names[:4])
    pseudonym = rows[0].actor
    assert pseudonym.startswith("erased:")
    assert rows[0].subject == pseudonym  # one pseudonym for all of the person's entries
    assert rows[1].actor == "admin:alice@example.org"  # who looked is still named
    assert rows[1].subject == pseudonym
    assert rows[2].subject == f"member:{mid}"  # prize entries keep their subject for auditors
    assert rows[2].actor == pseudonym
    assert rows[3].subject == "member:999"
    assert rows[4].action == "member.erased"
    verified = await _verify(engine)
    assert verified.ok, verified
    assert verified.pseudonymised == 3
    # A pseudonym cannot be planted on an entry that was never erased.
    async with engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE audit_log SET actor = '{pseudonym}' WHERE id = {rows[3].id}")  # noqa: S608
        )
    assert (await _verify(engine)).broken_at == rows[3].id


async def test_the_api_lists_filters_and_exports_for_auditors(served, engine) -> None:  # type: ignore[no-untyped-def]
    await _append(engine, 3)
    await _append(engine, 2, actor="admin:bob@example.org")
    auditor = await make_account(engine, "audrey@example.org", "auditor")
    analyst = await make_account(engine, "ann@example.org", "analyst")
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        everything = (await http.get("/admin/api/audit", headers=bearer(auditor))).json()
        assert len(everything["entries"]) == 5
        assert everything["entries"][0]["id"] > everything["entries"][-1]["id"]  # newest first
        bob = await http.get(
            "/admin/api/audit", params={"actor": "admin:bob@example.org"}, headers=bearer(auditor)
        )
        assert len(bob.json()["entries"]) == 2
        prefix = await http.get(
            "/admin/api/audit",
            params={"action": "courses.", "since": "2026-11-30T09:00:01", "limit": 2},
            headers=bearer(auditor),
        )
        # Times without an offset are Taipei: 09:00:01 +08:00 is the second of each batch.
        assert [e["details"]["added"] for e in prefix.json()["entries"]] == [1, 2]
        csv = await http.get("/admin/api/audit", params={"format": "csv"}, headers=bearer(auditor))
        assert csv.headers["content-type"].startswith("text/csv")
        lines = csv.text.strip().splitlines()
        assert lines[0] == "id,created_at,actor,action,subject,details,row_hash"
        assert len(lines) == 6
        assert "資安" in csv.text
        verified = (await http.get("/admin/api/audit/verify", headers=bearer(auditor))).json()
        assert verified["ok"] is True
        assert verified["rows"] == 5
        assert (await http.get("/admin/api/audit", headers=bearer(analyst))).status_code == 403
        for bad in ({"format": "xml"}, {"limit": 0}, {"since": "yesterday"}, {"before_id": -1}):
            response = await http.get("/admin/api/audit", params=bad, headers=bearer(auditor))
            assert response.status_code == 422, bad


async def test_edoor_audit_verify_exits_non_zero_on_an_edited_row(engine, database_url) -> None:  # type: ignore[no-untyped-def]
    await _append(engine, 3)
    good = edoor("audit", "verify", database_url=database_url)
    assert good.returncode == 0, good.stderr
    assert "3 entries" in good.stdout
    async with engine.begin() as conn:
        second = (await conn.execute(select(AuditLog.id).order_by(AuditLog.id).offset(1))).first()
        await conn.execute(
            text(f"UPDATE audit_log SET details = '{{}}' WHERE id = {second[0]}")  # noqa: S608
        )
    bad = edoor("audit", "verify", database_url=database_url)
    assert bad.returncode == 1
    assert f"broken at entry {second[0]}" in bad.stderr
