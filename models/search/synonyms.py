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
# political -> politics, biological -> biology), the -ing noun of a word (budgeting ->
# budget, rescuing -> rescue), and the noun of the verb it is (managing -> management,
# developing -> development, preventing -> prevention). A form is used only where the word
# has no entry of its own (marketing, nursing and planning have theirs).
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
    ("ing", "ement"),
    ("ing", "ment"),
    ("ing", "ion"),
    ("ing", "ation"),
)


def base_forms(word: str) -> list[str]:
    """What an English word may be a plural, adjective or -ing form of, four letters or more
    each."""
    return [
        base
        for suffix, repl in ENGLISH_FORMS
        if word.endswith(suffix) and len(base := word[: -len(suffix)] + repl) >= 4
    ]


# Plurals that are another word than their singular (customs is not a custom, securities are
# not security), and -ics words, which are no plurals (physics, ethics, mechanics).
NOT_PLURALS = frozenset(
    "airs arms customs damages fines forces futures glasses goods greens grounds holdings"  # noqa: SIM905
    " humanities interests letters manners means minutes papers premises quarters remains"
    " sands savings securities spirits waters woods works".split()
)
_SIBILANT = ("s", "x", "z", "ch", "sh")


def number_forms(word: str) -> list[str]:
    """The word's other number, by the regular English rules: teachers -> teacher, teacher
    -> teachers, policy -> policies, tax -> taxes; only real words of english_words.txt."""
    forms: list[str] = []
    if word in NOT_PLURALS or word.endswith("ics"):
        return forms
    if word.endswith("ies"):
        forms.append(f"{word[:-3]}y")
    elif word.endswith("es") and word[:-2].endswith(_SIBILANT):
        forms.append(word[:-2])
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        forms.append(word[:-1])
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        forms.append(f"{word[:-1]}ies")
    elif word.endswith(_SIBILANT):
        forms.append(f"{word}es")
    elif not word.endswith("s"):
        forms.append(f"{word}s")
    known = english_words()
    return [w for w in forms if len(w) >= 4 and w in known and w not in NOT_PLURALS]


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
    latin_words: set[str] = set()
    english_keys: list[str] = []
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
                latin_words.update(k.split())
                english_keys.append(k)
    stop = frozenset(fold(str(w)) for w in doc.get("stopwords") or [])
    # An entry in the other number means what the entry means where no entry of its own says
    # otherwise: teacher (teachers), worker (workers), working condition (working conditions).
    for key in english_keys:
        words = key.split()
        for j, word in enumerate(words):
            for other in number_forms(word):
                variant = " ".join([*words[:j], other, *words[j + 1 :]])
                if variant not in terms and variant not in stop:
                    terms[variant] = [variant, *terms[key][1:]]
                    preferred.setdefault(variant, preferred.get(key, key))
                    indirect[variant] = indirect.get(key, set())
    # A word of an English phrase that is no entry alone ('environmental' of 'environmental
    # education') means what its base means when it stands alone ('environmental ethics').
    for word in sorted(latin_words):
        if word not in terms:
            base = next((b for b in base_forms(word) if b in terms and b in latin_words), None)
            if base is not None:
                terms[word] = [word, *terms[base][1:]]
                preferred.setdefault(word, preferred.get(base, base))
                indirect[word] = indirect.get(base, set())
    related = {
        str(cat): tuple(str(c) for c in cats)
        for cat, cats in (doc.get("related_categories") or {}).items()
    }
    weak = frozenset(fold(str(w)) for w in doc.get("weak") or [])
    return Dictionary(
        terms={k: tuple(v) for k, v in terms.items()},
        preferred=preferred,
        stopwords=stop,
        weak=weak,
        indirect={k: frozenset(v) for k, v in indirect.items() if v},
        related=related,
        english_words=frozenset(latin_words),
        max_key=max((len(k) for k in [*terms, *stop]), default=1),
    )
