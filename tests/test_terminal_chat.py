"""`edoor chat` in-process: the same record/process path as the web simulator, read back from
the database; buttons as numbered choices; proactive messages and the dev SMS inbox."""

from __future__ import annotations

import asyncio
import io
import queue
import re
from collections.abc import AsyncIterator

import pytest

from app import Runtime, build_runtime
from bot.messages import Button, Card, Cards
from bot.simulator.terminal import run_terminal_chat
from models.base import utcnow
from models.members import get_account
from sms.providers import DevSmsProvider, SmsMessage


@pytest.fixture
async def runtime(make_settings) -> AsyncIterator[Runtime]:  # type: ignore[no-untyped-def]
    built = build_runtime(make_settings())
    yield built
    await built.close()


async def transcript(runtime: Runtime, lines: str, **options: object) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_terminal_chat(
        runtime.processor, stdin=io.StringIO(lines), stdout=out, **options
    )  # type: ignore[arg-type]
    return code, out.getvalue()


class Keyboard(io.StringIO):
    """A terminal the test types into line by line, while the chat runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: queue.Queue[str] = queue.Queue()

    def type(self, line: str) -> None:
        self.lines.put(line + "\n")

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self.lines.get(timeout=10)


def choice(out: str, label: str) -> str:
    """The number the latest menu shows for `label` (menus grow as features are added)."""
    found = re.findall(rf"\[(\d+)\] {re.escape(label)}(?:\s|$)", out)
    assert found, f"no choice {label!r} in:\n{out}"
    return found[-1]


async def test_welcome_help_and_numbered_choices(runtime: Runtime) -> None:
    keyboard, out = Keyboard(), io.StringIO()
    chat = asyncio.create_task(
        run_terminal_chat(runtime.processor, stdin=keyboard, stdout=out, poll_seconds=None)
    )
    await _until(lambda: "歡迎來到臺北e大" in out.getvalue())  # first contact: "added as friend"
    assert re.search(r"\[\d+\] 說明", out.getvalue())
    keyboard.type("help")
    await _until(lambda: "可以這樣跟我說" in out.getvalue())
    keyboard.type("語言")
    await _until(lambda: "[1] 中文  [2] English" in out.getvalue())
    keyboard.type("2")  # taps choice 2, English
    await _until(lambda: "OK, I will talk to you in English" in out.getvalue())
    keyboard.type(choice(out.getvalue(), "Help"))
    await _until(lambda: "find a course" in out.getvalue())
    keyboard.type(":quit")
    keyboard.type("never read")
    assert await asyncio.wait_for(chat, timeout=10) == 0
    assert "never read" not in out.getvalue()


async def test_out_of_range_numbers_and_escaped_numbers_are_sent_as_text(
    runtime: Runtime,
) -> None:
    # Two choices are shown; "3" is text (an invalid language), "\1" is the text "1" (中文).
    code, out = await transcript(runtime, "語言\n3\n\\1\n")
    assert code == 0  # end of input ends the chat
    after_three = out.split("你 ▸ 3", 1)[1]
    assert "請輸入 1（中文）或 2（English）" in after_three
    assert "好的，之後用中文跟您說話" in out.split("你 ▸ \\1", 1)[1]


async def test_returning_person_is_not_welcomed_twice_and_history_is_not_replayed(
    runtime: Runtime,
) -> None:
    await transcript(runtime, "help\n", user="citizen-7")
    _, again = await transcript(runtime, ":help\n", user="citizen-7")
    assert "歡迎" not in again
    assert "可以這樣跟我說" not in again  # the earlier help is not printed again
    assert ":sms 0912345678" in again  # the terminal's own help


async def test_proactive_messages_and_cards_appear_while_waiting_for_input(
    runtime: Runtime,
) -> None:
    keyboard, out = Keyboard(), io.StringIO()
    chat = asyncio.create_task(
        run_terminal_chat(
            runtime.processor, user="citizen-9", stdin=keyboard, stdout=out, poll_seconds=0.05
        )
    )
    await _until(lambda: "歡迎來到臺北e大" in out.getvalue())
    assert runtime.simulator is not None
    await runtime.simulator.deliver(
        "citizen-9",
        [
            Cards(
                alt_text="找到 2 門課",
                cards=[
                    Card(
                        title="資通安全",
                        subtitle="3 小時",
                        buttons=[Button(label="看", action="zz.unhandled:1")],
                    ),
                    Card(
                        title="性別平等",
                        buttons=[Button(label="網站", url="https://elearn.example/2")],
                    ),
                ],
                more=Button(label="更多", action="s.more:2"),
            )
        ],
    )
    await _until(lambda: "[3] 更多" in out.getvalue())
    shown = out.getvalue()
    assert "┌ 1. 資通安全" in shown
    assert "│ 3 小時" in shown
    assert "[1] 看" in shown
    assert "[2] 網站 ↗ https://elearn.example/2" in shown
    keyboard.type("2")  # a link is shown, not sent
    await _until(lambda: "    ↗ https://elearn.example/2" in out.getvalue())
    keyboard.type("1")  # an action is tapped: the router answers (nothing handles it)
    await _until(lambda: "看不懂" in out.getvalue())
    keyboard.type(":quit")
    assert await asyncio.wait_for(chat, timeout=10) == 0


async def test_civil_servant_persona_and_the_sms_inbox(runtime: Runtime) -> None:
    provider = DevSmsProvider(runtime.services.vault)
    async with runtime.sessionmaker() as session:
        message = SmsMessage(
            to="+886912345678",
            body="【臺北e大】驗證碼 604218",
            reference="r1",
            requester="simulator:civil-servant-1",  # the persona below asked for it
        )
        await provider.send(message, session=session, now=utcnow())
        await session.commit()
    code, out = await transcript(
        runtime, ":sms 0912-345-678\n:sms 12\n:bogus\n", persona="civil_servant"
    )
    assert code == 0
    assert "公務人員 Civil servant (civil-servant-1)" in out
    assert "📱 簡訊 ▸ 【臺北e大】驗證碼 604218" in out
    assert "請給一個手機號碼" in out
    assert "沒有這個指令 unknown command :bogus" in out
    async with runtime.sessionmaker() as session:
        account = await get_account(session, channel="simulator", external_id="civil-servant-1")
    assert account is not None
    assert account.member.is_civil_servant


async def test_new_persona_gets_a_fresh_person_each_time(runtime: Runtime) -> None:
    _, first = await transcript(runtime, "", persona="new")
    _, second = await transcript(runtime, "", persona="new")
    assert "歡迎來到臺北e大" in first
    assert "歡迎來到臺北e大" in second
    key = first.split("(", 1)[1].split(")", 1)[0]
    assert key.startswith("new-")
    assert key not in second


async def test_refuses_bad_persona_bad_user_and_a_switched_off_simulator(
    runtime: Runtime, make_settings
) -> None:  # type: ignore[no-untyped-def]
    assert (await transcript(runtime, "", persona="mayor"))[0] == 2
    code, out = await transcript(runtime, "", user="has space")
    assert code == 2
    assert "unusable user key" in out
    off = build_runtime(make_settings(simulator_enabled=False))
    try:
        code, out = await transcript(off, "help\n")
    finally:
        await off.close()
    assert code == 2
    assert "simulator channel is off" in out


async def _until(check, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
