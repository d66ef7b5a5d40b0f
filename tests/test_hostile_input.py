"""Bad input anywhere gets a clear 4xx (or, where the platform must not redeliver, a 200 that
records the refusal), never a 5xx: each input here once took the app to a 500 or 503. The
whole OpenAPI is fuzzed by schemathesis against the real server process as well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models.inbound import InboundEvent
from tests.admin_support import bearer, make_account
from tests.conftest import LINE_SECRET, LINE_TOKEN, TG_SECRET
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.line_helpers import sign
from tests.serve_support import edoor_serve

ADMIN = {"Authorization": "Bearer dev-admin-token"}
NESTED = ("[" * 100_000 + "]" * 100_000).encode()
CATALOG_ROW = '{"id":"a","title":"t","category":"c","hours":%s}'


JSON = {"content-type": "application/json"}


# (method, path, headers, body): each answered with a 4xx.
CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/media/%00abc", {}, b""),
    ("GET", "/media/a%00.mp3", {}, b""),
    ("GET", "/simulator/api/messages?user=a&after=618155140359886209024", {}, b""),
    ("GET", "/simulator/api/sms?user=a&phone=0912345678&after=618155140359886209024", {}, b""),
    ("POST", "/simulator/api/send", JSON, b'{"user":"a","text":"x","after":618155140359886209024}'),
    ("POST", "/simulator/api/send", JSON, NESTED),
    ("POST", "/simulator/api/send", JSON, b'{"user":"a","text":"x","after":NaN}'),
    ("POST", "/simulator/api/send", JSON, b'{"user":"a","text":"x","after":Infinity}'),
    ("POST", "/admin/api/courses/import", {**ADMIN, **JSON}, NESTED),
    ("POST", "/admin/api/courses/import", {**ADMIN, **JSON}, ("[" + CATALOG_ROW % ("9" * 5000) + "]").encode()),
    ("POST", "/admin/api/courses/import", {**ADMIN, **JSON}, ("[" + CATALOG_ROW % "NaN" + "]").encode()),
    (
        "POST",
        "/admin/api/courses/import?format=csv",
        {**ADMIN, "content-type": "text/csv"},
        b"id,title,category,hours\n1," + b"x" * 200_000 + b",c,1\n",
    ),
    ("POST", "/admin/api/podcasts", {**ADMIN, **JSON}, b'{"slug":"x","title":"t","hours":NaN}'),
    ("POST", "/admin/api/podcasts", {**ADMIN, **JSON}, b'{"slug":"x","title":"t","hours":1e999}'),
    ("POST", "/admin/api/podcasts/x/tts", {**ADMIN, **JSON}, b'{"title":"t","script":"s","number":9223372036854775808}'),
    ("POST", "/admin/api/podcasts/x/tts", {**ADMIN, **JSON}, b'{"title":"t","script":"s","number":99999999999999999999999}'),
    ("POST", "/admin/api/podcasts/x/episodes?number=9223372036854775808", ADMIN, b"x"),
    ("PUT", "/admin/api/courses/x/password", {**ADMIN, **JSON}, b'{"password":' + b"[" * 5000 + b"}"),
    ("GET", "/feeds/x/9223372036854775808/chapters.json", {}, b""),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "headers", "body"), CASES)
async def test_bad_input_is_a_4xx(  # type: ignore[no-untyped-def]
    served, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    async with served() as (url, _), httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.request(method, path, headers=headers, content=body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    if response.headers.get("content-type", "").startswith("application/json"):
        json.loads(response.text)  # a readable answer, not a broken one
        assert '"input"' not in response.text  # the input is not echoed back
        assert "9" * 40 not in response.text


async def test_a_lone_surrogate_is_a_replacement_character_not_a_500(served) -> None:  # type: ignore[no-untyped-def]
    async with served() as (url, _), httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/simulator/api/send",
            content=b'{"user":"a","text":"\\ud800\xe8\xb3\x87\xe5\xae\x89"}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200
    assert "資安" in response.text


async def test_a_nul_character_is_stored_as_a_replacement_character_not_a_500(served) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL text and jsonb cannot hold U+0000 (the admin fuzzer's token label was a 500
    there): every JSON body reads it as U+FFFD, on both databases."""
    async with served() as (url, _), httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/simulator/api/send",
            content=b'{"user":"a","text":"\\u0000\xe8\xb3\x87\xe5\xae\x89"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text[:200]
        assert "資安" in response.text
        token = await http.post(
            "/admin/api/accounts",
            json={"email": "nul@example.org", "role": "analyst"},
            headers=ADMIN,
        )
        assert token.status_code == 201, token.text[:200]
        label = await http.post(
            f"/admin/api/accounts/{token.json()['id']}/tokens",
            content=b'{"label":"ci\\u0000bot"}',
            headers={**ADMIN, "content-type": "application/json"},
        )
        assert label.status_code == 201, label.text[:200]


