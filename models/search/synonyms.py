"""The editable search dictionary (synonyms.yaml): groups, English, the civil-service
glossary, mainland usage, stopwords."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from models.search.normalise import fold

DEFAULT_PATH = Path(__file__).with_name("synonyms.yaml")
ENGLISH_WORDS = Path(__file__).with_name("english_words.txt")


# English endings that leave the word the same (suffix, what replaces it), tried in order:
# plurals, the adjective of a noun (environmental -> environment, cultural -> culture,
# political -> politics, biological -> biology), and the -ing noun of a word (budgeting ->
# budget, rescuing -> rescue). A form is used only where the word has no entry of its own
# (marketing, nursing and planning have theirs).
ENGLISH_FORMS = (
    ("ies", "y"),
    ("es", ""),
    ("s", ""),
    ("ical", "ics"),
    ("ical", "y"),
    ("al", ""),
    ("al", "e"),
    ("ing", ""),
    ("ing", "e"),
)


def base_forms(word: str) -> list[str]:
    """What an English word may be a plural, adjective or -ing form of, four letters or more
    each."""
    return [
        base
        for suffix, repl in ENGLISH_FORMS
        if word.endswith(suffix) and len(base := word[: -len(suffix)] + repl) >= 4
    ]


@cache
def english_words(path: Path = ENGLISH_WORDS) -> frozenset[str]:
    """Known English words (SCOWL size 35, four letters or more): a typed word among them is
    a word, not a typo, whether or not the dictionary or a title has it."""
    lines = path.read_text("utf-8").splitlines()
    return frozenset(w for w in lines if w and not w.startswith("#"))


@dataclass(frozen=True)
class Dictionary:
    # folded key -> every form to search for it (the key itself first)
    terms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # folded key -> the preferred (Traditional) form, for "did you mean"
    preferred: dict[str, str] = field(default_factory=dict)
    stopwords: frozenset[str] = frozenset()
    weak: frozenset[str] = frozenset()  # words that weigh less beside others
    # folded key -> forms that came with a group an English or glossary value belongs to
    # (gender mainstreaming -> 性別主流化 directly, 性別平等 through its group): ranked lower
    indirect: dict[str, frozenset[str]] = field(default_factory=dict)
    related: dict[str, tuple[str, ...]] = field(default_factory=dict)
    english_words: frozenset[str] = frozenset()  # every Latin word of the English keys
    max_key: int = 1

    def lookup(self, key: str) -> tuple[str, ...] | None:
        return self.terms.get(key)


def _add(terms: dict[str, list[str]], key: str, values: list[str]) -> None:
    forms = terms.setdefault(key, [key])
    for v in values:
        if v and v not in forms:
            forms.append(v)


def load_dictionary(path: Path = DEFAULT_PATH) -> Dictionary:
    """Read and fold the dictionary; raises ValueError on a malformed file."""
    doc = yaml.safe_load(path.read_text("utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    terms: dict[str, list[str]] = {}
    preferred: dict[str, str] = {}
    for group in doc.get("groups") or []:
        if not isinstance(group, list) or len(group) < 2:
            raise ValueError(f"{path}: a group needs two or more words: {group!r}")
        folded = [fold(str(w)) for w in group]
        for member in folded:
            _add(terms, member, folded)
            preferred.setdefault(member, str(group[0]))
    english_words: set[str] = set()
    indirect: dict[str, set[str]] = {}
    for section in ("english", "glossary", "mainland"):
        for key, values in (doc.get(section) or {}).items():
            if not isinstance(values, list):
                raise ValueError(f"{path}: {section}.{key} must be a list")
            k = fold(str(key).replace("-", " "))
            expanded: list[str] = []
            direct = {k, *(fold(str(v)) for v in values)}
            for v in values:
                fv = fold(str(v))
                # An expansion that is itself a group member brings its whole group.
                expanded.extend(terms.get(fv, [fv]))
            _add(terms, k, expanded)
            indirect.setdefault(k, set()).update(f for f in expanded if f not in direct)
            preferred.setdefault(k, str(values[0]) if values else k)
            if section == "english":
                english_words.update(k.split())
    # A word of an English phrase that is no entry alone ('environmental' of 'environmental
    # education') means what its base means when it stands alone ('environmental ethics').
    for word in sorted(english_words):
        if word not in terms:
            base = next((b for b in base_forms(word) if b in terms and b in english_words), None)
            if base is not None:
                terms[word] = [word, *terms[base][1:]]
                preferred.setdefault(word, preferred.get(base, base))
                indirect[word] = indirect.get(base, set())
    related = {
        str(cat): tuple(str(c) for c in cats)
        for cat, cats in (doc.get("related_categories") or {}).items()
    }
    stop = frozenset(fold(str(w)) for w in doc.get("stopwords") or [])
    weak = frozenset(fold(str(w)) for w in doc.get("weak") or [])
    return Dictionary(
        terms={k: tuple(v) for k, v in terms.items()},
        preferred=preferred,
        stopwords=stop,
        weak=weak,
        indirect={k: frozenset(v) for k, v in indirect.items() if v},
        related=related,
        english_words=frozenset(english_words),
        max_key=max((len(k) for k in [*terms, *stop]), default=1),
    )
