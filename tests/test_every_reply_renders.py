"""Every reply the dialogs produce, through both real renderers: nothing a person could tap is
lost on LINE (4 buttons a card, 20-character labels, 13 quick replies) or on Telegram.

The test walks the bot as people do: the main words of every feature in both languages, as a
citizen and as a civil servant, then taps every button it is shown (breadth first), and checks
each answer twice: as the simulator shows it (the renderers' output per message) and as the
whole answer is sent in one go (where LINE gathers the quick replies under the last message).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter, deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.messages import load_replies
from bot.simulator.views import line_view, telegram_view
from models.catalog_import import read_catalog
from models.courses import apply_catalog
from models.search import demo_catalog_path
from tests.dialog import Chat, World
from tests.podcast_support import seed_podcast
from tests.render_check import dropped, line_limit_errors

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
WORDS = {
    "zh-TW": [
        "選單",
        "說明",
        "找課程 資安",
        "資安",
        "聽課",
        "我的學習",
        "活動領獎",
        "我的獎品",
        "設定",
        "取消訂閱",
        "推薦",
        "我的收藏",
        "語言",
        "你好",
        "沒有這種課程吧zzz",
        "驗證手機",
        "0912345678",
        "000000",
        "取消",
    ],
    "en": [
        "menu",
        "help",
        "search safety",
        "podcasts",
        "my learning",
        "prizes",
        "settings",
        "unsubscribe",
        "recommend",
        "saved",
        "hello",
        "verify",
        "0912345679",
        "cancel",
    ],
}
# Taps that end the walk's person (erasing the data) are checked once, at the end.
LAST = ("settings.delete_yes",)
TAPS_PER_KIND = 4  # "course.open:1", "course.open:2", ...: a few of each kind are enough
MAX_TAPS = 160


@pytest.fixture
async def world(session, served, tone: Path) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    await apply_catalog(session, parsed=read_catalog(demo_catalog_path()), now=NOW)
    await session.commit()
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served(public_base_url="https://edoor.example"))
        runtime = api.state.runtime
        await seed_podcast(runtime.sessionmaker, runtime.settings, tone, now=NOW)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        w = World(runtime, http, now=NOW)
        w.follow_clock()
        yield w


class Walk:
    """One person's walk: every answer checked, every action seen queued for a tap."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.queue: deque[str] = deque()
        self.seen: set[str] = set()
        self.kinds: Counter[str] = Counter()
        self.problems: list[str] = []
        self.answers = 0

    def check(self, said: str, rows: list[dict[str, Any]]) -> None:
        self.answers += 1
        replies = [r["reply"] for r in rows]
        for row in rows:
            for lost in dropped(row["reply"], row["line"], row["telegram"]):
                self.problems.append(f"{said}: simulator view: {lost}")
            for error in line_limit_errors(row["line"]):
                self.problems.append(f"{said}: {error}")
        # The whole answer at once, as the webhook sends it.
        whole = {
            "kind": "text",
            "buttons": [b for r in replies for b in _all_buttons(r)],
        }
        typed = load_replies(replies)
        line, telegram = line_view(typed), telegram_view(typed)
        for lost in dropped(whole, line, telegram):
            self.problems.append(f"{said}: whole answer: {lost}")
        for error in line_limit_errors(line):
            self.problems.append(f"{said}: whole answer: {error}")
        if not replies:
            self.problems.append(f"{said}: no answer at all")
        elif not any(_all_buttons(r) or r["kind"] == "ask_phone" for r in replies):
            # Every reply offers a next step.
            self.problems.append(f"{said}: a dead end: {replies[-1].get('text', '')[:40]!r}")
        for reply in replies:
            for button in _all_buttons(reply):
                action = button.get("action")
                if action is None or action in self.seen:
                    continue
                self.seen.add(action)
                kind = action.split(":", 1)[0]
                self.kinds[kind] += 1
                if self.kinds[kind] <= TAPS_PER_KIND:
                    self.queue.append(action)

    async def run(self, words: list[str]) -> None:
        self.check("follow", await self._rows(kind="follow"))
        for word in words:
            self.check(word, await self._rows(kind="text", text=word))
        taps = 0
        last: list[str] = []
        while self.queue and taps < MAX_TAPS:
            action = self.queue.popleft()
            if action.startswith(LAST):
                last.append(action)
                continue
            taps += 1
            self.check(action, await self._rows(kind="action", action=action))
        for action in last:
            self.check(action, await self._rows(kind="action", action=action))

    async def _rows(self, **body: Any) -> list[dict[str, Any]]:
        payload = {"user": self.chat.user, "after": self.chat.after} | body
        if self.chat.language:
            payload["language"] = self.chat.language
        response = await self.chat.http.post("/simulator/api/send", json=payload)
        assert response.status_code == 200, (body, response.text)
        data = response.json()
        self.chat.after = data["last"]
        return list(data["messages"])


def _all_buttons(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *reply.get("buttons", []),
        *reply.get("quick_replies", []),
        *(b for c in reply.get("cards", []) for b in c.get("buttons", [])),
        *([reply["more"]] if reply.get("more") else []),
        *([reply["cancel"]] if reply.get("cancel") else []),
    ]


@pytest.mark.parametrize(
    ("user", "language"), [("walker-citizen", "zh-TW"), ("walker-citizen-en", "en")]
)
async def test_every_reply_keeps_every_action_on_line_and_telegram(
    world: World, user: str, language: str
) -> None:
    walk = Walk(world.chat(user, language=language))
    await walk.run(WORDS[language])
    assert walk.problems == [], "\n".join(walk.problems)
    # The walk did reach the features (settings, courses, podcasts, learning, ...).
    assert walk.answers > 40
    for kind in ("settings.reminder", "settings.delete", "course.open", "pod.open"):
        assert kind in walk.kinds, sorted(walk.kinds)


async def test_a_civil_servant_walk_keeps_every_action(world: World) -> None:
    chat = world.chat("walker-servant", language="zh-TW")
    response = await world.http.post(
        "/simulator/api/send",
        json={"user": chat.user, "kind": "follow", "persona": "civil_servant"},
    )
    chat.after = response.json()["last"]
    walk = Walk(chat)
    await walk.run(WORDS["zh-TW"])
    assert walk.problems == []
    assert walk.answers > 40


def test_the_check_itself_notices_a_lost_button() -> None:
    reply = {
        "kind": "text",
        "text": "設定",
        "buttons": [{"label": f"b{i}", "action": f"x.{i}"} for i in range(6)],
    }
    # A LINE bubble that kept only the first 4 (the old renderer's cut) fails the check.
    kept = [
        {"type": "button", "action": {"type": "postback", "label": f"b{i}", "data": f"x.{i}"}}
        for i in range(4)
    ]
    line = [{"type": "flex", "contents": {"type": "bubble", "footer": {"contents": kept}}}]
    telegram = [
        {
            "method": "sendMessage",
            "params": {
                "text": "設定",
                "reply_markup": {
                    "inline_keyboard": [
                        [{"text": f"b{i}", "callback_data": f"x.{i}"}] for i in range(6)
                    ]
                },
            },
        }
    ]
    assert dropped(reply, line, telegram) == ["LINE lost 'x.4'", "LINE lost 'x.5'"]
    assert line_limit_errors([{"type": "bubble", "footer": {"contents": kept * 2}}]) == [
        "8 buttons on one bubble"
    ]
