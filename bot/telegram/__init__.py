"""Telegram: secret-token check, Update parsing, Reply -> Bot API rendering, sending via PTB."""

from bot.telegram.channel import (
    ALLOWED_UPDATES,
    TelegramChannel,
    TelegramConfigError,
    to_incoming,
    translate_error,
)
from bot.telegram.logs import protect_logs
from bot.telegram.render import TgCall, render, render_reply
from bot.telegram.routes import (
    SECRET_HEADER,
    WEBHOOK_PATH,
    run_polling,
    telegram_routes,
    telegram_setup,
)

__all__ = [
    "ALLOWED_UPDATES",
    "SECRET_HEADER",
    "WEBHOOK_PATH",
    "TelegramChannel",
    "TelegramConfigError",
    "TgCall",
    "protect_logs",
    "render",
    "render_reply",
    "run_polling",
    "telegram_routes",
    "telegram_setup",
    "to_incoming",
    "translate_error",
]
