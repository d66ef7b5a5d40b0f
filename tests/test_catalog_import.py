"""Catalog import: validation with line/column errors, all-or-nothing, upsert, retire."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.catalog_import import CatalogError, parse_catalog, parse_csv, parse_json, read_catalog
from models.courses import (
    LOCKED,
    Course,
    CourseNotFound,
    SearchLog,
    apply_catalog,
    bump_popularity,
    get_course,
    list_categories,
    log_search,
    newest_courses,
    popular_courses,
    require_course,
    short_courses,
    verify_course_password,
    zero_result_queries,
)
from models.search import demo_catalog_path

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
HEADER = "id,title,category,hours,audience,tags\n"


async def _count(session: AsyncSession, *where: object) -> int:
    return int(await session.scalar(select(func.count(Course.id)).where(*where)) or 0)


def test_csv_errors_name_line_and_column() -> None:
    text = (
        "\ufeff" + HEADER + "c1,資安概論,資訊安全,1,public,資安|資訊\n"
        "c2,性平,性別平等,abc,public,\n"
        "c3,,性別平等,1,everyone,\n"
        '"c4","多行\n標題",管理,2,public,\n'
        "c1,重複,管理,1,public,\n"
    )
    parsed = parse_csv(text.encode())
    assert [str(e) for e in parsed.errors] == [
        "line 3, column hours: not a number",
        "line 4, column title: missing",
        "line 4, column audience: must be public or civil_servant",
        "line 7, column id: duplicate of line 2",
    ]
    assert [r.id for r in parsed.rows] == ["c1", "c4"]
    assert parsed.rows[0].tags == ("資安", "資訊")
    assert parsed.rows[1].title == "多行 標題"


def test_csv_header_must_have_required_columns() -> None:
    parsed = parse_csv(b"id,title,hours\nx,y,1\n")
    assert [str(e) for e in parsed.errors] == [
        "line 1, column category: column missing from the header"
    ]


def test_json_errors_name_the_index() -> None:
    doc = [
        {"id": "a", "title": "t", "category": "c", "hours": 1},
        {"id": "b b", "title": "t", "category": "c", "hours": -1, "url": "ftp://x"},
        "nonsense",
    ]
    parsed = parse_json(json.dumps(doc))
    assert sorted(str(e) for e in parsed.errors) == [
        "index 1, column hours: must be more than 0 and at most 1000",
        "index 1, column id: use 1-48 letters, digits, '.', '_' or '-'",
        "index 1, column url: must start with http:// or https://",
        "index 2: not an object",
    ]
    assert parse_json(b"{not json").errors[0].where == "file"


def test_demo_catalog_is_valid_and_covers_every_category() -> None:
    parsed = read_catalog(demo_catalog_path())
    assert parsed.ok, parsed.errors[:3]
    assert 300 <= len(parsed.rows) <= 500
    assert len({r.category for r in parsed.rows}) == 21


def test_shared_catalog_parses_when_present(shared_dir: Path | None) -> None:
    """The project never needs ../shared; when it is there, its 4,048 rows must all parse."""
    if shared_dir is None:
        parsed = parse_catalog(demo_catalog_path().read_bytes(), name="demo.json")
        assert parsed.ok
        return
    progress: list[tuple[int, int]] = []
    parsed = read_catalog(
        shared_dir / "data" / "courses.json", progress=lambda *a: progress.append(a)
    )
    assert parsed.ok
    assert len(parsed.rows) == 4048
    assert progress[-1] == (4048, 4048)


async def test_import_is_idempotent_upsert_and_retires(session: AsyncSession) -> None:
    data = demo_catalog_path().read_bytes()
    steps: list[tuple[int, int]] = []
    report = await apply_catalog(
        session,
        parsed=parse_catalog(data, name="d.json"),
        now=NOW,
        progress=lambda *a: steps.append(a),
    )
    await session.commit()
    n = len(json.loads(data))
    assert (report.created, report.updated, report.unchanged) == (n, 0, 0)
    assert steps[-1] == (n, n)
    again = await apply_catalog(session, parsed=parse_catalog(data, name="d.json"), now=NOW)
    assert (again.created, again.updated, again.unchanged) == (0, 0, n)

    rows = json.loads(data)
    rows[0]["title"] = "新標題"
    kept = rows[:10]
    later = NOW + dt.timedelta(days=1)
    report = await apply_catalog(
        session, parsed=parse_json(json.dumps(kept)), now=later, retire_absent=True
    )
    await session.commit()
    assert (report.updated, report.unchanged, report.retired) == (1, 9, n - 10)
    changed = await require_course(session, course_id=rows[0]["id"])
    assert changed.title == "新標題"
    assert changed.updated_at == later
    assert changed.created_at == NOW
    assert await _count(session, Course.retired.is_(False)) == 10
    # Re-importing the full file brings the retired courses back.
    back = await apply_catalog(session, parsed=parse_catalog(data, name="d.json"), now=later)
    assert back.updated == n - 10 + 1  # the retired ones and the retitled one
    assert await _count(session, Course.retired.is_(False)) == n


async def test_refused_file_changes_nothing(session: AsyncSession) -> None:
    good = HEADER + "c1,資安概論,資訊安全,1,public,\n"
    await apply_catalog(session, parsed=parse_csv(good.encode()), now=NOW)
    await session.commit()
    bad = HEADER + "c1,改過的標題,資訊安全,1,public,\nc2,新課,管理,x,public,\n"
    with pytest.raises(CatalogError) as refused:
        await apply_catalog(session, parsed=parse_csv(bad.encode()), now=NOW, retire_absent=True)
    assert "line 3, column hours: not a number" in str(refused.value)
    await session.rollback()
    course = await require_course(session, course_id="c1")
    assert course.title == "資安概論"
    assert await _count(session) == 1
    # With skip_invalid the good rows go in and the bad one is counted.
    report = await apply_catalog(
        session, parsed=parse_csv(bad.encode()), now=NOW, skip_invalid=True
    )
    assert (report.updated, report.skipped) == (1, 1)
    assert await get_course(session, course_id="c2") is None
    with pytest.raises(CourseNotFound):
        await require_course(session, course_id="c2")


async def test_course_passwords(session: AsyncSession) -> None:
    text = (
        "id,title,category,hours,password,password_protected\n"
        "p1,加密課,管理,1,s3cret,\n"
        "p2,鎖住的課,管理,1,,yes\n"
        "p3,公開課,管理,1,,no\n"
    )
    await apply_catalog(session, parsed=parse_csv(text.encode()), now=NOW)
    p1 = await require_course(session, course_id="p1")
    p2 = await require_course(session, course_id="p2")
    p3 = await require_course(session, course_id="p3")
    assert p1.password_protected
    assert p1.password_hash != "s3cret"
    assert verify_course_password(p1, "s3cret")
    assert not verify_course_password(p1, "wrong")
    assert p2.password_hash == LOCKED
    assert not verify_course_password(p2, "")
    assert not p3.password_protected
    first_hash = p1.password_hash
    report = await apply_catalog(session, parsed=parse_csv(text.encode()), now=NOW)
    assert report.unchanged == 3
    assert (await require_course(session, course_id="p1")).password_hash == first_hash


async def test_browse_queries_and_search_log(session: AsyncSession) -> None:
    text = (
        HEADER + "a,資安入門,資訊安全,0.5,public,\n"
        "b,資安進階,資訊安全,2,civil_servant,\n"
        "c,性平概論,性別平等,0.5,public,\n"
    )
    await apply_catalog(session, parsed=parse_csv(text.encode()), now=NOW)
    await bump_popularity(session, course_id="c", by=3)
    assert await list_categories(session) == [("資訊安全", 2), ("性別平等", 1)]
    assert await list_categories(session, audience="public") == [("性別平等", 1), ("資訊安全", 1)]
    assert [c.id for c in await popular_courses(session, limit=2)] == ["c", "a"]
    assert [c.id for c in await short_courses(session)] == ["c", "a"]
    assert len(await newest_courses(session, limit=5)) == 3
    await log_search(
        session, query="資按", normalised="資按", result_count=0, channel="line", now=NOW
    )
    await log_search(
        session, query="資按", normalised="資按", result_count=0, channel="telegram", now=NOW
    )
    await log_search(
        session, query="資安", normalised="資安", result_count=2, channel="line", now=NOW
    )
    await session.commit()
    assert await session.scalar(select(func.count(SearchLog.id))) == 3
    assert await zero_result_queries(session, since=NOW - dt.timedelta(days=1)) == [("資按", 2)]
