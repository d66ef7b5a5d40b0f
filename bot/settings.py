"""Settings: one pydantic-settings class, built by the composition root and passed down."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that must never reach production: the shipped examples and obvious placeholders.
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "dev", "dev-admin-token", "dev-pii-key"}
DEV_PII_KEY = "dev-pii-key-not-for-production-0000000000"
# Published values (the shared platform samples, our tests and docs): known to everyone.
KNOWN_SAMPLES = {
    DEV_PII_KEY,
    "8f1c4e0b2a7d4c96b3e5f7a9d1c3e5f7",  # the LINE channel secret the shared samples use
    "test-line-access-token-abcdef",
    "7012345678:AAFakeTokenForTests_0123456789abcdefXYZ",
    "tg-webhook-secret_0123456789",
    "test-admin-token-0123456789",
    "test-pii-key-0123456789abcdef0123456789",
}
# A secret someone could guess must cost about 2^128 tries: length times the bits of the
# character classes it draws from (lower, upper, digits, other).
MIN_SECRET_BITS = 128
LINE_SECRET_FORM = re.compile(r"^[0-9a-f]{32}$")  # how LINE issues channel secrets
TELEGRAM_SECRET_FORM = re.compile(r"^[A-Za-z0-9_-]{32,256}$")  # Bot API: 1-256 of these
TELEGRAM_TOKEN_FORM = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$")


def secret_bits(value: str) -> float:
    """A generous estimate of a secret's strength in bits; repeated characters count once
    per distinct character beyond a short run, so "aaaa..." stays weak."""
    alphabet = sum(
        size
        for size, present in (
            (26, any(c.islower() for c in value)),
            (26, any(c.isupper() for c in value)),
            (10, any(c.isdigit() for c in value)),
            (32, any(not c.isalnum() for c in value)),
        )
        if present
    )
    if alphabet == 0:
        return 0.0
    effective = min(len(value), 4 * len(set(value)))
    return effective * math.log2(alphabet)


def weak_secret(value: str) -> str | None:
    """Why a secret is weak, or None."""
    if value in _PLACEHOLDERS or value in KNOWN_SAMPLES:
        return "is a placeholder or a published sample value"
    if len(value) < 32:
        return "must be at least 32 characters"
    if secret_bits(value) < MIN_SECRET_BITS:
        return "is too easy to guess (use e.g. `openssl rand -hex 32`)"
    return None


class ConfigError(ValueError):
    """A setting is missing, half-configured or unsafe; the message says which."""


class Settings(BaseSettings):
    """Every setting of edoor; names are the environment variables (DESIGN.md)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    edoor_env: Literal["dev", "production"] = "dev"
    database_url: str = "sqlite+aiosqlite:///./var/edoor.db"
    redis_url: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    admin_token: SecretStr | None = SecretStr("dev-admin-token")
    pii_key: SecretStr = SecretStr(DEV_PII_KEY)
    # During `edoor rotate-pii-key`: the key being replaced, still able to decrypt.
    pii_key_previous: SecretStr | None = None
    edoor_background: Literal["on", "off"] = "on"
    media_dir: Path = Path("./var/media")
    log_level: str = "INFO"
    # Default: on in dev while no real channel is configured; off otherwise (see simulator_on).
    simulator_enabled: bool | None = None
    # Request bodies: the most any route reads (413 beyond), and how long a client may take.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_upload_bytes: int = Field(default=209_715_200, ge=1024)  # audio upload: LINE's 200 MB
    max_import_bytes: int = Field(default=52_428_800, ge=1024)  # catalog, roster, completions
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)

    line_channel_secret: SecretStr | None = None
    line_channel_access_token: SecretStr | None = None
    line_api_base_url: str = "https://api.line.me"
    line_data_api_base_url: str = "https://api-data.line.me"

    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_mode: Literal["webhook", "polling"] = "webhook"
    telegram_api_base_url: str = "https://api.telegram.org/bot"

    sms_provider: Literal["dev", "twilio", "mitake"] = "dev"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    mitake_username: str | None = None
    mitake_password: SecretStr | None = None
    mitake_api_base_url: str = "https://smsapi.mitake.com.tw"

    phone_allowed_regions: str = "TW"
    phone_trust_telegram_contact: bool = True
    # Verification texts per sliding hour (models/otp_limits.py and the README explain them).
    otp_max_per_phone_hour: int = Field(default=5, ge=1)
    otp_max_per_member_hour: int = Field(default=10, ge=1)
    otp_max_global_hour: int = Field(default=1000, ge=1)
    otp_max_wrong_codes_hour: int = Field(default=10, ge=1)
    # A newcomer: a member younger than OTP_NEWCOMER_HOURS with no verified number or roster
    # status (a throwaway chat is one); newcomers get smaller budgets.
    otp_newcomer_hours: float = Field(default=24, ge=0)
    otp_max_per_newcomer_hour: int = Field(default=4, ge=1)
    otp_max_per_phone_newcomer_hour: int = Field(default=3, ge=1)
    otp_max_per_prefix_hour: int = Field(default=10, ge=1)
    otp_prefix_digits: int = Field(default=7, ge=1, le=15)
    otp_newcomer_share: float = Field(default=0.3, ge=0, le=1)

    # Wrong bearer tokens one address may send to the admin API and console per minute; past
    # it every bearer request from there is a 429 for the rest of the minute, right tokens
    # too (answering those would tell a guesser when a guess is right).
    admin_bad_tokens_per_ip_minute: int = Field(default=60, ge=1)

    # Proactive messages wait between these Asia/Taipei times (a member may choose another).
    quiet_hours: str = Field(default="21:30-08:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    # When the reminder sweep runs (cron fields, Asia/Taipei); it is idempotent.
    reminders_cron_minute: str = "0,30"
    # How often the dashboards' summary tables absorb new rows (`rollups`; idempotent).
    rollups_every_seconds: int = Field(default=300, ge=10)

    conversation_ttl_seconds: int = Field(default=900, ge=30)
    # How long the retention job keeps answered events, searches and simulated chats.
    retention_inbound_days: int = Field(default=30, ge=1)
    retention_search_log_days: int = Field(default=400, ge=1)
    retention_simulator_days: int = Field(default=7, ge=1)
    # How long an inbound event may stay claimed before a sweep takes it over.
    inbound_lease_seconds: int = Field(default=60, ge=1)
    inbound_sweep_seconds: int = Field(default=10, ge=1)
    # Each answering process beats this often; one silent for INBOUND_GONE_AFTER_SECONDS is
    # taken to be gone and its claims are taken over by the next sweep (before the lease).
    inbound_heartbeat_seconds: float = Field(default=2, gt=0)
    inbound_gone_after_seconds: float = Field(default=10, gt=0)
    # "inline": each web process answers what it acknowledged; "worker": web processes only
    # acknowledge and `edoor worker` processes answer (they poll every INBOUND_POLL_SECONDS).
    inbound_processing: Literal["inline", "worker"] = "inline"
    inbound_poll_seconds: float = Field(default=0.2, gt=0)

    # Broadcasts: marketing messages per member in any 7 days (reminders are not marketing).
    marketing_cap_per_week: int = Field(default=2, ge=1)
    # Telegram paid broadcasts (`allow_paid_broadcast`: up to 1,000 messages/s, paid in
    # Telegram Stars): off by default; when on, broadcast rows go with the flag, at that rate.
    telegram_allow_paid_broadcast: bool = False

    @property
    def line_enabled(self) -> bool:
        return self.line_channel_secret is not None and self.line_channel_access_token is not None

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None

    @property
    def real_channel(self) -> bool:
        """LINE or Telegram is configured: real people may be talking to this process."""
        return self.line_enabled or self.telegram_enabled

    @property
    def simulator_on(self) -> bool:
        """The simulator (and the dev SMS provider's phone inbox it serves) is on by default only
        in dev with no real channel: once real people can reach the bot, a page that plays
        anyone and reads text messages must be asked for explicitly."""
        if self.simulator_enabled is None:
            return self.edoor_env == "dev" and not self.real_channel
        return self.simulator_enabled

    @property
    def background_on(self) -> bool:
        return self.edoor_background == "on"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def ensure_valid(self) -> Settings:
        """Raise ConfigError naming every problem (not a pydantic error, which would quote the
        offending values, secrets included)."""
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Everything wrong with this configuration, as sentences an operator can act on."""
        out: list[str] = []
        if (self.line_channel_secret is None) != (self.line_channel_access_token is None):
            out.append(
                "LINE is half-configured: set both LINE_CHANNEL_SECRET and "
                "LINE_CHANNEL_ACCESS_TOKEN, or neither"
            )
        if (
            self.telegram_bot_token is not None
            and self.telegram_mode == "webhook"
            and self.telegram_webhook_secret is None
        ):
            out.append(
                "Telegram is half-configured: TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_SECRET "
                "(or use TELEGRAM_MODE=polling)"
            )
        if self.telegram_webhook_secret is not None and self.telegram_bot_token is None:
            out.append("TELEGRAM_WEBHOOK_SECRET is set but TELEGRAM_BOT_TOKEN is not")
        if self.sms_provider == "twilio" and not (
            self.twilio_account_sid and self.twilio_auth_token and self.twilio_from
        ):
            out.append(
                "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM"
            )
        if self.sms_provider == "mitake" and not (self.mitake_username and self.mitake_password):
            out.append("SMS_PROVIDER=mitake needs MITAKE_USERNAME and MITAKE_PASSWORD")
        if self.simulator_enabled and self.real_channel and self.sms_provider == "dev":
            # Anyone on the page could then verify any number (its code lands in their own
            # simulated inbox) and be offered a link to the real owner's LINE or Telegram member.
            out.append(
                "SIMULATOR_ENABLED with a real LINE or Telegram channel needs a real "
                "SMS_PROVIDER (twilio or mitake): with SMS_PROVIDER=dev anyone on the simulator "
                "page could verify any number"
            )
        if self.edoor_env == "production":
            out.extend(self._production_problems())
        return out

    def _production_problems(self) -> list[str]:
        out: list[str] = []
        if self.sms_provider == "dev":
            out.append(
                "EDOOR_ENV=production refuses SMS_PROVIDER=dev (codes would not leave the box)"
            )
        if not self.public_base_url.startswith("https://"):
            out.append(
                "EDOOR_ENV=production needs an https PUBLIC_BASE_URL (LINE plays only https audio)"
            )
        if self.simulator_enabled:
            out.append("EDOOR_ENV=production refuses SIMULATOR_ENABLED (the simulator is dev-only)")
        out.extend(self._weak_secrets())
        return out

    def _weak_secrets(self) -> list[str]:
        """Production secrets must be long and random, never a published sample."""
        out: list[str] = []
        for name in ("pii_key", "admin_token"):
            value = getattr(self, name)
            why = weak_secret(value.get_secret_value() if value is not None else "")
            if why:
                out.append(f"EDOOR_ENV=production needs a real {name.upper()}: it {why}")
        # (setting, the form its issuer gives it, what we say when it does not have it)
        checks: list[tuple[str, re.Pattern[str], str]] = [
            ("line_channel_secret", LINE_SECRET_FORM, "32 hexadecimal characters, as LINE issues"),
            (
                "line_channel_access_token",
                re.compile(r"^\S{64,}$"),
                "64+ characters, as LINE issues",
            ),
            ("telegram_bot_token", TELEGRAM_TOKEN_FORM, "the form 123456789:AA... of BotFather"),
            ("telegram_webhook_secret", TELEGRAM_SECRET_FORM, "32-256 of A-Z a-z 0-9 _ -"),
            ("twilio_auth_token", re.compile(r"^\S{32,}$"), "32+ characters, as Twilio issues"),
        ]
        for name, form, expected in checks:
            secret: SecretStr | None = getattr(self, name)
            if secret is None:
                continue
            value = secret.get_secret_value()
            if value in _PLACEHOLDERS or value in KNOWN_SAMPLES:
                out.append(f"{name.upper()} is a placeholder or a published sample value")
            elif not form.match(value):
                out.append(f"{name.upper()} does not look real: expected {expected}")
            elif len(set(value)) < 8 or (
                name == "telegram_webhook_secret" and secret_bits(value) < MIN_SECRET_BITS
            ):
                out.append(f"{name.upper()} is too easy to guess")
        return out

    def secrets(self) -> list[str]:
        """The configured secret values, so that the log filter can mask them."""
        values = [
            self.line_channel_secret,
            self.line_channel_access_token,
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.twilio_auth_token,
            self.mitake_password,
            self.pii_key,
            self.admin_token,
        ]
        return [
            v.get_secret_value() for v in values if v is not None and len(v.get_secret_value()) >= 6
        ]
