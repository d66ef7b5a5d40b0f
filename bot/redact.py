"""Masking of personal data in anything that is stored for people to read or logged."""

from __future__ import annotations

from typing import Any

from models.phones import mask_text

_SENSITIVE_KEYS = {"phone_number", "phoneNumber", "vcard", "password"}
# Free text a person typed; ids (LINE user ids are hex) are kept as they are.
_TEXT_KEYS = {"text", "caption", "data", "query", "quotedMessageId"}

__all__ = ["mask_text", "redact"]


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
