"""Completions CSV: validated all or nothing (line and column), idempotent, Taipei days."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.completions_import import CompletionsError, import_completions, parse_completions
from models.learning import Completion
from tests.outbox_support import add_member

NOW = dt.datetime(2026, 6, 1, 4, 0, tzinfo=dt.UTC)


async def stored(session: AsyncSession) -> list[tuple[str, str, str, float]]:
    rows = await session.execute(
        select(Completion.person, Completion.course_id, Completion.day, Completion.hours).order_by(
            Completion.id
        )
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_file_with_bom_imports_and_reimporting_it_changes_nothing(
    session: AsyncSession,
) -> None:
    data = (
        "\ufeffemployee_id,course_id,completed_at,hours\n"
        "E001,sec-1,2026-03-01,3\n"
        "E001,sec-1,2026-03-01T23:30:00,3\n"  # same person, course and Taipei day: one
        "E002,env-1,2026-02-28T20:00:00+00:00,1.5\n"  # 04:00 on 1 March in Taipei
    ).encode()

    first = await import_completions(session, data, now=NOW)
    again = await import_completions(session, data, now=NOW)

    assert (first.rows, first.added, first.already_known) == (3, 2, 1)
    assert (again.added, again.already_known) == (0, 3)
    assert await stored(session) == [
        ("employee:E001", "sec-1", "2026-03-01", 3.0),
        ("employee:E002", "env-1", "2026-03-01", 1.5),
    ]
    (moment,) = await session.scalars(
        select(Completion.completed_at).where(Completion.employee_id == "E002")
    )
    assert moment == dt.datetime(2026, 2, 28, 20, 0, tzinfo=dt.UTC)


async def test_times_without_an_offset_are_taipei_time() -> None:
    (row,) = parse_completions(
        "employee_id,course_id,completed_at,hours\nE1,c,2026-03-01 07:30,1\n", now=NOW
    )
    assert row.completed_at == dt.datetime(2026, 2, 28, 23, 30, tzinfo=dt.UTC)
    assert row.day == "2026-03-01"


async def test_every_problem_names_its_line_and_column_and_nothing_is_stored(
    session: AsyncSession,
) -> None:
    data = (
        "employee_id,course_id,completed_at,hours\n"
        "E001,sec-1,2026-03-01,3\n"
        ",sec-1,2026-03-01,3\n"
        "E003,,2026-03-01,3\n"
        "E004,sec-1,yesterday,3\n"
        "E005,sec-1,2026-07-01,3\n"
        "E006,sec-1,2026-03-01,three\n"
        "E007,sec-1,2026-03-01,-1\n"
    )
    with pytest.raises(CompletionsError) as refused:
        await import_completions(session, data, now=NOW)

    assert [str(e) for e in refused.value.errors] == [
        "line 3, column employee_id: empty",
        "line 4, column course_id: empty",
        "line 5, column completed_at: not an ISO 8601 date or time (e.g. 2026-03-01T14:30)",
        "line 6, column completed_at: in the future",
        "line 7, column hours: not a decimal number (e.g. 1.5)",
        "line 8, column hours: must be a number above 0",
    ]
    assert "nothing changed" in str(refused.value)
    assert await session.scalar(select(func.count()).select_from(Completion)) == 0


async def test_the_header_says_whose_completions_they_are(session: AsyncSession) -> None:
    with pytest.raises(CompletionsError) as refused:
        await import_completions(session, "course_id,completed_at,hours\nc,2026-01-01,1\n", now=NOW)
    assert str(refused.value.errors[0]) == (
        "line 1, column employee_id: the header needs employee_id or member_id"
    )
    with pytest.raises(CompletionsError) as refused:
        await import_completions(session, "employee_id,course_id,hours\nE1,c,1\n", now=NOW)
    assert (
        str(refused.value.errors[0])
        == "line 1, column completed_at: column missing from the header"
    )


async def test_member_ids_must_be_numbers(session: AsyncSession) -> None:
    person = await add_member(session, channel="line", external_id="U" + "a" * 32)
    data = (
        "member_id,course_id,completed_at,hours\n"
        f"{person.member_id},c1,2026-01-02,2\n"
        "999999,c1,2026-01-02,2\n"
        "abc,c1,2026-01-02,2\n"
    )
    with pytest.raises(CompletionsError) as refused:
        await import_completions(session, data, now=NOW)
    # Format errors come first; the file is refused before members are looked up.
    assert [str(e) for e in refused.value.errors] == [
        "line 4, column member_id: not a member number"
    ]


async def test_unknown_member_is_refused(session: AsyncSession) -> None:
    person = await add_member(session, channel="line", external_id="U" + "a" * 32)
    data = (
        "member_id,course_id,completed_at,hours\n"
        f"{person.member_id},c1,2026-01-02,2\n"
        "999999,c1,2026-01-02,2\n"
    )
    with pytest.raises(CompletionsError) as refused:
        await import_completions(session, data, now=NOW)
    assert [str(e) for e in refused.value.errors] == ["line 3, column member_id: no such member"]
    assert await session.scalar(select(func.count()).select_from(Completion)) == 0

    ok = await import_completions(session, data.split("999999")[0], now=NOW)
    assert ok.added == 1
    assert await stored(session) == [(f"member:{person.member_id}", "c1", "2026-01-02", 2.0)]
