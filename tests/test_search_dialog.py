"""Course search in chat, through the real app and the simulator, with the demo catalog."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.catalog_import import parse_csv, read_catalog
from models.courses import SearchLog, apply_catalog
from models.search import demo_catalog_path
from tests.dialog import Chat, buttons, texts

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
EXTRA = (
    "id,title,category,hours,audience,password,url\n"
    "pw-1,加密測試課程,資訊安全,1,public,open-sesame,https://elearning.taipei/course/pw-1\n"
    "cs-1,公務機密維護講習,資訊安全,1,civil_servant,,\n"
)


@pytest.fixture
async def chat(session: AsyncSession, served) -> AsyncIterator[Chat]:  # type: ignore[no-untyped-def]
    """A citizen chatting with the real app, the demo catalog imported and search wired in."""
    await apply_catalog(session, parsed=read_catalog(demo_catalog_path()), now=NOW)
    await apply_catalog(session, parsed=parse_csv(EXTRA.encode()), now=NOW)
    await session.commit()
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served())
        # The app loaded its search index from this database at start-up.
        assert len(api.state.runtime.search.index) > 0
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        yield Chat(http, "sim-searcher")


async def test_plain_words_search_and_log(chat: Chat, session: AsyncSession) -> None:
    replies = await chat.say("資安")
    assert "課程" in texts(replies)
    assert any(r["kind"] == "cards" for r in replies)
    assert any(a.startswith("course.open:") for a in buttons(replies).values())
    await chat.say("/search 长照")
    logged = (await session.scalars(select(SearchLog).order_by(SearchLog.id))).all()
    assert [(x.query, x.normalised, x.channel) for x in logged] == [
        ("資安", "資安", "simulator"),
        ("长照", "長照", "simulator"),
    ]
    assert all(x.result_count > 0 for x in logged)


async def test_more_results_pages_without_repeats(chat: Chat) -> None:
    first = await chat.say("健康")
    more = buttons(first)["更多結果"]
    assert more.startswith("course.more:5:")
    assert len(more.encode()) <= 64
    second = await chat.tap(more)
    first_ids = {a for a in buttons(first).values() if a.startswith("course.open:")}
    second_ids = {a for a in buttons(second).values() if a.startswith("course.open:")}
    assert second_ids
    assert not first_ids & second_ids


async def test_typo_is_corrected_and_nothing_found_offers_alternatives(chat: Chat) -> None:
    assert "您是不是要找「資訊安全」" in texts(await chat.say("資訊安圈"))
    # A homophone from the input method (資案 for 資安) finds what 資安 finds.
    homophone = await chat.say("資案")
    assert "您是不是要找「資訊安全」" in texts(homophone)
    assert any(r["kind"] == "cards" for r in homophone)
    replies = await chat.say("資鷹")
    assert "找不到" in texts(replies)
    offered = buttons(replies)
    assert offered["資訊安全"].startswith("course.")
    follow_up = await chat.tap(offered["資訊安全"])
    assert any(r["kind"] == "cards" for r in follow_up)


async def test_a_long_sentence_finds_what_its_key_words_find(chat: Chat) -> None:
    sentence = await chat.say("請問有沒有關於長期照顧的線上課程")
    words = await chat.say("長期照顧")
    assert [a for a in buttons(sentence).values() if a.startswith("course.open:")] == [
        a for a in buttons(words).values() if a.startswith("course.open:")
    ]
    assert "和「長期照顧」有關的課程" in texts(sentence)  # echoed as understood
    assert "請問" not in texts(sentence)


async def test_search_word_then_query_and_category_browse(chat: Chat) -> None:
    asked = await chat.say("找課程")
    assert "想找什麼課程" in texts(asked)
    assert "course.cat:健康生活" in buttons(asked).values()
    assert "課程" in texts(await chat.say("性平"))
    listed = await chat.tap("course.cat:長期照顧")
    assert "長期照顧" in texts(listed)


async def test_card_password_flow_and_civil_servant_courses_hidden(chat: Chat) -> None:
    card = await chat.tap("course.open:pw-1")
    assert "需要課程密碼" in texts(card)
    assert buttons(card)["輸入課程密碼"] == "course.pw:pw-1"
    assert "請輸入" in texts(await chat.tap("course.pw:pw-1"))
    assert "還可以再試 4 次" in texts(await chat.say("wrong"))
    ok = await chat.say("open-sesame")
    assert "密碼正確" in texts(ok)
    # Its own page, from the catalog's url: the button promises the course.
    assert buttons(ok)["前往上課"] == "https://elearning.taipei/course/pw-1"
    # A citizen neither finds nor opens a civil-servant course, but is told that one
    # matches and how to see it, instead of "nothing found" / "not available".
    found = await chat.say("公務機密")
    assert "公務機密維護講習" not in texts(found)
    assert "cs-1" not in " ".join(buttons(found).values())
    assert "找不到" not in texts(found)
    # cs-1 and a demo course match; a citizen sees neither, only that they exist.
    assert re.search(
        r"有 [1-9]\d* 門限公務人員的課程，完成公務人員身分驗證後即可查看", texts(found)
    )
    assert buttons(found)["驗證手機"] == "cmd:verify"
    card = await chat.tap("course.open:cs-1")
    assert "這門課程限已驗證身分的公務人員觀看" in texts(card)
    assert "公務機密維護講習" not in texts(card)
    assert buttons(card) == {"驗證手機": "cmd:verify"}
    # The button starts phone verification, the way to civil-servant status.
    assert "手機號碼" in texts(await chat.tap("cmd:verify"))


async def test_password_step_is_left_by_cancel(chat: Chat, session: AsyncSession) -> None:
    await chat.tap("course.pw:pw-1")
    assert "已取消" in texts(await chat.say("取消"))
    # Out of the step, a password-looking word is a search again (and logged as one).
    await chat.say("open-sesame")
    n = await session.scalar(select(func.count(SearchLog.id)))
    assert n == 1


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("0912-345-678", ["0912", "345", "678"]),
        ("+886912345678", ["886", "912", "345", "678"]),
        ("+886 912 345 678", ["886", "912", "345", "678"]),
        ("123456", ["123456", "123", "456"]),
        ("我的手機 0912345678 資安", ["0912", "345", "678"]),
        # Full-width digits and dashes (zh-TW keyboards), slashes, Unicode dashes.
        ("０９１２－３４５－６７８", ["０９１２", "３４５", "６７８"]),
        ("0912/345/678", ["0912", "345", "678"]),
        ("0912\u2010345\u2014678", ["0912", "345", "678"]),
    ],
)
async def test_numbers_typed_as_a_search_are_not_logged(
    chat: Chat, session: AsyncSession, typed: str, digits: list[str]
) -> None:
    # Outside the verification step a phone number or a code is a search like any text...
    replies = await chat.say(typed)
    assert replies
    # ...but the anonymous log, which is never erased, keeps none of its digits.
    (row,) = (await session.scalars(select(SearchLog))).all()
    for stored in (row.query, row.normalised):
        assert "***" in stored
        assert not any(d in stored for d in digits), stored
        assert not any(ch.isdigit() for ch in stored), stored
    if "資安" in typed:
        assert "資安" in row.query  # the words around the number still count


async def test_english_shows_category_names_in_english(
    session: AsyncSession,
    served,  # type: ignore[no-untyped-def]
) -> None:
    await apply_catalog(session, parsed=read_catalog(demo_catalog_path()), now=NOW)
    await session.commit()
    async with served() as (url, _), httpx.AsyncClient(base_url=url, timeout=30) as http:
        en = Chat(http, "sim-english", language="en")
        found = await en.say("information security")
        offered = buttons(found)
        assert offered["Info security"] == "course.cat:資訊安全"
        assert "資訊安全" not in offered  # the label is English, the action the catalog's name
        listed = await en.tap("course.cat:資訊安全")
        assert 'Courses in "Info security"' in texts(listed)
        assert "Info security・" in texts(listed)  # the cards' subtitles too


def test_every_catalog_category_has_an_english_name_that_fits_a_line_label() -> None:
    import json

    from bot.i18n import Catalog

    en = Catalog().messages["en"]
    demo = json.loads(demo_catalog_path().read_text("utf-8"))
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "courses.json"
    records = demo + (json.loads(shared.read_text("utf-8")) if shared.is_file() else [])
    for category in {r["category"] for r in records}:
        name = en.get(f"categories.{category}")
        assert name, category
        assert name != category, category
        assert len(name) <= 20, name  # LINE cuts button labels at 20 characters
