"""TelegramChannel against a fake Bot API on loopback: parsing, sending, errors, polling, setup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.channels import DeliveryError, RecipientGone
from bot.messages import AskPhone, Audio, Button, Incoming, Text
from bot.settings import Settings
from bot.telegram import (
    TelegramChannel,
    TelegramConfigError,
    run_polling,
    telegram_setup,
    to_incoming,
)
from models.inbound import NewEvent
from tests.fakes.telegram import CHAT, TOKEN, FakeTelegram, sample_update
from tests.telegram_spec import call_errors, load_spec

SECRET = "tg-webhook-secret_0123456789"
SPEC = load_spec()


def settings_for(fake: FakeTelegram, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite+aiosqlite:///:memory:",
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_base_url": fake.api_base_url,
        "public_base_url": "https://edoor.example",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def channel(fake: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    tg = TelegramChannel(settings_for(fake))
    await tg.start()
    yield tg
    await tg.stop()


def spec_ok(call: Any) -> None:
    assert call_errors(SPEC, call.method, call.params) == []


# -- parsing -------------------------------------------------------------------------------
def test_start_with_a_deep_link_payload() -> None:
    msg = to_incoming(sample_update("tg_start_deeplink"))
    assert msg is not None
    assert (msg.kind, msg.user_id, msg.command, msg.command_args) == (
        "text",
        str(CHAT),
        "start",
        "ref_portal_CIV101",
    )
    assert msg.language_hint == "zh-hant"


def test_callback_query_is_an_action_to_answer() -> None:
    msg = to_incoming(sample_update("tg_callback_query"))
    assert msg is not None
    assert (msg.kind, msg.action, msg.callback_query_id) == (
        "action",
        "enroll:CIV101",
        "2368201827364519872",
    )


@pytest.mark.parametrize(
    ("sample", "own", "phone"),
    [
        ("tg_contact", True, "+886912345678"),
        ("tg_contact_foreign", False, "+886922333444"),
        ("tg_contact_no_user_id", False, "+886933444555"),
    ],
)
def test_contact_is_own_only_when_shared_by_that_person(sample: str, own: bool, phone: str) -> None:
    msg = to_incoming(sample_update(sample))
    assert msg is not None
    assert msg.kind == "contact"
    assert msg.contact_is_own is own
    assert msg.contact_phone is not None
    assert msg.contact_phone.get_secret_value() == phone
    assert phone not in repr(msg)  # SecretStr


def test_a_forwarded_own_contact_is_not_own() -> None:
    data = sample_update("tg_contact")
    data["message"]["forward_origin"] = {"type": "hidden_user", "date": 1, "sender_user_name": "x"}
    msg = to_incoming(data)
    assert msg is not None
    assert msg.contact_is_own is False


@pytest.mark.parametrize(
    ("sample", "kind"),
    [("tg_my_chat_member_blocked", "unfollow"), ("tg_my_chat_member_unblocked", "follow")],
)
def test_blocking_and_unblocking(sample: str, kind: str) -> None:
    msg = to_incoming(sample_update(sample))
    assert msg is not None
    assert (msg.kind, msg.user_id) == (kind, str(CHAT))


def test_group_messages_and_odd_shapes_need_no_answer() -> None:
    data = sample_update("tg_start_deeplink")
    data["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "g"}
    assert to_incoming(data) is None
    assert to_incoming({"update_id": 1}) is None
    assert to_incoming({"update_id": 1, "message": "hello"}) is None
    sticker = sample_update("tg_start_deeplink")
    del sticker["message"]["text"]
    assert to_incoming(sticker) == Incoming(
        channel="telegram",
        user_id=str(CHAT),
        kind="unknown",
        event_id=str(sticker["update_id"]),
        language_hint="zh-hant",
        display_name=to_incoming(sticker).display_name,  # type: ignore[union-attr]
    )


# -- sending -------------------------------------------------------------------------------
async def test_start_checks_the_token_with_get_me(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    assert [c.method for c in fake.calls()] == ["getMe"]
    assert channel.username == "city_elearning_bot"


async def test_text_with_buttons_is_sent_as_an_inline_keyboard(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    reply = Text(text="找到課程", buttons=[Button(label="報名", action="course.enroll:CIV101")])
    delivery = await channel.deliver(str(CHAT), [reply])
    [call] = fake.calls("sendMessage")
    assert call.token == TOKEN
    assert call.params["chat_id"] == CHAT
    assert call.params["text"] == "找到課程"
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "報名", "callback_data": "course.enroll:CIV101"}]]
    }
    spec_ok(call)
    assert delivery.requests == 1


async def test_callback_query_is_answered_even_without_replies(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    incoming = to_incoming(sample_update("tg_callback_query"))
    assert incoming is not None
    await channel.deliver(incoming.user_id, [], incoming=incoming)
    [call] = fake.calls("answerCallbackQuery")
    assert call.params == {"callback_query_id": "2368201827364519872"}
    spec_ok(call)


async def test_a_stale_callback_query_does_not_cost_the_answer(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    fake.fail(status=400, method="answerCallbackQuery", description="Bad Request: query is too old")
    incoming = to_incoming(sample_update("tg_callback_query"))
    assert incoming is not None
    await channel.deliver(incoming.user_id, [Text(text="已報名")], incoming=incoming)
    assert [c.method for c in fake.calls()][-2:] == ["answerCallbackQuery", "sendMessage"]


async def test_429_is_a_delivery_error_with_retry_after(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    fake.fail(status=429, chat_id=CHAT, retry_after=7)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(str(CHAT), [Text(text="hi")])
    assert caught.value.retry_after == 7


@pytest.mark.parametrize("status", [403, 400])
async def test_blocked_or_unknown_chat_is_recipient_gone(
    channel: TelegramChannel, fake: FakeTelegram, status: int
) -> None:
    fake.fail(status=status, chat_id=CHAT)
    with pytest.raises(RecipientGone):
        await channel.deliver(str(CHAT), [Text(text="hi")])


async def test_server_errors_are_worth_retrying(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    fake.fail(status=502, chat_id=CHAT)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(str(CHAT), [Text(text="hi")])
    assert caught.value.retry_after is None


async def test_a_retried_delivery_resumes_where_it_stopped(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    replies: list[Any] = [Text(text="one"), Text(text="two"), Text(text="three")]
    incoming = Incoming(channel="telegram", user_id=str(CHAT), kind="text", text="x", event_id="9")
    fake.fail(status=429, retry_after=1, match=lambda p: p.get("text") == "two")
    with pytest.raises(DeliveryError):
        await channel.deliver(str(CHAT), replies, incoming=incoming)
    await channel.deliver(str(CHAT), replies, incoming=incoming)
    # "two" was refused once and sent again; "one" was not repeated.
    assert [c.params["text"] for c in fake.calls("sendMessage")] == ["one", "two", "two", "three"]


async def test_audio_is_uploaded_once_then_sent_by_file_id(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    episode = Audio(
        url="https://media.example/ep3.mp3", duration_ms=90_000, title="第 3 集", media_key="ep:3"
    )
    await channel.deliver(str(CHAT), [episode])
    await channel.deliver(str(CHAT), [episode])
    first, second = fake.calls("sendAudio")
    spec_ok(first)
    assert first.params["audio"] == "https://media.example/ep3.mp3"
    assert first.params["duration"] == 90
    assert second.params["audio"] == channel.file_ids["ep:3"] != first.params["audio"]
    # A file_id Telegram no longer knows: fall back to the URL and learn the new id.
    fake.file_ids.clear()
    await channel.deliver(str(CHAT), [episode])
    assert [c.params["audio"] for c in fake.calls("sendAudio")][2:] == [
        second.params["audio"],
        "https://media.example/ep3.mp3",
    ]


async def test_contact_keyboard_is_removed_by_the_next_plain_message(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    await channel.deliver(str(CHAT), [AskPhone(text="手機？", share_label="分享手機")])
    await channel.deliver(str(CHAT), [Text(text="驗證碼已寄出")])
    await channel.deliver(str(CHAT), [Text(text="later")])
    ask, sent, later = fake.calls("sendMessage")
    assert ask.params["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    assert sent.params["reply_markup"] == {"remove_keyboard": True}
    assert "reply_markup" not in later.params


# -- secrets -------------------------------------------------------------------------------
async def test_the_token_never_reaches_a_log_line(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "telegram", "telegram.Bot"):  # the app may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    tg = TelegramChannel(settings_for(fake))
    await tg.start()
    await tg.deliver(str(CHAT), [Text(text="hi")])
    await tg.stop()
    # The HTTP client did log the request URLs; the token in them is masked.
    urls = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("/sendMessage" in line for line in urls)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN.split(":")[1] not in caplog.text


async def test_a_refused_token_is_reported_without_the_token(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "7012345678:AAWrongTokenWrongTokenWrongToken123"
    tg = TelegramChannel(settings_for(fake, telegram_bot_token=wrong))
    with pytest.raises(TelegramConfigError) as caught:
        await tg.start()
    await tg.stop()
    assert wrong not in str(caught.value)
    assert wrong not in caplog.text


# -- polling and setup ---------------------------------------------------------------------
class MemoryRecorder:
    """The intake side of InboundProcessor, in memory; can be told that the database is down."""

    def __init__(self) -> None:
        self.rows: dict[str, NewEvent] = {}
        self.processed: list[int] = []
        self.down = 0  # fail this many record() calls

    def new_event(
        self,
        *,
        event_id: str,
        kind: str,
        raw: dict[str, Any],
        sender: str | None = None,
        actor: str | None = None,
    ) -> NewEvent:
        return NewEvent(
            event_id=event_id, kind=kind, payload=raw, sealed=b"", sender=sender, actor=actor
        )

    async def record(self, channel: str, rows: list[NewEvent]) -> list[int]:
        if self.down:
            self.down -= 1
            raise ConnectionError("database down")
        new = [r for r in rows if r.event_id not in self.rows]
        ids = []
        for row in new:
            self.rows[row.event_id] = row
            ids.append(len(self.rows))
        return ids

    async def process_many(self, row_ids: list[int]) -> None:
        self.processed.extend(row_ids)


async def test_polling_records_each_update_once_and_survives_a_database_outage(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    fake.webhook = {"url": "https://old.example/hook"}  # polling must clear it first
    recorder = MemoryRecorder()
    recorder.down = 1
    fake.push_update(sample_update("tg_start_deeplink"))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_polling(channel, recorder, stop, poll_timeout=1, max_backoff=0.05)
    )
    await fake.wait_for(
        lambda r: (
            r.path.endswith("/getUpdates")
            and r.form is not None
            and r.form.get("offset") is not None
        )
    )
    callback = sample_update("tg_callback_query")
    callback["update_id"] = 820001299
    fake.push_update(callback)
    await _eventually(lambda: len(recorder.processed) == 2)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert fake.calls("deleteWebhook")
    assert sorted(recorder.rows) == sorted(
        [str(sample_update("tg_start_deeplink")["update_id"]), "820001299"]
    )
    assert recorder.rows["820001299"].kind == "callback_query"
    assert recorder.processed == [1, 2]
    # The last getUpdates confirmed everything: Telegram would not send them again.
    assert fake.calls("getUpdates")[-1].params["offset"] == 820001300
    assert fake.updates == []


async def _eventually(check: Any, within: float = 5.0) -> None:
    for _ in range(int(within / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


async def test_setup_sets_the_webhook_with_its_secret_and_commands_in_two_languages(
    fake: FakeTelegram,
) -> None:
    commands = [("start", "開始與主選單", "Start and main menu"), ("help", "說明", "Help")]
    result = await telegram_setup(settings_for(fake), commands)
    assert fake.webhook is not None
    assert fake.webhook["url"] == "https://edoor.example/webhooks/telegram"
    assert fake.webhook["secret_token"] == SECRET
    assert fake.webhook["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
    assert (
        fake.commands[""]
        == fake.commands["zh"]
        == [
            {"command": "start", "description": "開始與主選單"},
            {"command": "help", "description": "說明"},
        ]
    )
    assert fake.commands["en"][0] == {"command": "start", "description": "Start and main menu"}
    for call in fake.calls("setWebhook") + fake.calls("setMyCommands"):
        spec_ok(call)
    assert result["webhook"] == "https://edoor.example/webhooks/telegram"


async def test_setup_refuses_bad_commands_and_secrets(fake: FakeTelegram) -> None:
    with pytest.raises(TelegramConfigError, match="command name"):
        await telegram_setup(settings_for(fake), [("Start", "x", "y")])
    with pytest.raises(TelegramConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        await telegram_setup(settings_for(fake, telegram_webhook_secret="has space"), [])
    assert fake.webhook is None
