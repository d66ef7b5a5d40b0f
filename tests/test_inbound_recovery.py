"""Nothing lost: events recorded but not finished are finished later, exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
from sqlalchemy import select, update

from app import build_runtime
from models.inbound import InboundEvent
from models.members import ensure_account
from models.outbox import OutboxMessage
from models.privacy import erase_member
from tests.conftest import LINE_SECRET, LINE_TOKEN
from tests.dialog import eventually
from tests.line_helpers import body_of, sign, text_event


def line_config(fake_url: str) -> dict[str, str]:
    """Settings for a LINE channel whose API is the fake on loopback."""
    return {
        "line_channel_secret": LINE_SECRET,
        "line_channel_access_token": LINE_TOKEN,
        "line_api_base_url": fake_url,
    }


async def _record_without_processing(settings, ev: dict) -> int:  # type: ignore[no-untyped-def]
    """What a web process does before it dies: record and commit, then nothing."""
    runtime = build_runtime(settings)
    try:
        row = runtime.processor.new_event(event_id=ev["webhookEventId"], kind="message", raw=ev)
        (row_id,) = await runtime.processor.record("line", [row])
        return row_id
    finally:
        await runtime.close()


async def _record(processor, *events: dict) -> list[int]:  # type: ignore[no-untyped-def]
    """Record LINE events as the webhook does (sender included), without processing them."""
    ids: list[int] = []
    for ev in events:
        row = processor.new_event(
            event_id=ev["webhookEventId"], kind="message", raw=ev, sender=ev["source"]["userId"]
        )
        ids += await processor.record("line", [row])
    return ids


async def _held_elsewhere(engine, row_id: int, since: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    """Another worker claimed the event at `since` and has not finished it."""
    async with engine.begin() as conn:
        await conn.execute(
            update(InboundEvent)
            .where(InboundEvent.id == row_id)
            .values(status="processing", claimed_at=since, attempts=1)
        )


async def test_event_recorded_before_a_crash_is_answered_at_start(
    make_settings, fake_line, served, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    line = line_config(fake_url)
    ev = text_event("說明")
    await _record_without_processing(make_settings(**line), ev)
    assert fake.requests == []
    async with served(edoor_background="on", **line):
        replies = await eventually(lambda: fake.sent("/reply"))
    assert replies[0].body["replyToken"] == ev["replyToken"]
    assert len(fake.sent("/reply")) + len(fake.sent("/push")) == 1
    async with engine.connect() as conn:
        row = (await conn.execute(select(InboundEvent))).one()
    assert row.status == "done"
    assert row.sealed is None
    assert row.pending_replies is None


async def test_claim_of_a_dead_worker_is_taken_over_after_the_lease(
    make_settings, fake_line, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    settings = make_settings(
        **line_config(fake_url),
        inbound_lease_seconds=30,
    )
    row_id = await _record_without_processing(settings, text_event("help"))
    claimed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    await _held_elsewhere(engine, row_id, claimed)
    runtime = build_runtime(settings)
    try:
        assert await runtime.processor.recover() == 0  # the lease is still live
        assert fake.requests == []
        runtime.processor.clock = lambda: claimed + dt.timedelta(seconds=31)
        assert await runtime.processor.recover() == 1
        assert await runtime.processor.recover() == 0  # finished: never again
    finally:
        await runtime.close()
    assert len(fake.sent("/reply")) == 1


async def test_a_persons_later_message_waits_while_another_worker_holds_an_earlier_one(
    make_settings, fake_line, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    settings = make_settings(
        **line_config(fake_url),
        inbound_lease_seconds=30,
    )
    mei, other = "U" + "1" * 32, "U" + "2" * 32
    first, second = text_event("驗證手機", user=mei), text_event("選單", user=mei)
    elsewhere = text_event("說明", user=other)
    runtime = build_runtime(settings)
    try:
        ids = await _record(runtime.processor, first, second, elsewhere)
        # Worker A has taken Mei's first message and is still working on it.
        claimed = dt.datetime.now(dt.UTC)
        await _held_elsewhere(engine, ids[0], claimed)
        # Worker B is handed her second message and someone else's.
        await runtime.processor.process_many(ids[1:])
        assert [r.body["replyToken"] for r in fake.sent("/reply")] == [elsewhere["replyToken"]]
        async with engine.connect() as conn:
            status = dict((await conn.execute(select(InboundEvent.id, InboundEvent.status))).all())
        assert status == {ids[0]: "processing", ids[1]: "pending", ids[2]: "done"}
        # A dies; once its lease is over, her two messages are answered in the order sent.
        runtime.processor.clock = lambda: claimed + dt.timedelta(seconds=31)
        assert await runtime.processor.recover() == 2
    finally:
        await runtime.close()
    assert [r.body["replyToken"] for r in fake.sent("/reply")] == [
        elsewhere["replyToken"],
        first["replyToken"],
        second["replyToken"],
    ]


async def test_a_skipped_message_is_answered_soon_after_the_earlier_one_is_done(
    make_settings, fake_line, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    settings = make_settings(**line_config(fake_url))
    mei = "U" + "6" * 32
    first, second = text_event("驗證手機", user=mei), text_event("選單", user=mei)
    runtime = build_runtime(settings)
    try:
        ids = await _record(runtime.processor, first, second)
        # Another web process holds her first message; this one is handed the second.
        await _held_elsewhere(engine, ids[0], dt.datetime.now(dt.UTC))
        runtime.processor.submit([ids[1]])
        await asyncio.sleep(0.3)
        assert fake.sent("/reply") == []  # it waits its turn
        async with engine.begin() as conn:  # the other process is done with the first
            await conn.execute(
                update(InboundEvent).where(InboundEvent.id == ids[0]).values(status="done")
            )
        replies = await eventually(lambda: fake.sent("/reply"))
        assert [r.body["replyToken"] for r in replies] == [second["replyToken"]]
    finally:
        await runtime.close()


async def test_the_webhook_records_who_sent_each_event(served, fake_line, engine) -> None:  # type: ignore[no-untyped-def]
    _, fake_url = fake_line
    line = line_config(fake_url)
    from_user = text_event("說明", user="U" + "3" * 32)
    from_group = text_event("說明", user="U" + "4" * 32)
    from_group["source"] = {"type": "group", "groupId": "C" + "5" * 32, "userId": "U" + "4" * 32}
    async with served(**line) as (url, _), httpx.AsyncClient(base_url=url) as http:
        body = body_of(from_user, from_group)
        response = await http.post(
            "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
        )
        assert response.status_code == 200
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(InboundEvent.sender, InboundEvent.actor).order_by(InboundEvent.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("U" + "3" * 32, "U" + "3" * 32),
        ("C" + "5" * 32, "U" + "4" * 32),  # in the group, the person is still known
    ]


async def test_erasing_a_person_deletes_their_events_by_the_indexed_actor(
    make_settings, engine
) -> None:  # type: ignore[no-untyped-def]
    """Delete-my-data finds a person's events, group ones too, by `actor` (indexed), not by
    scanning payloads; other people's events in the same group stay."""
    mei, wei, group = "U" + "6" * 32, "U" + "7" * 32, "C" + "8" * 32
    own = text_event("說明", user=mei)
    in_group = text_event("說明", user=mei)
    in_group["source"] = {"type": "group", "groupId": group, "userId": mei}
    other = text_event("說明", user=wei)
    other["source"] = {"type": "group", "groupId": group, "userId": wei}
    runtime = build_runtime(make_settings())
    try:
        for ev in (own, in_group, other):
            source = ev["source"]
            row = runtime.processor.new_event(
                event_id=ev["webhookEventId"],
                kind="message",
                raw=ev,
                sender=source.get("groupId") or source["userId"],
                actor=source["userId"],
            )
            await runtime.processor.record("line", [row])
        async with runtime.sessionmaker() as session:
            account, _ = await ensure_account(
                session,
                channel="line",
                external_id=mei,
                now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
            )
            await session.flush()
            await erase_member(
                session,
                vault=runtime.services.vault,
                member_id=account.member_id,
                now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
            )
            await session.commit()
        async with engine.connect() as conn:
            left = (await conn.execute(select(InboundEvent.event_id, InboundEvent.actor))).all()
        assert [tuple(r) for r in left] == [(other["webhookEventId"], wei)]
    finally:
        await runtime.close()


