"""Course discovery in chat, through the real app: the course card's save and similar
buttons, saved courses, recommendations, and search filters (typed and tapped)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.catalog_import import parse_csv, read_catalog
from models.completions_import import import_completions
from models.courses import Course, MemberSearchInterest, SavedCourse, SearchLog, apply_catalog
from models.learning import default_requirements, import_requirements
from models.members import Member
from models.search import demo_catalog_path
from tests.dialog import Chat, World, buttons, texts

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
# Courses made for these tests: a public course and a civil-servant one that share most of
# their title (each is the other's best "similar"), and a retired one like them.
EXTRA = (
    "id,title,category,hours,audience,password\n"
    "pub-1,資安社交工程入門,資訊安全,1,public,\n"
    "cs-2,資安社交工程演練,資訊安全,2,civil_servant,\n"
    "old-1,資安社交工程舊版,資訊安全,1,public,\n"
)
LONG_QUERY = "我想找健康生活與運動保健知識的相關課程"  # 57 bytes: too long for an action id


async def make_civil_servant(world: World, chat: Chat) -> int:
    member_id = await world.member_id(chat)
    async with world.runtime.sessionmaker() as s:
        await s.execute(update(Member).where(Member.id == member_id).values(is_civil_servant=True))
        await s.commit()
    return member_id


async def complete(world: World, member_id: int, course_id: str, hours: float) -> None:
    csv = f"member_id,course_id,completed_at,hours\n{member_id},{course_id},2026-02-01,{hours}\n"
    async with world.runtime.sessionmaker() as s:
        await import_completions(s, csv, now=NOW)
        await s.commit()


async def retire(world: World, course_id: str) -> None:
    async with world.runtime.sessionmaker() as s:
        await s.execute(update(Course).where(Course.id == course_id).values(retired=True))
        await s.commit()


async def audience(world: World, course_ids: list[str]) -> dict[str, str]:
    async with world.runtime.sessionmaker() as s:
        rows = await s.execute(select(Course.id, Course.audience).where(Course.id.in_(course_ids)))
        return {str(cid): str(aud) for cid, aud in rows.all()}


@pytest.fixture
async def world(session: AsyncSession, served) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    await apply_catalog(session, parsed=read_catalog(demo_catalog_path()), now=NOW)
    await apply_catalog(session, parsed=parse_csv(EXTRA.encode()), now=NOW)
    await session.execute(update(Course).where(Course.id == "old-1").values(retired=True))
    await session.commit()
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served())
        runtime = api.state.runtime
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        yield World(runtime, http, now=NOW)


def _cards(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for r in replies if r["kind"] == "cards" for c in r["cards"]]


def _ids(replies: list[dict[str, Any]]) -> list[str]:
    """Course ids of the cards' "details" buttons, in order."""
    return [
        b["action"].removeprefix("course.open:")
        for c in _cards(replies)
        for b in c.get("buttons", [])
        if b.get("action", "").startswith("course.open:")
    ]


def _hours(replies: list[dict[str, Any]]) -> list[float]:
    """Hours from each card's subtitle ("資訊安全・1 小時")."""
    out = []
    for c in _cards(replies):
        m = re.search(r"・([\d.]+) (?:小時|h)", c["subtitle"])
        assert m, c
        out.append(float(m.group(1)))
    return out


def _alt(replies: list[dict[str, Any]]) -> str:
    (cards,) = [r for r in replies if r["kind"] == "cards"]
    return str(cards["alt_text"])


def _all_actions(replies: list[dict[str, Any]]) -> list[str]:
    return [a for a in buttons(replies).values() if not a.startswith("http")]


# -- the course card, saved courses ------------------------------------------------------------


