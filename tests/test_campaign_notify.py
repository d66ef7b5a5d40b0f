"""Telling draw winners is a step of its own after the draw's commit, and retryable: a draw
whose telling never ran (its process died) or failed (the database refused) is finished by
`edoor campaign notify SLUG`, by the next draw, or by the campaign-winners job, with exactly
one message per winner, even after the outbox has forgotten the messages it sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.i18n import TAIPEI
from models.audit import AuditLog
from models.campaigns import claims
from models.campaigns.tables import DRAWN, CampaignClaim
from models.db import begin_write, create_sessionmaker
from models.outbox import OutboxMessage
from notifications.reminders import retention
from tests.campaign_support import (
    ADMIN_TOKEN,
    AUTH,
    Clock,
    campaign_file,
    campaign_id,
    create,
    verified_member,
)
from tests.dialog import Chat, texts
from tests.test_cli import edoor

WINNER_TEXT = "恭喜您在「性平課程領好禮」抽獎中獎"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def served_app(served, clock: Clock) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:  # type: ignore[no-untyped-def]
    async with (
        served(admin_token=ADMIN_TOKEN) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        api.state.runtime.processor.clock = clock
        yield client, api.state.runtime


async def _enter(http: httpx.AsyncClient, engine: AsyncEngine, people: int, **spec: Any) -> int:
    """A draw campaign with `people` entries made in chat; returns the campaign id."""
    await create(http, campaign_file(slug="lucky", mode="draw", **spec))
    cid = await campaign_id(engine, "lucky")
    for i in range(people):
        await verified_member(engine, f"sim-n{i}", f"0955-3{i}1-{i}{i}7")
        entered = texts(await Chat(http, f"sim-n{i}").tap(f"prize.claim:{cid}"))
        assert "已登記參加" in entered
    return cid


async def _draw_time(http: httpx.AsyncClient) -> dt.datetime:
    """10:00 Taipei the day after the campaign's end (outside the quiet hours)."""
    summary = (await http.get("/admin/api/campaigns/lucky", headers=AUTH)).json()
    ends = dt.datetime.fromisoformat(summary["ends_at"])
    day = (ends + dt.timedelta(days=1)).astimezone(TAIPEI).date()
    return dt.datetime.combine(day, dt.time(10), tzinfo=TAIPEI)


async def _winner_rows(engine: AsyncEngine) -> tuple[list[int], list[str], int]:
    """(drawn claim ids, outbox keys of winners' messages, 'winner told' audit entries)."""
    async with create_sessionmaker(engine)() as session:
        drawn = list(
            (
                await session.scalars(
                    select(CampaignClaim.id)
                    .where(CampaignClaim.status == DRAWN)
                    .order_by(CampaignClaim.id)
                )
            ).all()
        )
        keys = list(
            (
                await session.scalars(
                    select(OutboxMessage.key)
                    .where(OutboxMessage.kind == "prize")
                    .order_by(OutboxMessage.key)
                )
            ).all()
        )
        told = await session.scalar(
            select(func.count()).where(AuditLog.action == claims.WINNER_TOLD)
        )
    return drawn, keys, int(told or 0)


async def test_a_draw_whose_process_died_before_telling_is_told_once_by_the_job(
    served_app: tuple[httpx.AsyncClient, Any], engine: AsyncEngine, clock: Clock
) -> None:
    http, runtime = served_app
    await _enter(http, engine, 4, prize={"generate": 2}, claim_days=40)
    draw_at = await _draw_time(http)
    # The draw's own unit of work, committed; then the process is killed (no telling).
    async with create_sessionmaker(engine)() as session:
        await begin_write(session)
        campaign = await claims.require_campaign(session, slug="lucky")
        result = await claims.draw(
            session, campaign=campaign, actor="cli", now=draw_at, seed="killed"
        )
        await session.commit()
    winners = sorted(w.id for w in result.winners)
    assert len(winners) == 2
    assert await _winner_rows(engine) == (winners, [], 0)

    job = runtime.jobs.require("campaign-winners")
    assert await job.run(draw_at + dt.timedelta(minutes=1)) == 2
    assert await job.run(draw_at + dt.timedelta(minutes=2)) == 0  # and every minute after
    # A redraw finds nothing to draw (the winners hold the prizes) and tells nobody again.
    clock.offset = draw_at + dt.timedelta(minutes=3) - dt.datetime.now(dt.UTC)
    redraw = await http.post("/admin/api/campaigns/lucky/draw", json={}, headers=AUTH)
    assert redraw.status_code == 409
    expected = [f"prize-winner:{w}" for w in winners]
    assert await _winner_rows(engine) == (winners, sorted(expected), 2)

    # Delivered: each winner reads one message, nobody else any.
    await runtime.jobs.require("drain-outbox").run(draw_at + dt.timedelta(minutes=5))
    async with create_sessionmaker(engine)() as session:
        by_claim = dict(
            (
                await session.execute(
                    select(CampaignClaim.id, CampaignClaim.member_id).order_by(CampaignClaim.id)
                )
            ).all()
        )
    members = sorted(by_claim.values())
    for i, member_id in enumerate(members):
        told = [r for r in await Chat(http, f"sim-n{i}").pending() if WINNER_TEXT in texts([r])]
        is_winner = any(by_claim[w] == member_id for w in winners)
        assert len(told) == (1 if is_winner else 0), (i, told)

    # A month on, retention has deleted the sent messages; the job still tells nobody twice.
    later = draw_at + dt.timedelta(days=31)
    assert await retention(runtime.sessionmaker, now=later) >= 2
    assert (await _winner_rows(engine))[1] == []
    assert await job.run(later) == 0
    assert await _winner_rows(engine) == (winners, [], 2)


