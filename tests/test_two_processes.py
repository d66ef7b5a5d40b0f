"""Two web processes share one database: a conversation started on one continues on the other
(the step lives in the database, not in a process's memory)."""

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

from tests.conftest import TEST_PII_KEY
from tests.dialog import Chat, texts

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def web_process(database_url: str) -> AsyncIterator[str]:
    """`uvicorn app:create_app` in its own OS process, configured by environment only."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PII_KEY": TEST_PII_KEY,
        "EDOOR_BACKGROUND": "off",
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if proc.returncode is not None:
                    raise RuntimeError("web process exited")
                try:
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError("web process did not start")
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=20)


async def test_a_step_started_on_one_process_is_finished_on_the_other(database_url: str) -> None:
    async with (
        web_process(database_url) as url_a,
        web_process(database_url) as url_b,
        httpx.AsyncClient(base_url=url_a, timeout=30) as http_a,
        httpx.AsyncClient(base_url=url_b, timeout=30) as http_b,
    ):
        on_a, on_b = Chat(http_a, "sim-two-processes"), Chat(http_b, "sim-two-processes")
        assert "1. 中文" in texts(await on_a.say("語言"))
        on_b.after = on_a.after
        assert "English" in texts(await on_b.say("2"))  # the answer to A's question
        on_a.after = on_b.after
        assert "find a course" in texts(await on_a.say("help"))  # A sees the new language
