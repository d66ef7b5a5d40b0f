"""The LINE webhook through the real app, with a fake LINE API on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from linebot.v3.messaging import PushMessageRequest, ReplyMessageRequest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.inbound import InboundEvent
from models.members import ChannelAccount
from models.outbox import OutboxMessage
from tests.conftest import LINE_SECRET, LINE_TOKEN
from tests.dialog import eventually
from tests.fakes.line import FakeLine
from tests.line_helpers import body_of, event, sign, text_event
from tests.openapi import line_schema_errors


@pytest.fixture
async def line(served, fake_line) -> AsyncIterator[tuple[httpx.AsyncClient, FakeLine]]:  # type: ignore[no-untyped-def]
    fake, fake_url = fake_line
    async with (
        served(
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=fake_url,
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http, fake


async def post(http: httpx.AsyncClient, body: bytes, signature: str | None = "sign") -> int:
    headers = {"content-type": "application/json"}
    if signature == "sign":
        headers["x-line-signature"] = sign(body)
    elif signature is not None:
        headers["x-line-signature"] = signature
    return (await http.post("/webhooks/line", content=body, headers=headers)).status_code


async def stored_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(InboundEvent))).scalar())


async def test_follow_is_welcomed_through_the_reply_token(line, shared_dir: Path | None) -> None:  # type: ignore[no-untyped-def]
    http, fake = line
    follow = event("follow", follow={"isUnblocked": False})
    assert await post(http, body_of(follow)) == 200
    replies = await eventually(lambda: fake.sent("/reply"))
    sent = replies[0]
    assert sent.body["replyToken"] == follow["replyToken"]
    assert sent.headers["authorization"] == f"Bearer {LINE_TOKEN}"
    assert "歡迎來到臺北e大" in sent.body["messages"][0]["text"]
    assert len(sent.body["messages"][0]["quickReply"]["items"]) <= 13
    ReplyMessageRequest.from_dict(sent.body)  # the SDK's own model accepts it
    if shared_dir is not None:
        assert line_schema_errors(shared_dir, "ReplyMessageRequest", sent.body) == []


@pytest.mark.parametrize("signature", [None, "", "bm90LXRoZS1zaWduYXR1cmU="])
async def test_bad_or_missing_signature_is_401_and_stores_nothing(line, engine, signature) -> None:  # type: ignore[no-untyped-def]
    http, fake = line
    assert await post(http, body_of(text_event("hi")), signature=signature) == 401
    assert await stored_events(engine) == 0
    assert fake.requests == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"events": {}}',
        b'{"events": [1]}',
        b'{"events": [{"type": "message"}]}',
        "\udcff".encode("utf-8", "surrogatepass"),
    ],
)
async def test_malformed_body_is_400_and_stores_nothing(line, engine, body: bytes) -> None:  # type: ignore[no-untyped-def]
    http, _ = line
    assert await post(http, body) in (400, 401)  # undecodable bytes cannot even be verified
    assert await stored_events(engine) == 0


async def test_verification_request_with_no_events_gets_200(line, engine) -> None:  # type: ignore[no-untyped-def]
    http, _ = line
    assert await post(http, body_of()) == 200
    assert await stored_events(engine) == 0


async def test_redelivered_event_is_answered_once(line, engine) -> None:  # type: ignore[no-untyped-def]
    http, fake = line
    first = text_event("說明")
    again = json.loads(json.dumps(first))
    again["deliveryContext"]["isRedelivery"] = True
    assert await post(http, body_of(first)) == 200
    await eventually(lambda: fake.sent("/reply"))
    assert await post(http, body_of(again)) == 200
    assert await post(http, body_of(first)) == 200
    assert await stored_events(engine) == 1
    await eventually(lambda: _all_done(engine))
    assert len(fake.sent("/reply")) == 1
    assert fake.sent("/push") == []


async def _all_done(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        statuses = (await conn.execute(select(InboundEvent.status))).scalars().all()
    return bool(statuses) and all(s == "done" for s in statuses)


async def test_expired_reply_token_falls_back_to_push_through_the_outbox(  # type: ignore[no-untyped-def]
    served, fake_line, engine
) -> None:
    fake, fake_url = fake_line
    async with (
        served(
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=fake_url,
            edoor_background="on",
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        ev = text_event("help", user="U" + "b" * 32)
        fake.invalid_tokens.add(ev["replyToken"])
        assert await post(http, body_of(ev)) == 200
        pushes = await eventually(lambda: fake.sent("/push"))
        await eventually(lambda: _all_done(engine))
    assert pushes[0].body["to"] == "U" + "b" * 32
    assert len(pushes[0].headers["x-line-retry-key"]) == 36
    PushMessageRequest.from_dict(pushes[0].body)
    async with engine.connect() as conn:
        sent = (await conn.execute(select(OutboxMessage.kind, OutboxMessage.status))).all()
    assert [(r.kind, r.status) for r in sent] == [("reply", "sent")]


async def test_unfollow_marks_the_member_unreachable_and_follow_restores(line, engine) -> None:  # type: ignore[no-untyped-def]
    http, fake = line
    user = "U" + "c" * 32
    assert await post(http, body_of(text_event("hi", user=user))) == 200
    await eventually(lambda: fake.sent("/reply"))
    assert await post(http, body_of(event("unfollow", user=user))) == 200

    async def reachable() -> bool | None:
        async with engine.connect() as conn:
            return (
                await conn.execute(
                    select(ChannelAccount.unreachable).where(ChannelAccount.external_id == user)
                )
            ).scalar()

    await eventually(reachable)  # unreachable == True
    assert (
        await post(http, body_of(event("follow", user=user, follow={"isUnblocked": True}))) == 200
    )
    await eventually(lambda: len(fake.sent("/reply")) == 2)
    assert await reachable() is False


async def test_every_shared_sample_is_accepted(line, engine, shared_dir: Path | None) -> None:  # type: ignore[no-untyped-def]
    http, fake = line
    if shared_dir is None:
        # Without ../shared, the recorded samples are not available; the tests above cover
        # the same shapes with bodies built and signed here.
        assert not (Path(__file__).parents[2] / "shared").exists()
        return
    samples = shared_dir / "platform" / "samples"
    signatures: dict[str, Any] = json.loads((samples / "signatures.json").read_text())
    assert signatures["line_test_channel_secret"] == LINE_SECRET
    files = sorted(p for p in samples.glob("line_*.json") if "_api_" not in p.name)
    assert len(files) >= 8
    for path in files:
        status = await post(
            http, path.read_bytes(), signature=signatures["line_signatures"][path.name]
        )
        assert status == 200, path.name
    # Every non-duplicate event was recorded and finished.
    await eventually(lambda: _all_done(engine))
    assert fake.sent("/reply")
