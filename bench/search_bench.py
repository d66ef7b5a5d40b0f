"""Course search benchmark: build time, resident memory, query latency, against a plain scan.

Catalogs: the bundled demo, ../shared/data/courses.json when present, and a generated
100,000-course catalog (titles recombined from the real ones). Queries: the relevance set
(tests/search_relevance.yaml) plus a few broad words. The baseline is what the portal does:
a substring scan of the titles, shortest title first.
Run: make bench  (or .venv/bin/python bench/search_bench.py [--size 100000] [--rounds 5])
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

from models.search.evaluate import DEFAULT_SET, evaluate, load_cases
from models.search.index import SearchIndex
from models.search.normalise import fold
from models.search.service import DEMO_CATALOG

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "courses.json"
BROAD = ["健康", "安全", "法", "管理", "教育訓練", "運動", "AI", "人權", "採購", "English"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def generate(base: list[dict[str, Any]], size: int, seed: int = 42) -> list[dict[str, Any]]:
    """`size` plausible courses: halves of two real titles joined, sometimes a year prefix."""
    rng = random.Random(seed)
    pieces = [re.split(r"[-_：:（(「【\s]", r["title"], maxsplit=1) for r in base]
    out = []
    for i in range(size):
        a, b = rng.choice(base), rng.choice(pieces)
        head = re.split(r"[-_：:（(「【\s]", a["title"], maxsplit=1)[0]
        tail = b[-1] if len(b) > 1 else b[0][len(b[0]) // 2 :]
        year = f"{rng.randint(105, 115)}年度" if rng.random() < 0.3 else ""
        out.append(
            {
                "id": f"gen-{i:06d}",
                "title": f"{year}{head}-{tail}"[:120],
                "category": a["category"],
                "hours": rng.choice([0.5, 1, 1.5, 2, 3]),
                "audience": a.get("audience", "public"),
                "tags": a.get("tags", []),
                "popularity": rng.randint(0, 500),
            }
        )
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


def scan(titles: list[str], query: str, limit: int = 10) -> list[int]:
    q = fold(query).replace(" ", "")
    found = [d for d, t in enumerate(titles) if q in t]
    return sorted(found, key=lambda d: len(titles[d]))[:limit]


def run(
    name: str, records: list[dict[str, Any]], queries: list[str], rounds: int
) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    index = SearchIndex.from_records(records)
    build = time.perf_counter() - started
    gc.collect()
    rss = rss_mb() - before
    index.search("warm up")
    engine: list[float] = []
    for _ in range(rounds):
        for q in queries:
            t = time.perf_counter()
            index.search(q, limit=10)
            engine.append((time.perf_counter() - t) * 1000)
    titles = [fold(r["title"]).replace(" ", "") for r in records]
    baseline: list[float] = []
    for _ in range(rounds):
        for q in queries:
            t = time.perf_counter()
            scan(titles, q)
            baseline.append((time.perf_counter() - t) * 1000)
    return {
        "catalog": name,
        "courses": len(index),
        "build_s": build,
        "rss_mb": rss,
        "p50": pct(engine, 0.5),
        "p95": pct(engine, 0.95),
        "scan_p50": pct(baseline, 0.5),
        "scan_p95": pct(baseline, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cases = load_cases(DEFAULT_SET)
    queries = [c.query for c in cases] + BROAD
    demo = json.loads(DEMO_CATALOG.read_text("utf-8"))
    catalogs: list[tuple[str, list[dict[str, Any]]]] = [("bundled demo", demo)]
    base = demo
    if SHARED.exists():
        base = json.loads(SHARED.read_text("utf-8"))
        catalogs.append(("shared courses.json", base))
    catalogs.append((f"generated {args.size:,}", generate(base, args.size)))
    rows = [run(name, recs, queries, args.rounds) for name, recs in catalogs]
    print(f"{len(queries)} queries x {args.rounds} rounds; times in ms; ratio = engine / scan\n")
    head = (
        f"{'catalog':<22}{'courses':>9}{'build s':>9}{'RSS MB':>8}{'p50':>7}{'p95':>7}"
        f"{'scan p50':>10}{'scan p95':>10}{'ratio p50':>10}{'ratio p95':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['catalog']:<22}{r['courses']:>9,}{r['build_s']:>9.2f}{r['rss_mb']:>8.0f}"
            f"{r['p50']:>7.2f}{r['p95']:>7.2f}{r['scan_p50']:>10.2f}{r['scan_p95']:>10.2f}"
            f"{r['p50'] / r['scan_p50']:>10.1f}{r['p95'] / r['scan_p95']:>10.1f}"
        )
    # What the extra milliseconds buy: quality on the judged set, engine versus plain scan.
    index = SearchIndex.from_records(demo)
    quality = evaluate(index, cases)
    titles = [fold(r["title"]).replace(" ", "") for r in demo]
    ids = [r["id"] for r in demo]
    hits = [any(ids[d] in c.relevant for d in scan(titles, c.query, 5)) for c in cases]
    zero = [not scan(titles, c.query, 1) for c in cases]
    print(
        f"\nquality on the demo catalog ({len(cases)} judged queries): engine hit@5 "
        f"{quality.hit_at_5:.3f}, zero-result {quality.zero_rate:.3f}; substring scan hit@5 "
        f"{statistics.mean(hits):.3f}, zero-result {statistics.mean(zero):.3f}"
    )


if __name__ == "__main__":
    main()