async def test_card_saves_lists_and_removes(world: World) -> None:
    chat = world.chat("sim-saver")
    card = await chat.tap("course.open:pub-1")
    offered = buttons(card)
    assert offered["收藏"] == "course.save:pub-1"
    assert offered["類似課程"] == "course.sim:pub-1"
    assert offered["前往臺北e大"] == "https://elearning.taipei/"  # no page of its own

    assert "已收藏「資安社交工程入門」" in texts(await chat.tap("course.save:pub-1"))
    assert "已經在您的收藏裡" in texts(await chat.tap("course.save:pub-1"))
    await chat.tap("course.save:egov-pg-00873e0a3a")
    # The card now offers to unsave instead.
    assert buttons(await chat.tap("course.open:pub-1"))["取消收藏"] == "course.unsave:pub-1"

    listed = await chat.say("我的收藏")
    assert "我的收藏（2 門課程）" in texts(listed)
    assert _ids(listed) == ["egov-pg-00873e0a3a", "pub-1"]  # newest first
    assert buttons(listed)["移除"].startswith("course.unsave:")
    assert _ids(await chat.say("/saved")) == _ids(listed)

    assert "已從收藏移除「資安社交工程入門」" in texts(await chat.tap("course.unsave:pub-1"))
    assert "不在您的收藏裡" in texts(await chat.tap("course.unsave:pub-1"))
    assert _ids(await chat.say("我的收藏")) == ["egov-pg-00873e0a3a"]
    await chat.tap("course.unsave:egov-pg-00873e0a3a")
    assert "還沒有收藏課程" in texts(await chat.say("我的收藏"))

    english = world.chat("sim-saver-en", language="en")
    await english.say("menu")
    assert "Saved" in texts(await english.tap("course.save:pub-1"))
    assert "My saved courses (1)" in texts(await english.say("saved"))


async def test_saved_list_pages_and_shows_courses_gone_since(world: World) -> None:
    chat = world.chat("sim-collector")
    found = await chat.say("健康")
    ids = _ids(found) + _ids(await chat.tap(buttons(found)["更多結果"]))
    for cid in ids:
        await chat.tap(f"course.save:{cid}")
    await retire(world, ids[-1])  # saved last, listed first
    first = await chat.say("我的收藏")
    assert "我的收藏（10 門課程）" in texts(first)
    gone = _cards(first)[0]
    assert "目前沒有開放" in gone["body"]
    assert [b["action"] for b in gone["buttons"]] == [f"course.unsave:{ids[-1]}"]
    second = await chat.tap(buttons(first)["更多結果"])
    assert set(_ids(first) + _ids(second)) == set(ids[:-1])


async def test_hidden_or_retired_courses_cannot_be_saved(
    world: World, session: AsyncSession
) -> None:
    chat = world.chat("sim-citizen-save")
    assert "限已驗證身分的公務人員" in texts(await chat.tap("course.save:cs-2"))
    assert "沒有開放" in texts(await chat.tap("course.save:old-1"))
    assert "沒有開放" in texts(await chat.tap("course.save:no-such-course"))
    assert await session.scalar(select(func.count(SavedCourse.id))) == 0


async def test_erasing_a_member_erases_their_saved_courses(
    world: World, session: AsyncSession
) -> None:
    leaving, staying = world.chat("sim-leaving"), world.chat("sim-staying")
    await leaving.tap("course.save:pub-1")
    await staying.tap("course.save:pub-1")
    leaving_id = await world.member_id(leaving)
    staying_id = await world.member_id(staying)
    await leaving.say("設定")
    await leaving.tap("settings.delete")
    assert "已刪除" in texts(await leaving.tap("settings.delete_yes"))
    rows = (await session.execute(select(SavedCourse.member_id))).scalars().all()
    assert leaving_id not in rows
    assert rows == [staying_id]


# -- similar courses ---------------------------------------------------------------------------


async def test_similar_courses_respect_who_may_see_them(world: World) -> None:
    citizen = world.chat("sim-sim-citizen")
    similar = await citizen.tap("course.sim:pub-1")
    assert "和「資安社交工程入門」類似的課程" in texts(similar)
    ids = _ids(similar)
    assert ids
    assert "pub-1" not in ids
    assert "cs-2" not in ids
    assert "old-1" not in ids
    assert set((await audience(world, ids)).values()) == {"public"}

    servant = world.chat("sim-sim-servant")
    await servant.say("menu")
    await make_civil_servant(world, servant)
    assert _ids(await servant.tap("course.sim:pub-1"))[0] == "cs-2"  # the closest title
    # A course retired after the index was built is still never offered.
    await retire(world, "cs-2")
    assert "cs-2" not in _ids(await servant.tap("course.sim:pub-1"))
    assert "沒有開放" in texts(await citizen.tap("course.sim:cs-2"))


