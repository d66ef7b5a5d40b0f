"""Roster import: validation naming line and column, all or nothing, status follows the roster."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import UTC
from models.identity import CivilServant, record_verified_phone
from models.members import Member, ensure_account
from models.pii import PiiVault
from models.roster_import import RosterError, import_roster, parse_active

VAULT = PiiVault("test-pii-key-0123456789abcdef0123456789")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEADER = "employee_id,name,agency,mobile,email,active\n"
ROSTER = (
    HEADER
    + "E001,王小明,臺北市政府資訊局,0912-345-678,ming@gov.taipei,是\n"
    + "E002,李小華,臺北市政府教育局,+886 987 654 321,,1\n"
    + "E003,陳大同,臺北市政府工務局,886911222333,tung@gov.taipei,no\n"
)


async def run(session: AsyncSession, data: bytes | str, *, now: dt.datetime = T0):
    result = await import_roster(session, vault=VAULT, data=data, now=now)
    await session.commit()
    return result


async def member_with_phone(session: AsyncSession, external_id: str, phone: str) -> Member:
    acc, _ = await ensure_account(session, channel="line", external_id=external_id, now=T0)
    await session.flush()
    await record_verified_phone(
        session,
        vault=VAULT,
        member_id=acc.member_id,
        phone=phone,
        method="sms",
        channel="line",
        now=T0,
    )
    await session.commit()
    return acc.member


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("0", False),
        ("TRUE", True),
        ("false", False),
        ("Yes", True),
        ("no", False),
        ("是", True),
        ("否", False),
        ("maybe", None),
    ],
)
def test_active_values(value: str, expected: bool | None) -> None:
    assert parse_active(value) is expected


async def test_import_stores_rows_encrypted_with_bom(session: AsyncSession) -> None:
    result = await run(session, ("\ufeff" + ROSTER).encode("utf-8"))
    assert (result.added, result.rows) == (3, 3)
    rows = {r.employee_id: r for r in (await session.scalars(select(CivilServant))).all()}
    assert rows["E001"].active is True
    assert rows["E003"].active is False
    assert rows["E001"].agency == "臺北市政府資訊局"
    assert VAULT.decrypt(rows["E001"].phone_sealed) == "+886912345678"
    assert rows["E001"].phone_hash == VAULT.lookup_hash("+886912345678")
    assert VAULT.decrypt(rows["E001"].name_sealed) == "王小明"
    assert rows["E002"].email_sealed is None
    for row in rows.values():
        for value in (row.name_sealed, row.phone_sealed, row.email_sealed or ""):
            assert "王小明" not in value
            assert "912345678" not in value
    again = await run(session, ROSTER)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)


async def test_errors_name_line_and_column_and_change_nothing(session: AsyncSession) -> None:
    await run(session, ROSTER)
    bad = (
        HEADER
        + "E001,王小明,臺北市政府資訊局,0912-345-678,ming@gov.taipei,1\n"
        + "E004,,臺北市政府社會局,0912345,x@y.tw,1\n"  # line 3: name empty, mobile bad
        + "E005,林一,臺北市政府社會局,02-2345-6789,not-an-email,maybe\n"  # line 4
        + "E001,王小明,臺北市政府資訊局,0922-000-111,,1\n"  # line 5: duplicate id
        + "E006,張三,臺北市政府社會局,0912 345 678,,yes\n"  # line 6: same mobile as line 2
    )
    with pytest.raises(RosterError) as info:
        await import_roster(session, vault=VAULT, data=bad, now=T0)
    found = {(e.line, e.column) for e in info.value.errors}
    assert found == {
        (3, "name"),
        (3, "mobile"),
        (4, "mobile"),
        (4, "email"),
        (4, "active"),
        (5, "employee_id"),
        (6, "mobile"),
    }
    message = str(info.value)
    assert "line 3, column mobile" in message
    assert "0912345" not in message  # values (phone numbers) never in messages
    assert "2345-6789" not in message
    await session.rollback()
    count = await session.scalar(select(func.count(CivilServant.id)))
    assert count == 3


async def test_missing_header_column_and_bad_encoding(session: AsyncSession) -> None:
    with pytest.raises(RosterError) as info:
        await import_roster(
            session,
            vault=VAULT,
            data="employee_id,name,agency,email\nE1,a,b,\n",
            now=T0,
        )
    assert {(e.line, e.column) for e in info.value.errors} == {(1, "mobile"), (1, "active")}
    with pytest.raises(RosterError, match="not UTF-8"):
        await import_roster(session, vault=VAULT, data=ROSTER.encode("big5"), now=T0)


async def test_roster_match_mismatch_and_status_removed_on_reimport(
    session: AsyncSession,
) -> None:
    # Verified before the roster arrives: the import links them.
    early = await member_with_phone(session, "U1", "+886912345678")
    stranger = await member_with_phone(session, "U2", "+886933444555")
    result = await run(session, ROSTER)
    assert result.linked == 1
    await session.refresh(early)
    await session.refresh(stranger)
    assert early.is_civil_servant is True
    assert stranger.is_civil_servant is False  # mismatch: not on the roster
    row = await session.scalar(select(CivilServant).where(CivilServant.employee_id == "E001"))
    assert row is not None
    assert row.member_id == early.id

    # Verified after: matching an active row grants it; an inactive row (E003) does not.
    late = await member_with_phone(session, "U3", "+886987654321")
    inactive = await member_with_phone(session, "U4", "+886911222333")
    await session.refresh(late)
    await session.refresh(inactive)
    assert late.is_civil_servant is True
    assert inactive.is_civil_servant is False

    # Next import: E001 gone, E002 inactive -> both lose the status.
    result = await run(
        session,
        HEADER + "E002,李小華,臺北市政府教育局,0987654321,,false\n"
        "E003,陳大同,臺北市政府工務局,0911222333,,1\n",
        now=T0 + dt.timedelta(days=30),
    )
    assert result.status_removed == 2
    assert result.linked == 1  # E003 became active and its member is verified
    for m in (early, late, inactive):
        await session.refresh(m)
    assert early.is_civil_servant is False
    assert late.is_civil_servant is False
    assert inactive.is_civil_servant is True
    gone = await session.scalar(select(CivilServant).where(CivilServant.employee_id == "E001"))
    assert gone is not None
    assert gone.active is False


async def test_changed_roster_mobile_unlinks(session: AsyncSession) -> None:
    await run(session, ROSTER)
    member = await member_with_phone(session, "U1", "+886912345678")
    await session.refresh(member)
    assert member.is_civil_servant
    await run(session, ROSTER.replace("0912-345-678", "0912-000-000"))
    await session.refresh(member)
    assert member.is_civil_servant is False
    row = await session.scalar(select(CivilServant).where(CivilServant.employee_id == "E001"))
    assert row is not None
    assert row.member_id is None
