"""Masking of personal data in anything that is stored for people to read or logged."""

from __future__ import annotations

import re
from typing import Any

# Runs of four or more digits (any script: \d matches full-width ０-９), allowing the
# separators people type in phone numbers, full-width and Unicode dashes included.
_DIGITS = re.compile(r"[+＋(（]?\d[\d\s\-‐‑‒–—―－()（）.．/／]{2,}\d")
_SENSITIVE_KEYS = {"phone_number", "phoneNumber", "vcard", "password"}
# Free text a person typed; ids (LINE user ids are hex) are kept as they are.
_TEXT_KEYS = {"text", "caption", "data", "query", "quotedMessageId"}


def mask_text(text: str, *, min_digits: int = 4) -> str:
    """'my phone is 0912-345-678' -> 'my phone is ***'; runs shorter than `min_digits`
    (a menu choice; in logs, a line number) stay."""

    def _mask(m: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in m.group(0))
        return "***" if digits >= min_digits else m.group(0)

    return _DIGITS.sub(_mask, text)


def redact(value: Any, *, free_text: bool = False) -> Any:
    """A copy of a JSON-like value with phone numbers, codes and passwords masked."""
    if isinstance(value, dict):
        return {
            k: "***"
            if k in _SENSITIVE_KEYS and v is not None
            else redact(v, free_text=k in _TEXT_KEYS)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, free_text=free_text) for v in value]
    if isinstance(value, str) and free_text:
        return mask_text(value)
    return value
