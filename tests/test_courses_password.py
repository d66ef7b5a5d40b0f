"""Course passwords in chat, through the real app: at most five wrong tries per member in any
rolling hour, over all courses and however often the step is started; then a cool-down that
says (in Taipei time) when to try again. The typed password rests in no log and no table."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models import Base
from models.catalog_import import parse_csv
from models.courses import (
    Course,
    CoursePasswordAttempt,
    apply_catalog,
    hash_course_password,
    record_password_attempt,
)
from tests.dialog import Chat, World, buttons, texts

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Taipei
MINUTE = dt.timedelta(minutes=1)
# Letters only: digit runs would be masked anyway, which would hide a leak from the test.
RIGHT_A = "Open-Sesame-Alpha"
RIGHT_B = "Open-Sesame-Beta"
CATALOG = (
    "id,title,category,hours,audience,password\n"
    f"pw-a,加密課程甲,資訊安全,1,public,{RIGHT_A}\n"
    f"pw-b,加密課程乙,資訊安全,1,public,{RIGHT_B}\n"
)


async def attempts(world: World, member_id: int) -> list[tuple[dt.datetime, bool, str]]:
    async with world.runtime.sessionmaker() as s:
        rows = await s.execute(
            select(
                CoursePasswordAttempt.attempted_at,
                CoursePasswordAttempt.success,
                CoursePasswordAttempt.course_id,
            )
            .where(CoursePasswordAttempt.member_id == member_id)
            .order_by(CoursePasswordAttempt.id)
        )
        return [(a, s_, c) for a, s_, c in rows.all()]


@pytest.fixture
async def world(session: AsyncSession, served) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    await apply_catalog(session, parsed=parse_csv(CATALOG.encode()), now=NOW)
    await session.commit()
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served())
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        w = World(api.state.runtime, http, now=NOW)
        w.follow_clock()
        yield w


async def _wrong(world: World, chat: Chat, course: str, guess: str) -> list[dict[str, Any]]:
    asked = await chat.tap(f"course.pw:{course}")
    assert "請輸入" in texts(asked) or "Please type" in texts(asked)
    world.advance(MINUTE)
    return await chat.say(guess)


async def test_five_wrong_tries_an_hour_across_courses_and_restarts(world: World) -> None:
    chat = world.chat("pw-citizen")
    # Each wrong try starts the step afresh, alternating courses: nothing resets the count.
    for n, course in enumerate(["pw-a", "pw-b", "pw-a", "pw-b"], start=1):
        answer = await _wrong(world, chat, course, f"guess-{'xyzw'[n - 1]}")
        assert f"還可以再試 {5 - n} 次" in texts(answer), texts(answer)
        world.advance(MINUTE)
    # 10:00 start: wrong tries at 10:01, 10:03, 10:05, 10:07, and the fifth at 10:09.
    fifth = await _wrong(world, chat, "pw-a", "guess-v")
    said = texts(fifth)
    assert "最多可以試 5 次" in said
    assert "11:01（臺北時間）" in said  # the first wrong try (10:01) is an hour old then
    assert not any(a.startswith("https://") for a in buttons(fifth).values())
    # The sixth try, on either course, is not even asked for: the cool-down is explained.
    world.advance(10 * MINUTE)
    for course in ("pw-b", "pw-a"):
        sixth = await chat.tap(f"course.pw:{course}")
        assert "已達 5 次" in texts(sixth)
        assert "11:01（臺北時間）" in texts(sixth)
        assert "請輸入" not in texts(sixth)
    # Out of the step, the right password is just words (a search), never a check.
    assert "密碼正確" not in texts(await chat.say(RIGHT_A))
    member_id = await world.member_id(chat)
    assert [ok for _, ok, _ in await attempts(world, member_id)] == [False] * 5

    # Rolling hour: at 11:01 the first wrong try has aged out, so one try is free again,
    # and a wrong one there locks again until the second (10:03) is an hour old.
    world.now = NOW + 61 * MINUTE
    again = await _wrong(world, chat, "pw-b", "guess-u")
    assert "12:01" not in texts(again)
    assert "11:03（臺北時間）" in texts(again)
    world.now = NOW + 63 * MINUTE
    assert "請輸入" in texts(await chat.tap("course.pw:pw-a"))
    ok = await chat.say(RIGHT_A)
    assert "密碼正確" in texts(ok)
    assert buttons(ok)["前往臺北e大"] == "https://elearning.taipei/"  # no page of its own


async def test_other_people_are_not_locked_out_and_english_says_taipei_time(
    world: World,
) -> None:
    locked = world.chat("pw-locked", language="en")
    for guess in ("aa-x", "bb-x", "cc-x", "dd-x"):
        assert "tries left" in texts(await _wrong(world, locked, "pw-a", guess))
    last = await _wrong(world, locked, "pw-b", "ee-x")
    assert "try again after 11:01 (Taipei time)" in texts(last)
    cool = await locked.tap("course.pw:pw-a")
    assert "try again after 11:01 (Taipei time)" in texts(cool)
    # A different member still has all five tries.
    other = world.chat("pw-other")
    assert "還可以再試 4 次" in texts(await _wrong(world, other, "pw-a", "zz-x"))


async def test_a_try_elsewhere_while_in_the_step_counts_and_right_password_is_refused(
    world: World,
) -> None:
    chat = world.chat("pw-two-devices")
    for guess in ("aa-y", "bb-y", "cc-y", "dd-y"):
        await _wrong(world, chat, "pw-a", guess)
    assert "請輸入" in texts(await chat.tap("course.pw:pw-b"))
    # Meanwhile the same member's fifth wrong try arrives another way (a linked account).
    member_id = await world.member_id(chat)
    async with world.runtime.sessionmaker() as s:
        await record_password_attempt(
            s, member_id=member_id, course_id="pw-a", success=False, now=world.now
        )
        await s.commit()
    # Now even the right password is not checked: five wrong ones used up this hour.
    refused = await chat.say(RIGHT_B)
    assert "密碼正確" not in texts(refused)
    assert "已達 5 次" in texts(refused)
    assert len(await attempts(world, member_id)) == 5


async def test_typed_password_rests_in_no_log_and_no_table(
    world: World, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The SQLite driver's own DEBUG trace prints every statement's parameters, including
    # the inbound event as it is first recorded (before any handler knows it is a password);
    # bot.logs should quiet it as it does the HTTP clients (see the report); so does this test.
    caplog.set_level(logging.INFO, logger="aiosqlite")
    chat = world.chat("pw-secret")
    wrong = "Wrong-Guess-Kumquat"
    replies = await _wrong(world, chat, "pw-a", wrong)
    assert "還可以再試 4 次" in texts(replies)
    assert "請輸入" in texts(await chat.tap("course.pw:pw-a"))
    ok = await chat.say(RIGHT_A)
    assert "密碼正確" in texts(ok)
    for secret in (wrong, RIGHT_A):
        assert secret not in texts(replies + ok)
        assert secret not in caplog.text
        assert not [r for r in caplog.records if secret in r.getMessage()]
    # Every row of every table, as text: the typed passwords are nowhere.
    dump: list[str] = []
    for table in Base.metadata.sorted_tables:
        rows = (await session.execute(text(f'SELECT * FROM "{table.name}"'))).all()  # noqa: S608
        dump.extend(repr(tuple(r)) for r in rows)
    stored = "\n".join(dump)
    assert "course_password_attempt" not in stored  # sanity: rows, not table names
    assert "pw-a" in stored  # the dump does see what was stored
    for secret in (wrong, RIGHT_A):
        assert secret not in stored
    member_id = await world.member_id(chat)
    assert [(ok_, c) for _, ok_, c in await attempts(world, member_id)] == [
        (False, "pw-a"),
        (True, "pw-a"),
    ]


@pytest.mark.postgres_only
async def test_a_check_racing_a_password_change_waits_for_it_and_uses_the_new_password(
    world: World, engine: AsyncEngine
) -> None:
    chat = world.chat("pw-racer")
    assert "請輸入" in texts(await chat.tap("course.pw:pw-a"))
    async with engine.connect() as admin:
        # An admin changes the password (and forgets unlocks) in a transaction still open...
        await admin.execute(
            update(Course)
            .where(Course.id == "pw-a")
            .values(password_hash=hash_course_password("A-New-Password"))
        )
        await admin.execute(delete(CoursePasswordAttempt).where(CoursePasswordAttempt.success))
        # ...while the member types the old one: the check waits for the change to land.
        typed = asyncio.create_task(chat.say(RIGHT_A))
        await asyncio.sleep(0.5)
        assert not typed.done()
        await admin.commit()
    answer = await typed
    assert "密碼正確" not in texts(answer)  # checked against the new password
    assert [ok for _, ok, _ in await attempts(world, await world.member_id(chat))] == [False]


async def test_throwaway_accounts_pause_the_course_and_an_admin_lifts_it(world: World) -> None:
    """Guessing with many accounts (each with five tries of its own) pauses the course's
    password entry for everyone for an hour, even for the right password; an admin can lift
    the pause, which is audited."""
    from models.courses import COURSE_PASSWORD_TRIES_PER_HOUR
    from models.identity import AuditLog

    guesses = 0
    for n in range(COURSE_PASSWORD_TRIES_PER_HOUR // 3):
        throwaway = world.chat(f"pw-throwaway-{n}")
        for k in range(3):
            answer = await _wrong(world, throwaway, "pw-a", f"guess-{n}-{'abc'[k]}")
            guesses += 1
            if guesses < COURSE_PASSWORD_TRIES_PER_HOUR:
                assert "還可以再試" in texts(answer)
    assert "密碼輸入暫停中" in texts(answer)
    assert "找課程" in buttons(answer)  # a next step
    # Paused for everyone, the right password included, and for newcomers too.
    owner = world.chat("pw-owner")
    paused = await owner.tap("course.pw:pw-a")
    assert "密碼輸入暫停中" in texts(paused)
    assert "請輸入" not in texts(paused)
    # The other course is not paused.
    assert "請輸入" in texts(await owner.tap("course.pw:pw-b"))
    await owner.say("取消")

    lifted = await world.http.delete(
        "/admin/api/courses/pw-a/password/lock",
        headers={"Authorization": "Bearer dev-admin-token"},
    )
    assert lifted.status_code == 200
    assert "請輸入" in texts(await owner.tap("course.pw:pw-a"))
    assert "密碼正確" in texts(await owner.say(RIGHT_A))
    async with world.runtime.sessionmaker() as s:
        actions = list(await s.scalars(select(AuditLog.action)))
    assert "courses.password_lock_lifted" in actions
    missing = await world.http.delete(
        "/admin/api/courses/nope/password/lock",
        headers={"Authorization": "Bearer dev-admin-token"},
    )
    assert missing.status_code == 404
    anonymous = await world.http.delete("/admin/api/courses/pw-a/password/lock")
    assert anonymous.status_code == 401
