"""`edoor chat`: the simulator channel in a terminal, in-process (no server needed).

Each line goes through the same path as the web simulator (record the event, process it,
read the delivered replies back from the database), so the terminal sees exactly what the
router and handlers produce. Buttons become numbered choices: typing the number taps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any, TextIO

from bot.inbound import InboundProcessor
from bot.messages import Progress, progress_text
from bot.simulator.web import (
    NAME,
    PERSONAS,
    SMS_BOX,
    SimulatorInput,
    e164,
    read_messages,
    simulate,
    sms_inbox_key,
)

BOT = "小幫手 ▸ "
SMS = "📱 簡訊 ▸ "
INDENT = " " * 4
HELP = """\
輸入文字和小幫手對話；輸入選項的數字就是點那個按鈕。 Type to chat; a number taps that button.
  :phone 0912345678   分享手機號碼 share a phone number
  :sms 0912345678     看這支號碼收到的開發用簡訊 show the dev SMS inbox of a number
  :follow             加入好友 add the bot as a friend (welcome)
  \\3                  送出文字「3」而不是點選項 send the text "3", not choice 3
  :help               這段說明 this help
  :quit               離開 quit (or Ctrl-D)"""


@dataclass
class _Choice:
    label: str
    action: str | None
    url: str | None


@dataclass
class _Session:
    processor: InboundProcessor
    user: str
    persona: str
    language: str | None
    out: TextIO
    after: int = 0
    choices: list[_Choice] = field(default_factory=list)
    inbox_phone: str | None = None
    inbox_after: int = 0
    last_kind: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def number(self, raw: str) -> str | None:
        return e164(raw, regions=self.processor.services.settings.phone_allowed_regions)

    def write(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def send(self, **body: Any) -> None:
        payload = SimulatorInput.model_validate(
            {"user": self.user, "persona": self.persona, "language": self.language, **body}
        )
        async with self.lock:
            await simulate(self.processor, payload)
            await self._show_new()

    async def refresh(self) -> None:
        async with self.lock:
            await self._show_new()

    async def _show_new(self) -> None:
        data = await read_messages(
            self.processor.sessionmaker, user_key=self.user, after=self.after
        )
        if data["messages"]:
            self.choices = []
        for message in data["messages"]:
            self._render(message["reply"])
        self.after = data["last"]
        await self._show_inbox()

    async def _show_inbox(self) -> None:
        if self.inbox_phone is None:
            return
        key = sms_inbox_key(
            self.processor.services.vault, self.inbox_phone, requester=f"{NAME}:{self.user}"
        )
        data = await read_messages(
            self.processor.sessionmaker, user_key=key, after=self.inbox_after, box=SMS_BOX
        )
        for message in data["messages"]:
            self.write(SMS + str(message["reply"].get("text", "")))
        self.inbox_after = data["last"]

    async def watch_inbox(self, number: str) -> None:
        async with self.lock:
            self.inbox_phone, self.inbox_after = number, 0
            await self._show_inbox()

    # -- rendering ---------------------------------------------------------------------------
    def _lines(self, text: str, head: str = BOT) -> None:
        lines = text.splitlines() or [""]
        self.write(head + lines[0])
        for line in lines[1:]:
            self.write(" " * _width(head) + line)

    def _buttons(self, buttons: list[dict[str, Any]], prefix: str = "") -> None:
        if not buttons:
            return
        shown = []
        for b in buttons:
            self.choices.append(_Choice(b.get("label", ""), b.get("action"), b.get("url")))
            link = f" ↗ {b['url']}" if b.get("url") else ""
            shown.append(f"[{len(self.choices)}] {prefix}{b.get('label', '')}{link}")
        self.write(INDENT + "  ".join(shown))

    def _render(self, reply: dict[str, Any]) -> None:
        kind = reply.get("kind")
        self.last_kind = kind
        if kind == "text":
            self._lines(reply.get("text", ""))
            self._buttons(reply.get("buttons", []))
        elif kind == "cards":
            self._lines(reply.get("alt_text", ""))
            for n, card in enumerate(reply.get("cards", []), start=1):
                self.write(f"{INDENT}┌ {n}. {card.get('title', '')}")
                for key in ("subtitle", "body"):
                    for line in (card.get(key) or "").splitlines():
                        self.write(f"{INDENT}│ {line}")
                if card.get("image_url"):
                    self.write(f"{INDENT}│ 🖼 {card['image_url']}")
                self._buttons(card.get("buttons", []))
            if reply.get("more"):
                self._buttons([reply["more"]])
        elif kind == "audio":
            seconds = int(reply.get("duration_ms", 0)) // 1000
            title = reply.get("title") or "語音 audio"
            self._lines(f"🎧 {title} ({seconds // 60}:{seconds % 60:02d}) {reply.get('url', '')}")
            self._buttons(reply.get("buttons", []))
        elif kind == "image":
            self._lines(f"🖼 {reply.get('alt_text', '')} {reply.get('url', '')}".strip())
        elif kind == "ask_phone":
            self._lines(reply.get("text", ""))
            self.write(
                f"{INDENT}（{reply.get('share_label', '')}：輸入號碼，或 :phone 0912345678）"
            )
            if reply.get("cancel"):
                self._buttons([reply["cancel"]])
        elif kind == "progress":
            self._lines(progress_text(Progress.model_validate(reply)))
            self._buttons(reply.get("buttons", []))
        else:
            self._lines(f"（不支援的訊息 unsupported: {kind}）")
        self._buttons(reply.get("quick_replies", []))


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


async def _history_end(processor: InboundProcessor, user: str) -> int:
    """The id of this person's latest message (earlier ones are not replayed)."""
    last = 0
    while True:
        data = await read_messages(processor.sessionmaker, user_key=user, after=last)
        if not data["messages"]:
            return last
        last = data["last"]