# -- recommendations ---------------------------------------------------------------------------


async def test_new_member_gets_popular_and_short_courses(world: World) -> None:
    chat = world.chat("sim-newcomer")
    replies = await chat.say("推薦")
    assert _alt(replies) == "為您推薦"
    bodies = [c["body"] for c in _cards(replies)]
    assert "熱門課程" in bodies
    assert "1 小時內就能上完" in bodies
    for body, hours in zip(bodies, _hours(replies), strict=True):
        if body == "1 小時內就能上完":
            assert hours < 1
    ids = _ids(replies)
    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert set((await audience(world, ids)).values()) == {"public"}
    assert _ids(await chat.say("/recommend")) == ids
    assert _ids(await chat.tap("course.rec")) == ids
    english = world.chat("sim-newcomer-en", language="en")
    assert _alt(await english.say("recommend")) == "Recommended for you"


async def test_recommendations_follow_saved_and_completed_courses(world: World) -> None:
    chat = world.chat("sim-learner")
    await chat.tap("course.save:pub-1")
    recs = await chat.say("推薦")
    ids = _ids(recs)
    saved_reasons = [c for c in _cards(recs) if c["body"] == "因為您收藏了「資安社交工程入門」"]
    assert saved_reasons, texts(recs)
    assert all("資訊安全" in c["subtitle"] for c in saved_reasons[:2])
    assert "pub-1" not in ids  # already saved
    assert "cs-2" not in ids
    assert "old-1" not in ids  # a citizen; retired
    assert set((await audience(world, ids)).values()) == {"public"}

    # A completed course brings its neighbours, and is never recommended itself.
    top_long_term_care = _ids(await chat.say("長照"))[0]
    member_id = await world.member_id(chat)
    await complete(world, member_id, top_long_term_care, 1)
    recs = await chat.say("推薦")
    assert top_long_term_care not in _ids(recs)
    assert any(c["body"].startswith("因為您上完了") for c in _cards(recs)), texts(recs)

    # A course retired after start-up drops out at once.
    first = _ids(recs)[0]
    await retire(world, first)
    assert first not in _ids(await chat.say("推薦"))


async def test_recommendations_follow_the_members_own_searches(
    world: World, session: AsyncSession
) -> None:
    chat, other = world.chat("sim-searched-recs"), world.chat("sim-searched-other")
    await chat.say("长照")  # Simplified script: remembered as searched, 長照
    await other.say("menu")
    recs = await chat.say("推薦")
    searched = [c for c in _cards(recs) if c["body"] == "因為您搜尋過「長照」"]
    assert len(searched) >= 2, texts(recs)
    # The best matches of 長照: long-term-care courses (one may sit in another category).
    assert all("長照" in c["title"] or "長期照" in c["title"] for c in searched)
    assert sum(c["subtitle"].startswith("長期照顧") for c in searched) >= 2
    assert set((await audience(world, _ids(recs))).values()) == {"public"}
    # One member's searches are nobody else's signal.
    assert "因為您搜尋過" not in texts(await other.say("推薦"))
    english = world.chat("sim-searched-recs-en", language="en")
    await english.say("menu")
    await english.say("long-term care")
    assert 'Because you searched for "' in texts(await english.say("recommend"))

    # The member's side is theirs alone: the anonymous log has no member column at all,
    # and "delete my data" takes the member's searches with it.
    assert "member_id" not in SearchLog.__table__.columns
    leaving_id = await world.member_id(chat)
    await other.say("資安")
    await chat.say("設定")
    await chat.tap("settings.delete")
    assert "已刪除" in texts(await chat.tap("settings.delete_yes"))
    owners = (await session.scalars(select(MemberSearchInterest.member_id))).all()
    assert owners
    assert leaving_id not in owners
    assert await session.scalar(select(func.count(SearchLog.id))) == 3  # aggregates stay


