"""Masking of phone numbers and codes in stored copies and logs, in every form people type."""

from __future__ import annotations

import pytest

from bot.redact import mask_text, redact


@pytest.mark.parametrize(
    "typed",
    [
        "0912-345-678",
        "+886 912 345 678",
        "０９１２－３４５－６７８",  # full-width, as zh-TW keyboards type it
        "＋８８６ ９１２ ３４５ ６７８",
        "0912/345/678",
        "0912\u2010345\u2014678",  # Unicode hyphen and em dash
        "(02) 2720-8889",
        "123456",
    ],
)
def test_numbers_and_codes_are_masked_whole(typed: str) -> None:
    masked = mask_text(f"我的號碼 {typed} 謝謝")
    assert masked == "我的號碼 *** 謝謝"
    assert not any(ch.isdigit() for ch in masked)


def test_short_numbers_stay_and_structure_is_kept() -> None:
    assert mask_text("資安 1小時內") == "資安 1小時內"
    assert mask_text("第 3 集") == "第 3 集"
    event = {"message": {"text": "0912-345-678", "id": "468789577898262530"}, "password": "x"}
    # Free text is masked at any depth; ids (digits, but not typed by a person) are kept.
    assert redact(event) == {
        "message": {"text": "***", "id": "468789577898262530"},
        "password": "***",
    }
