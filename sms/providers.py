"""Text messages (verification codes) through one interface, with the provider chosen by settings.

`dev` puts the message in the simulator's phone inbox; `twilio` and `mitake` call their HTTP
APIs. Providers never log the number, the text or a credential, and raise SmsError (with a
reason free of personal data) when the message was not taken: `temporary` (try again later),
`recipient` (this number cannot get text messages: check it or use another), or neither (a
problem on our side, such as credentials, for an operator to fix).
"""

from __future__ import annotations

import datetime as dt
import logging

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ports import SmsError, SmsMessage, SmsProvider
from bot.settings import ConfigError, Settings
from models.identity import sms_inbox_key
from models.phones import national_digits
from models.pii import PiiVault
from models.simulator import add_messages

log = logging.getLogger("edoor.sms")

__all__ = [
    "DevSmsProvider",
    "MitakeSmsProvider",
    "SmsError",
    "SmsMessage",
    "SmsProvider",
    "TwilioSmsProvider",
    "build_sms_provider",
    "sms_inbox_key",
]

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
SIMULATOR_REQUESTER = "simulator:"
# Mitake reports these as accepted (0 scheduled, 1/2 handed to the carrier, 4 delivered).
MITAKE_ACCEPTED = {"0", "1", "2", "4"}
# Mitake: system error, service paused (a, b, r), too many connections at once (l).
MITAKE_TEMPORARY = {"*", "a", "b", "r", "l"}
# Mitake: the number is wrong (6) or not a valid mobile number (v).
MITAKE_RECIPIENT = {"6", "v"}
# Twilio error codes that are about the number itself: invalid (21211, 21217, 21401, 21421),
# unreachable or not for SMS (21214, 21407, 21612, 21614), a region our account may not
# text (21408), or a person who replied STOP (21610). Other 4xx are our own requests' fault.
# 21408 (our account may not text that region) is ours to fix, not the person's number.
TWILIO_RECIPIENT_CODES = {
    "21211", "21214", "21217", "21401", "21407", "21421", "21610", "21612", "21614",
}  # fmt: skip


class DevSmsProvider:
    """Development only: the message appears in the simulator's phone inbox for that number,
    visible only to the simulator session that asked for it. A code asked for on a real
    channel goes nowhere (refused as our own problem): nobody could read it but whoever
    holds the database, which is not the person."""

    name = "dev"

    def __init__(self, vault: PiiVault) -> None:
        self.vault = vault

    async def send(self, message: SmsMessage, *, session: AsyncSession, now: dt.datetime) -> str:
        if not message.requester.startswith(SIMULATOR_REQUESTER):
            raise SmsError("dev SMS provider delivers to the simulator only", temporary=False)
        await add_messages(
            session,
            user_key=sms_inbox_key(self.vault, message.to, requester=message.requester),
            box="sms",
            replies=[{"kind": "text", "text": message.body}],
            now=now,
        )
        return f"dev-{message.reference}"