async def _poll(session: _Session, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await session.refresh()


async def run_terminal_chat(
    processor: InboundProcessor,
    *,
    persona: str = "citizen",
    user: str | None = None,
    language: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    poll_seconds: float | None = None,
) -> int:
    """Chat with the bot in a terminal until :quit or end of input; returns an exit code.

    `persona` is one of PERSONAS ("new", "citizen", "civil_servant"); `user` overrides its
    simulator user key. `poll_seconds` prints proactive messages while waiting for input
    (default: every 2 s when stdin is a terminal, otherwise only between inputs).
    """
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    if NAME not in processor.channels:
        out.write("模擬器沒有開啟（EDOOR_ENV=production？） The simulator channel is off.\n")
        return 2
    if persona not in PERSONAS:
        out.write(f"沒有這個角色 unknown persona {persona!r}: {', '.join(PERSONAS)}\n")
        return 2
    key = user or PERSONAS[persona].user_key()
    try:
        SimulatorInput(user=key)
    except ValueError:
        out.write(f"使用者代號只能有英數字和 _.:- unusable user key {key!r}\n")
        return 2
    session = _Session(processor=processor, user=key, persona=persona, language=language, out=out)
    session.write(f"臺北e大 小幫手 · {PERSONAS[persona].label} ({key})   :help 說明 · :quit 離開")
    session.after = await _history_end(processor, key)
    if session.after == 0:
        await session.send(kind="follow")
    interactive = stdin.isatty()
    if poll_seconds is None and interactive:
        poll_seconds = 2.0
    poller = asyncio.create_task(_poll(session, poll_seconds)) if poll_seconds else None
    try:
        while True:
            out.write("你 ▸ ")
            out.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:  # end of input (Ctrl-D, or a piped script ran out)
                session.write()
                return 0
            if not interactive:
                session.write(line.rstrip("\n"))  # a piped script reads like a transcript
            if not await _handle(session, line.strip()):
                return 0
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller


async def _handle(session: _Session, line: str) -> bool:
    """Act on one line; False to quit."""
    if not line:
        await session.refresh()
        return True
    command, _, arg = line.partition(" ")
    arg = arg.strip()
    if command in (":q", ":quit", ":exit"):
        return False
    if command in (":h", ":help", ":?"):
        session.write(HELP)
    elif command == ":follow":
        await session.send(kind="follow")
    elif command in (":phone", ":sms"):
        number = session.number(arg) if arg else None
        if number is None:
            session.write(f"請給一個手機號碼，例如 {command} 0912345678  Give a phone number.")
        elif command == ":sms":
            await session.watch_inbox(number)
        else:
            await session.watch_inbox(number)
            await session.send(kind="contact", phone=arg)
    elif line.startswith(":"):
        session.write(f"沒有這個指令 unknown command {command}; :help")
    elif line.isdigit() and 1 <= int(line) <= len(session.choices):
        choice = session.choices[int(line) - 1]
        if choice.url is not None:
            session.write(f"{INDENT}↗ {choice.url}")
        else:
            await session.send(kind="action", action=choice.action)
    else:
        text = line[1:] if line.startswith("\\") else line
        if text.strip():
            number = session.number(text) if session.last_kind == "ask_phone" else None
            if number is not None:
                # A number typed in answer to "share your phone": show its SMS inbox too.
                await session.watch_inbox(number)
            await session.send(kind="text", text=text)
    return True