async def test_civil_servant_gets_courses_for_missing_mandatory_hours(world: World) -> None:
    chat = world.chat("sim-servant-recs")
    await chat.say("menu")
    member_id = await make_civil_servant(world, chat)
    async with world.runtime.sessionmaker() as s:
        keep = [r for r in default_requirements() if r["code"] in ("total", "infosec")]
        await import_requirements(s, keep, now=NOW)
        await s.commit()
    recs = await chat.say("推薦")
    first = _cards(recs)[0]
    assert first["body"] == "必修「資通安全」今年還差 3 小時"
    assert first["subtitle"].startswith("資訊安全")
    gap_ids = [i for i, c in zip(_ids(recs), _cards(recs), strict=True) if "必修" in c["body"]]
    assert 1 <= len(gap_ids) <= 3
    # Two hours done: one to go; done courses are never offered again.
    await complete(world, member_id, gap_ids[0], 2)
    recs = await chat.say("推薦")
    assert _cards(recs)[0]["body"] == "必修「資通安全」今年還差 1 小時"
    assert gap_ids[0] not in _ids(recs)
    await complete(world, member_id, gap_ids[1] if len(gap_ids) > 1 else "pub-1", 1)
    assert not [c for c in _cards(await chat.say("推薦")) if "必修" in c["body"]]


# -- filters -----------------------------------------------------------------------------------


async def test_typed_filters_narrow_the_search_and_are_logged(
    world: World, session: AsyncSession
) -> None:
    chat = world.chat("sim-filters")
    everything = await chat.say("健康")
    short = await chat.say("健康 1小時內")
    assert "1 小時內" in _alt(short)
    assert all(h <= 1 for h in _hours(short))
    total = int(re.search(r"找到 (\d+) 門", _alt(everything)).group(1))  # type: ignore[union-attr]
    narrowed = int(re.search(r"找到 (\d+) 門", _alt(short)).group(1))  # type: ignore[union-attr]
    assert 0 < narrowed < total
    assert all(h >= 2 for h in _hours(await chat.say("健康 2小時以上")))
    in_law = await chat.say("健康 只看長期照顧")
    assert _cards(in_law)
    assert all(c["subtitle"].startswith("長期照顧") for c in _cards(in_law))
    only_filter = await chat.say("1小時內")
    assert "找到" in _alt(only_filter)
    assert "1 小時內" in _alt(only_filter)
    assert all(h <= 1 for h in _hours(only_filter))

    english = world.chat("sim-filters-en", language="en")
    await english.say("menu")
    ai = await english.say("AI under 1 hour")
    assert '"AI"' in _alt(ai)
    assert "(1 h or less)" in _alt(ai)
    assert all(h <= 1 for h in _hours(ai))

    logged = (await session.scalars(select(SearchLog.query).order_by(SearchLog.id))).all()
    assert logged == [
        "健康",
        "健康 1小時內",
        "健康 2小時以上",
        "健康 只看長期照顧",
        "1小時內",
        "AI under 1 hour",
    ]


async def test_filter_buttons_and_paging_keep_filters(world: World, session: AsyncSession) -> None:
    chat = world.chat("sim-filter-buttons")
    found = await chat.say("健康")
    offered = buttons(found)
    assert all(len(a.encode()) <= 64 for a in _all_actions(found))
    assert offered["為您推薦"] == "course.rec"
    (short_label,) = [k for k in offered if k.startswith("只看 1 小時內")]
    short = await chat.tap(offered[short_label])
    expected = int(re.search(r"（(\d+)）", short_label).group(1))  # type: ignore[union-attr]
    assert f"找到 {expected} 門" in _alt(short)
    more = buttons(short)["更多結果"]
    assert more.startswith("course.more:5,h1:")
    page2 = await chat.tap(more)
    assert all(h <= 1 for h in _hours(short) + _hours(page2))
    assert not set(_ids(short)) & set(_ids(page2))
    # Narrow again by category, the hours filter kept; then clear both.
    (cat_label,) = [k for k in buttons(short) if k.startswith("只看健康生活")]
    both = await chat.tap(buttons(short)[cat_label])
    assert "「健康生活」類" in _alt(both)
    assert "1 小時內" in _alt(both)
    assert all(c["subtitle"].startswith("健康生活") for c in _cards(both))
    assert all(h <= 1 for h in _hours(both))
    cleared = await chat.tap(buttons(both)["取消篩選"])
    assert _alt(cleared) == _alt(found)
    # Taps are the same search seen differently: only the typed search was logged.
    assert await session.scalar(select(func.count(SearchLog.id))) == 1


