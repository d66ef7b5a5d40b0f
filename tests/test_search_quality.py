"""Search quality on the judged relevance set must not drop below what we measured."""

from __future__ import annotations

import json

from models.search import SearchIndex, demo_catalog_path
from models.search.evaluate import DEFAULT_SET, evaluate, load_cases, report

# Measured 2026-11 (docs/SEARCH.md): hit@5 0.989, MRR 0.984, zero-result rate 0.011.
MIN_HIT_AT_5 = 0.97
MIN_MRR = 0.96
MAX_ZERO_RATE = 0.025


def test_relevance_set_is_judged_against_the_demo_catalog() -> None:
    cases = load_cases(DEFAULT_SET)
    ids = {r["id"] for r in json.loads(demo_catalog_path().read_text("utf-8"))}
    assert len(cases) >= 60
    assert {c.kind for c in cases} >= {
        "abbreviation",
        "simplified",
        "typo",
        "english",
        "partial",
        "multi",
    }
    for case in cases:
        assert case.relevant <= ids, case.query


def test_quality_stays_at_or_above_the_recorded_figures() -> None:
    index = SearchIndex.from_records(json.loads(demo_catalog_path().read_text("utf-8")))
    quality = evaluate(index, load_cases(DEFAULT_SET))
    summary = report(quality)
    assert quality.hit_at_5 >= MIN_HIT_AT_5, summary
    assert quality.mrr >= MIN_MRR, summary
    assert quality.zero_rate <= MAX_ZERO_RATE, summary


def test_the_evaluation_can_fail() -> None:
    """An index that knows no synonyms scores visibly lower: the metric measures something."""
    from models.search.synonyms import Dictionary

    records = json.loads(demo_catalog_path().read_text("utf-8"))
    bare = evaluate(SearchIndex.from_records(records, Dictionary()), load_cases(DEFAULT_SET))
    assert bare.hit_at_5 < MIN_HIT_AT_5
    assert bare.zero_rate > MAX_ZERO_RATE
