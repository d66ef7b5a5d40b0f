"""Settings in chat: reminder time, marketing messages, where notifications go."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models.members import ChannelAccount, Member
from models.outbox import choose_targets
from tests.dialog import Chat, buttons, texts


@pytest.fixture
async def api_chat(served: Any) -> AsyncIterator[tuple[Any, Chat]]:
    async with served() as (url, api), httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield api, Chat(http, "sim-settings")


async def _member(api: Any) -> Member:
    async with api.state.runtime.sessionmaker() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == "sim-settings")
        )
        assert account is not None
        member = await session.get(Member, account.member_id)
        assert member is not None
        return member


async def test_reminder_time_by_button_by_typing_and_cleared(api_chat: tuple[Any, Chat]) -> None:
    _, chat = api_chat
    overview = await chat.say("設定")
    assert "提醒時間：未設定" in texts(overview)
    prompt = await chat.tap(buttons(overview)["提醒時間"])
    assert "20:00" in buttons(prompt)
    assert "請輸入一天中的時間" in texts(await chat.say("25:00"))
    typed = await chat.say("7：05")  # full-width colon, one-digit hour
    assert "提醒時間已設為 07:05" in texts(typed)
    assert "提醒時間：07:05" in texts(typed)
    tapped = await chat.tap("settings.remind:20:00")
    assert "提醒時間：20:00" in texts(tapped)
    cleared = await chat.tap("settings.remind:none")
    assert "提醒時間：未設定" in texts(cleared)


async def test_unsubscribe_and_marketing_toggle(api_chat: tuple[Any, Chat]) -> None:
    api, chat = api_chat
    assert "活動訊息：接收中" in texts(await chat.say("設定"))
    stopped = await chat.say("/unsubscribe")
    assert "已停止活動訊息" in texts(stopped)
    assert "必修課程提醒仍會照常通知" in texts(stopped)
    assert (await _member(api)).marketing_opt_in is False
    overview = await chat.say("設定")
    assert "活動訊息：已停止" in texts(overview)
    again = await chat.tap(buttons(overview)["接收活動訊息"])
    assert "已開啟活動訊息" in texts(again)
    assert "活動訊息：接收中" in texts(again)
    assert (await _member(api)).marketing_opt_in is True
    assert "已停止活動訊息" in texts(await chat.say("取消訂閱"))


async def test_a_member_with_two_channels_chooses_where_notifications_go(
    api_chat: tuple[Any, Chat],
) -> None:
    api, chat = api_chat
    single = await chat.say("設定")
    assert "通知管道" not in texts(single)  # one channel: nothing to choose
    assert "通知管道" not in buttons(single)
    member = await _member(api)
    long_ago = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with api.state.runtime.sessionmaker() as session:
        session.add(
            ChannelAccount(
                member_id=member.id,
                channel="line",
                external_id="U" + "5" * 32,
                created_at=long_ago,
                last_seen_at=long_ago,
            )
        )
        await session.commit()

    overview = await chat.say("設定")
    assert "通知管道：自動（最近使用的帳號）" in texts(overview)
    prompt = await chat.tap(buttons(overview)["通知管道"])
    assert buttons(prompt) == {
        "LINE": "settings.notify:line",
        "Simulator": "settings.notify:simulator",
        "自動（最近使用）": "settings.notify:auto",
    }
    chosen = await chat.tap("settings.notify:line")
    assert "之後的通知會傳到：LINE" in texts(chosen)
    assert "通知管道：LINE" in texts(chosen)
    async with api.state.runtime.sessionmaker() as session:
        target = (await choose_targets(session, member_ids=[member.id]))[member.id]
    assert target.channel == "line"  # chosen, though the simulator was used more recently

    unknown = await chat.tap("settings.notify:telegram")  # not linked: asked again
    assert "要傳到哪裡" in texts(unknown)
    assert (await _member(api)).preferred_channel == "line"
    await chat.tap("settings.notify:auto")
    async with api.state.runtime.sessionmaker() as session:
        target = (await choose_targets(session, member_ids=[member.id]))[member.id]
    assert target.channel == "simulator"