async def test_long_query_rides_on_the_conversation_state(world: World) -> None:
    chat = world.chat("sim-long-query")
    found = await chat.say(LONG_QUERY)
    actions = _all_actions(found)
    assert all(len(a.encode()) <= 64 for a in actions)
    more = buttons(found)["更多結果"]
    assert re.fullmatch(r"course\.more:5:~[0-9a-f]{4}", more)
    page2 = await chat.tap(more)
    assert _ids(page2)
    assert not set(_ids(found)) & set(_ids(page2))
    (short_label,) = [k for k in buttons(found) if k.startswith("只看 1 小時內")]
    short = await chat.tap(buttons(found)[short_label])
    # Echoed as understood: the filler of the sentence (我想找, 的相關課程) left out.
    assert "「健康生活與運動保健" in _alt(short)
    assert "我想找" not in _alt(short)
    assert "相關課程」" not in _alt(short)
    assert all(h <= 1 for h in _hours(short))
    # A new long search makes the old buttons stale; they say so instead of guessing.
    await chat.say(LONG_QUERY + " 健康")
    assert "過期" in texts(await chat.tap(more))
    # A forged reference to nothing is handled the same way.
    assert "過期" in texts(await chat.tap("course.more:5:~0000"))


async def test_zero_results_with_filters_stay_helpful(world: World) -> None:
    chat = world.chat("sim-filter-zero")
    narrow = await chat.say("資安 10小時以上")
    assert "有和「資安」有關的課程，但沒有符合條件（10 小時以上）的" in texts(narrow)
    (wide_label,) = [k for k in buttons(narrow) if k.startswith("看全部結果")]
    wide = await chat.tap(buttons(narrow)[wide_label])
    assert _cards(wide)
    # A typo with a filter: did-you-mean keeps the filter.
    typo = await chat.say("資鷹 1小時內")  # no homophone fits: nothing found
    assert "在條件（1 小時內）下找不到和「資鷹」有關的課程" in texts(typo)
    offered = [(b["label"], b["action"]) for r in typo for b in r.get("quick_replies", [])]
    # The did-you-mean word, then its category: both keep the hour limit.
    assert ("資訊安全", "course.f:0,h1:資訊安全") in offered
    category = [a for label, a in offered if label == "資訊安全" and a != "course.f:0,h1:資訊安全"]
    assert category[0].startswith("course.f:0,h1,c")
    assert _cards(await chat.tap(category[0]))
    suggestion = "course.f:0,h1:資訊安全"
    followed = await chat.tap(suggestion)
    assert _cards(followed)
    assert all(h <= 1 for h in _hours(followed))
    # A category and an hour limit with nothing in common: offer to drop the hour limit.
    both = await chat.say("AI 只看法律 半小時內")
    assert "放寬" in texts(both)
    assert any(a.startswith("course.f:") for a in _all_actions(both))


