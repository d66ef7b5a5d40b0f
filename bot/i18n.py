"""Message catalogs: zh-TW first, English second, one TOML file per feature and language.

Files live in bot/locales/<lang>/<feature>.toml; a key `welcome` in `start.toml` is
`start.welcome`. Features add their own file, so no two features edit the same catalog.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from pathlib import Path

from models.base import TAIPEI

LANGUAGES = ("zh-TW", "en")
DEFAULT_LANGUAGE = "zh-TW"
LOCALES = Path(__file__).parent / "locales"


def _flatten(prefix: str, data: Mapping[str, object], out: dict[str, str]) -> None:
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            _flatten(name, value, out)
        else:
            out[name] = str(value)


class Catalog:
    """All messages of all languages, loaded once per process."""

    def __init__(self, root: Path = LOCALES) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            table: dict[str, str] = {}
            for path in sorted((root / lang).glob("*.toml")):
                _flatten(path.stem, tomllib.loads(path.read_text("utf-8")), table)
            self.messages[lang] = table

    def t(self, lang: str, key: str, /, **values: object) -> str:
        """The message `key` in `lang` (falling back to zh-TW), formatted with `values`."""
        table = self.messages.get(lang) or self.messages[DEFAULT_LANGUAGE]
        template = table.get(key) or self.messages[DEFAULT_LANGUAGE].get(key)
        if template is None:
            raise KeyError(f"message {key!r} is in no catalog")
        return template.format(**values) if values else template

    def tn(self, lang: str, key: str, count: float, /, **values: object) -> str:
        """The message `key` for `count` things: `key_one` when count is 1 and the language
        has that form ("1 course", "1 hour"), else `key`."""
        if count == 1 and f"{key}_one" in self.messages.get(lang, {}):
            key = f"{key}_one"
        return self.t(lang, key, **values)

    def all_words(self, key: str) -> list[str]:
        """Every language's text for `key`, e.g. the words a person may type for an action."""
        words: list[str] = []
        for lang in LANGUAGES:
            value = self.messages[lang].get(key)
            if value:
                words.extend(w.strip() for w in value.split("|") if w.strip())
        return words


def normalise_language(hint: str | None) -> str:
    """Map a platform language code ('zh-Hant', 'en-US', ...) to one of ours."""
    if not hint:
        return DEFAULT_LANGUAGE
    return "en" if hint.lower().startswith("en") else DEFAULT_LANGUAGE


def taipei_time(moment: dt.datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC moment shown as Asia/Taipei time."""
    return moment.astimezone(TAIPEI).strftime(fmt)
