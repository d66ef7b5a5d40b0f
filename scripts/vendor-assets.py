"""Vendor the console's JavaScript from the npm registry, pinned and checked.

    python scripts/vendor-assets.py          # fetch what the lock file pins, verify, copy
    python scripts/vendor-assets.py --check  # verify the committed files against the lock
    python scripts/vendor-assets.py --pin htmx.org@2.0.11   # pin a new version (then fetch)

The lock file (admin/static/vendor/assets.lock.json) records, per package, the version,
the tarball URL and its sha512 integrity as the registry publishes it, and the sha256 of
every file copied. A tarball whose integrity differs from the lock is refused; so is a
package whose registry metadata disagrees with the lock. The console then needs no CDN.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "admin" / "static" / "vendor"
LOCK = VENDOR / "assets.lock.json"
REGISTRY = "https://registry.npmjs.org"
# Which files of each package the console uses (path in the tarball -> name in vendor/).
FILES = {
    "htmx.org": {"package/dist/htmx.min.js": "htmx.min.js", "package/LICENSE": "htmx.LICENSE"},
    "echarts": {
        "package/dist/echarts.min.js": "echarts.min.js",
        "package/LICENSE": "echarts.LICENSE",
    },
}


def _get(url: str) -> bytes:
    if not url.startswith(REGISTRY + "/"):
        raise SystemExit(f"refusing a URL outside the npm registry: {url}")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (registry only)
        return response.read()  # type: ignore[no-any-return]


def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _load() -> dict[str, dict[str, object]]:
    return json.loads(LOCK.read_text("utf-8")) if LOCK.exists() else {}  # type: ignore[no-any-return]


def _save(lock: dict[str, dict[str, object]]) -> None:
    LOCK.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", "utf-8")


def pin(spec: str) -> None:
    name, _, version = spec.rpartition("@")
    if name not in FILES or not version:
        raise SystemExit(f"give one of {sorted(FILES)} as NAME@VERSION")
    meta = json.loads(_get(f"{REGISTRY}/{name}/{version}"))
    lock = _load()
    lock[name] = {
        "version": meta["version"],
        "tarball": meta["dist"]["tarball"],
        "integrity": meta["dist"]["integrity"],
        "files": {},
    }
    _save(lock)
    print(f"pinned {name}@{meta['version']} ({meta['dist']['integrity'][:20]}...)")


def fetch() -> None:
    lock = _load()
    for name, entry in sorted(lock.items()):
        meta = json.loads(_get(f"{REGISTRY}/{name}/{entry['version']}"))
        if meta["dist"]["integrity"] != entry["integrity"]:
            raise SystemExit(f"{name}: the registry's integrity differs from the lock file")
        data = _get(str(entry["tarball"]))
        if _sri(data) != entry["integrity"]:
            raise SystemExit(f"{name}: tarball integrity mismatch, nothing copied")
        files: dict[str, str] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member, target in FILES[name].items():
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise SystemExit(f"{name}: {member} is not in the tarball")
                content = extracted.read()
                (VENDOR / target).write_bytes(content)
                files[target] = hashlib.sha256(content).hexdigest()
        entry["files"] = files
        print(f"{name}@{entry['version']}: {', '.join(sorted(files))}")
    _save(lock)


def check() -> int:
    bad = 0
    for name, entry in sorted(_load().items()):
        for target, digest in dict(entry["files"]).items():  # type: ignore[call-overload]
            path = VENDOR / target
            if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                print(f"{name}: {target} differs from the lock file", file=sys.stderr)
                bad += 1
    print("vendored assets match the lock file" if not bad else f"{bad} file(s) differ")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--pin", metavar="NAME@VERSION")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(check())
    if args.pin:
        pin(args.pin)
    fetch()


if __name__ == "__main__":
    main()