async def test_a_nul_in_a_query_or_form_is_a_400_not_a_500(served, engine) -> None:  # type: ignore[no-untyped-def]
    """Query strings and console forms reach PostgreSQL as text too (the audit filter was a
    500 there with a %00): refused before any route sees them, on both databases."""
    token = await make_account(engine, "nul-q@example.org", "admin")
    async with served() as (url, _), httpx.AsyncClient(base_url=url, timeout=30) as http:
        for path in ("/admin/api/audit?action=a%00b", "/admin/audit?action=a%00b"):
            answer = await http.get(path, headers=bearer(token))
            assert answer.status_code == 400, (path, answer.status_code)
            assert "NUL" in answer.json()["detail"]
        form = await http.post("/admin/login", data={"email": "a\x00b@x.org", "password": "x" * 12})
        assert form.status_code == 400
        # The same requests without the NUL are answered as usual.
        assert (
            await http.get("/admin/api/audit?action=ab", headers=bearer(token))
        ).status_code == 200
        plain = await http.post("/admin/login", data={"email": "ab@x.org", "password": "x" * 12})
        assert plain.status_code == 401


@pytest.fixture
async def platforms(served, fake_line):  # type: ignore[no-untyped-def]
    _, line_url = fake_line
    async with (
        FakeTelegram() as telegram,
        served(
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=line_url,
            telegram_bot_token=TOKEN,
            telegram_webhook_secret=TG_SECRET,
            telegram_api_base_url=telegram.api_base_url,
        ) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http, api


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        b'{"destination":"U0","events":[{"type":"message","webhookEventId":"01H","x":NaN}]}',
        b'{"destination":"U0","events":[{"type":"message","webhookEventId":"01H","x":1e999}]}',
        b'{"destination":"U0","events":[{"type":"message","webhookEventId":"'
        + b"9" * 5000
        + b'"}]}',
    ],
)
async def test_line_webhook_refuses_unusable_json_with_400(platforms, body: bytes) -> None:  # type: ignore[no-untyped-def]
    http, api = platforms
    response = await http.post(
        "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
    )
    assert response.status_code == 400
    async with api.state.runtime.sessionmaker() as session:
        assert (await session.scalars(select(InboundEvent))).all() == []


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        b'{"update_id": 5, "message": {"message_id": 1, "date": NaN, "chat": {"id": 1, "type": "private"}}}',
        b'{"update_id": ' + b"9" * 5000 + b"}",
        b'{"update_id": 6, "message": ' + b"[" * 900 + b"]" * 900 + b"}",
    ],
)
async def test_telegram_webhook_acknowledges_unusable_json_and_records_it(
    platforms, body: bytes
) -> None:  # type: ignore[no-untyped-def]
    http, api = platforms
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "content-type": "application/json"}
    response = await http.post("/webhooks/telegram", content=body, headers=headers)
    assert response.status_code == 200
    async with api.state.runtime.sessionmaker() as session:
        [row] = (await session.scalars(select(InboundEvent))).all()
    assert (row.kind, row.status) == ("rejected", "failed")
    assert "nested" in row.payload["rejected"] or "number" in row.payload["rejected"]


async def test_telegram_text_with_a_lone_surrogate_is_answered(platforms) -> None:  # type: ignore[no-untyped-def]
    http, api = platforms
    update: dict[str, Any] = {
        "update_id": 7,
        "message": {
            "message_id": 1,
            "date": 1767600300,
            "chat": {"id": 42, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "Mei"},
            "text": "SURROGATE資安",
        },
    }
    body = json.dumps(update).replace("SURROGATE", "\\ud800").encode()
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "content-type": "application/json"}
    assert (await http.post("/webhooks/telegram", content=body, headers=headers)).status_code == 200
    async with api.state.runtime.sessionmaker() as session:
        [row] = (await session.scalars(select(InboundEvent))).all()
    assert row.kind == "message"


SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


async def test_schemathesis_finds_no_server_error_in_the_whole_api(tmp_path: Path) -> None:
    """Every documented operation (simulator, media, feeds, admin) fuzzed against the real
    `edoor serve`, with a bounded budget: no response may be a 5xx."""
    async with edoor_serve(tmp_path, line=False) as (host, port, _):
        run = subprocess.run(  # noqa: ASYNC221 (the server runs in another process)
            [
                SCHEMATHESIS, "run", f"http://{host}:{port}/openapi.json",
                "--checks", "not_a_server_error",
                "--phases", "coverage,fuzzing",
                "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
                "--workers", "1",
                "--seed", "20261202",
                "-H", f"Authorization: {ADMIN['Authorization']}",
                "--no-color",
            ],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    summary = run.stdout[-3000:]
    assert "API Operations" in run.stdout, summary  # it really ran
    assert run.returncode == 0, summary


async def test_a_huge_line_event_is_not_stored_whole(platforms) -> None:  # type: ignore[no-untyped-def]
    http, api = platforms
    from tests.line_helpers import body_of, text_event

    event = text_event("資安")
    event["padding"] = "x" * 500_000  # within the body limit, far beyond any real event
    body = body_of(event)
    response = await http.post(
        "/webhooks/line", content=body, headers={"x-line-signature": sign(body)}
    )
    assert response.status_code == 200
    async with api.state.runtime.sessionmaker() as session:
        [row] = (await session.scalars(select(InboundEvent))).all()
    assert row.payload["truncated"] is True
    assert len(json.dumps(row.payload)) < 1000
