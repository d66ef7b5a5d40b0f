"""Telegram file_ids outlive the process: an episode goes to Telegram once per bot (by URL, or
uploaded when over 20 MB) and any later app instance sends it by the stored file_id; a stored
id Telegram refuses is replaced after one send by URL or upload. Through the real app, with
the fake Bot API on loopback."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from bot.telegram import SECRET_HEADER
from models.base import utcnow
from models.podcasts import Episode
from models.telegram_files import TelegramFile, bot_hash
from tests.dialog import eventually, serve
from tests.fakes.telegram import TOKEN, FakeTelegram, sample_update
from tests.podcast_support import Seeded, make_tone, seed_podcast

SECRET = "tg-webhook-secret_0123456789"
OTHER_TOKEN = "7099999999:AAOtherBotTokenForTests_0123456789abcdef"
MB = 1024 * 1024
_update_ids = itertools.count(900_000_001)


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone(tmp_path_factory.mktemp("tones") / "tone.m4a", seconds=1.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@asynccontextmanager
async def telegram_app(
    make_settings,  # type: ignore[no-untyped-def]
    fake: FakeTelegram,
    *,
    token: str = TOKEN,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A fresh app instance (its own process state) answering Telegram through `fake`."""
    settings = make_settings(
        telegram_bot_token=token,
        telegram_webhook_secret=SECRET,
        telegram_api_base_url=fake.api_base_url,
    )
    api = create_app(settings)
    async with serve(api) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http, api.state.runtime


async def play(
    http: httpx.AsyncClient, fake: FakeTelegram, episode_id: int, *, calls: int = 1
) -> dict[str, Any]:
    """The person taps ▶ on an episode; returns the last of the `calls` sendAudio calls the
    app makes for it."""
    update = copy.deepcopy(sample_update("tg_callback_query"))
    update["update_id"] = next(_update_ids)
    update["callback_query"]["id"] = str(update["update_id"])
    update["callback_query"]["data"] = f"pod.ep:{episode_id}"
    before = len(fake.calls("sendAudio"))
    response = await http.post(
        "/webhooks/telegram",
        content=json.dumps(update).encode(),
        headers={"content-type": "application/json", SECRET_HEADER: SECRET},
    )
    assert response.status_code == 200
    await eventually(lambda: len(fake.calls("sendAudio")) >= before + calls, within=10)
    call = fake.calls("sendAudio")[-1]
    return {"audio": call.params["audio"], "multipart": _multipart(call)}


def _multipart(call: Any) -> bool:
    return str(call.request.headers["content-type"]).startswith("multipart/")


async def seed(runtime: Any, tone: Path, *, size: int) -> Episode:
    """One public episode whose file on disk (and in the database) is `size` bytes."""
    now = utcnow() - dt.timedelta(minutes=1)
    seeded: Seeded = await seed_podcast(
        runtime.sessionmaker, runtime.settings, tone, episodes=1, now=now
    )
    episode = seeded.episodes[0]
    path = runtime.settings.media_dir / episode.media_path
    with path.open("r+b") as fh:  # sparse: quick to make, never decoded
        fh.truncate(size)
    async with runtime.sessionmaker() as session:
        row = await session.get(Episode, episode.id)
        assert row is not None
        row.size_bytes = size
        await session.commit()
    episode.size_bytes = size
    return episode


async def stored(engine: AsyncEngine) -> list[tuple[str, str, int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                TelegramFile.bot_hash,
                TelegramFile.media_key,
                TelegramFile.file_size,
                TelegramFile.file_id,
            )
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("size", "first_by"),
    [(2 * MB, "url"), (21 * MB, "upload")],  # Telegram fetches by URL only up to 20 MB
)
async def test_a_new_app_instance_sends_by_the_stored_file_id_and_recovers_a_refused_one(
    make_settings, fake: FakeTelegram, tone: Path, engine: AsyncEngine, size: int, first_by: str
) -> None:  # type: ignore[no-untyped-def]
    async with telegram_app(make_settings, fake) as (http, runtime):
        episode = await seed(runtime, tone, size=size)
        first = await play(http, fake, episode.id)
    if first_by == "url":
        assert first["audio"].startswith("http")
        assert not first["multipart"]
        assert fake.uploads == []
    else:
        assert first["multipart"]
        assert len(fake.uploads) == 1
    [(bot, key, stored_size, file_id)] = await stored(engine)
    assert (bot, key, stored_size) == (bot_hash(TOKEN), f"episode:{episode.media_path}", size)
    assert file_id in fake.file_ids
    assert TOKEN not in json.dumps(await stored(engine))  # only its hash rests in the table
    uploads = len(fake.uploads)

    # A second instance knows nothing in memory: it reads the id and sends by it.
    async with telegram_app(make_settings, fake) as (http, runtime):
        again = await play(http, fake, episode.id)
        assert (again["audio"], again["multipart"]) == (file_id, False)
        assert len(fake.uploads) == uploads

        # Telegram no longer knows the id (purged, re-created bot); the stand-in keeps the
        # fake's counter, so the id it issues next is a new one.
        fake.file_ids.remove(file_id)
        fake.file_ids.add("forgotten")
        recovered = await play(http, fake, episode.id, calls=2)
        refused, resent = fake.calls("sendAudio")[-2:]
        assert refused.params["audio"] == file_id
        if first_by == "url":
            assert resent.params["audio"].startswith("http")
            assert not _multipart(resent)
        else:
            assert _multipart(resent)
            assert len(fake.uploads) == uploads + 1
        assert recovered["audio"] == resent.params["audio"]
    [(_, _, _, new_id)] = await stored(engine)
    assert new_id != file_id
    assert new_id in fake.file_ids

    # And the replaced id is what the next instance uses.
    async with telegram_app(make_settings, fake) as (http, _):
        assert (await play(http, fake, episode.id))["audio"] == new_id
        assert len(fake.uploads) == uploads + (first_by == "upload")


async def test_another_bot_never_uses_the_first_bots_file_ids(
    make_settings, fake: FakeTelegram, tone: Path, engine: AsyncEngine
) -> None:  # type: ignore[no-untyped-def]
    async with telegram_app(make_settings, fake) as (http, runtime):
        episode = await seed(runtime, tone, size=2 * MB)
        first = await play(http, fake, episode.id)
    async with (
        FakeTelegram(token=OTHER_TOKEN) as other,
        telegram_app(make_settings, other, token=OTHER_TOKEN) as (http, _),
    ):
        second = await play(http, other, episode.id)
    assert first["audio"] == second["audio"]  # both by URL: no id crosses bots
    assert second["audio"].startswith("http")
    bots = sorted(bot for bot, *_ in await stored(engine))
    assert bots == sorted([bot_hash(TOKEN), bot_hash(OTHER_TOKEN)])


async def test_a_chat_error_keeps_the_stored_file_id(
    make_settings, fake: FakeTelegram, tone: Path, engine: AsyncEngine
) -> None:  # type: ignore[no-untyped-def]
    async with telegram_app(make_settings, fake) as (http, runtime):
        episode = await seed(runtime, tone, size=21 * MB)
        await play(http, fake, episode.id)
    [row] = await stored(engine)
    async with telegram_app(make_settings, fake) as (http, _):
        fake.fail(status=400, method="sendAudio")  # "chat not found": not the file's fault
        await play(http, fake, episode.id)
    assert await stored(engine) == [row]
    assert len(fake.uploads) == 1  # no second upload for a chat that cannot receive it
