"""`make bench`: every benchmark in turn, each printing its own table.

Each runs in its own process so that one's memory and threads do not colour another's
figures. Pass names to run some: python -m bench webhook search
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = {
    "search": ["bench.search_bench"],
    "webhook": ["bench.webhook_bench"],
    "dispatcher": ["bench.dispatcher_bench"],
    "reminders": ["bench.reminders_bench"],
    "campaigns": ["bench.campaign_bench"],
    "dashboards": ["bench.dashboards_bench"],
    "broadcasts": ["bench.broadcast_bench"],
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for name in chosen:
        module = BENCHES[name][0]
        if not (ROOT / (module.replace(".", "/") + ".py")).exists():
            print(f"\n== {name}: not present in this checkout", file=sys.stderr)
            continue
        print(f"\n== {name} ({module})", flush=True)
        failed |= subprocess.run([sys.executable, "-m", module], cwd=ROOT, check=False).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
