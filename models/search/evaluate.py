"""Search quality against a judged relevance set: hit@5, MRR and the zero-result rate.

Run: .venv/bin/python -m models.search.evaluate [tests/search_relevance.yaml] [--catalog FILE]
or `--real` for tests/search_relevance_catalog.yaml on ../shared/data/courses.json (the
`edoor search-quality [--real]` command calls `main` the same way).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models.search.index import SearchIndex
from models.search.service import DEMO_CATALOG

DEFAULT_SET = Path(__file__).resolve().parents[2] / "tests" / "search_relevance.yaml"
CATALOG_SET = DEFAULT_SET.with_name("search_relevance_catalog.yaml")
SHARED_CATALOG = Path(__file__).resolve().parents[3] / "shared" / "data" / "courses.json"
DEPTH = 10  # MRR counts the first relevant course within the first page and a half


@dataclass(frozen=True)
class Case:
    query: str
    relevant: frozenset[str]
    kind: str = ""


@dataclass(frozen=True)
class CaseResult:
    case: Case
    rank: int | None  # 1-based rank of the first relevant course within DEPTH
    total: int
    top: tuple[str, ...]


@dataclass
class Quality:
    hit_at_5: float
    mrr: float
    zero_rate: float
    cases: list[CaseResult] = field(default_factory=list)

    def by_kind(self) -> dict[str, tuple[int, float, float]]:
        """kind -> (queries, hit@5, MRR)."""
        groups: dict[str, list[CaseResult]] = defaultdict(list)
        for r in self.cases:
            groups[r.case.kind].append(r)
        return {
            k: (
                len(rs),
                sum(1 for r in rs if r.rank is not None and r.rank <= 5) / len(rs),
                sum(1 / r.rank for r in rs if r.rank is not None) / len(rs),
            )
            for k, rs in sorted(groups.items())
        }


def load_cases(path: Path = DEFAULT_SET) -> list[Case]:
    doc = yaml.safe_load(path.read_text("utf-8"))
    cases = [
        Case(query=str(c["query"]), relevant=frozenset(c["relevant"]), kind=str(c.get("kind", "")))
        for c in doc
    ]
    if any(not c.relevant for c in cases):
        raise ValueError("every query in the relevance set needs at least one relevant course")
    return cases


def evaluate(index: SearchIndex, cases: list[Case]) -> Quality:
    """Run every query once and score the ranking."""
    results: list[CaseResult] = []
    for case in cases:
        found = index.search(case.query, limit=DEPTH)
        ids = [h.id for h in found.hits]
        rank = next((i for i, cid in enumerate(ids, 1) if cid in case.relevant), None)
        results.append(CaseResult(case=case, rank=rank, total=found.total, top=tuple(ids)))
    n = max(len(results), 1)
    return Quality(
        hit_at_5=sum(1 for r in results if r.rank is not None and r.rank <= 5) / n,
        mrr=sum(1 / r.rank for r in results if r.rank is not None) / n,
        zero_rate=sum(1 for r in results if r.total == 0) / n,
        cases=results,
    )


def report(quality: Quality, *, verbose: bool = False) -> str:
    lines = [
        f"queries {len(quality.cases)}  hit@5 {quality.hit_at_5:.3f}  "
        f"MRR {quality.mrr:.3f}  zero-result rate {quality.zero_rate:.3f}",
        "",
        f"{'kind':<14}{'queries':>8}{'hit@5':>8}{'MRR':>8}",
    ]
    for kind, (count, hit, mrr) in quality.by_kind().items():
        lines.append(f"{kind:<14}{count:>8}{hit:>8.3f}{mrr:>8.3f}")
    misses = [r for r in quality.cases if r.rank is None or r.rank > 5]
    if misses or verbose:
        lines.append("")
        for r in quality.cases if verbose else misses:
            lines.append(f"  {r.case.query!r}: rank {r.rank}, {r.total} results")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Search quality: hit@5, MRR, zero-result rate")
    parser.add_argument("relevance", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--real", action="store_true", help="the real-catalog set on ../shared/data/courses.json"
    )
    args = parser.parse_args(argv)
    if args.real:
        if not SHARED_CATALOG.is_file():
            sys.stderr.write(f"{SHARED_CATALOG} is not on this machine\n")
            return 2
        args.relevance, args.catalog = CATALOG_SET, SHARED_CATALOG
    index = SearchIndex.from_records(json.loads(args.catalog.read_text("utf-8")))
    quality = evaluate(index, load_cases(args.relevance))
    sys.stdout.write(report(quality, verbose=args.verbose) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
