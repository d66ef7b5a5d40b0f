"""Phone verification through the real app with SMS_PROVIDER=twilio and =mitake, their base URLs
pointing at a fake gateway on loopback: a code goes out and verifies; a timeout says "try
later"; a number the provider refuses asks for the number again; none of it uses up attempts."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from models.identity import OtpSend
from sms.providers import MitakeSmsProvider, TwilioSmsProvider
from tests.dialog import Chat, texts
from tests.fakes.sms import FakeSmsGateway, Recorded

PHONE = "0912-345-678"
E164 = "+886912345678"
OTHER = "0987-654-321"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
SID = "AC00112233445566778899aabbccddeeff"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
MITAKE_PASSWORD = "mitake-password-for-tests"
SECRETS = (
    E164, "0912345678", "912345678", "0987654321", "987654321", TWILIO_TOKEN, MITAKE_PASSWORD
)  # fmt: skip


def _code(request: Recorded, field: str) -> str:
    found = re.search(r"\b(\d{6})\b", request.form[field][0])
    assert found is not None
    return found.group(1)


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    async with FakeSmsGateway() as fake:
        yield fake


@pytest.fixture
def app(  # type: ignore[no-untyped-def]
    served: Callable[..., Any], gateway: FakeSmsGateway, caplog: pytest.LogCaptureFixture
):
    """`async with app(provider) as (chat, runtime)`: the real app texting through the fake."""
    import contextlib

    settings = {
        "twilio": {
            "sms_provider": "twilio",
            "twilio_account_sid": SID,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_from": "+15005550006",
            "twilio_api_base_url": gateway.base_url,
        },
        "mitake": {
            "sms_provider": "mitake",
            "mitake_username": "edoor",
            "mitake_password": MITAKE_PASSWORD,
            "mitake_api_base_url": gateway.base_url,
        },
    }

    @contextlib.asynccontextmanager
    async def start(provider: str) -> AsyncIterator[tuple[Chat, Any]]:
        caplog.set_level(logging.DEBUG)
        async with served(**settings[provider]) as (url, api):
            runtime = api.state.runtime
            clock = [T0]
            runtime.processor.clock = lambda: clock[0]
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Chat(http, f"sim-{provider}"), runtime
        codes = [_code(r, "Body" if provider == "twilio" else "smbody") for r in gateway.requests]
        for secret in (*SECRETS, *codes):
            assert secret not in caplog.text, "a number, code or credential reached the logs"

    return start


async def _sends(runtime: Any) -> int:
    async with runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count(OtpSend.id))) or 0)


def _short_timeout(runtime: Any) -> None:
    # The provider's own timeout is 10 s; a test need not wait that long for the same path.
    provider = runtime.services.sms
    assert isinstance(provider, (TwilioSmsProvider, MitakeSmsProvider))
    provider._client.timeout = httpx.Timeout(0.3)


async def test_twilio_sends_the_code_and_it_verifies(app, gateway: FakeSmsGateway) -> None:  # type: ignore[no-untyped-def]
    async with app("twilio") as (chat, runtime):
        assert isinstance(runtime.services.sms, TwilioSmsProvider)
        gateway.queue(201, '{"sid": "SM1", "status": "queued"}', content_type="application/json")
        await chat.say("驗證手機")
        assert "驗證碼已傳送到 0912-***-678" in texts(await chat.say(PHONE))
        (request,) = gateway.requests
        assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
        assert request.form["To"] == [E164]
        assert request.form["From"] == ["+15005550006"]
        assert "手機：已驗證（0912-***-678）" in texts(await chat.say(_code(request, "Body")))


async def test_twilio_timeout_says_try_later_and_uses_nothing(  # type: ignore[no-untyped-def]
    app, gateway: FakeSmsGateway
) -> None:
    async with app("twilio") as (chat, runtime):
        _short_timeout(runtime)
        gateway.queue(201, '{"sid": "SM1"}', content_type="application/json", delay=1.0)
        await chat.say("驗證手機")
        late = texts(await chat.say(PHONE))
        assert "請稍後再試" in late
        assert "無法接收簡訊" not in late
        assert await _sends(runtime) == 0
        # No cool-down started and no send counted: asking again works at once.
        gateway.queue(201, '{"sid": "SM2"}', content_type="application/json")
        assert "驗證碼已傳送" in texts(await chat.say(f"/verify {PHONE}"))
        assert await _sends(runtime) == 1
        assert "手機：已驗證" in texts(await chat.say(_code(gateway.requests[-1], "Body")))


@pytest.mark.parametrize(
    ("status", "code", "number_refused"),
    [(400, 21211, True), (400, 21610, True), (401, 20003, False), (400, 21606, False)],
)
async def test_twilio_refusals_name_the_number_only_when_it_is_the_number(  # type: ignore[no-untyped-def]
    app, gateway: FakeSmsGateway, status: int, code: int, number_refused: bool
) -> None:
    async with app("twilio") as (chat, runtime):
        gateway.queue(
            status,
            f'{{"code": {code}, "message": "refused", "status": {status}}}',
            content_type="application/json",
        )
        await chat.say("驗證手機")
        replies = await chat.say(PHONE)
        if number_refused:
            assert "0912-***-678 無法接收簡訊" in texts(replies)
            assert "請確認號碼" in texts(replies)
            assert replies[0]["kind"] == "ask_phone"  # a corrected number answers this step
            # The refusal counts toward the cool-down and the caps, or anyone could have us
            # ask the provider about numbers without limit: the same number waits...
            assert await _sends(runtime) == 1
            assert "驗證碼已傳送" not in texts(await chat.say(PHONE))
            assert len(gateway.requests) == 1  # the provider was not asked again
            # ...while a corrected number is texted at once.
            gateway.queue(201, '{"sid": "SM3"}', content_type="application/json")
            assert "驗證碼已傳送到 0987-***-321" in texts(await chat.say(OTHER))
        else:
            assert "請稍後再試" in texts(replies)  # our side's fault, not the person's number
            assert "無法接收簡訊" not in texts(replies)
            assert await _sends(runtime) == 0
            # Nothing used up: the same number is texted at once when the provider is back.
            gateway.queue(201, '{"sid": "SM3"}', content_type="application/json")
            assert "驗證碼已傳送" in texts(await chat.say(PHONE))


async def test_mitake_sends_refuses_a_number_and_times_out(  # type: ignore[no-untyped-def]
    app, gateway: FakeSmsGateway
) -> None:
    async with app("mitake") as (chat, runtime):
        assert isinstance(runtime.services.sms, MitakeSmsProvider)
        english = Chat(chat.http, "sim-mitake-en", language="en")
        gateway.queue(200, "[1]\r\nstatuscode=v\r\nError=invalid number\r\n")
        await english.say("verify")
        refused = texts(await english.say(PHONE))
        assert "0912-***-678 cannot receive text messages" in refused
        assert "check the number" in refused
        assert await _sends(runtime) == 1  # counted toward the caps, though nothing went
        runtime.processor.clock = lambda: T0 + dt.timedelta(minutes=2)  # past the cool-down
        _short_timeout(runtime)
        gateway.queue(200, "[1]\r\nmsgid=1\r\nstatuscode=1\r\n", delay=1.0)
        assert "try again later" in texts(await english.say(PHONE))
        assert await _sends(runtime) == 1  # a timeout uses nothing up
        gateway.queue(200, "[1]\r\nmsgid=2\r\nstatuscode=1\r\n")
        await chat.say("驗證手機")
        assert "驗證碼已傳送" in texts(await chat.say(PHONE))
        request = gateway.requests[-1]
        assert request.path == "/api/mtk/SmSend"
        assert request.form["dstaddr"] == ["0912345678"]
        assert "手機：已驗證" in texts(await chat.say(_code(request, "smbody")))
