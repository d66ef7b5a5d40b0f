"""Message catalogs: every key in both languages, every placeholder the same, every command
described for Telegram's command menu."""

from __future__ import annotations

import re

import handlers
from bot.i18n import Catalog

PLACEHOLDER = re.compile(r"\{(\w+)")


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    catalog = Catalog()
    zh, en = catalog.messages["zh-TW"], catalog.messages["en"]
    assert set(zh) == set(en), sorted(set(zh) ^ set(en))
    for key in zh:
        assert set(PLACEHOLDER.findall(zh[key])) == set(PLACEHOLDER.findall(en[key])), key


def test_every_command_has_a_description_in_both_languages() -> None:
    catalog = Catalog()
    for name in handlers.build_router().command_names():
        for lang in ("zh-TW", "en"):
            text = catalog.messages[lang].get(f"start.command.{name}")
            assert text, f"{lang} has no description for /{name}"
            assert 1 <= len(text) <= 256  # Telegram's BotCommand limit
