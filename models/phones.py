"""Phone numbers as people type them: normalised to E.164, checked, and masked for display;
and the masking of digit runs (phone numbers, one-time codes) in free text, which the logs,
the stored inbound events and the search log share.

Accepted: any format phonenumbers understands for the allowed regions (Taiwan mobiles as
0912-345-678, 0912 345 678, +886 912 345 678, 886912345678, full-width digits, ...).
Only mobile numbers pass: a landline cannot receive the verification SMS.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, geocoder

PhoneProblem = Literal["invalid", "region", "not_mobile"]
_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
# Something that could be a phone number: digits with the separators people type.
_PHONE_LIKE = re.compile(r"^\+?[\d\s\-().]{6,24}$")
# Runs of four or more digits (any script: \d matches full-width ０-９), allowing the
# separators people type in phone numbers, full-width and Unicode dashes included.
_DIGIT_RUN = re.compile(r"[+＋(（]?\d[\d\s\-‐‑‒–—―－()（）.．/／]{2,}\d")
MASK = "***"


@dataclass(frozen=True)
class PhoneCheck:
    """The outcome of reading a typed number: the E.164 form, or why it was refused."""

    e164: str | None
    problem: PhoneProblem | None = None

    @property
    def ok(self) -> bool:
        return self.e164 is not None


def parse_regions(setting: str | Iterable[str]) -> tuple[str, ...]:
    """'TW, hk' -> ('TW', 'HK'); the first region reads numbers without a country code."""
    items = setting.split(",") if isinstance(setting, str) else list(setting)
    regions = tuple(r.strip().upper() for r in items if r.strip())
    return regions or ("TW",)


def region_fallback_name(region: str) -> str:
    """The English name of a region the catalogs do not name ('FR' -> 'France'), else its code."""
    example = phonenumbers.example_number(region)
    name = geocoder.country_name_for_number(example, "en") if example is not None else ""
    return name or region


def _clean(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip()


def looks_like_phone(text: str) -> bool:
    """True when the text is shaped like a phone number (to tell it apart from other words)."""
    cleaned = _clean(text)
    return bool(_PHONE_LIKE.match(cleaned)) and sum(ch.isdigit() for ch in cleaned) >= 6


def check_phone(raw: str, *, regions: Iterable[str]) -> PhoneCheck:
    """Normalise a typed or shared number; refuse other countries and landlines."""
    allowed = parse_regions(regions)
    cleaned = _clean(raw)
    if not looks_like_phone(cleaned):
        return PhoneCheck(None, "invalid")
    candidates = [cleaned]
    digits = re.sub(r"\D", "", cleaned)
    if not cleaned.startswith("+") and len(digits) > 10:
        # "886912345678" or "85291234567": a country code typed without the plus.
        candidates.append("+" + digits)
    problem: PhoneProblem = "invalid"
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, allowed[0])
        except NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        if phonenumbers.region_code_for_number(number) not in allowed:
            problem = "region"
            continue
        if phonenumbers.number_type(number) not in _MOBILE_TYPES:
            problem = "not_mobile"
            continue
        return PhoneCheck(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    return PhoneCheck(None, problem)


def normalise_phone(raw: str, *, regions: Iterable[str] = ("TW",)) -> str | None:
    """The E.164 form of an acceptable mobile number, or None."""
    return check_phone(raw, regions=regions).e164


def national_digits(e164: str) -> str:
    """The number as dialled at home: '+886912345678' -> '0912345678' (SMS gateways want it)."""
    number = phonenumbers.parse(e164)
    return re.sub(r"\D", "", phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL))


def mask_phone(e164: str) -> str:
    """A number shown to its owner without revealing it all: '+886912345678' -> '0912-***-678'."""
    try:
        number = phonenumbers.parse(e164)
    except NumberParseException:
        return "***"
    if phonenumbers.region_code_for_number(number) == "TW":
        digits = national_digits(e164)
        return f"{digits[:4]}-***-{digits[-3:]}"
    national = str(number.national_number)
    return f"+{number.country_code} ***-{national[-3:]}"


def mask_text(text: str, *, min_digits: int = 4) -> str:
    """'my phone is 0912-345-678' -> 'my phone is ***'; runs shorter than `min_digits`
    (a menu choice, '2小時內'; in logs, a line number) stay."""

    def _mask(m: re.Match[str]) -> str:
        return MASK if sum(ch.isdigit() for ch in m.group(0)) >= min_digits else m.group(0)

    return _DIGIT_RUN.sub(_mask, text)
