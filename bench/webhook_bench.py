"""Signed LINE webhook events against the real app, and in the same run two baselines
served the same way (a plain FastAPI endpoint; a bare HMAC + JSON + one-insert endpoint).

Each server is one uvicorn process; wrk drives it with 64 connections and pre-signed bodies,
each with its own webhookEventId, and a 2-second timeout (LINE's budget): wrk counts any
answer slower than that as a timeout. Run: python -m bench.webhook_bench [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-line-channel-secret-0123456789"
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
CONNECTIONS = 64

LUA = r"""
local bodies, sigs, n, i = {}, {}, 0, 0
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local sig, body = line:match("^(%S+) (.*)$")
  n = n + 1; sigs[n] = sig; bodies[n] = body
end
local thread_offset = 0
setup = function(thread) thread_offset = thread_offset + 1; thread:set("off", thread_offset) end
init = function() i = tonumber(os.getenv("BENCH_START")) + (off or 1) * 50000 end
request = function()
  i = i + 1
  local k = (i % n) + 1
  return wrk.format("POST", "/webhooks/line",
    {["Content-Type"] = "application/json", ["X-Line-Signature"] = sigs[k]}, bodies[k])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_bodies(path: Path, count: int) -> None:
    """Signed single-event bodies, each with its own event id (no deduplication shortcut)."""
    with path.open("w") as out:
        for n in range(count):
            event = {
                "type": "message",
                "mode": "active",
                "timestamp": 1767600300555,
                "source": {"type": "user", "userId": f"U{n % 5000:032x}"},
                "webhookEventId": uuid.uuid4().hex[:26].upper(),
                "deliveryContext": {"isRedelivery": False},
                "replyToken": uuid.uuid4().hex,
                "message": {"type": "text", "id": str(n), "quoteToken": "q", "text": "說明"},
            }
            body = json.dumps(
                {"destination": "U" + "0" * 32, "events": [event]},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            sig = base64.b64encode(
                hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
            ).decode()
            out.write(f"{sig} {body}\n")


@dataclass
class Result:
    name: str
    rps: float
    p50: float
    p99: float
    max_ms: float
    timeouts: int
    errors: int
    non2xx: int
    processed_rps: float | None = None  # edoor: events fully answered per second, drain included


def parse_ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return float("nan")
    number, unit = float(m.group(1)), m.group(2)
    return number * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


_slices = iter(range(0, 10**9, 100_000))


def run_wrk(url: str, seconds: int, bodies: Path) -> Result:
    """One wrk run; every run (and thread) starts at its own slice of the bodies."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(LUA)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "2s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODIES": str(bodies), "BENCH_START": str(next(_slices))},
        check=True,
    ).stdout
    script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"\s+(50|99)%\s+(\S+)", out))
    max_ms = parse_ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    sock = re.search(r"timeout (\d+)", out)
    errs = re.search(r"connect (\d+), read (\d+), write (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(
        name="",
        rps=rps,
        p50=parse_ms(lat.get("50", "nan")),
        p99=parse_ms(lat.get("99", "nan")),
        max_ms=max_ms,
        timeouts=int(sock.group(1)) if sock else 0,
        errors=sum(map(int, errs.groups())) if errs else 0,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
    )


class Server:
    """One uvicorn process on a free port."""

    def __init__(self, target: str, env: dict[str, str], *, factory: bool = True) -> None:
        self.port = free_port()
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if factory:
            args.append("--factory")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self) -> None:
        """Until the port answers an HTTP request (any status)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/", timeout=1)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server on {self.port} exited") from None
                time.sleep(0.1)
        raise RuntimeError(f"server on {self.port} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


async def fresh_pg_database() -> str:
    name = f"edoor_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def database_url(backend: str, workdir: Path, label: str) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / (label + '.db')}", None
    name = asyncio.run(fresh_pg_database())
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[
        0
    ] + "/" + name, name


async def wait_processed(url: str, limit: float = 180.0) -> int:
    """Wait until every recorded event is answered; returns how many the last run added."""
    from sqlalchemy import func, select

    from models.db import create_engine
    from models.inbound import InboundEvent

    engine = create_engine(url)
    seen = _processed_before.get(url, 0)
    try:
        deadline = time.monotonic() + limit
        while True:
            async with engine.connect() as conn:
                total = int(
                    (await conn.execute(select(func.count()).select_from(InboundEvent))).scalar()
                )
                open_ = int(
                    (
                        await conn.execute(
                            select(func.count())
                            .select_from(InboundEvent)
                            .where(InboundEvent.status.in_(["pending", "processing", "answering"]))
                        )
                    ).scalar()
                )
            if open_ == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    _processed_before[url] = total
    return total - seen


_processed_before: dict[str, int] = {}


def migrate(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "cli", "migrate"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
    )


def bench_backend(backend: str, seconds: int, bodies: Path, workdir: Path) -> list[Result]:
    fake = Server("bench.webhook_servers:fake_line", {})
    results: list[Result] = []
    created: list[str] = []
    try:
        fake.wait()
        for name, target, mode in (
            ("plain FastAPI", "bench.webhook_servers:plain", ""),
            ("bare HMAC+JSON+insert", "bench.webhook_servers:bare", ""),
            ("edoor /webhooks/line", "app:create_app", "inline"),
            ("edoor + edoor worker", "app:create_app", "worker"),
        ):
            url, pg_name = database_url(backend, workdir, name.split()[0] + mode)
            if pg_name:
                created.append(pg_name)
            if target.startswith("app:"):
                migrate(url)
            env = {
                "DATABASE_URL": url,
                "LINE_CHANNEL_SECRET": SECRET,
                "LINE_CHANNEL_ACCESS_TOKEN": "bench-token",
                "LINE_API_BASE_URL": fake.url,
                "EDOOR_BACKGROUND": "off",
                "LOG_LEVEL": "WARNING",
                "SIMULATOR_ENABLED": "false",
                "INBOUND_PROCESSING": mode or "inline",
            }
            server = Server(target, env)
            # With INBOUND_PROCESSING=worker the web process only acknowledges; one
            # `edoor worker` process answers (the production shape in DESIGN.md).
            worker = (
                subprocess.Popen(
                    [sys.executable, "-m", "cli", "worker"],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                )
                if mode == "worker"
                else None
            )
            try:
                server.wait()
                run_wrk(server.url + "/webhooks/line", 2, bodies)  # warm-up
                if target.startswith("app:"):
                    asyncio.run(wait_processed(url))
                started = time.monotonic()
                result = run_wrk(server.url + "/webhooks/line", seconds, bodies)
                result.name = name
                if target.startswith("app:"):
                    total = asyncio.run(wait_processed(url))
                    result.processed_rps = total / (time.monotonic() - started)
                results.append(result)
            finally:
                server.stop()
                if worker is not None:
                    worker.terminate()
                    worker.wait(timeout=30)
    finally:
        fake.stop()
        for pg_name in created:
            asyncio.run(drop_pg_database(pg_name))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("webhook bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="edoor-bench-"))
    bodies = workdir / "bodies.txt"
    make_bodies(bodies, 400_000)
    print(
        f"\nLINE webhook, {CONNECTIONS} connections, {args.seconds}s per server, 1 uvicorn "
        f"worker each, wrk timeout 2s"
    )
    header = (
        f"{'backend':<10} {'server':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'>2s':>5} {'non-2xx':>8} {'vs bare':>8} {'answered/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for backend in args.backends.split(","):
        results = bench_backend(backend, args.seconds, bodies, workdir)
        bare = next(r for r in results if r.name.startswith("bare"))
        for r in results:
            print(
                f"{backend:<10} {r.name:<24} {r.rps:>8.0f} {r.p50:>8.1f} {r.p99:>8.1f} "
                f"{r.max_ms:>8.0f} {r.timeouts:>5} {r.non2xx:>8} {r.rps / bare.rps:>7.2f}x "
                f"{'-' if r.processed_rps is None else f'{r.processed_rps:.0f}':>11}"
            )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