async def test_audience_filter_for_civil_servants_and_citizens(world: World) -> None:
    citizen = world.chat("sim-aud-citizen")
    told = await citizen.say("資安 限公務人員")
    assert "限公務人員觀看" in texts(told)
    assert buttons(told)["驗證手機"] == "cmd:verify"
    assert "cs-2" not in _ids(told)
    assert _ids(told)
    assert not [k for k in buttons(await citizen.say("資安")) if k.startswith("只看公務人員")]

    servant = world.chat("sim-aud-servant")
    await servant.say("menu")
    await make_civil_servant(world, servant)
    found = await servant.say("資安社交工程")
    assert "cs-2" in _ids(found)
    assert "pub-1" in _ids(found)
    (label,) = [k for k in buttons(found) if k.startswith("只看公務人員課程")]
    only = await servant.tap(buttons(found)[label])
    assert _ids(only)[0] == "cs-2"
    assert set((await audience(world, _ids(only))).values()) == {"civil_servant"}
    assert _ids(await servant.say("資安社交工程 限公務人員")) == _ids(only)


async def test_citizens_are_told_civil_servant_courses_exist_and_how_to_verify(
    world: World,
) -> None:
    citizen = world.chat("sim-told-citizen")
    found = await citizen.say("資安社交工程")
    assert "pub-1" in _ids(found)
    assert "cs-2" not in _ids(found)
    notice = [r for r in found if r["kind"] == "text" and "限公務人員" in r["text"]]
    assert len(notice) == 1
    assert re.search(
        r"另有 [1-9]\d* 門限公務人員的課程，完成公務人員身分驗證後即可查看", notice[0]["text"]
    )
    assert [b["action"] for b in notice[0]["buttons"]] == ["cmd:verify"]
    assert found[-1] is notice[0]  # after the cards, which keep their quick replies
    # Once per session: a later search omits it, and so does the next page.
    wide = await citizen.say("資安")
    assert wide[0]["kind"] == "cards"
    assert not any("限公務人員的課程" in r.get("text", "") for r in wide)
    page2 = await citizen.tap(buttons(wide)["更多結果"])
    assert not any("限公務人員的課程" in r.get("text", "") for r in page2)
    # Every way into the course explains instead of "not available".
    for action in ("course.open:cs-2", "course.pw:cs-2", "course.sim:cs-2", "course.save:cs-2"):
        replies = await citizen.tap(action)
        assert "這門課程限已驗證身分的公務人員觀看" in texts(replies), action
        assert "資安社交工程演練" not in texts(replies)
        assert buttons(replies) == {"驗證手機": "cmd:verify"}
    # A course that is gone is still just gone.
    assert "目前沒有開放" in texts(await citizen.tap("course.open:no-such-course"))

    english = world.chat("sim-told-en", language="en")
    await english.say("menu")
    told = await english.say("資安社交工程")
    assert "Courses for civil servants only that also match" in texts(told)
    assert buttons(told)["Verify my phone"] == "cmd:verify"
    card = await english.tap("course.open:cs-2")
    assert "for verified civil servants only" in texts(card)

    # A verified civil servant sees the course itself, and no notice.
    servant = world.chat("sim-told-servant")
    await servant.say("menu")
    await make_civil_servant(world, servant)
    found = await servant.say("資安社交工程")
    assert "cs-2" in _ids(found)
    assert "限公務人員的課程" not in texts(found)
    assert "資安社交工程演練" in texts(await servant.tap("course.open:cs-2"))


# -- browsing ----------------------------------------------------------------------------------


async def test_search_prompt_offers_browsing(world: World) -> None:
    chat = world.chat("sim-browse-prompt")
    asked = await chat.say("找課程")
    offered = buttons(asked)
    assert offered["最新課程"] == "course.browse:new"
    assert offered["熱門課程"] == "course.browse:popular"
    assert offered["一小時內微課程"] == "course.browse:short"
    assert offered["課程類別"] == "course.cats"
    assert offered["健康生活"] == "course.cat:健康生活"
    (prompt,) = asked
    assert len(prompt["quick_replies"]) <= 13  # LINE's quick-reply limit
    english = world.chat("sim-browse-prompt-en", language="en")
    await english.say("menu")
    offered = buttons(await english.say("search"))
    assert offered["Newest"] == "course.browse:new"
    assert offered["Popular"] == "course.browse:popular"
    assert offered["Under 1 hour"] == "course.browse:short"
    assert offered["Categories"] == "course.cats"


