"""An in-memory course search index: CJK bigrams + Latin words, dictionary expansion, typos.

A query becomes a list of *concepts* (a dictionary entry such as 資安 -> 資訊安全/資通安全,
or a literal run of the query), each with alternative forms. A course's score is the sum
over concepts of the best alternative's match: 1.0 for the whole form inside the title,
0.8 x idf-weighted bigram coverage for a partial match (typos, missing characters), 0.5
for the form inside the category or tags. Boosts for an exact or prefix title match, a
small penalty for long titles, then popularity, title length and id break ties.
Everything is immutable after build, so a rebuilt index is swapped in atomically.
"""

from __future__ import annotations

import bisect
import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from models.search.lexicon import MAX_WORDS, by_word, cedict_words, gloss_key
from models.search.normalise import (
    QueryForms,
    compact,
    fold,
    grams,
    is_cjk,
    query_forms,
    readings,
    runs,
)
from models.search.synonyms import (
    Dictionary,
    base_forms,
    english_words,
    load_dictionary,
    number_forms,
)

# Score of a whole alternative form found inside the title / only in category or tags.
PHRASE = 1.0
PARTIAL = 0.8
META = 0.5
EXPANSION = 0.95  # a dictionary expansion ranks just below the words as typed
CORRECTION = 0.85  # a typo correction ranks below both
SECONDARY = 0.97  # the other script reading of an ambiguous query
RARITY_FLOOR = 0.5  # weight of a query word as common as the commonest of several
WEAK = 0.6  # and of a weak word beside others (公務人員 in 公務人員退休制度)
LEXICON = 0.9  # a CC-CEDICT translation of a word the dictionary lacks, below its own forms


@dataclass(frozen=True)
class CourseDoc:
    """What the index needs of one course."""

    id: str
    title: str
    category: str
    hours: float
    audience: str = "public"
    tags: tuple[str, ...] = ()
    popularity: int = 0


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    audience: str | None = None  # "public" or "civil_servant"
    min_hours: float | None = None
    max_hours: float | None = None

    def empty(self) -> bool:
        return self == Filters()


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    category: str
    hours: float
    audience: str
    score: float


@dataclass(frozen=True)
class SearchResult:
    query: str
    normalised: str
    total: int
    offset: int
    limit: int
    hits: list[Hit]
    corrected: str | None = None  # what we searched for instead of a typo ("did you mean")
    # The query as understood, to echo back: Traditional script, typos corrected, filler
    # ("我想找一門關於...的課程") dropped, at most 20 characters; "" when nothing is left.
    understood: str = ""
    suggestions: list[str] = field(default_factory=list)  # other words to try
    related_categories: list[str] = field(default_factory=list)
    # Facets of every match (not only this page), when asked for: what a filter would keep.
    categories: dict[str, int] = field(default_factory=dict)  # category -> matches
    within_hour: int = 0  # matches of one hour or less
    civil_servant: int = 0  # matches for civil servants only
    also_total: int = 0  # matches the `also` filters would keep instead (same scoring pass)

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.hits) < self.total


@dataclass(frozen=True)
class _Alt:
    text: str  # folded, compact
    weight: float
    slots: tuple[tuple[tuple[str, float], ...], ...]  # per query gram: options (gram, factor)


# Single characters that are left over from a sentence once the dictionary's stopwords are
# gone ("請問有性別平等的線上課程嗎" -> 有, 嗎): dropped unless they are the whole query.
FILLER = frozenset("的嗎呢吧啊呀喔了有和與跟及或我你您請想要找學上一些個門堂教補")
PARTICLES = "的嗎呢吧啊呀喔"  # and at the end of a longer run

_LATIN = re.compile(r"[0-9a-z\u00c0-\u024f]")
_WORD = re.compile(r"[0-9a-z\u00c0-\u024f]+")


def _is_latin(ch: str) -> bool:
    return bool(_LATIN.match(ch))


def _understood(reading: list[str], raw: str, folded: str, limit: int = 20) -> str:
    """The concepts as one short phrase: Latin words in the case they were typed (AI), and
    words that were typed apart kept apart."""
    typed = {w.casefold(): w for w in re.findall(r"[0-9A-Za-z\u00c0-\u024f]+", raw)}
    out = ""
    prev = ""
    for part in reading:
        shown = re.sub(r"[0-9a-z\u00c0-\u024f]+", lambda m: typed.get(m.group(0), m.group(0)), part)
        if out and (_is_latin(out[-1]) or _is_latin(shown[0]) or f"{prev} {part}" in folded):
            out += " "
        out += shown
        prev = part
    return out if len(out) <= limit else out[: limit - 1] + "…"


