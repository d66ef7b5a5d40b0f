"""Settings refuse half-configured channels and dev-only values in production."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, Settings

STRONG = "Jq7vR2mX9pLw4tZs8nKc3bHf6yDg1aUe"  # 32 random letters and digits
ADMIN = "c9b1f0e4a7d24b6e8f3a5c7d9e1b2f4a6c8d0e2f"  # like `openssl rand -hex 20`
LINE_SECRET = "3f9a1c7e5b2d4f6081a3c5e7092b4d6f"
LINE_TOKEN = "Yk3nQ8sW1xV5zB7cE9gJ2mP4rT6uA0dF" * 5
TG_TOKEN = "7123456789:AAH4kL9mN2pQ5rS8tU1vW3xY6zB0cD7eF9g"
TG_SECRET = "Wb4_Nx8-Qr2Ls6Tv0Yz3Kd7Hm1Pc5Fg9"
PROD = {
    "edoor_env": "production",
    "sms_provider": "mitake",
    "mitake_username": "u",
    "mitake_password": "p" * 12,
    "pii_key": STRONG,
    "admin_token": ADMIN,
    "public_base_url": "https://edoor.example.tw",
}


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
        **PROD,
        line_channel_secret=LINE_SECRET,
        line_channel_access_token=LINE_TOKEN,
        telegram_bot_token=TG_TOKEN,
        telegram_webhook_secret=TG_SECRET,
    )
    assert not settings.simulator_on
    assert STRONG in settings.secrets()
    with pytest.raises(ConfigError, match="SIMULATOR_ENABLED"):
        make(**PROD, simulator_enabled=True)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"admin_token": "a"}, "ADMIN_TOKEN: it must be at least 32 characters"),
        ({"admin_token": "a" * 64}, "ADMIN_TOKEN: it is too easy to guess"),
        ({"admin_token": "test-admin-token-0123456789"}, "ADMIN_TOKEN: it is a placeholder"),
        ({"pii_key": "ab" * 20}, "PII_KEY: it is too easy to guess"),
        (
            {"line_channel_secret": "x", "line_channel_access_token": LINE_TOKEN},
            "LINE_CHANNEL_SECRET",
        ),
        (
            {
                "line_channel_secret": "8f1c4e0b2a7d4c96b3e5f7a9d1c3e5f7",
                "line_channel_access_token": LINE_TOKEN,
            },
            "LINE_CHANNEL_SECRET is a placeholder or a published sample",
        ),
        ({"line_channel_secret": "0" * 32, "line_channel_access_token": LINE_TOKEN}, "too easy"),
        (
            {"line_channel_secret": LINE_SECRET, "line_channel_access_token": "t" * 20},
            "LINE_CHANNEL_ACCESS_TOKEN",
        ),
        (
            {"telegram_bot_token": TG_TOKEN, "telegram_webhook_secret": "a"},
            "TELEGRAM_WEBHOOK_SECRET",
        ),
        (
            {"telegram_bot_token": TG_TOKEN, "telegram_webhook_secret": "a" * 40},
            "TELEGRAM_WEBHOOK_SECRET is too easy to guess",
        ),
        ({"telegram_bot_token": "1:abc", "telegram_mode": "polling"}, "TELEGRAM_BOT_TOKEN"),
    ],
)
def test_production_refuses_weak_secrets(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make(**(PROD | values))
    assert needle in str(refused.value)
    for value in values.values():
        if isinstance(value, str) and len(value) > 8:
            assert value not in str(refused.value), "the message quotes a secret"


def test_dev_keeps_weak_secrets_working() -> None:
    assert make(
        admin_token="a", line_channel_secret="x", line_channel_access_token="y"
    ).line_enabled


def test_a_real_channel_turns_the_simulator_off_unless_asked_for() -> None:
    assert make().simulator_on
    line = {"line_channel_secret": LINE_SECRET, "line_channel_access_token": LINE_TOKEN}
    assert not make(**line).simulator_on
    assert not make(telegram_bot_token=TG_TOKEN, telegram_mode="polling").simulator_on
    # Asked for, with a real SMS provider, it is on; with the dev provider it cannot start.
    twilio = {
        "sms_provider": "twilio",
        "twilio_account_sid": "AC1",
        "twilio_auth_token": "t" * 32,
        "twilio_from": "+15005550006",
    }
    assert make(**line, **twilio, simulator_enabled=True).simulator_on
    with pytest.raises(ConfigError, match="SIMULATOR_ENABLED with a real LINE or Telegram"):
        make(**line, simulator_enabled=True)


def test_secrets_are_hidden_in_reprs() -> None:
    settings = make(line_channel_secret="s" * 32, line_channel_access_token="t" * 32)
    assert "s" * 32 not in repr(settings)
    assert "t" * 32 not in str(settings.model_dump())