async def test_a_telling_the_database_refused_is_finished_by_notify_exactly_once(
    served_app: tuple[httpx.AsyncClient, Any],
    engine: AsyncEngine,
    database_url: str,
    backend: str,
) -> None:
    http, _ = served_app
    await _enter(http, engine, 5, prize={"generate": 3})
    draw_at = (await _draw_time(http)).isoformat()
    # The outbox refuses every row, as a database that fails after the draw's commit would.
    await _refuse_outbox(engine, backend, on=True)
    drawn = edoor(
        "campaign", "draw", "lucky", "--seed", "s-2026", "--now", draw_at, database_url=database_url
    )
    assert drawn.returncode == 1
    assert "draw round 1: seed s-2026" in drawn.stdout
    assert "3 winners" in drawn.stdout
    assert "the draw is recorded, but telling the winners failed" in drawn.stderr
    assert "edoor campaign notify lucky" in drawn.stderr
    assert "Traceback" not in drawn.stderr
    winners, keys, told = await _winner_rows(engine)
    assert (len(winners), keys, told) == (3, [], 0)  # drawn and committed; nobody told

    await _refuse_outbox(engine, backend, on=False)
    notify = edoor("campaign", "notify", "lucky", "--now", draw_at, database_url=database_url)
    assert notify.returncode == 0, notify.stderr
    assert "3 winners told through the outbox" in notify.stdout
    again = edoor("campaign", "notify", "lucky", "--now", draw_at, database_url=database_url)
    assert "0 winners told through the outbox" in again.stdout
    job = edoor("run-job", "campaign-winners", "--now", draw_at, database_url=database_url)
    assert job.returncode == 0, job.stderr
    assert "campaign-winners: done (0)" in job.stdout
    assert await _winner_rows(engine) == (
        winners,
        sorted(f"prize-winner:{w}" for w in winners),
        3,
    )
    # The audit chain holds the entries that say so.
    verified = edoor("audit", "verify", database_url=database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    not_a_draw = edoor("campaign", "notify", "nope", database_url=database_url)
    assert not_a_draw.returncode == 1
    assert "no campaign 'nope'" in not_a_draw.stderr


async def _refuse_outbox(engine: AsyncEngine, backend: str, *, on: bool) -> None:
    """A trigger that refuses every outbox row (on), or its removal (off)."""
    async with engine.begin() as conn:
        if not on:
            where = " ON outbox" if backend == "postgresql" else ""
            await conn.execute(text(f"DROP TRIGGER outbox_down{where}"))
        elif backend == "postgresql":
            await conn.execute(
                text(
                    "CREATE FUNCTION outbox_down() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'outbox down'; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER outbox_down BEFORE INSERT ON outbox "
                    "FOR EACH ROW EXECUTE FUNCTION outbox_down()"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE TRIGGER outbox_down BEFORE INSERT ON outbox "
                    "BEGIN SELECT RAISE(ABORT, 'outbox down'); END"
                )
            )


async def test_the_api_draw_stands_when_telling_fails_and_notify_finishes_it_once(
    served_app: tuple[httpx.AsyncClient, Any],
    engine: AsyncEngine,
    clock: Clock,
    backend: str,
) -> None:
    """The API's twin of the CLI case: a draw whose telling fails answers with the draw and
    says so (not a 500); POST .../notify then tells each winner exactly once."""
    http, _ = served_app
    await _enter(http, engine, 5, prize={"generate": 3})
    clock.offset = await _draw_time(http) - dt.datetime.now(dt.UTC)
    await _refuse_outbox(engine, backend, on=True)
    drawn = await http.post("/admin/api/campaigns/lucky/draw", json={"seed": "api"}, headers=AUTH)
    assert drawn.status_code == 200, drawn.text
    body = drawn.json()
    assert (body["seed"], len(body["winners"]), body["notified"]) == ("api", 3, None)
    assert "/admin/api/campaigns/lucky/notify" in body["problem"]
    assert await _winner_rows(engine) == (sorted(body["winners"]), [], 0)

    await _refuse_outbox(engine, backend, on=False)
    told = await http.post("/admin/api/campaigns/lucky/notify", headers=AUTH)
    assert told.status_code == 200, told.text
    assert told.json() == {"notified": 3}
    again = await http.post("/admin/api/campaigns/lucky/notify", headers=AUTH)
    assert again.json() == {"notified": 0}
    _, keys, entries = await _winner_rows(engine)
    assert (len(keys), entries) == (3, 3)
    missing = await http.post("/admin/api/campaigns/nope/notify", headers=AUTH)
    assert missing.status_code == 404
