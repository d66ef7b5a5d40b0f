"""Judge the search relevance sets from their written queries, never from the engine.

tests/search_queries.yaml holds every query with its kind and `judged_by`: the title words
that make a course relevant (folded: case, width, 台/臺). This writes, for each catalog, the
courses whose title holds one of those words:

- tests/search_relevance.yaml          the bundled demo catalog (the tests' default set)
- tests/search_relevance_catalog.yaml  ../shared/data/courses.json, when present

A query with no relevant course in a catalog is left out of that catalog's set.
Run: .venv/bin/python -m bench.judge_relevance
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from models.search.normalise import compact, fold
from models.search.service import DEMO_CATALOG

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / "tests" / "search_queries.yaml"
SHARED = ROOT.parent / "shared" / "data" / "courses.json"
DEMO_SET = ROOT / "tests" / "search_relevance.yaml"
CATALOG_SET = ROOT / "tests" / "search_relevance_catalog.yaml"

HEADER = """\
# Relevance set for course search, judged against {catalog}.
# Written by bench/judge_relevance.py from tests/search_queries.yaml (edit that, then rerun).
# For each query, `relevant` lists every course a person typing it would accept; `judged_by`
# records the judgement: a course is relevant when its title contains one of those words
# (folded: case, width, 台/臺). The judgement never looks at the search engine. Measured by
# models.search.evaluate (hit@5, MRR, zero rate).
"""


def judge(queries: list[dict[str, Any]], catalog: list[dict[str, Any]]) -> list[dict[str, Any]]:
    titles = [
        (str(r["id"]), compact(fold(str(r["title"])))) for r in catalog if not r.get("retired")
    ]
    out = []
    for q in queries:
        words = [compact(fold(str(w))) for w in q["judged_by"]]
        relevant = sorted(cid for cid, t in titles if any(w and w in t for w in words))
        if relevant:
            out.append({**q, "relevant": relevant})
    return out


def write(path: Path, cases: list[dict[str, Any]], catalog: str) -> None:
    body = yaml.safe_dump(
        cases, allow_unicode=True, width=100, sort_keys=False, default_flow_style=None
    )
    path.write_text(HEADER.format(catalog=catalog) + body, encoding="utf-8")


def main() -> None:
    queries = yaml.safe_load(QUERIES.read_text("utf-8"))
    demo = judge(queries, json.loads(DEMO_CATALOG.read_text("utf-8")))
    write(DEMO_SET, demo, "the bundled demo catalog\n# (models/data/demo_courses.json)")
    print(f"{DEMO_SET.name}: {len(demo)} of {len(queries)} queries")
    if SHARED.exists():
        real = judge(queries, json.loads(SHARED.read_text("utf-8")))
        write(CATALOG_SET, real, "the real catalog\n# (../shared/data/courses.json, 4,048 titles)")
        print(f"{CATALOG_SET.name}: {len(real)} of {len(queries)} queries")


if __name__ == "__main__":
    main()
