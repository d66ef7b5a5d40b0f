"""The podcast admin API through the real app: token, create, upload (wav transcoded), TTS,
and a refused upload that leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from admin.podcasts import podcast_admin_routes
from models.identity import AuditLog
from models.podcasts import Episode
from tests.podcast_support import make_tone

TOKEN = "test-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_tone(tmp_path_factory.mktemp("tones") / "lesson.wav", seconds=1.0).read_bytes()


@pytest.fixture
async def admin(served) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:  # type: ignore[no-untyped-def]
    async with served(admin_token=TOKEN) as (url, api):
        runtime = api.state.runtime
        if not any(getattr(r, "path", "") == "/admin/api/podcasts" for r in api.routes):
            api.include_router(
                podcast_admin_routes(settings=runtime.settings, sessionmaker=runtime.sessionmaker)
            )
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http, runtime


async def _count(engine: AsyncEngine, model: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar())


async def test_create_upload_and_speak_with_the_admin_token(admin, engine, wav: bytes) -> None:  # type: ignore[no-untyped-def]
    http, runtime = admin
    assert (
        await http.post("/admin/api/podcasts", json={"slug": "x", "title": "X"})
    ).status_code == 401
    made = await http.post(
        "/admin/api/podcasts", json={"slug": "infosec", "title": "資安小學堂"}, headers=AUTH
    )
    assert made.status_code == 201
    again = await http.post(
        "/admin/api/podcasts", json={"slug": "infosec", "title": "again"}, headers=AUTH
    )
    assert again.status_code == 422
    assert "exists already" in again.text
    uploaded = await http.post(
        "/admin/api/podcasts/infosec/episodes",
        params={"title": "第一課", "filename": "lesson.wav"},
        content=wav,
        headers=AUTH,
    )
    assert uploaded.status_code == 201, uploaded.text
    episode = uploaded.json()
    assert episode["number"] == 1
    assert episode["content_type"] == "audio/mp4"  # wav became m4a
    assert 900 < episode["duration_ms"] < 1200
    assert (runtime.settings.media_dir / episode["media_path"]).stat().st_size == episode[
        "size_bytes"
    ]
    spoken = await http.post(
        "/admin/api/podcasts/infosec/tts",
        json={"title": "第二課", "script": "第二課：不要點陌生連結。"},
        headers=AUTH,
    )
    assert spoken.status_code == 201
    assert spoken.json()["number"] == 2
    listing = (await http.get("/admin/api/podcasts", headers=AUTH)).json()
    assert [e["title"] for e in listing["podcasts"][0]["episodes"]] == ["第一課", "第二課"]
    assert await _count(engine, AuditLog) == 3


async def test_a_refused_upload_says_why_and_leaves_nothing(admin, engine) -> None:  # type: ignore[no-untyped-def]
    http, runtime = admin
    await http.post("/admin/api/podcasts", json={"slug": "infosec", "title": "資安"}, headers=AUTH)
    bad = await http.post(
        "/admin/api/podcasts/infosec/episodes",
        params={"title": "壞檔", "filename": "x.mp3"},
        content=b"not audio at all" * 100,
        headers=AUTH,
    )
    assert bad.status_code == 422
    assert "not a readable mp3, m4a or wav" in bad.json()["detail"]
    unknown = await http.post(
        "/admin/api/podcasts/infosec/episodes",
        params={"title": "x", "filename": "x.ogg"},
        content=b"OggS",
        headers=AUTH,
    )
    assert unknown.status_code == 415
    assert await _count(engine, Episode) == 0
    media = runtime.settings.media_dir
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]
