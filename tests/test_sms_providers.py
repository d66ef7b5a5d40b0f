"""SMS providers against a fake gateway on loopback: exact requests, errors and timeouts."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bot.settings import ConfigError, Settings
from models.base import utcnow
from models.pii import PiiVault
from models.simulator import messages_after
from sms.providers import (
    DevSmsProvider,
    MitakeSmsProvider,
    SmsError,
    SmsMessage,
    TwilioSmsProvider,
    build_sms_provider,
    sms_inbox_key,
)
from tests.fakes.sms import FakeSmsGateway

PHONE = "+886912345678"
NOW = utcnow()
MESSAGE = SmsMessage(
    to=PHONE,
    body="臺北e大驗證碼 123456\n10 分鐘內有效",
    reference="otp-7-1",
    requester="simulator:a",
)
VAULT = PiiVault("test-pii-key-0123456789abcdef0123456789")


@pytest.fixture
async def gateway() -> FakeSmsGateway:
    async with FakeSmsGateway() as fake:
        yield fake


def twilio(gateway: FakeSmsGateway, client: httpx.AsyncClient | None = None) -> TwilioSmsProvider:
    return TwilioSmsProvider(
        account_sid="AC0123456789abcdef",
        auth_token="twilio-token-xyz",
        from_number="+15005550006",
        base_url=gateway.base_url,
        client=client,
    )


def mitake(gateway: FakeSmsGateway, client: httpx.AsyncClient | None = None) -> MitakeSmsProvider:
    return MitakeSmsProvider(
        username="edoor-mitake",
        password="mitake-pass-xyz",
        base_url=gateway.base_url,
        client=client,
    )


async def test_twilio_request_is_exactly_the_messages_api(
    gateway: FakeSmsGateway, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.queue(201, '{"sid": "SM123", "status": "queued"}', content_type="application/json")
    provider = twilio(gateway)
    try:
        assert await provider.send(MESSAGE, session=session, now=NOW) == "SM123"
    finally:
        await provider.aclose()
    [req] = gateway.requests
    assert req.method == "POST"
    assert req.path == "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
    assert req.query == {}
    expected_auth = base64.b64encode(b"AC0123456789abcdef:twilio-token-xyz").decode()
    assert req.headers["authorization"] == f"Basic {expected_auth}"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.form == {"To": [PHONE], "From": ["+15005550006"], "Body": [MESSAGE.body]}
    assert PHONE not in caplog.text
    assert "twilio-token-xyz" not in caplog.text


@pytest.mark.parametrize(
    ("status", "temporary"), [(500, True), (503, True), (429, True), (400, False)]
)
async def test_twilio_error_raises_without_personal_data(
    gateway: FakeSmsGateway, session: AsyncSession, status: int, temporary: bool
) -> None:
    gateway.queue(
        status,
        '{"code": 21211, "message": "The \'To\' number +886912345678 is not valid."}',
        content_type="application/json",
    )
    provider = twilio(gateway)
    try:
        with pytest.raises(SmsError) as info:
            await provider.send(MESSAGE, session=session, now=NOW)
    finally:
        await provider.aclose()
    assert info.value.temporary is temporary
    assert PHONE not in str(info.value)
    assert "912345678" not in info.value.reason


async def test_twilio_timeout_is_an_sms_error(
    gateway: FakeSmsGateway, session: AsyncSession
) -> None:
    gateway.queue(201, "{}", delay=1.0)
    provider = twilio(gateway, httpx.AsyncClient(timeout=0.2))
    try:
        with pytest.raises(SmsError) as info:
            await provider.send(MESSAGE, session=session, now=NOW)
    finally:
        await provider.aclose()
    assert info.value.reason == "twilio: timeout"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_mitake_request_is_exactly_smsend_utf8(
    gateway: FakeSmsGateway, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.queue(200, "[1]\r\nmsgid=1010079522\r\nstatuscode=1\r\nAccountPoint=98\r\n")
    provider = mitake(gateway)
    try:
        assert await provider.send(MESSAGE, session=session, now=NOW) == "1010079522"
    finally:
        await provider.aclose()
    [req] = gateway.requests
    assert req.method == "POST"
    assert req.path == "/api/mtk/SmSend"
    # Credentials and the number go in the body: URLs end up in HTTP client logs.
    assert req.query == {"CharsetURL": ["UTF-8"]}
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.form == {
        "username": ["edoor-mitake"],
        "password": ["mitake-pass-xyz"],
        "dstaddr": ["0912345678"],
        "smbody": ["臺北e大驗證碼 123456\x0610 分鐘內有效"],
        "vldtime": ["600"],
        "clientid": ["otp-7-1"],
    }
    assert PHONE not in caplog.text
    assert "0912345678" not in caplog.text
    assert "mitake-pass-xyz" not in caplog.text


async def test_mitake_duplicate_reply_counts_as_sent(
    gateway: FakeSmsGateway, session: AsyncSession
) -> None:
    gateway.queue(200, "[1]\r\nmsgid=77\r\nstatuscode=1\r\nAccountPoint=97\r\nDuplicate=Y\r\n")
    provider = mitake(gateway)
    try:
        assert await provider.send(MESSAGE, session=session, now=NOW) == "77"
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("status", "body", "temporary"),
    [
        (200, "[1]\r\nstatuscode=e\r\nError=帳號、密碼錯誤\r\n", False),
        (200, "[1]\r\nstatuscode=v\r\nError=無效的手機號碼\r\n", False),
        (200, "[1]\r\nstatuscode=*\r\nError=系統發生錯誤\r\n", True),
        (500, "oops", True),
    ],
)
async def test_mitake_refusal_raises(
    gateway: FakeSmsGateway, session: AsyncSession, status: int, body: str, temporary: bool
) -> None:
    gateway.queue(status, body)
    provider = mitake(gateway)
    try:
        with pytest.raises(SmsError) as info:
            await provider.send(MESSAGE, session=session, now=NOW)
    finally:
        await provider.aclose()
    assert info.value.temporary is temporary


async def test_mitake_timeout_is_an_sms_error(
    gateway: FakeSmsGateway, session: AsyncSession
) -> None:
    gateway.queue(200, "statuscode=1\r\n", delay=1.0)
    provider = mitake(gateway, httpx.AsyncClient(timeout=0.2))
    try:
        with pytest.raises(SmsError, match="mitake: timeout"):
            await provider.send(MESSAGE, session=session, now=NOW)
    finally:
        await provider.aclose()


async def test_mitake_sends_foreign_numbers_with_country_code(
    gateway: FakeSmsGateway, session: AsyncSession
) -> None:
    gateway.queue(200, "msgid=1\r\nstatuscode=0\r\n")
    provider = mitake(gateway)
    try:
        await provider.send(
            SmsMessage(to="+85291234567", body="x", reference="r"), session=session, now=NOW
        )
    finally:
        await provider.aclose()
    assert gateway.requests[0].form["dstaddr"] == ["85291234567"]


async def test_dev_provider_writes_the_phone_inbox_keyed_by_hash(session: AsyncSession) -> None:
    provider = DevSmsProvider(VAULT)
    await provider.send(MESSAGE, session=session, now=NOW)
    await session.commit()
    key = sms_inbox_key(VAULT, PHONE, requester=MESSAGE.requester)
    assert key.startswith("sms:")
    assert len(key) <= 64
    assert "912345678" not in key
    [row] = await messages_after(session, user_key=key, after_id=0, box="sms")
    assert row.reply == {"kind": "text", "text": MESSAGE.body}


async def test_dev_provider_never_delivers_a_code_asked_for_on_a_real_channel(
    session: AsyncSession,
) -> None:
    provider = DevSmsProvider(VAULT)
    for requester in ("line:U0123", "telegram:42", ""):
        message = SmsMessage(to=PHONE, body="123456", reference="r", requester=requester)
        with pytest.raises(SmsError) as refused:
            await provider.send(message, session=session, now=NOW)
        assert not refused.value.temporary
        assert not refused.value.recipient  # our configuration, not the person's number
    assert (
        await messages_after(
            session,
            user_key=sms_inbox_key(VAULT, PHONE, requester="line:U0123"),
            after_id=0,
            box="sms",
        )
        == []
    )


def test_build_sms_provider_follows_settings() -> None:
    assert isinstance(build_sms_provider(Settings(sms_provider="dev"), vault=VAULT), DevSmsProvider)
    tw = Settings(
        sms_provider="twilio",
        twilio_account_sid="AC1",
        twilio_auth_token="tok-123456",
        twilio_from="+15005550006",
        twilio_api_base_url="http://127.0.0.1:9/",
    )
    provider = build_sms_provider(tw, vault=VAULT)
    assert isinstance(provider, TwilioSmsProvider)
    assert provider.url == "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json"
    mk = Settings(sms_provider="mitake", mitake_username="u", mitake_password="p-123456")
    provider = build_sms_provider(mk, vault=VAULT)
    assert isinstance(provider, MitakeSmsProvider)
    assert provider.url == "https://smsapi.mitake.com.tw/api/mtk/SmSend"


def test_dev_provider_refused_in_production() -> None:
    settings = Settings.model_construct(edoor_env="production", sms_provider="dev")
    with pytest.raises(ConfigError):
        build_sms_provider(settings, vault=VAULT)


@pytest.mark.parametrize(
    ("kind", "status", "body", "recipient"),
    [
        ("twilio", 400, '{"code": 21211}', True),  # invalid 'To' number
        ("twilio", 400, '{"code": 21614}', True),  # not a mobile number
        ("twilio", 401, '{"code": 20003}', False),  # our credentials
        ("twilio", 400, '{"code": 21606}', False),  # our From number
        ("twilio", 400, '{"code": 21408}', False),  # our account may not text that region
        ("twilio", 503, '{"code": 21211}', False),  # a server error is never the number
        ("mitake", 200, "statuscode=v\r\n", True),
        ("mitake", 200, "statuscode=6\r\n", True),
        ("mitake", 200, "statuscode=e\r\n", False),  # our password
    ],
)
async def test_a_refused_number_is_told_apart_from_our_own_errors(
    gateway: FakeSmsGateway,
    session: AsyncSession,
    kind: str,
    status: int,
    body: str,
    recipient: bool,
) -> None:
    gateway.queue(status, body, content_type="application/json" if kind == "twilio" else None)
    provider = twilio(gateway) if kind == "twilio" else mitake(gateway)
    try:
        with pytest.raises(SmsError) as info:
            await provider.send(MESSAGE, session=session, now=NOW)
    finally:
        await provider.aclose()
    assert info.value.recipient is recipient
    assert not (info.value.recipient and info.value.temporary)
