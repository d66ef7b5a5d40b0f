"""Welcome, menu, help, language and the fallback, through the real app and the simulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import func, select, update

from models.conversation import ConversationState
from tests.dialog import Chat, buttons, texts


async def test_follow_welcomes_with_menu(chat: Chat) -> None:
    replies = await chat.follow()
    assert "歡迎來到臺北e大" in texts(replies)
    assert buttons(replies)["說明"] == "cmd:help"


async def test_help_by_word_command_and_button_in_both_languages(chat: Chat) -> None:
    by_word = await chat.say("說明")
    by_command = await chat.say("/help")
    by_button = await chat.tap("cmd:help")
    assert texts(by_word) == texts(by_command) == texts(by_button)
    assert "找課程" in texts(by_word)
    english = await chat.say("HELP")  # typed words fold case and width
    assert texts(english) == texts(by_word)


async def test_language_switch_by_button_then_english_replies(chat: Chat) -> None:
    replies = await chat.tap("lang:en")
    assert "English" in texts(replies)
    assert "find a course" in texts(await chat.say("help"))
    assert buttons(await chat.say("menu"))["Help"] == "cmd:help"


async def test_language_step_takes_typed_answer_and_rejects_nonsense(chat: Chat) -> None:
    assert "1. 中文" in texts(await chat.say("語言"))
    assert "請輸入 1" in texts(await chat.say("3"))
    assert "English" in texts(await chat.say("2"))
    assert "Welcome back" in texts(await chat.say("/start"))


async def test_menu_word_escapes_a_step_and_cancel_leaves_it(chat: Chat) -> None:
    await chat.say("語言")
    assert "請選擇想做的事" in texts(await chat.say("選單"))
    # The step is gone: "2" is no longer a language answer.
    assert "English" not in texts(await chat.say("2"))
    await chat.say("語言")
    assert "已取消" in texts(await chat.say("取消"))
    assert "English" not in texts(await chat.say("2"))


async def test_unknown_action_and_text_get_the_friendly_fallback(chat: Chat) -> None:
    replies = await chat.tap("no.such.action:1")
    assert "看不懂" in texts(replies)
    assert "cmd:help" in buttons(replies).values()


async def test_a_step_expires_after_its_ttl_and_the_retention_job_removes_it(
    served: Any,
) -> None:
    now = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    async with served(conversation_ttl_seconds=60) as (url, api):
        runtime = api.state.runtime
        runtime.processor.clock = lambda: now
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            chat = Chat(http, "sim-slow")
            await chat.say("語言")
            now += dt.timedelta(seconds=59)
            assert "之後用中文" in texts(await chat.say("1"))  # still within the step's minute

            await chat.say("語言")
            now += dt.timedelta(seconds=61)
            late = await chat.say("1")  # the step has lapsed: "1" is no language answer
            assert "之後用中文" not in texts(late)

            purged = await runtime.jobs.require("retention").run(now)

        async with runtime.sessionmaker() as session:
            left = await session.scalar(select(func.count()).select_from(ConversationState))
    assert purged["conversation_states"] == 1
    assert left == 0


async def test_retention_drops_old_events_searches_and_simulated_chats_only(
    served: Any,
) -> None:
    from models.courses import SearchLog
    from models.inbound import InboundEvent
    from models.simulator import SimulatorMessage

    now = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    async with served() as (url, api):
        runtime = api.state.runtime
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await Chat(http, "sim-retention").say("資安")  # an event, a search, a reply
        async with runtime.sessionmaker() as session:
            for table, column in (
                (InboundEvent, InboundEvent.received_at),
                (SearchLog, SearchLog.created_at),
                (SimulatorMessage, SimulatorMessage.created_at),
            ):
                assert await session.scalar(select(func.count()).select_from(table)) > 0
                await session.execute(update(table).values({column: now - dt.timedelta(days=500)}))
            # Still unanswered: kept whatever its age.
            session.add(
                InboundEvent(
                    channel="line", event_id="open", kind="message", status="pending",
                    received_at=now - dt.timedelta(days=500), payload={},
                )
            )  # fmt: skip
            await session.commit()
        # Within every period nothing goes; past them, all but the open event does.
        early = await runtime.jobs.require("retention").run(now - dt.timedelta(days=499))
        assert (early["inbound_events"], early["search_log"], early["simulator_messages"]) == (
            0,
            0,
            0,
        )
        purged = await runtime.jobs.require("retention").run(now)
        async with runtime.sessionmaker() as session:
            left = list(await session.scalars(select(InboundEvent.event_id)))
            searches = await session.scalar(select(func.count()).select_from(SearchLog))
            simulated = await session.scalar(select(func.count()).select_from(SimulatorMessage))
    assert purged["inbound_events"] >= 1
    assert purged["search_log"] >= 1
    assert purged["simulator_messages"] >= 1
    assert left == ["open"]
    assert searches == simulated == 0