class TwilioSmsProvider:
    """Twilio Programmable Messaging: POST /2010-04-01/Accounts/{sid}/Messages.json."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self.from_number = from_number
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._client = client or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)

    async def send(self, message: SmsMessage, *, session: AsyncSession, now: dt.datetime) -> str:
        try:
            response = await self._client.post(
                self.url,
                auth=self._auth,
                data={"To": message.to, "From": self.from_number, "Body": message.body},
            )
        except httpx.TimeoutException:
            # `from None`: the chained exception would carry the request (and its number).
            raise _err("twilio: timeout") from None
        except httpx.HTTPError as exc:
            raise _err(f"twilio: {type(exc).__name__}") from None
        if response.status_code in (200, 201):
            try:
                return str(response.json().get("sid", ""))
            except ValueError:
                return ""
        code = _twilio_error_code(response)
        temporary = response.status_code == 429 or response.status_code >= 500
        raise _err(
            f"twilio: HTTP {response.status_code} code {code}",
            temporary=temporary,
            recipient=not temporary and code in TWILIO_RECIPIENT_CODES,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _twilio_error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", "-"))
    except ValueError:
        return "-"


class MitakeSmsProvider:
    """三竹 (Mitake) SmSend HTTP API, UTF-8: POST /api/mtk/SmSend?CharsetURL=UTF-8, form body.

    Credentials travel in the body, not the URL (URLs are logged by HTTP libraries). The reply
    is text, one `key=value` a line (`msgid=...`, `statuscode=...`, `Error=...`).
    """

    name = "mitake"

    def __init__(
        self,
        *,
        username: str,
        password: str,
        base_url: str = "https://smsapi.mitake.com.tw",
        valid_seconds: int = 600,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._username = username
        self._password = password
        self.url = f"{base_url.rstrip('/')}/api/mtk/SmSend"
        self.valid_seconds = valid_seconds
        self._client = client or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)

    def form(self, message: SmsMessage) -> dict[str, str]:
        """The documented form fields for one message."""
        to = national_digits(message.to) if message.to.startswith("+886") else message.to[1:]
        return {
            "username": self._username,
            "password": self._password,
            "dstaddr": to,
            # Mitake wants ASCII 6 where the text breaks a line.
            "smbody": message.body.replace("\r\n", "\n").replace("\n", "\x06"),
            # A code is worthless once it expires; the carrier need not deliver it later.
            "vldtime": str(self.valid_seconds),
            "clientid": message.reference[:36],
        }

    async def send(self, message: SmsMessage, *, session: AsyncSession, now: dt.datetime) -> str:
        try:
            response = await self._client.post(
                self.url, params={"CharsetURL": "UTF-8"}, data=self.form(message)
            )
        except httpx.TimeoutException:
            raise _err("mitake: timeout") from None
        except httpx.HTTPError as exc:
            raise _err(f"mitake: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise _err(f"mitake: HTTP {response.status_code}")
        fields = parse_mitake_reply(response.text)
        status = fields.get("statuscode", "")
        if status in MITAKE_ACCEPTED:
            return fields.get("msgid", "")
        # Letters are account or request problems (e: bad password, v: bad number, ...).
        raise _err(
            f"mitake: statuscode {status or '-'}",
            temporary=status in MITAKE_TEMPORARY,
            recipient=status in MITAKE_RECIPIENT,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def parse_mitake_reply(text: str) -> dict[str, str]:
    """'[1]\\r\\nmsgid=1\\r\\nstatuscode=1\\r\\n' -> {'msgid': '1', 'statuscode': '1'}."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key:
            fields.setdefault(key, value.strip())
    return fields


def _err(reason: str, *, temporary: bool = True, recipient: bool = False) -> SmsError:
    return SmsError(reason, temporary=temporary, recipient=recipient)


def build_sms_provider(
    settings: Settings, *, vault: PiiVault, client: httpx.AsyncClient | None = None
) -> SmsProvider:
    """The provider SMS_PROVIDER names; `dev` is refused under EDOOR_ENV=production."""
    if settings.sms_provider == "dev":
        if settings.edoor_env == "production":
            raise ConfigError("EDOOR_ENV=production refuses SMS_PROVIDER=dev")
        return DevSmsProvider(vault)
    if settings.sms_provider == "twilio":
        if not (
            settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from
        ):
            raise ConfigError(
                "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM"
            )
        return TwilioSmsProvider(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            from_number=settings.twilio_from,
            base_url=settings.twilio_api_base_url,
            client=client,
        )
    if not (settings.mitake_username and settings.mitake_password):
        raise ConfigError("SMS_PROVIDER=mitake needs MITAKE_USERNAME and MITAKE_PASSWORD")
    return MitakeSmsProvider(
        username=settings.mitake_username,
        password=settings.mitake_password.get_secret_value(),
        base_url=settings.mitake_api_base_url,
        client=client,
    )
