"""Message catalogs: every key in both languages, every placeholder the same, every command
described for Telegram's command menu."""

from __future__ import annotations

import ast
import re
from pathlib import Path

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


# -- labels: LINE cuts a button label at 20 characters -------------------------------------
LINE_LABEL = 20
SOURCES = ("handlers", "notifications", "bot", "media")
# Values a label's placeholders take at most (counts, times, a requirement's short name).
SAMPLES = {"count": "123", "n": "123", "hours": "12.5", "time": "20:00", "topic": "性別平等"}


def _label_keys(catalog: Catalog) -> set[str]:
    """Catalog keys used as a Button's label anywhere in the code: `label=ctx.t("key")`,
    `label=catalog.t(lang, "key")`, or an f-string key (`f"start.menu_item.{name}"`), which
    stands for every key it can make."""
    keys: set[str] = set()
    known = set(catalog.messages["zh-TW"])
    root = Path(__file__).parent.parent
    for package in SOURCES:
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Button"):
                    continue
                for kw in node.keywords:
                    if kw.arg == "label" and isinstance(kw.value, ast.Call) and kw.value.args:
                        key = kw.value.args[-1] if len(kw.value.args) <= 2 else None
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            keys.add(key.value)
                        elif isinstance(key, ast.JoinedStr):
                            pattern = "".join(
                                re.escape(v.value) if isinstance(v, ast.Constant) else r"[\w-]+"
                                for v in key.values
                            )
                            keys |= {k for k in known if re.fullmatch(pattern, k)}
    return keys


def test_every_catalog_label_fits_line_in_both_languages() -> None:
    catalog = Catalog()
    keys = _label_keys(catalog)
    assert len(keys) > 50, "the scan found too few labels: is it still reading the code?"
    too_long = []
    for key in sorted(keys):
        for lang in ("zh-TW", "en"):
            template = catalog.messages[lang][key]
            values = {name: SAMPLES.get(name, "") for name in PLACEHOLDER.findall(template)}
            label = template.format(**values)
            if len(label) > LINE_LABEL:
                too_long.append(f"{lang} {key}: {label!r} ({len(label)})")
    assert too_long == []


def test_zh_tw_speaks_with_one_register_and_one_spelling() -> None:
    """您 throughout (never 你), and 臺北 (never 台北)."""
    zh = Catalog().messages["zh-TW"]
    assert [k for k, v in zh.items() if "你" in v or "台北" in v] == []
