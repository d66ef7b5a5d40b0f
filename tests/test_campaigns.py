"""活動領獎 before any campaign exists: an honest answer, never a course search."""

from __future__ import annotations

import re

import httpx

from tests.dialog import Chat, buttons, texts

PHONE = "0912-345-678"


async def test_prizes_by_word_command_and_menu_button_say_no_campaign_and_offer_verification(
    chat: Chat,
) -> None:
    by_word = await chat.say("活動領獎")
    by_command = await chat.say("/prizes")
    by_button = await chat.tap("cmd:prizes")  # the rich menu's 活動領獎 area
    assert texts(by_word) == texts(by_command) == texts(by_button)
    assert "目前沒有進行中的領獎活動" in texts(by_word)
    assert "找不到" not in texts(by_word)  # not taken as a course search
    assert buttons(by_word) == {"驗證手機": "cmd:verify"}
    await chat.tap("lang:en")
    english = await chat.say("prizes")
    assert "No prize campaign is running" in texts(english)
    assert buttons(english) == {"Verify phone": "cmd:verify"}


async def test_a_verified_member_is_not_asked_to_verify_again(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url, timeout=30) as http:
        chat = Chat(http, "sim-prize-verified")
        await chat.say("驗證手機")
        await chat.say(PHONE)
        inbox = (
            await http.get("/simulator/api/sms", params={"phone": PHONE, "user": chat.user})
        ).json()
        code = re.search(r"\b(\d{6})\b", inbox["messages"][-1]["reply"]["text"])
        assert code is not None
        assert "已驗證" in texts(await chat.say(code.group(1)))

        replies = await chat.say("領獎")

    assert "目前沒有進行中的領獎活動" in texts(replies)
    assert "驗證" not in texts(replies)
    assert buttons(replies) == {}