class SearchIndex:
    """Immutable search index over active courses; build a new one to reload."""

    def __init__(
        self,
        docs: Iterable[CourseDoc],
        dictionary: Dictionary | None = None,
        lexicon: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.dictionary = dictionary or load_dictionary()
        # Sorted by id, so that a document's number orders ties the same way on every build.
        self.docs: list[CourseDoc] = sorted(docs, key=lambda doc: doc.id)
        self._titles: list[str] = []
        self._meta: list[str] = []
        self._postings: dict[str, list[int]] = {}
        self._meta_postings: dict[str, list[int]] = {}
        latin: set[str] = set()
        self.category_counts: Counter[str] = Counter()
        tag_df: Counter[str] = Counter()
        self._by_id: dict[str, int] = {}
        self._by_category: dict[str, list[int]] = {}
        self._by_tag: dict[str, list[int]] = {}
        for d, doc in enumerate(self.docs):
            self._by_id[doc.id] = d
            self._by_category.setdefault(doc.category, []).append(d)
            for tag in set(doc.tags):
                self._by_tag.setdefault(tag, []).append(d)
            folded = fold(doc.title)
            self._titles.append(compact(folded))
            for g in grams(folded):
                self._postings.setdefault(g, []).append(d)
            for run in runs(folded):
                if not is_cjk(run):
                    latin.add(run)
            meta_parts = [fold(doc.category), *(fold(t) for t in doc.tags)]
            self._meta.append("|".join(compact(m) for m in meta_parts))
            for g in set(grams(" ".join(meta_parts))):
                self._meta_postings.setdefault(g, []).append(d)
            self.category_counts[doc.category] += 1
            tag_df.update(set(doc.tags))
        self._n = max(len(self.docs), 1)
        top_pop = max((doc.popularity for doc in self.docs), default=0) + 1
        # Ranking prior: a small penalty for long titles (a focused title is the better match),
        # and a smaller bonus for popularity.
        self._prior = [
            -min(0.003 * len(t), 0.15) + 0.0001 * doc.popularity / top_pop
            for t, doc in zip(self._titles, self.docs, strict=True)
        ]
        self._by_title = sorted(range(len(self._titles)), key=self._titles.__getitem__)
        self._sorted_titles = [self._titles[d] for d in self._by_title]
        self._latin_sorted = sorted(latin)
        self._latin = latin
        # Typo candidates by first letter: a misspelling keeps the first letter far more often
        # than it changes it, and a closest word that starts otherwise is mostly another word
        # ('expression' is within ratio 80 of 'depression', 'death' of 'earth').
        self._latin_fix: dict[str, list[str]] = {}
        self._english = english_words()  # a known English word is never a typo
        for word in sorted(latin | self.dictionary.english_words):
            self._latin_fix.setdefault(word[0], []).append(word)
        # "Did you mean" candidates: dictionary words, categories and tags that find something.
        vocab: dict[str, str] = {}
        for key in self.dictionary.terms:
            pref = self.dictionary.preferred.get(key, key)
            if self._findable(key):
                vocab.setdefault(key, pref)
        for name in [*self.category_counts, *(t for t, n in tag_df.items() if n >= 2)]:
            key = compact(fold(name))
            if 2 <= len(key) <= 12:
                vocab.setdefault(key, name)
        self._vocab_keys = list(vocab)
        self._vocab = vocab
        self._tag_df = tag_df
        # Homophones: every character of the titles, categories and tags by its toneless
        # readings, so that a typed character can be swapped for one that sounds the same.
        sounds: dict[str, set[str]] = {}
        for gram in [*self._postings, *self._meta_postings]:
            for ch in gram:
                for r in readings(ch):
                    sounds.setdefault(r, set()).add(ch)
        self._by_sound = {r: tuple(sorted(chars)) for r, chars in sounds.items()}
        # The fallback lexicon (CC-CEDICT read backwards), kept to the Chinese words that some
        # title holds whole: English gloss -> those words.
        found: dict[str, list[str]] = {}
        words = cedict_words() if lexicon is None else by_word(lexicon)
        for word, glosses in words.items():
            # The first bigram's postings first: most words are in no title (a dict lookup).
            if word[:2] in self._postings and self._whole(word):
                for gloss in glosses:
                    found.setdefault(gloss, []).append(word)
        self._lexicon = {gloss: tuple(ws) for gloss, ws in found.items()}
        self._lexicon_words = frozenset(g for g in self._lexicon if " " not in g)

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        dictionary: Dictionary | None = None,
        lexicon: Mapping[str, tuple[str, ...]] | None = None,
    ) -> SearchIndex:
        """From course mappings (database records or catalog JSON objects)."""
        return cls(
            (
                CourseDoc(
                    id=str(r["id"]),
                    title=str(r["title"]),
                    category=str(r["category"]),
                    hours=float(r["hours"]),
                    audience=str(r.get("audience") or "public"),
                    tags=tuple(str(t) for t in r.get("tags") or ()),
                    popularity=int(r.get("popularity") or 0),
                )
                for r in records
                if not r.get("retired")
            ),
            dictionary,
            lexicon,
        )

    def __len__(self) -> int:
        return len(self.docs)

    def _starting_with(self, prefix: str) -> list[int]:
        """Documents whose compact title starts with `prefix` (a bisect, not a scan)."""
        if not prefix:
            return []
        lo = bisect.bisect_left(self._sorted_titles, prefix)
        hi = bisect.bisect_left(self._sorted_titles, prefix + "\U0010ffff")
        return self._by_title[lo:hi]

    # -- query parsing ----------------------------------------------------------------------
    def _idf(self, gram: str) -> float | None:
        p = self._postings.get(gram)
        return math.log(1 + self._n / len(p)) if p else None

    def _findable(self, text: str) -> bool:
        gs = grams(text)
        return bool(gs) and all(g in self._postings or g in self._meta_postings for g in gs)

    def _known(self, gram: str) -> bool:
        return gram in self._postings or gram in self._meta_postings

    def _homophones(self, run: str, *, limit: int = 2) -> list[str]:
        """The run with one character swapped for a homophone so that every bigram is in
        some title, category or tag (資案 -> 資安, 行政中粒 -> 行政中立, 長找 -> 長照): what
        a Zhuyin or Pinyin input method gives for a wrong pick. Most common words first."""
        n = len(run)
        unknown = [not self._known(run[i : i + 2]) for i in range(n - 1)]
        found: dict[str, int] = {}
        for i in range(n):
            # Only a character next to an unknown bigram can be the wrong one.
            if not ((i > 0 and unknown[i - 1]) or (i < n - 1 and unknown[i])):
                continue
            for sound in readings(run[i]):
                for ch in self._by_sound.get(sound, ()):
                    if ch == run[i]:
                        continue
                    fixed = f"{run[:i]}{ch}{run[i + 1 :]}"
                    if fixed in found:
                        continue
                    left = fixed[i - 1 : i + 1] if i > 0 else ""
                    right = fixed[i : i + 2] if i < n - 1 else ""
                    changed = [g for g in (left, right) if g]
                    if all(self._known(g) for g in changed) and all(
                        not u or self._known(fixed[j : j + 2]) for j, u in enumerate(unknown)
                    ):
                        # How common the new bigrams are: a real word beats a rare pairing.
                        found[fixed] = min(
                            len(self._postings.get(g, ())) + len(self._meta_postings.get(g, ()))
                            for g in changed
                        )
        return heapq.nlargest(limit, found, key=lambda f: (found[f], f))

    def _whole(self, text: str) -> bool:
        """Whether some title holds `text` as it stands (a check of the rarest bigram's
        postings, not a scan)."""
        gs = grams(text)
        postings = [self._postings.get(g) for g in gs]
        if not gs or not all(postings):
            return False
        rarest = min(postings, key=len)  # type: ignore[arg-type]
        return any(text in self._titles[d] for d in rarest or ())

    def _pieces(self, run: str) -> list[str]:
        """A CJK run that no title holds, cut into words that titles do hold, two or more
        characters each ('退休制度' -> 退休, 制度; '內部控制制度' -> 內部控制, 制度); else []."""
        if len(run) < 4 or len(run) > 16 or self._whole(run):
            return []

        def cut(text: str) -> list[str] | None:
            if self._whole(text):
                return [text]
            # The longest first piece that titles hold, then the rest the same way.
            for i in range(len(text) - 2, 1, -1):
                head = text[:i]
                if self._whole(head):
                    rest = cut(text[i:])
                    if rest is not None:
                        return [head, *rest]
            return None

        pieces = cut(run)
        # More than three pieces is a sentence rather than words side by side: bigram
        # coverage of the whole run serves it better than requiring most of five words.
        return pieces if pieces is not None and 1 < len(pieces) <= 3 else []

    def _fix_latin(self, folded: str) -> tuple[str, bool]:
        """Replace unknown English words by the closest known one ('infomation'). A word
        that is English already is kept, even when no title or dictionary entry has it: the
        closest known word is then another word, not its spelling ('teach' is not 'tech',
        'paint' not 'pain'). A plural or adjective whose base (four letters or more) the index
        knows becomes the base ('crimes' -> 'crime', 'environmental' -> 'environment'), which
        is no correction."""
        changed = False
        d = self.dictionary

        def known(word: str) -> bool:
            return word in self._latin or word in d.english_words or word in d.terms

        def repl(m: re.Match[str]) -> str:
            nonlocal changed
            word = m.group(0)
            if len(word) < 4 or word.isdigit() or known(word) or word in d.stopwords:
                return word
            # The same word in another form: a plural, or the adjective of a noun the index
            # knows (environmental -> environment, cultural -> culture, biological -> biology).
            for base in base_forms(word):
                if known(base):
                    return base
            if word in self._english or word in self._lexicon_words:
                return word  # a word, or one the lexicon reads (_lexicon_phrase)
            best = process.extractOne(
                word, self._latin_fix.get(word[0], ()), scorer=fuzz.ratio, score_cutoff=80
            )
            if best is None:
                return word
            changed = True
            return str(best[0])

        return re.sub(r"[0-9a-z\u00c0-\u024f]+", repl, folded), changed

    def _alt(self, text: str, weight: float) -> _Alt:
        slots: list[tuple[tuple[str, float], ...]] = []
        for g in grams(text):
            options = [(g, 1.0)]
            if not is_cjk(g) and len(g) >= 3:
                # A Latin word also matches longer words it begins ("secur" -> "security").
                i = bisect.bisect_left(self._latin_sorted, g)
                while i < len(self._latin_sorted) and len(options) < 6:
                    w = self._latin_sorted[i]
                    if not w.startswith(g):
                        break
                    if w != g:
                        options.append((w, 0.9))
                    i += 1
            slots.append(tuple(options))
        return _Alt(text=compact(text), weight=weight, slots=tuple(slots))

    def _concepts(
        self, folded: str, *, cut: bool = True
    ) -> tuple[list[list[_Alt]], list[str], bool, list[bool], list[bool]]:
        """Split a folded query into concepts; also the reading with typos corrected, which
        concepts are weak words (公務人員, 演練, 制度: the dictionary's `weak`), and which
        are guesses of the fallback lexicon."""
        d = self.dictionary
        concepts: list[list[_Alt]] = []
        weak: list[bool] = []
        guessed: list[bool] = []
        reading: list[str] = []
        seen: set[str] = set()
        buf: list[str] = []
        fixed = False

        def add(key: str, alts: list[_Alt], shown: str, *, guess: bool = False) -> None:
            if key not in seen and alts:
                seen.add(key)
                concepts.append(alts)
                reading.append(shown)
                weak.append(key in d.weak)
                guessed.append(guess)

        def flush() -> None:
            nonlocal fixed
            text = "".join(buf)
            buf.clear()
            for run in runs(text):
                if not is_cjk(run) and len(run) < 2 and not run.isdigit():
                    continue
                if is_cjk(run) and len(run) == 1 and run in FILLER and len(folded) > 1:
                    continue  # 有, 的, 嗎 left over from a sentence ("請問有...的課程嗎")
                if is_cjk(run) and len(run) > 1:
                    # A particle at the end of a run ("...保健知識的" before 相關課程).
                    run = run.rstrip(PARTICLES) or run
                alts = [self._alt(run, 1.0)]
                shown = run
                if is_cjk(run) and len(run) >= 2 and not self._findable(run):
                    # A homophone typo (資案, 行政中粒): the word that sounds the same joins
                    # in, with its dictionary forms (資安 -> 資訊安全, 資通安全 ...).
                    for word in self._homophones(run):
                        forms = d.terms.get(word, (word,))
                        # The word itself first, its dictionary forms just below.
                        alts.extend(
                            self._alt(f, CORRECTION * (1.0 if f == word else EXPANSION))
                            for f in forms
                        )
                        if shown == run:
                            shown, fixed = d.preferred.get(word, word), True
                pieces = self._pieces(run) if cut and is_cjk(run) and shown == run else []
                if pieces:
                    # Words side by side that no title joins (退休制度, 內部控制制度): each
                    # is its own concept, so the topic can lead and a weak word can follow.
                    for piece in pieces:
                        add(piece, [self._alt(piece, 1.0)], piece)
                    continue
                if is_cjk(run) and len(run) >= 3 and shown == run and not self._findable(run):
                    # Another CJK typo (資訊安圈): the closest dictionary word or tag joins in.
                    for key, _, _ in process.extract(
                        run, self._vocab_keys, scorer=fuzz.ratio, limit=2, score_cutoff=60
                    ):
                        alts.extend(self._alt(f, CORRECTION) for f in d.terms.get(key, (key,)))
                        if shown == run:
                            shown, fixed = self._vocab[key], True
                add(run, alts, shown)

        i, n = 0, len(folded)
        while i < n:
            if folded[i] == " ":
                buf.append(" ")
                i += 1
                continue
            # A phrase entry typed with its first word inflected ('working from home') wins
            # over a shorter entry that the typed word is ('working' alone).
            lead = self._inflected_phrase(folded, i)
            for size in range(min(d.max_key, n - i), lead[1] if lead else 0, -1):
                piece = folded[i : i + size]
                if piece not in d.terms and piece not in d.stopwords:
                    continue
                # English keys match whole words only ("ai" is not in "email").
                if _is_latin(piece[0]) and i > 0 and _is_latin(folded[i - 1]):
                    continue
                if _is_latin(piece[-1]) and i + size < n and _is_latin(folded[i + size]):
                    continue
                flush()
                forms = d.terms.get(piece)
                if forms is not None:
                    second = d.indirect.get(piece, frozenset())
                    alts = [
                        self._alt(f, 1.0 if j == 0 else EXPANSION**2 if f in second else EXPANSION)
                        for j, f in enumerate(forms)
                    ]
                    add(piece, alts, piece)
                i += size
                break
            else:
                if lead is None:
                    found = self._lexicon_phrase(folded, i)
                    if found is None:
                        buf.append(folded[i])
                        i += 1
                        continue
                    # English the dictionary does not know ("pap smear", "gamma ray"): the
                    # words as typed (a Latin title), and the lexicon's words below them.
                    flush()
                    typed, size, words = found
                    alts = [self._alt(typed, 1.0), *(self._alt(w, LEXICON) for w in words)]
                    add(typed, alts, typed, guess=True)
                    i += size
                    continue
                flush()
                key, size = lead
                second = d.indirect.get(key, frozenset())
                alts = [
                    self._alt(f, 1.0 if j == 0 else EXPANSION**2 if f in second else EXPANSION)
                    for j, f in enumerate(d.terms[key])
                ]
                add(key, alts, key)
                i += size
        flush()
        return concepts, reading, fixed, weak, guessed

    def _lexicon_phrase(self, folded: str, i: int) -> tuple[str, int, tuple[str, ...]] | None:
        """The longest run of English words from `i` (up to three) that the dictionary does
        not know and the lexicon does, in the typed form or with its last word in the other
        number or its base (bursts -> burst): what was typed, its length, the lexicon's
        words."""
        if not _is_latin(folded[i]) or (i > 0 and _is_latin(folded[i - 1])):
            return None
        d = self.dictionary
        words: list[str] = []
        ends: list[int] = []
        pos = i
        while len(words) < MAX_WORDS and (m := _WORD.match(folded, pos)) is not None:
            word = m.group(0)
            if word.isdigit() or word in d.terms or word in d.stopwords:
                break
            words.append(word)
            ends.append(m.end())
            if folded[m.end() : m.end() + 1] != " ":
                break  # the words of a phrase stand one space apart
            pos = m.end() + 1
        for k in range(len(words), 0, -1):
            head, last = words[: k - 1], words[k - 1]
            if k == 1 and len(last) < 3:
                continue
            for form in (last, *number_forms(last), *base_forms(last)):
                hit = self._lexicon.get(gloss_key(" ".join([*head, form])))
                if hit:
                    return folded[i : ends[k - 1]], ends[k - 1] - i, hit
        return None

    def _inflected_phrase(self, folded: str, i: int) -> tuple[str, int] | None:
        """A phrase entry typed with its first word in another form: 'working from home' is
        the entry 'work from home', 'managing stress' 'manage stress'. The entry, and how many
        typed characters it spans."""
        if not _is_latin(folded[i]) or (i > 0 and _is_latin(folded[i - 1])):
            return None
        m = _WORD.match(folded, i)
        if m is None or m.end() >= len(folded) or folded[m.end()] != " ":
            return None
        word, rest = m.group(0), folded[m.end() :]
        d = self.dictionary
        for base in base_forms(word):
            text = base + rest
            # Longest first, and more than the first word: the word alone is no phrase.
            for size in range(min(d.max_key, len(text)), len(base) + 1, -1):
                if text[:size] in d.terms and (size == len(text) or not _is_latin(text[size])):
                    return text[:size], size - len(base) + len(word)
        return None

    # -- scoring ----------------------------------------------------------------------------
    def _score_alt(self, alt: _Alt) -> dict[int, float]:
        out: dict[int, float] = {}
        if not alt.slots:
            return out
        titles = self._titles
        if len(alt.slots) == 1 and len(alt.text) == 1 and is_cjk(alt.text):
            # A lone character has no bigram: a plain scan, rare and cheap enough.
            ch = alt.text
            for d, title in enumerate(titles):
                if ch in title:
                    out[d] = alt.weight * PARTIAL
            return out
        weights = [self._idf(slot[0][0]) for slot in alt.slots]
        seen = [w for w in weights if w is not None]
        if not seen:
            return out
        # An unknown gram (a typo) weighs like an average one, so one typo cannot sink a match.
        fill = sum(seen) / len(seen)
        ws = [w if w is not None else fill for w in weights]
        total = sum(ws)
        need = total * (0.999 if len(alt.slots) <= 2 else 0.6)
        if len(alt.slots) == 1 and len(alt.slots[0]) == 1:
            # One bigram or word: every posting contains the whole form (the common case).
            out = dict.fromkeys(self._postings.get(alt.slots[0][0][0], ()), alt.weight * PHRASE)
        else:
            # MaxScore: slots whose weights together stay under `need` cannot qualify a course
            # alone, so candidates come only from the other ("essential") slots' postings.
            order = sorted(range(len(ws)), key=ws.__getitem__)
            low = 0.0
            essential: list[int] = []
            for i in order:
                if low + ws[i] < need and not essential:
                    low += ws[i]
                else:
                    essential.append(i)
            candidates: set[int] = set()
            for i in essential:
                for g, _ in alt.slots[i]:
                    candidates.update(self._postings.get(g, ()))
            slots = list(zip(alt.slots, ws, strict=True))
            for d in candidates:
                t = titles[d]
                s = 0.0
                for slot, w in slots:
                    best = 0.0
                    for g, f in slot:
                        # Bigrams and words are substrings of the compact title.
                        if f > best and g in t:
                            best = f
                    s += w * best
                if s < need:
                    continue
                out[d] = alt.weight * (PHRASE if alt.text in t else PARTIAL * min(s / total, 1.0))
        # The form inside the category or the tags: relevant, ranked below title matches.
        meta_score = alt.weight * META
        if len(alt.slots) == 1 and len(alt.slots[0]) == 1:
            merged = dict.fromkeys(self._meta_postings.get(alt.slots[0][0][0], ()), meta_score)
            merged.update(out)
            return merged
        rarest = min(
            (self._meta_postings.get(slot[0][0], []) for slot in alt.slots), key=len, default=[]
        )
        for d in rarest:
            if d not in out and alt.text in self._meta[d]:
                out[d] = meta_score
        return out

    def _score_form(self, folded: str) -> tuple[dict[int, float], str | None, int, list[str]]:
        concepts, reading, fixed, weak, guessed = self._concepts(folded)
        if len(concepts) > 3:
            # Cutting runs into words is for two or three words side by side; a sentence of
            # more is better served by bigram coverage of its runs as they stand.
            concepts, reading, fixed, weak, guessed = self._concepts(folded, cut=False)
        scored_concepts: list[dict[int, float]] = []
        scored_weak: list[bool] = []
        scored_guess: list[bool] = []
        for alts, is_weak, guess in zip(concepts, weak, guessed, strict=True):
            best: dict[int, float] = {}
            for alt in alts:
                scored = self._score_alt(alt)
                if not best:
                    best = scored  # one form, or the first: no merge needed
                    continue
                for d, s in scored.items():
                    if best.get(d, 0.0) < s:
                        best[d] = s
            if best:
                scored_concepts.append(best)
                scored_weak.append(is_weak)
                scored_guess.append(guess)
        shown = " ".join(reading) if fixed else None
        if len(scored_concepts) <= 1:
            # One concept: every score that got here is a match (the weakest is above 0.4).
            return (scored_concepts[0] if scored_concepts else {}), shown, len(concepts), reading
        # Several concepts: the rarer ones weigh more (淨零 over 政策 in 淨零排放政策, 退休
        # over 公務人員): from 0.5 for a concept as common as the commonest up to 1.0.
        # Counted on title matches: a category match (0.5) is not what makes a word common.
        idf = [
            math.log(1 + self._n / (sum(1 for s in best.values() if s > META) or len(best)))
            for best in scored_concepts
        ]
        top = max(idf)
        weights = [
            (RARITY_FLOOR + (1 - RARITY_FLOOR) * i / top) * (WEAK if w else 1.0)
            for i, w in zip(idf, scored_weak, strict=True)
        ]
        # The lexicon's guesses beside words the dictionary knows only add to the courses
        # that those words find: a sentence's filler ("anything" 什麼, "act" 扮演) that the
        # dictionary leaves out on purpose must not find courses of its own.
        sure = [not g for g in scored_guess] if not all(scored_guess) else [True] * len(weights)
        totals: dict[int, float] = {}
        for best, w, counts in zip(scored_concepts, weights, sure, strict=True):
            if counts:
                for d, s in best.items():
                    totals[d] = totals.get(d, 0.0) + s * w
        # A course must match a good part of them, not one word of five. Words that match
        # no course at all ("how to use chatgpt") do not count against it.
        need = 0.4 * sum(w for w, counts in zip(weights, sure, strict=True) if counts)
        found = {d: s for d, s in totals.items() if s >= need}
        for best, w, counts in zip(scored_concepts, weights, sure, strict=True):
            if not counts:
                for d in found.keys() & best.keys():
                    found[d] += best[d] * w
        return found, shown, len(concepts), reading

    def _passes(self, d: int, f: Filters) -> bool:
        doc = self.docs[d]
        return (
            (f.category is None or doc.category == f.category)
            and (f.audience is None or doc.audience == f.audience)
            and (f.min_hours is None or doc.hours >= f.min_hours)
            and (f.max_hours is None or doc.hours <= f.max_hours)
        )

    def search(
        self,
        query: str,
        *,
        filters: Filters | None = None,
        offset: int = 0,
        limit: int = 10,
        facets: bool = False,
        also: Filters | None = None,
    ) -> SearchResult:
        """Ranked courses for a typed query, with paging, suggestions and related categories.

        With `facets`, the result also counts every match by category, by "one hour or
        less" and by "civil servants only" (what a chat filter button would keep). With
        `also`, it counts the matches those filters would keep (e.g. the courses a citizen
        may not see yet) without scoring the query a second time.
        """
        filters = filters or Filters()
        offset, limit = max(offset, 0), max(limit, 1)
        forms: QueryForms = query_forms(query)
        primary, latin_fixed = self._fix_latin(forms.primary)
        scores, fixed_reading, n_concepts, reading = self._score_form(primary)
        if forms.secondary is not None:
            other, _, _, _ = self._score_form(self._fix_latin(forms.secondary)[0])
            for d, s in other.items():
                s *= SECONDARY
                if scores.get(d, 0.0) < s:
                    scores[d] = s
        also_total = sum(1 for d in scores if self._passes(d, also)) if also is not None else 0
        if not filters.empty():
            scores = {d: s for d, s in scores.items() if self._passes(d, filters)}
        qc = compact(primary)
        titles = self._titles
        prior = self._prior
        final = {d: sc + prior[d] for d, sc in scores.items()}
        # Whole-query boosts: the title is the query, starts with it, or holds it contiguously.
        for d in self._starting_with(qc):
            if d in final:
                final[d] += 2.0 if titles[d] == qc else 0.5
        if n_concepts > 1:
            for d in final:
                t = titles[d]
                if qc in t and not t.startswith(qc):
                    final[d] += 0.3
        want = offset + limit
        # The prior already holds the tie-breaks (shorter title, popularity); the margin
        # keeps exact ties at the page boundary ordered by id below.
        pool = heapq.nlargest(want + 32, final, key=final.__getitem__)
        pool.sort(key=lambda d: (-round(final[d], 4), -self.docs[d].popularity, self.docs[d].id))
        top = [(final[d], d) for d in pool[offset:want]]
        hits = [
            Hit(
                id=self.docs[d].id,
                title=self.docs[d].title,
                category=self.docs[d].category,
                hours=self.docs[d].hours,
                audience=self.docs[d].audience,
                score=round(sc, 4),
            )
            for sc, d in top
        ]
        corrected = fixed_reading or (primary if latin_fixed else None)
        suggestions: list[str] = []
        if not final:
            suggestions = self.did_you_mean(primary)
        related = self._related(hits, suggestions)
        return SearchResult(
            query=query,
            normalised=primary,
            total=len(final),
            offset=offset,
            limit=limit,
            hits=hits,
            corrected=corrected,
            understood=_understood(reading, query, primary),
            suggestions=suggestions,
            related_categories=related,
            also_total=also_total,
            **(self._facets(final) if facets else {}),
        )

    def _facets(self, matches: Iterable[int]) -> dict[str, Any]:
        categories: Counter[str] = Counter()
        within_hour = civil = 0
        for d in matches:
            doc = self.docs[d]
            categories[doc.category] += 1
            within_hour += doc.hours <= 1.0
            civil += doc.audience == "civil_servant"
        return {
            "categories": dict(categories.most_common()),
            "within_hour": within_hour,
            "civil_servant": civil,
        }

    def _hit(self, d: int, score: float) -> Hit:
        doc = self.docs[d]
        return Hit(
            id=doc.id,
            title=doc.title,
            category=doc.category,
            hours=doc.hours,
            audience=doc.audience,
            score=round(score, 4),
        )

    # -- without words ----------------------------------------------------------------------
    def get(self, course_id: str) -> CourseDoc | None:
        d = self._by_id.get(course_id)
        return None if d is None else self.docs[d]

    def listing(
        self, *, filters: Filters | None = None, offset: int = 0, limit: int = 10
    ) -> SearchResult:
        """Courses that pass the filters, most popular first (a filter typed without words)."""
        filters = filters or Filters()
        offset, limit = max(offset, 0), max(limit, 1)
        pool: Iterable[int] = (
            self._by_category.get(filters.category, [])
            if filters.category is not None
            else range(len(self.docs))
        )
        matches = [d for d in pool if self._passes(d, filters)]
        matches.sort(key=lambda d: (-self.docs[d].popularity, self.docs[d].id))
        hits = [self._hit(d, 0.0) for d in matches[offset : offset + limit]]
        return SearchResult(
            query="",
            normalised="",
            total=len(matches),
            offset=offset,
            limit=limit,
            hits=hits,
            related_categories=self._related(hits, []),
            **self._facets(matches),
        )

    def similar(
        self,
        course_id: str,
        *,
        filters: Filters | None = None,
        exclude: Iterable[str] = (),
        limit: int = 5,
    ) -> list[Hit]:
        """Courses like this one: shared title bigrams and informative tags (idf-weighted),
        the same category. Never the course itself, nor any id in `exclude`.

        A course in the same category with no shared words still qualifies (ranked below
        those that share words); a course in another category needs a good part of the
        title's weight in common.
        """
        src = self._by_id.get(course_id)
        if src is None:
            return []
        filters = filters or Filters()
        doc = self.docs[src]
        skip = {src, *(self._by_id[i] for i in exclude if i in self._by_id)}
        scores: dict[int, float] = {}
        # Title: idf-weighted share of the source title's distinct bigrams and words; digits
        # (years, session numbers) say nothing about the topic.
        weights: dict[str, float] = {}
        for g in set(grams(fold(doc.title))):
            idf = self._idf(g)
            if idf is not None and not g.isdigit():
                weights[g] = idf
        total = sum(weights.values()) or 1.0
        n = len(self.docs)
        for g, w in weights.items():
            postings = self._postings.get(g, ())
            if len(postings) > max(50, n // 5):
                continue  # too common to find anything alike on its own ("課程", "年度")
            for d in postings:
                scores[d] = scores.get(d, 0.0) + w / total
        # Tags: rare ones only (a platform name or "法" on many courses says nothing); a
        # course sharing all of them qualifies even from another category.
        tag_weights = {
            t: math.log(1 + n / self._tag_df[t])
            for t in set(doc.tags)
            if 0 < self._tag_df[t] <= max(2, n // 50)
        }
        tag_total = sum(tag_weights.values()) or 1.0
        for t, w in tag_weights.items():
            for d in self._by_tag.get(t, ()):
                scores[d] = scores.get(d, 0.0) + 0.4 * w / tag_total
        same = set(self._by_category.get(doc.category, ()))
        ranked: dict[int, float] = {}
        for d, sc in scores.items():
            if d in same:
                ranked[d] = sc + 0.25
            elif sc >= 0.35:
                ranked[d] = sc
        for d in same:
            ranked.setdefault(d, 0.25)
        candidates = [d for d in ranked if d not in skip and self._passes(d, filters)]
        top = heapq.nsmallest(
            limit,
            candidates,
            key=lambda d: (-round(ranked[d], 4), -self.docs[d].popularity, self.docs[d].id),
        )
        return [self._hit(d, ranked[d]) for d in top]

    def matching(
        self,
        *,
        categories: Iterable[str] = (),
        tags: Iterable[str] = (),
        course_ids: Iterable[str] = (),
        title_keywords: Iterable[str] = (),
        filters: Filters | None = None,
        exclude: Iterable[str] = (),
        limit: int = 5,
    ) -> list[Hit]:
        """Courses in any of these categories, with any of these tags or ids, or whose title
        holds one of the keywords; most popular first, then shorter (a mandatory-hours
        requirement's courses)."""
        filters = filters or Filters()
        skip = {self._by_id[i] for i in exclude if i in self._by_id}
        found: set[int] = set()
        for c in categories:
            found.update(self._by_category.get(c, ()))
        for t in tags:
            found.update(self._by_tag.get(t, ()))
        keys = [k for k in (compact(fold(k)) for k in title_keywords) if k]
        if keys:
            found.update(d for d, t in enumerate(self._titles) if any(k in t for k in keys))
        found.update(self._by_id[i] for i in course_ids if i in self._by_id)
        candidates = [d for d in found if d not in skip and self._passes(d, filters)]
        top = heapq.nsmallest(
            limit,
            candidates,
            key=lambda d: (-self.docs[d].popularity, self.docs[d].hours, self.docs[d].id),
        )
        return [self._hit(d, 0.0) for d in top]

    # -- when little is found ---------------------------------------------------------------
    def did_you_mean(self, folded: str, *, limit: int = 3) -> list[str]:
        """Close dictionary words, categories or tags that do find courses."""
        q = compact(folded)
        if not q:
            return []
        out: list[str] = []
        for key, _, _ in process.extract(
            q, self._vocab_keys, scorer=fuzz.WRatio, limit=limit * 4, score_cutoff=50
        ):
            shown = self._vocab[key]
            if shown not in out and compact(fold(shown)) != q:
                out.append(shown)
            if len(out) >= limit:
                break
        return out

    def _related(self, hits: list[Hit], suggestions: list[str]) -> list[str]:
        related: list[str] = []
        top = Counter(h.category for h in hits).most_common(1)
        if not top and suggestions:
            found = self.search(suggestions[0], limit=5)
            top = Counter(h.category for h in found.hits).most_common(1)
        if top:
            cat = top[0][0]
            related = [cat, *self.dictionary.related.get(cat, ())]
        if not hits:
            # Never an empty answer: with nothing else to offer, the largest categories.
            related.extend(c for c, _ in self.category_counts.most_common(4))
        seen: list[str] = []
        for c in related:
            if c in self.category_counts and c not in seen:
                seen.append(c)
        return seen[:4]
