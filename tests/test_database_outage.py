"""PostgreSQL goes away while webhooks arrive: never a 200 for an event that was not
committed, and the service recovers by itself once the database is back. Two ways: the
network to the server is cut (a TCP proxy drops every connection), and a private server
is really stopped ("fast": sessions terminated) and started again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import create_engine
from models.inbound import InboundEvent
from tests.conftest import LINE_SECRET, LINE_TOKEN, _migrate
from tests.dialog import eventually
from tests.fakes.pg_cluster import PgCluster
from tests.fakes.tcp_proxy import TcpProxy
from tests.line_helpers import body_of, sign, text_event

pytestmark = [
    pytest.mark.postgres_only,
    # While the database is cut, SQLAlchemy's asyncpg adapter may abandon a connection
    # attempt it had created (the pool gives up on the dead connection): expected here only.
    pytest.mark.filterwarnings("ignore:coroutine 'connect' was never awaited:RuntimeWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <coroutine object connect"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


@dataclass
class Outage:
    url: str  # what the app connects to
    engine: AsyncEngine  # for the test's own checks, straight to the database
    cut: Callable[[], Awaitable[None]]
    restore: Callable[[], Awaitable[None]]


@pytest.fixture(params=["network cut", "server restart"])
async def outage(
    request: pytest.FixtureRequest, database_url: str, engine: AsyncEngine
) -> AsyncIterator[Outage]:
    if request.param == "network cut":
        url = make_url(database_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        port = await proxy.start()
        proxied = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        yield Outage(proxied, engine, proxy.cut, proxy.restore)
        await proxy.cut()
        return
    cluster = PgCluster()
    try:
        await asyncio.to_thread(cluster.init)
        await cluster.start()
        await _migrate(cluster.url)
        own = create_engine(cluster.url)
        try:
            yield Outage(cluster.url, own, cluster.stop, cluster.start)
        finally:
            await own.dispose()
    finally:
        await asyncio.to_thread(cluster.close)


async def test_outage_never_acknowledges_uncommitted_events(
    outage: Outage, fake_line, served
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    engine = outage.engine
    events = [text_event(f"說明 {i}") for i in range(30)]
    statuses: dict[str, int] = {}

    async with (
        served(
            database_url=outage.url,
            edoor_background="on",
            inbound_sweep_seconds=1,
            inbound_lease_seconds=2,
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=fake_url,
        ) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):

        async def deliver(ev: dict) -> int:  # type: ignore[type-arg]
            body = body_of(ev)
            response = await http.post(
                "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
            )
            statuses[ev["webhookEventId"]] = response.status_code
            return response.status_code

        for i, ev in enumerate(events):
            if i == 10:
                await outage.cut()
                assert (await http.get("/healthz")).status_code == 503
            if i == 20:
                await outage.restore()
            await deliver(ev)
            await asyncio.sleep(0.02)

        refused = [ev for ev in events if statuses[ev["webhookEventId"]] != 200]
        assert len(refused) >= 10, statuses  # everything sent while down was refused
        assert all(statuses[ev["webhookEventId"]] == 503 for ev in refused)
        # LINE redelivers what it could not hand over; now the database is back.
        for ev in refused:
            await eventually(lambda ev=ev: _accepted(deliver, ev), within=10)
        assert (await http.get("/healthz")).status_code == 200
        await eventually(lambda: _all_done(engine), within=30)
        # Each event answered exactly once, although the database vanished mid-flight.
        assert len(fake.sent("/reply")) + len(fake.sent("/push")) == 30

    async with engine.connect() as conn:
        rows = (await conn.execute(select(InboundEvent.event_id, InboundEvent.status))).all()
    assert sorted(r.event_id for r in rows) == sorted(ev["webhookEventId"] for ev in events)
    assert {r.status for r in rows} == {"done"}
    answered = [r.body.get("replyToken") for r in fake.sent("/reply")]
    assert len(answered) == len(set(answered))  # nobody answered twice


async def _all_done(engine) -> bool:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        statuses = (await conn.execute(select(InboundEvent.status))).scalars().all()
    return len(statuses) == 30 and set(statuses) == {"done"}


async def _accepted(deliver, ev) -> bool:  # type: ignore[no-untyped-def]
    return await deliver(ev) == 200