async def test_replies_computed_before_a_crash_are_delivered_without_rerunning(
    make_settings, fake_line, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    settings = make_settings(
        **line_config(fake_url),
        inbound_lease_seconds=1,
    )
    row_id = await _record_without_processing(settings, text_event("help"))
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    stored = [{"kind": "text", "text": "computed before the crash"}]
    async with engine.begin() as conn:
        await conn.execute(
            update(InboundEvent)
            .where(InboundEvent.id == row_id)
            .values(status="answering", claimed_at=stale, attempts=1, pending_replies=stored)
        )
    runtime = build_runtime(settings)
    try:
        assert await runtime.processor.recover() == 1
    finally:
        await runtime.close()
    (sent,) = fake.sent("/reply")
    assert sent.body["messages"][0]["text"] == "computed before the crash"


async def test_late_answer_goes_out_by_push_and_a_push_failure_is_retried_with_its_key(
    make_settings, fake_line, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    settings = make_settings(
        **line_config(fake_url),
    )
    ev = text_event("help")
    fake.invalid_tokens.add(ev["replyToken"])  # answered too late for the reply token
    fake.scripted.append((500, {"message": "Internal error"}))
    await _record_without_processing(settings, ev)
    runtime = build_runtime(settings)
    drain = runtime.jobs.require("drain-outbox")
    try:
        await runtime.processor.recover()
        async with engine.connect() as conn:
            assert (await conn.execute(select(InboundEvent.status))).scalar() == "done"
        now = dt.datetime.now(dt.UTC)
        await drain.run(now)  # LINE answers 500: kept for a later attempt
        await drain.run(now + dt.timedelta(minutes=10))
    finally:
        await runtime.close()
    pushes = fake.sent("/push")
    assert len(pushes) == 2
    # The retry carries the same key, so LINE would never deliver it twice.
    assert pushes[0].headers["x-line-retry-key"] == pushes[1].headers["x-line-retry-key"]
    async with engine.connect() as conn:
        row = (await conn.execute(select(OutboxMessage.status, OutboxMessage.attempts))).one()
    assert row.status == "sent"


async def test_healthz_reports_the_database(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] is True


async def test_worker_mode_web_only_acknowledges_and_a_worker_answers(
    served, fake_line, make_settings, engine
) -> None:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    line = {**line_config(fake_url), "inbound_processing": "worker"}
    ev = text_event("說明")
    async with served(**line) as (url, _), httpx.AsyncClient(base_url=url) as http:
        body = body_of(ev)
        response = await http.post(
            "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
        )
        assert response.status_code == 200
        await asyncio.sleep(0.3)
        assert fake.requests == []  # the web process answered nobody
    runtime = build_runtime(make_settings(**line))  # what `edoor worker` runs
    stop = asyncio.Event()
    intake = asyncio.create_task(runtime.processor.run_intake(stop))
    try:
        replies = await eventually(lambda: fake.sent("/reply"))
    finally:
        stop.set()
        await intake
        await runtime.close()
    assert replies[0].body["replyToken"] == ev["replyToken"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(InboundEvent.status))).scalar() == "done"
