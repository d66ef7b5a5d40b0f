"""Exactly once after a crash, for real: a web process is killed with SIGKILL in the middle of
a burst of 200 LINE events, some of its replies already with LINE but not yet answered; a
second process takes its events over once its heartbeat stops (well before the 60 s lease)
and every event is answered exactly once, by reply or by push, never twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.inbound import ANSWERING, DONE, PROCESSING, InboundEvent, InboundWorker
from tests.conftest import LINE_SECRET, LINE_TOKEN, TEST_PII_KEY
from tests.fakes.line import FakeLine
from tests.line_helpers import body_of, sign, text_event

ROOT = Path(__file__).resolve().parents[1]
EVENTS = 200
TOKEN_A, TOKEN_B = LINE_TOKEN + "-process-a", LINE_TOKEN + "-process-b"
LEASE = 60  # the default: recovery must not wait for it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def web_process(
    database_url: str, line_url: str, *, background: bool, token: str, log_path: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`uvicorn app:create_app` in its own OS process, LINE at the fake, a fast heartbeat;
    `token` (its LINE access token) tells the fake which process sent what."""
    port = _free_port()
    log = log_path.open("wb")  # the child writes here (a pipe nobody reads fills and blocks)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PII_KEY": TEST_PII_KEY,
        "LINE_CHANNEL_SECRET": LINE_SECRET,
        "LINE_CHANNEL_ACCESS_TOKEN": token,
        "LINE_API_BASE_URL": line_url,
        "SIMULATOR_ENABLED": "false",
        "EDOOR_BACKGROUND": "on" if background else "off",
        "INBOUND_LEASE_SECONDS": str(LEASE),
        "INBOUND_SWEEP_SECONDS": "1",
        "INBOUND_HEARTBEAT_SECONDS": "0.5",
        "INBOUND_GONE_AFTER_SECONDS": "3",
        "NO_PROXY": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                if proc.returncode is not None:
                    raise RuntimeError("web process exited")
                try:
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError("web process did not start")
        yield url, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=30)
        log.close()


async def _done(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count()).select_from(InboundEvent).where(InboundEvent.status == DONE)
            )
            or 0
        )


async def _done_ids(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(InboundEvent.id).where(InboundEvent.status == DONE))
        return set(rows.scalars())


async def test_sigkill_mid_burst_answers_every_event_exactly_once(
    database_url: str, engine: AsyncEngine, fake_line: tuple[FakeLine, str], tmp_path: Path
) -> None:
    fake, line_url = fake_line
    fake.reply_delay = 0.4  # LINE has the reply; the process hears back later
    events = []
    for i in range(EVENTS):
        ev = text_event("說明", user=f"U{i:032x}")
        fake.token_users[ev["replyToken"]] = ev["source"]["userId"]
        events.append(ev)

    async with (
        web_process(
            database_url, line_url, background=False, token=TOKEN_A, log_path=tmp_path / "a.log"
        ) as (url_a, proc_a),
        web_process(
            database_url, line_url, background=True, token=TOKEN_B, log_path=tmp_path / "b.log"
        ) as _,
        httpx.AsyncClient(base_url=url_a, timeout=30) as http,
    ):
        # The burst, ten events per webhook call, as LINE batches them.
        async def post(chunk: list[dict[str, object]]) -> int:
            body = body_of(*chunk)
            response = await http.post(
                "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
            )
            return response.status_code

        statuses = await asyncio.gather(*(post(events[i : i + 10]) for i in range(0, EVENTS, 10)))
        assert set(statuses) == {200}  # every event recorded and acknowledged

        # Kill A while it is answering: some replies taken by LINE, A not yet told. (B, up
        # and sweeping, may answer some of the burst too; that is allowed.)
        def a_in_flight() -> int:
            return sum(
                1
                for r in fake.sent("/reply")
                if r.headers.get("authorization") == f"Bearer {TOKEN_A}"
                and r.status == 200
                and not r.answered
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while a_in_flight() < 3:
            assert loop.time() < deadline, "process A never had replies in flight"
            await asyncio.sleep(0.005)
        proc_a.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await proc_a.wait()
        fake.reply_delay = 0  # B's replies come back at once
        assert len(fake.sent("/reply")) < EVENTS, "everything was answered before the kill"
        async with engine.connect() as conn:
            held_by_a = set(
                (
                    await conn.execute(
                        select(InboundEvent.id).where(
                            InboundEvent.status.in_([PROCESSING, ANSWERING]),
                            InboundEvent.claimed_by.in_(
                                select(InboundWorker.id).where(InboundWorker.id != "")
                            ),
                        )
                    )
                ).scalars()
            )
        assert held_by_a, "A held nothing when it died"

        # B takes over: A's claims soon after its heartbeat stops, everything before the
        # lease would have run out.
        taken_over_in: float | None = None
        while (done := await _done(engine)) < EVENTS:
            waited = time.monotonic() - killed
            assert waited < LEASE, f"only {done} of {EVENTS} done {waited:.0f} s after the kill"
            if taken_over_in is None and held_by_a <= await _done_ids(engine):
                taken_over_in = waited
            await asyncio.sleep(0.2)
        recovered_in = time.monotonic() - killed
        taken_over_in = taken_over_in or recovered_in
        # The outbox (pushes for replies that could not be answered) is empty too.
        await asyncio.sleep(1.5)

    answered = fake.answered()
    users = [ev["source"]["userId"] for ev in events]
    assert {u: answered.get(u, 0) for u in users if answered.get(u, 0) != 1} == {}
    assert sum(answered.values()) == EVENTS
    # The proof that replies were in flight when A died: LINE refused a second reply with
    # the same token, and recovery did not push those events again.
    refused = [r for r in fake.sent("/reply") if r.status == 400]
    assert refused, "no reply was in flight at the kill; the test proved nothing"
    # Gone after 3 s of silence, a sweep every second, then the answers themselves.
    assert taken_over_in < 20, f"A's events waited {taken_over_in:.1f} s"
    async with engine.connect() as conn:
        workers = (await conn.execute(select(InboundWorker.id))).scalars().all()
    assert len(workers) >= 1  # A's row stays until purged; B retired its own on exit
    # For the record (pytest -rP shows it): how long recovery took.
    sys.stderr.write(
        f"A's {len(held_by_a)} claimed events answered {taken_over_in:.1f} s and all "
        f"{EVENTS} events {recovered_in:.1f} s after SIGKILL; {len(refused)} replies were "
        f"in flight; lease {dt.timedelta(seconds=LEASE)}\n"
    )
