"""Settings refuse half-configured channels and dev-only values in production."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, Settings

STRONG = "k" * 40


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values).ensure_valid()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"line_channel_secret": "s" * 32}, "LINE is half-configured"),
        ({"line_channel_access_token": "t" * 32}, "LINE is half-configured"),
        ({"telegram_bot_token": "1:abc"}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"telegram_webhook_secret": "abc"}, "TELEGRAM_BOT_TOKEN is not"),
        ({"sms_provider": "twilio", "twilio_account_sid": "AC1"}, "SMS_PROVIDER=twilio"),
        ({"sms_provider": "mitake"}, "SMS_PROVIDER=mitake"),
    ],
)
def test_half_configured_channels_stop_start_up(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make(**values)


def test_polling_needs_no_webhook_secret() -> None:
    settings = make(telegram_bot_token="1:abc", telegram_mode="polling")
    assert settings.telegram_enabled


def test_production_refuses_every_dev_only_setting() -> None:
    with pytest.raises(ConfigError) as refused:
        make(edoor_env="production")
    message = str(refused.value)
    for needle in ("SMS_PROVIDER=dev", "PII_KEY", "ADMIN_TOKEN", "https PUBLIC_BASE_URL"):
        assert needle in message


def test_production_with_real_values_starts_and_hides_the_simulator() -> None:
    settings = make(
        edoor_env="production",
        sms_provider="mitake",
        mitake_username="u",
        mitake_password="p" * 12,
        pii_key=STRONG,
        admin_token="a" * 40,
        public_base_url="https://edoor.example.tw",
    )
    assert not settings.simulator_on
    assert STRONG in settings.secrets()
    with pytest.raises(ConfigError, match="SIMULATOR_ENABLED"):
        make(
            edoor_env="production",
            sms_provider="mitake",
            mitake_username="u",
            mitake_password="p" * 12,
            pii_key=STRONG,
            admin_token="a" * 40,
            public_base_url="https://edoor.example.tw",
            simulator_enabled=True,
        )


def test_secrets_are_hidden_in_reprs() -> None:
    settings = make(line_channel_secret="s" * 32, line_channel_access_token="t" * 32)
    assert "s" * 32 not in repr(settings)
    assert "t" * 32 not in str(settings.model_dump())
