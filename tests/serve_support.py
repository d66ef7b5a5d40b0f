"""`edoor serve` as its own OS process, for tests that need the real server (its HTTP
protocol, its memory, its command line) rather than the app inside the test's event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.conftest import LINE_SECRET, LINE_TOKEN, TEST_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
EDOOR = str(Path(sys.executable).parent / "edoor")
MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@asynccontextmanager
async def edoor_serve(tmp_path: Path, *, line: bool = True) -> AsyncIterator[tuple[str, int, int]]:
    """`edoor serve` in its own process (with LINE on unless `line=False`, which leaves the
    simulator on); yields (host, port, pid)."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'edoor.db'}",
        "PII_KEY": TEST_PII_KEY,
        "EDOOR_BACKGROUND": "off",
        "LOG_LEVEL": "WARNING",
        "MEDIA_DIR": str(tmp_path / "media"),
        "LINE_API_BASE_URL": "http://127.0.0.1:9",  # never called here
        "HTTP_HEADER_TIMEOUT_SECONDS": "1",
        "HTTP_BODY_TIMEOUT_SECONDS": "1",
    }
    if line:
        env |= {"LINE_CHANNEL_SECRET": LINE_SECRET, "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN}
    proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived child, waited for below)
        [EDOOR, "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(900):  # a loaded machine may take a minute to migrate and start
                assert proc.poll() is None, "edoor serve exited"
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("edoor serve did not start")
        yield "127.0.0.1", port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)