async def test_browse_newest(world: World, session: AsyncSession) -> None:
    later = "id,title,category,hours,audience,password\nnew-1,最新上架的測試課程,管理,2,public,\n"
    await apply_catalog(session, parsed=parse_csv(later.encode()), now=NOW + dt.timedelta(days=1))
    await session.commit()
    chat = world.chat("sim-browse-new")
    newest = await chat.tap("course.browse:new")
    assert _alt(newest) == "最新課程"
    assert _ids(newest)[0] == "new-1"
    assert len(_ids(newest)) == 5
    assert set((await audience(world, _ids(newest))).values()) == {"public"}
    # The other lists are a tap away; this one is not offered again.
    offered = buttons(newest)
    assert offered["熱門課程"] == "course.browse:popular"
    assert offered["課程類別"] == "course.cats"
    assert "course.browse:new" not in offered.values()
    page2 = await chat.tap(offered["更多結果"])
    assert offered["更多結果"] == "course.browse:new|5"
    assert _ids(page2)
    assert not set(_ids(newest)) & set(_ids(page2))
    for typed in ("最新課程", "newest"):
        assert _ids(await chat.say(typed)) == _ids(newest), typed


async def test_browse_popular(world: World, session: AsyncSession) -> None:
    await session.execute(update(Course).where(Course.id == "pub-1").values(popularity=10_000))
    await session.execute(update(Course).where(Course.id == "cs-2").values(popularity=20_000))
    await session.commit()
    chat = world.chat("sim-browse-popular")
    popular = await chat.tap("course.browse:popular")
    assert _alt(popular) == "熱門課程"
    assert _ids(popular)[0] == "pub-1"  # the most opened course a citizen may see
    assert "cs-2" not in _ids(popular)
    for typed in ("熱門課程", "popular"):
        assert _ids(await chat.say(typed))[0] == "pub-1", typed
    servant = world.chat("sim-browse-popular-cs")
    await servant.say("menu")
    await make_civil_servant(world, servant)
    assert _ids(await servant.tap("course.browse:popular"))[:2] == ["cs-2", "pub-1"]


async def test_browse_short_courses(world: World) -> None:
    chat = world.chat("sim-browse-short")
    short = await chat.tap("course.browse:short")
    assert _alt(short) == "一小時內的短課程"
    page2 = await chat.tap(buttons(short)["更多結果"])
    hours = _hours(short) + _hours(page2)
    assert len(hours) == 10
    assert all(h < 1 for h in hours)
    assert hours == sorted(hours)  # shortest first
    assert not set(_ids(short)) & set(_ids(page2))
    for typed in ("微課程", "short courses"):
        assert _ids(await chat.say(typed)) == _ids(short), typed


async def test_browse_categories_and_words_inside_the_search_step(
    world: World, session: AsyncSession
) -> None:
    chat = world.chat("sim-browse-cats")
    cats = await chat.tap("course.cats")
    assert "課程類別：" in texts(cats)
    assert "健康生活（76）" in texts(cats)
    assert buttons(cats)["長期照顧"] == "course.cat:長期照顧"
    assert texts(await chat.say("課程類別")) == texts(cats)
    english = world.chat("sim-browse-cats-en", language="en")
    await english.say("menu")
    assert "Course categories:" in texts(await english.say("categories"))
    listed = await chat.tap("course.cat:長期照顧")
    assert all(c["subtitle"].startswith("長期照顧") for c in _cards(listed))
    # After 找課程, a browse word browses too (it is not searched for, nor logged).
    await chat.say("找課程")
    assert _alt(await chat.say("熱門課程")) == "熱門課程"
    await chat.say("找課程")
    assert "課程類別：" in texts(await chat.say("類別"))
    assert await session.scalar(select(func.count(SearchLog.id))) == 0


async def test_recommend_reachable_from_categories_and_search_prompt(world: World) -> None:
    chat = world.chat("sim-menus")
    assert buttons(await chat.tap("course.cats"))["為您推薦"] == "course.rec"
    asked = await chat.say("找課程")
    assert buttons(asked)["為您推薦"] == "course.rec"
    assert buttons(asked)["我的收藏"] == "course.saved"
