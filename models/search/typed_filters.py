"""Filters typed in chat next to the words: "資安 1小時內", "AI under 1 hour", "只看法律".

`split_filters` takes them out of the text and returns the words left to search plus a
`Filters`. Only unambiguous phrases count (a number with an hour unit and a bound, a
category name after 只看 / "category:", "civil servants only"), so an ordinary query is
never mistaken for a filter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import replace

from models.search.index import Filters

_ZH_NUMBERS = {"半": 0.5, "一": 1, "兩": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6}
_EN_NUMBERS = {"half an": 0.5, "half a": 0.5, "an": 1, "a": 1, "one": 1, "two": 2, "three": 3}
_NUM = r"(\d+(?:\.\d+)?|[半一兩二三四五六])"
_EN_NUM = r"(\d+(?:\.\d+)?|half an?|an?|one|two|three)"
_ZH_HOUR = r"\s*(?:個)?\s*(?:小時|鐘頭|hrs?|h)"
_EN_HOUR = r"\s*(?:hours?|hrs?|h)\b"

# (pattern, bound): "max" keeps courses of at most N hours, "min" at least N hours.
_HOURS: list[tuple[re.Pattern[str], str, float]] = [
    (re.compile(rf"(?i)(?:只看)?\s*{_NUM}{_ZH_HOUR}\s*(?:以內|之內|內|以下)"), "max", 1.0),
    (re.compile(rf"(?i)(?:只看)?\s*{_NUM}\s*分鐘\s*(?:以內|之內|內|以下)"), "max", 1 / 60),
    (re.compile(rf"(?i)(?:只看)?\s*{_NUM}{_ZH_HOUR}\s*以上"), "min", 1.0),
    (
        re.compile(
            rf"(?i)\b(?:under|within|less than|at most|up to|max|<=?)\s*{_EN_NUM}{_EN_HOUR}"
        ),
        "max",
        1.0,
    ),
    (re.compile(rf"(?i)\b{_EN_NUM}{_EN_HOUR}\s*(?:or less|or shorter|max)\b"), "max", 1.0),
    (
        re.compile(
            rf"(?i)\b(?:under|within|less than|at most|up to)\s*{_EN_NUM}\s*min(?:ute)?s?\b"
        ),
        "max",
        1 / 60,
    ),
    (re.compile(rf"(?i)\b(?:over|at least|more than|>=?)\s*{_EN_NUM}{_EN_HOUR}"), "min", 1.0),
    (re.compile(rf"(?i)\b{_EN_NUM}{_EN_HOUR}\s*(?:or more|or longer|plus)\b"), "min", 1.0),
]
_CIVIL = re.compile(
    r"(?i)限公務(?:人)?員|公務(?:人)?員(?:專屬|限定)|\b(?:for )?civil servants? only\b"
    r"|\bonly for civil servants?\b"
)
_CATEGORY_MARK = re.compile(r"(?i)(?:只看|類別\s*[:：]|分類\s*[:：]|\bcategory\s*:)\s*")


def _number(raw: str) -> float:
    raw = raw.strip()
    if raw in _ZH_NUMBERS:
        return float(_ZH_NUMBERS[raw])
    if raw.lower() in _EN_NUMBERS:
        return float(_EN_NUMBERS[raw.lower()])
    return float(raw)


def split_filters(text: str, *, categories: Iterable[str] = ()) -> tuple[str, Filters]:
    """The words to search and the filters typed with them.

    `categories` are the catalog's category names; one counts only after 只看 / "類別:" /
    "category:" (a bare category name is a search word, which finds the category anyway).
    """
    work = unicodedata.normalize("NFKC", text)
    filters = Filters()
    for pattern, bound, unit in _HOURS:
        m = pattern.search(work)
        if m is None:
            continue
        hours = round(_number(m.group(1)) * unit, 4)
        if hours <= 0:
            continue
        if bound == "max" and filters.max_hours is None:
            filters = replace(filters, max_hours=hours)
        elif bound == "min" and filters.min_hours is None:
            filters = replace(filters, min_hours=hours)
        else:
            continue
        work = work[: m.start()] + " " + work[m.end() :]
    m = _CIVIL.search(work)
    if m is not None:
        filters = replace(filters, audience="civil_servant")
        work = work[: m.start()] + " " + work[m.end() :]
    names = sorted({c for c in categories if c}, key=len, reverse=True)
    for m in _CATEGORY_MARK.finditer(work):
        rest = work[m.end() :]
        name = next((c for c in names if rest.casefold().startswith(c.casefold())), None)
        if name is not None:
            filters = replace(filters, category=name)
            work = work[: m.start()] + " " + rest[len(name) :]
            break
    # A leftover 只看 / "only" with nothing after it is no search word.
    if filters.empty():
        return " ".join(text.split()), filters
    words = [w for w in work.split() if w.casefold() not in ("只看", "only")]
    return " ".join(words), filters
