"""JSON from outside (webhooks, admin imports) read strictly, so that what we store and
compute with is always storable: Python's json accepts NaN and Infinity, nests until the
interpreter's recursion limit, reads integers of thousands of digits and keeps lone UTF-16
surrogates and U+0000 (which PostgreSQL text and jsonb cannot hold), each of which later
fails deep inside a database driver as a 500."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_INT_DIGITS = 19  # fits a 64-bit column; ids, timestamps and counts all do


class JsonRefused(ValueError):
    """The text is not JSON we accept; the message says why (never quoting the input)."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRefused(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("a number is out of range")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; raise JsonRefused (a ValueError) for anything we would fail to store.

    Lone surrogates (\\ud800 without its pair) and U+0000 become U+FFFD, as a lenient decoder
    would show them: a message with one broken emoji is still a message.
    """
    try:
        value = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except JsonRefused:
        raise
    except RecursionError:
        raise JsonRefused("nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRefused(f"not JSON ({type(exc).__name__})") from None
    return _clean(value, max_depth)


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict | list):
        if depth <= 0:
            raise JsonRefused("nested too deeply")
        if isinstance(value, dict):
            return {_text(k): _clean(v, depth - 1) for k, v in value.items()}
        return [_clean(v, depth - 1) for v in value]
    return value


def _text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # only lone surrogates fail to encode
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value
