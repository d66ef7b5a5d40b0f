"""Phone numbers as people type them."""

from __future__ import annotations

import pytest

from models.phones import (
    check_phone,
    looks_like_phone,
    mask_phone,
    national_digits,
    normalise_phone,
    parse_regions,
    region_fallback_name,
)


@pytest.mark.parametrize(
    "typed",
    [
        "0912-345-678",
        "0912 345 678",
        "0912345678",
        "+886 912 345 678",
        "+886-912-345-678",
        "886912345678",
        "+8860912345678",
        "(0912) 345-678",
        "０９１２－３４５－６７８",  # full-width, as some IMEs type it
    ],
)
def test_taiwan_mobile_formats_normalise_to_e164(typed: str) -> None:
    assert normalise_phone(typed, regions=["TW"]) == "+886912345678"


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("02-2345-6789", "not_mobile"),  # Taipei landline: cannot receive SMS
        ("+85291234567", "region"),
        ("+1 650 253 0000", "region"),
        ("0912 345 67", "invalid"),
        ("hello", "invalid"),
        ("123", "invalid"),
        ("", "invalid"),
    ],
)
def test_refusals_say_why(typed: str, problem: str) -> None:
    result = check_phone(typed, regions="TW")
    assert not result.ok
    assert result.problem == problem


def test_allowed_regions_setting() -> None:
    assert parse_regions(" tw, hk ,") == ("TW", "HK")
    assert parse_regions("") == ("TW",)
    assert normalise_phone("+852 9123 4567", regions=parse_regions("TW,HK")) == "+85291234567"
    assert normalise_phone("85291234567", regions=parse_regions("TW,HK")) == "+85291234567"
    # The first region reads numbers typed without a country code.
    assert normalise_phone("0912345678", regions=parse_regions("TW,HK")) == "+886912345678"


def test_masking_and_national_form() -> None:
    assert mask_phone("+886912345678") == "0912-***-678"
    assert mask_phone("+85291234567") == "+852 ***-567"
    assert mask_phone("garbage") == "***"
    assert national_digits("+886912345678") == "0912345678"


def test_looks_like_phone() -> None:
    assert looks_like_phone("0912-345-678")
    assert looks_like_phone("+886 912 345 678")
    assert not looks_like_phone("123456a")
    assert not looks_like_phone("資安課程")
    assert not looks_like_phone("12345")


def test_a_region_without_a_catalog_name_falls_back_to_english() -> None:
    assert region_fallback_name("FR") == "France"
    assert region_fallback_name("ZZ") == "ZZ"  # not a region phonenumbers knows
