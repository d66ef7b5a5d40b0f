"""Settings: one pydantic-settings class, built by the composition root and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that must never reach production: the shipped examples and obvious placeholders.
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "dev", "dev-admin-token", "dev-pii-key"}
DEV_PII_KEY = "dev-pii-key-not-for-production-0000000000"


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
    simulator_enabled: bool | None = None  # default: on in dev, off in production

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
    otp_max_per_phone_hour: int = 5
    otp_max_per_member_hour: int = 10
    otp_max_global_hour: int = 1000

    # Proactive messages wait between these Asia/Taipei times (a member may choose another).
    quiet_hours: str = Field(default="21:30-08:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    # When the reminder sweep runs (cron fields, Asia/Taipei); it is idempotent.
    reminders_cron_minute: str = "0,30"

    conversation_ttl_seconds: int = Field(default=900, ge=30)
    # How long an inbound event may stay claimed before a sweep takes it over.
    inbound_lease_seconds: int = Field(default=60, ge=1)
    inbound_sweep_seconds: int = Field(default=30, ge=1)
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
    def simulator_on(self) -> bool:
        if self.simulator_enabled is None:
            return self.edoor_env == "dev"
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
        if self.edoor_env == "production":
            out.extend(self._production_problems())
        return out

    def _production_problems(self) -> list[str]:
        out: list[str] = []
        if self.sms_provider == "dev":
            out.append(
                "EDOOR_ENV=production refuses SMS_PROVIDER=dev (codes would not leave the box)"
            )
        if self.pii_key.get_secret_value() in _PLACEHOLDERS | {DEV_PII_KEY}:
            out.append("EDOOR_ENV=production needs a real PII_KEY (at least 32 characters)")
        elif len(self.pii_key.get_secret_value()) < 32:
            out.append("PII_KEY must be at least 32 characters")
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        if token in _PLACEHOLDERS:
            out.append("EDOOR_ENV=production needs a real ADMIN_TOKEN")
        if not self.public_base_url.startswith("https://"):
            out.append(
                "EDOOR_ENV=production needs an https PUBLIC_BASE_URL (LINE plays only https audio)"
            )
        if self.simulator_enabled:
            out.append("EDOOR_ENV=production refuses SIMULATOR_ENABLED (the simulator is dev-only)")
        for name in (
            "line_channel_secret",
            "line_channel_access_token",
            "telegram_bot_token",
            "telegram_webhook_secret",
        ):
            value = getattr(self, name)
            if value is not None and value.get_secret_value() in _PLACEHOLDERS:
                out.append(f"{name.upper()} is a placeholder")
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
