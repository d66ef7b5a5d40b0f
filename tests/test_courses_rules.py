"""The rules under course discovery, without a chat: typed filters, facets, similar courses,
requirement matching, listings, and saved courses in the database."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import models.courses as courses
from models.catalog_import import parse_csv
from models.courses import (
    SavedCourse,
    SavedCoursesFull,
    apply_catalog,
    count_saved,
    save_course,
    saved_course_ids,
    saved_courses,
    unsave_course,
)
from models.members import Member
from models.search import CourseDoc, Filters, SearchIndex, SearchService
from models.search.typed_filters import split_filters

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
CATEGORIES = ["資訊安全", "法律", "健康生活", "長期照顧"]


@pytest.mark.parametrize(
    ("typed", "query", "filters"),
    [
        ("資安 1小時內", "資安", Filters(max_hours=1.0)),
        ("資安 一小時以內", "資安", Filters(max_hours=1.0)),
        ("只看 1 小時內 長照", "長照", Filters(max_hours=1.0)),
        ("運動 半小時內", "運動", Filters(max_hours=0.5)),
        ("AI 30分鐘內", "AI", Filters(max_hours=0.5)),
        ("資安 2小時以上", "資安", Filters(min_hours=2.0)),
        ("AI under 1 hour", "AI", Filters(max_hours=1.0)),
        ("CPR under an hour", "CPR", Filters(max_hours=1.0)),
        ("excel 2 hours or less", "excel", Filters(max_hours=2.0)),
        ("Excel at least 2 hours", "Excel", Filters(min_hours=2.0)),
        ("健康 只看長期照顧", "健康", Filters(category="長期照顧")),
        ("類別：法律 個資", "個資", Filters(category="法律")),
        ("privacy category: 法律", "privacy", Filters(category="法律")),
        ("資安 限公務人員", "資安", Filters(audience="civil_servant")),
        ("ai for civil servants only", "ai", Filters(audience="civil_servant")),
        ("ＡＩ　１小時內", "AI", Filters(max_hours=1.0)),
        ("1小時內", "", Filters(max_hours=1.0)),
        # Not filters: no bound, no marker, an unknown category.
        ("找 1 小時的課", "找 1 小時的課", Filters()),
        ("資訊安全", "資訊安全", Filters()),
        ("只看不存在的類別", "只看不存在的類別", Filters()),
        ("information  security", "information security", Filters()),
    ],
)
def test_typed_filters(typed: str, query: str, filters: Filters) -> None:
    assert split_filters(typed, categories=CATEGORIES) == (query, filters)


@pytest.fixture(scope="module")
def demo() -> SearchIndex:
    return SearchService.from_catalog_file().index


@pytest.mark.parametrize("query", ["健康", "資安", "AI", "長照"])
def test_facets_count_what_each_filter_keeps(demo: SearchIndex, query: str) -> None:
    found = demo.search(query, facets=True, limit=1)
    assert found.within_hour == demo.search(query, filters=Filters(max_hours=1.0)).total
    assert found.civil_servant == (
        demo.search(query, filters=Filters(audience="civil_servant")).total
    )
    assert sum(found.categories.values()) == found.total
    for name, n in found.categories.items():
        assert demo.search(query, filters=Filters(category=name)).total == n
    # Facets cost time at 100,000 courses: only when asked for.
    assert demo.search(query, limit=1).categories == {}


def _index() -> SearchIndex:
    docs = [
        CourseDoc("a", "資訊安全入門", "資安", 1, popularity=5),
        CourseDoc("b", "資訊安全進階", "資安", 2, popularity=1),
        CourseDoc("c", "資訊安全與法律", "法律", 1),
        CourseDoc("d", "烹飪入門", "生活", 1, popularity=9),
        CourseDoc("e", "密碼學概論", "資安", 3),
        CourseDoc("f", "資訊安全高階實務", "資安", 2, audience="civil_servant"),
        CourseDoc("g", "插花", "生活", 0.5, tags=("花藝",)),
        CourseDoc("h", "盆栽", "園藝", 1, tags=("花藝",)),
        *(CourseDoc(f"x{i}", f"其他課程{i}", "其他", 1) for i in range(20)),
    ]
    return SearchIndex(docs)


def test_similar_courses() -> None:
    index = _index()
    ids = [h.id for h in index.similar("a", limit=10)]
    # Same category and shared words first, another category sharing most of the title,
    # then the same category without shared words; never itself, nor a mere "入門" match.
    assert ids == ["b", "f", "c", "e"]  # b and f tie on words; b is more popular
    assert [h.id for h in index.similar("a", filters=Filters(audience="public"))] == [
        "b",
        "c",
        "e",
    ]
    assert [h.id for h in index.similar("a", exclude=["b", "f"], limit=2)] == ["c", "e"]
    # A shared rare tag counts across categories, above a bare category match.
    assert [h.id for h in index.similar("g")] == ["h", "d"]
    assert index.similar("missing") == []


def test_matching_and_listing() -> None:
    index = _index()
    found = index.matching(categories=["資安"], tags=["花藝"], course_ids=["c"], limit=10)
    # Most popular first, then shorter, then id.
    assert [h.id for h in found] == ["a", "b", "g", "c", "h", "f", "e"]
    public = index.matching(
        categories=["資安"], filters=Filters(audience="public"), exclude=["a"], limit=10
    )
    assert [h.id for h in public] == ["b", "e"]
    listed = index.listing(filters=Filters(max_hours=1.0, category="生活"), limit=1)
    assert listed.total == 2
    assert [h.id for h in listed.hits] == ["d"]
    assert listed.has_more
    assert listed.categories == {"生活": 2}
    assert index.get("a") is not None
    assert index.get("zz") is None


CATALOG = (
    "id,title,category,hours,audience\n"
    "k1,課程一,資訊安全,1,public\n"
    "k2,課程二,資訊安全,1,public\n"
    "k3,課程三,法律,2,public\n"
)


async def _member(session: AsyncSession) -> int:
    member = Member(created_at=NOW)
    session.add(member)
    await session.flush()
    return member.id


async def test_saved_courses_rules(session: AsyncSession, monkeypatch: pytest.MonkeyPatch) -> None:
    await apply_catalog(session, parsed=parse_csv(CATALOG.encode()), now=NOW)
    me, other = await _member(session), await _member(session)
    assert await save_course(session, member_id=me, course_id="k1", now=NOW)
    assert not await save_course(session, member_id=me, course_id="k1", now=NOW)
    later = NOW + dt.timedelta(minutes=1)
    assert await save_course(session, member_id=me, course_id="k2", now=later)
    assert await save_course(session, member_id=other, course_id="k1", now=NOW)
    assert await saved_course_ids(session, member_id=me) == ["k2", "k1"]
    assert [c.id for c in await saved_courses(session, member_id=me, limit=1, offset=1)] == ["k1"]
    monkeypatch.setattr(courses, "MAX_SAVED", 2)
    with pytest.raises(SavedCoursesFull):
        await save_course(session, member_id=me, course_id="k3", now=NOW)
    assert await unsave_course(session, member_id=me, course_id="k2")
    assert not await unsave_course(session, member_id=me, course_id="k2")
    assert await count_saved(session, member_id=me) == 1
    await session.commit()
    # The database itself drops a member's saved courses with the member.
    await session.execute(delete(Member).where(Member.id == me))
    await session.commit()
    rows = (await session.execute(select(SavedCourse.member_id, SavedCourse.course_id))).all()
    assert [tuple(r) for r in rows] == [(other, "k1")]
    assert await session.scalar(select(func.count(SavedCourse.id))) == 1


async def test_password_tries_roll_over_an_hour_and_go_with_the_member(
    session: AsyncSession,
) -> None:
    me, other = await _member(session), await _member(session)
    minute = dt.timedelta(minutes=1)

    async def attempt(member_id: int, at: dt.datetime, *, ok: bool = False) -> None:
        await courses.record_password_attempt(
            session, member_id=member_id, course_id="k1", success=ok, now=at
        )

    # Long-gone tries are pruned when the member tries again; right ones never count.
    await attempt(me, NOW - dt.timedelta(days=2))
    for i in range(4):
        await attempt(me, NOW + i * minute)
    await attempt(me, NOW + 4 * minute, ok=True)
    await attempt(other, NOW)
    at = NOW + 5 * minute
    assert await courses.password_tries_left(session, member_id=me, now=at) == 1
    assert await courses.password_retry_at(session, member_id=me, now=at) is None
    await attempt(me, at)
    assert await courses.password_tries_left(session, member_id=me, now=at) == 0
    # Locked until the oldest of the five wrong tries is an hour old, not a minute less.
    assert await courses.password_retry_at(session, member_id=me, now=at) == NOW + 60 * minute
    almost = NOW + 60 * minute - dt.timedelta(seconds=1)
    assert await courses.password_retry_at(session, member_id=me, now=almost) is not None
    assert await courses.password_retry_at(session, member_id=me, now=NOW + 60 * minute) is None
    assert await courses.password_tries_left(session, member_id=other, now=at) == 4
    n_me = select(func.count(courses.CoursePasswordAttempt.id)).where(
        courses.CoursePasswordAttempt.member_id == me
    )
    assert await session.scalar(n_me) == 6  # the two-day-old try is gone
    await session.commit()
    await session.execute(delete(Member).where(Member.id == me))
    await session.commit()
    assert await session.scalar(n_me) == 0
    left = select(func.count(courses.CoursePasswordAttempt.id))
    assert await session.scalar(left) == 1


async def test_member_searches_are_few_recent_and_without_numbers(session: AsyncSession) -> None:
    me, other = await _member(session), await _member(session)
    minute = dt.timedelta(minutes=1)
    for i in range(courses.RECENT_SEARCHES + 3):
        await courses.remember_search(
            session, member_id=me, normalised=f"課程{i}", now=NOW + i * minute
        )
    # Searching again counts up and moves to the front; the oldest distinct ones are dropped.
    await courses.remember_search(session, member_id=me, normalised="課程3", now=NOW + 60 * minute)
    await courses.remember_search(session, member_id=other, normalised="長照", now=NOW)
    # Numbers never rest here: a phone number or code alone is not kept, and is cut from words.
    for typed in ("0912 345 678", "886912345678", "123456"):
        await courses.remember_search(session, member_id=other, normalised=typed, now=NOW)
    await courses.remember_search(
        session, member_id=other, normalised="長照 0912345678", now=NOW + minute
    )
    recent = await courses.recent_searches(session, member_id=me)
    assert len(recent) == courses.RECENT_SEARCHES
    assert recent[0] == "課程3"
    assert recent[1] == f"課程{courses.RECENT_SEARCHES + 2}"
    assert {"課程0", "課程1", "課程2"}.isdisjoint(recent)
    counts = dict(
        (
            await session.execute(
                select(courses.MemberSearchInterest.query, courses.MemberSearchInterest.count)
            )
        ).all()
    )
    assert counts["課程3"] == 2
    assert await courses.recent_searches(session, member_id=other) == ["長照"]
    await session.commit()
    # The database drops a member's searches with the member.
    await session.execute(delete(Member).where(Member.id == me))
    await session.commit()
    owners = (await session.scalars(select(courses.MemberSearchInterest.member_id))).all()
    assert set(owners) == {other}
