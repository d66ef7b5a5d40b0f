"""Text folding shared by the index and the queries, and Simplified -> Taiwan conversion.

Titles are folded but never converted: OpenCC's Taiwan phrase table rewrites genuine
Traditional words (社區 -> 社群, 支持 -> 支援, 智能障礙 -> 智慧障礙), so converting titles
would corrupt them. Queries are converted at phrase level (s2twp: 软件 -> 軟體, 信息 -> 資訊)
and, when the script is ambiguous, searched both as typed and as converted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import opencc
from pypinyin import Style, pinyin

# Variant characters that Taiwanese titles use interchangeably; folded on both sides.
_VARIANTS = str.maketrans(
    {"台": "臺", "裏": "裡", "爲": "為", "綫": "線", "衆": "眾", "峯": "峰", "羣": "群", "着": "著"}
)
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NON_WORD = re.compile(rf"[^0-9a-z{_CJK}\u00c0-\u024f]+")
_RUNS = re.compile(rf"[{_CJK}]+|[0-9a-z\u00c0-\u024f]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")


@lru_cache(maxsize=1)
def _converters() -> tuple[opencc.OpenCC, opencc.OpenCC]:
    return opencc.OpenCC("s2twp"), opencc.OpenCC("s2t")


def fold(text: str) -> str:
    """NFKC (full-width -> half-width), casefold, variant characters, punctuation -> space."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_VARIANTS)
    return " ".join(_NON_WORD.sub(" ", text).split())


@lru_cache(maxsize=65536)
def readings(ch: str) -> frozenset[str]:
    """Toneless pinyin readings of one CJK character (every reading of a heteronym: 長 is
    chang and zhang); empty for anything else. Homophone typos from the input method
    (資案 for 資安) share them."""
    if not _CJK_CHAR.match(ch):
        return frozenset()
    return frozenset(
        r for r in pinyin(ch, style=Style.NORMAL, heteronym=True, errors="ignore")[0] if r
    )


def compact(folded: str) -> str:
    return folded.replace(" ", "")


def runs(folded: str) -> list[str]:
    """Maximal runs of CJK characters or of Latin letters/digits ('生成式ai應用' -> 3 runs)."""
    return _RUNS.findall(folded)


def is_cjk(run: str) -> bool:
    return bool(_CJK_CHAR.match(run))


def grams(folded: str) -> list[str]:
    """Index terms: CJK bigrams (a lone CJK character stays a unigram) and Latin words."""
    out: list[str] = []
    for run in runs(folded):
        if is_cjk(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(run)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class QueryForms:
    """A query as typed (folded) and, when it differs, its Taiwan-Traditional conversion."""

    raw: str
    primary: str  # the form searched first and logged as "normalised"
    secondary: str | None  # searched too, slightly lower, when the script is ambiguous
    converted: bool  # the query contained Simplified-only characters


def query_forms(raw: str) -> QueryForms:
    """Fold a query; convert it to Taiwan Traditional at phrase level when that changes it."""
    typed = fold(raw)
    s2twp, s2t = _converters()
    taiwan = fold(s2twp.convert(unicodedata.normalize("NFKC", raw)))
    if taiwan == typed:
        return QueryForms(raw=raw, primary=typed, secondary=None, converted=False)
    # Characters that exist only in Simplified script settle it; otherwise (信息, 人工智能,
    # 社區: shared characters) the typed form may well be what a Traditional title says.
    simplified = fold(s2t.convert(typed)) != typed
    if simplified:
        return QueryForms(raw=raw, primary=taiwan, secondary=typed, converted=True)
    return QueryForms(raw=raw, primary=typed, secondary=taiwan, converted=False)
