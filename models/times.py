"""Times of day as people type them: '20:00', '0730', '7am', '7:30 pm', 'noon', '早上七點',
'晚上8點半', '下午三點十五分'. One reading for every place that asks for a time (reminders,
podcast deliveries)."""

from __future__ import annotations

import re
import unicodedata

_CLOCK = re.compile(r"^([01]?\d|2[0-3])[:.]?([0-5]\d)$")
_EN = re.compile(r"^(\d{1,2})(?:[:.]([0-5]\d))?\s*(am|pm|a\.m\.|p\.m\.|o'?clock)?$")
_ZH = re.compile(
    r"^(凌晨|清晨|早上|上午|中午|下午|傍晚|晚上|半夜)?\s*"
    r"([0-9]{1,2}|[零〇一二兩三四五六七八九十]{1,3})\s*[點点時时]"
    r"\s*(半|一刻|三刻|(?:[0-9]{1,2}|[零〇一二三四五六七八九十]{1,3})\s*分?)?$"
)
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "兩": 2, "三": 3, "四": 4, "五": 5}
_ZH_DIGITS |= {"六": 6, "七": 7, "八": 8, "九": 9}
_AFTERNOON = {"下午", "傍晚", "晚上"}
_WORDS = {"noon": "12:00", "midday": "12:00", "midnight": "00:00", "中午": "12:00"}


def _zh_number(text: str) -> int | None:
    """'7' -> 7, '七' -> 7, '十' -> 10, '十五' -> 15, '二十' -> 20, '二十三' -> 23."""
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        value = (_ZH_DIGITS.get(tens, -99) if tens else 1) * 10
        value += _ZH_DIGITS.get(ones, -99) if ones else 0
        return value if value >= 0 else None
    if len(text) == 1 and text in _ZH_DIGITS:
        return _ZH_DIGITS[text]
    return None


def _fmt(hour: int, minute: int) -> str | None:
    if 0 <= hour <= 23 and 0 <= minute <= 59:
        return f"{hour:02d}:{minute:02d}"
    return None


def parse_time_of_day(text: str) -> str | None:
    """The time of day `text` names, as 'HH:MM' (24-hour); None when it names none."""
    cleaned = unicodedata.normalize("NFKC", text).strip().casefold().replace("：", ":")
    cleaned = " ".join(cleaned.split())
    if cleaned in _WORDS:
        return _WORDS[cleaned]
    if match := _CLOCK.match(cleaned):
        return _fmt(int(match.group(1)), int(match.group(2)))
    if match := _EN.match(cleaned):
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        suffix = (match.group(3) or "").replace(".", "")
        if suffix in ("am", "pm"):
            if not 1 <= hour <= 12:
                return None
            hour = hour % 12 + (12 if suffix == "pm" else 0)
        elif not suffix:
            return None  # a bare "7" is not a time (it may be a menu choice)
        return _fmt(hour, minute)
    if match := _ZH.match(cleaned.replace(" ", "")):
        part, hour_text, minute_text = match.groups()
        read = _zh_number(hour_text)
        if read is None:
            return None
        hour = read
        minute = 0
        if minute_text:
            minute_text = minute_text.rstrip("分")
            minute = {"半": 30, "一刻": 15, "三刻": 45}.get(minute_text, -1)
            if minute < 0:
                number = _zh_number(minute_text)
                if number is None:
                    return None
                minute = number
        if (part in _AFTERNOON and 1 <= hour <= 11) or (part == "中午" and hour in (1, 2)):
            hour += 12
        elif part in ("凌晨", "半夜") and hour == 12:
            hour = 0
        return _fmt(hour, minute)
    return None
