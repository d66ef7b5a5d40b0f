"""Audio over 20 MB on Telegram: Telegram will not fetch such a file by URL, so the channel
uploads it from MEDIA_DIR (multipart, up to 50 MB) once and re-sends it by file_id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.messages import Audio, Button
from bot.settings import Settings
from bot.telegram import TelegramChannel
from media.files import media_url
from models.db import create_engine, create_sessionmaker
from models.paths import local_media_path
from tests.fakes.telegram import CHAT, TOKEN, FakeTelegram
from tests.telegram_spec import call_errors, load_spec

MB = 1024 * 1024
REL = "podcasts/7/ep-01 長篇.m4a"  # a space and CJK: the URL is percent-encoded
MARKER = b"EDOOR-LARGE-AUDIO-HEAD"
SPEC = load_spec()


def settings_for(fake: FakeTelegram, media_dir: Path) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite+aiosqlite:///:memory:",
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": "tg-webhook-secret_0123456789",
        "telegram_api_base_url": fake.api_base_url,
        "public_base_url": "https://edoor.example",
        "media_dir": media_dir,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def big_file(media_dir: Path, rel: str, size: int) -> Path:
    """A file of `size` bytes that is mostly a hole (sparse): fast to make, never decoded."""
    path = media_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(MARKER)
        fh.truncate(size)
    return path


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def channel(fake: FakeTelegram, tmp_path: Path) -> AsyncIterator[TelegramChannel]:
    tg = TelegramChannel(settings_for(fake, tmp_path / "media"))
    await tg.start()
    yield tg
    await tg.stop()


def episode(
    channel: TelegramChannel, *, size: int, rel: str = REL, url: str | None = None
) -> Audio:
    return Audio(
        url=url or media_url(channel.settings, rel),
        duration_ms=1_800_000,
        title="第 1 集 長篇",
        performer="資安聽課",
        file_size=size,
        media_key=f"episode:{rel}",
        buttons=[Button(label="下一集", action="pod.ep:2")],
    )


async def test_over_20_mb_is_uploaded_once_then_sent_by_file_id(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    size = 21 * MB
    path = big_file(channel.settings.media_dir, REL, size)
    reply = episode(channel, size=size)
    assert (
        local_media_path(
            reply.url,
            public_base_url=channel.settings.public_base_url,
            media_dir=channel.settings.media_dir,
        )
        == path.resolve()
    )
    # Telegram would refuse to fetch this URL (over 20 MB): the channel must not rely on it.
    fake.url_sizes[reply.url] = size
    started = time.monotonic()
    await channel.deliver(str(CHAT), [reply])
    await channel.deliver(str(CHAT), [reply])
    assert time.monotonic() - started < 10
    first, second = fake.calls("sendAudio")
    assert first.params["audio"] == "<file ep-01 長篇.m4a>"
    assert first.request.headers["content-type"].startswith("multipart/form-data")
    assert first.params["duration"] == 1800
    assert first.params["title"] == "第 1 集 長篇"
    assert first.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "pod.ep:2"
    [upload] = fake.uploads
    assert (upload.method, upload.field) == ("sendAudio", "audio")
    assert MARKER in upload.body
    assert len(upload.body) >= size
    # Then by the file_id Telegram returned, as a plain (spec-valid) call, no upload.
    assert second.params["audio"] == channel.file_ids[reply.media_key or ""]
    assert not second.request.headers["content-type"].startswith("multipart/")
    assert call_errors(SPEC, second.method, second.params) == []
    assert len(fake.uploads) == 1


async def test_a_signed_link_maps_to_its_file_and_a_stale_file_id_uploads_again(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    size = 25 * MB
    big_file(channel.settings.media_dir, REL, size)
    signed = f"{media_url(channel.settings, REL)}?exp=1893456000&sig=abc"
    reply = episode(channel, size=size, url=signed)
    fake.url_sizes[signed] = size
    await channel.deliver(str(CHAT), [reply])
    fake.file_ids.clear()  # Telegram forgot the id (another token, purged)
    await channel.deliver(str(CHAT), [reply])
    sent = [c.params["audio"] for c in fake.calls("sendAudio")]
    # upload, stale id refused, upload again: never the URL, which would fail over 20 MB.
    assert sent[0] == sent[2] == "<file ep-01 長篇.m4a>"
    assert sent[1].endswith("-fake")
    assert len(fake.uploads) == 2
    assert channel.file_ids[reply.media_key or ""] in fake.file_ids


async def test_people_asking_at_once_share_one_upload(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    size = 21 * MB
    big_file(channel.settings.media_dir, REL, size)
    reply = episode(channel, size=size)
    await asyncio.gather(*(channel.deliver(str(CHAT + n), [reply]) for n in range(3)))
    assert len(fake.uploads) == 1
    by_id = [c for c in fake.calls("sendAudio") if not c.params["audio"].startswith("<file")]
    assert len(by_id) == 2


async def test_a_database_away_never_costs_the_audio(
    fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """File_ids are kept in the database; with the database unreachable the audio still goes
    (uploaded once, then by the id this process remembers)."""
    engine = create_engine("postgresql+asyncpg://edoor@127.0.0.1:9/none", pool_pre_ping=False)
    tg = TelegramChannel(
        settings_for(fake, tmp_path / "media"), sessionmaker=create_sessionmaker(engine)
    )
    await tg.start()
    try:
        size = 21 * MB
        big_file(tg.settings.media_dir, REL, size)
        reply = episode(tg, size=size)
        await tg.deliver(str(CHAT), [reply])
        await tg.deliver(str(CHAT), [reply])
    finally:
        await tg.stop()
        await engine.dispose()
    assert len(fake.uploads) == 1
    assert len(fake.calls("sendAudio")) == 2
    assert "stored Telegram file_ids unavailable" in caplog.text
    assert "Telegram file_id not stored" in caplog.text


async def test_small_audio_still_goes_by_url(channel: TelegramChannel, fake: FakeTelegram) -> None:
    big_file(channel.settings.media_dir, REL, 2 * MB)
    reply = episode(channel, size=2 * MB)
    await channel.deliver(str(CHAT), [reply])
    [call] = fake.calls("sendAudio")
    assert call.params["audio"] == reply.url
    assert fake.uploads == []


@pytest.mark.parametrize(
    ("size", "where"),
    [
        (51 * MB, "local"),  # over what a bot may upload
        (21 * MB, "https://cdn.example/ep.m4a"),  # not one of our files: nothing to upload
        (21 * MB, "missing"),  # ours, but not on disk
    ],
)
async def test_audio_that_cannot_be_sent_becomes_its_link(
    channel: TelegramChannel, fake: FakeTelegram, size: int, where: str
) -> None:
    url: str | None = None
    if where == "local":
        big_file(channel.settings.media_dir, REL, 1024)  # the size comes from the reply
    elif where.startswith("https://"):
        url = where
    reply = episode(channel, size=size, url=url)
    await channel.deliver(str(CHAT), [reply])
    assert fake.calls("sendAudio") == []
    assert fake.uploads == []
    [message] = fake.calls("sendMessage")
    assert message.params["text"] == f"{reply.title}\n{reply.url}"
    keyboard: Any = message.params["reply_markup"]["inline_keyboard"]
    assert keyboard[0][0]["callback_data"] == "pod.ep:2"
    assert call_errors(SPEC, message.method, message.params) == []


def test_only_our_media_urls_map_to_files(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="sqlite+aiosqlite:///:memory:",
        public_base_url="https://edoor.example/",
        media_dir=tmp_path / "media",
    )
    path = big_file(settings.media_dir, "a/b.m4a", 10)
    (tmp_path / "secret.txt").write_text("no")
    assert (
        local_media_path(
            public_base_url=settings.public_base_url,
            media_dir=settings.media_dir,
            url="https://edoor.example/media/a/b.m4a?x=1",
        )
        == path.resolve()
    )
    for url in (
        "https://edoor.example/media/a/../../secret.txt",
        "https://edoor.example/media/a%2F..%2F..%2Fsecret.txt",
        "https://edoor.example/media/",
        "https://other.example/media/a/b.m4a",
        "https://edoor.example/media/a/none.m4a",
        "https://edoor.example/feeds/a/b.m4a",
    ):
        assert (
            local_media_path(
                public_base_url=settings.public_base_url, media_dir=settings.media_dir, url=url
            )
            is None
        ), url


def _local(settings: Settings, url: str) -> Path | None:
    return local_media_path(
        url, public_base_url=settings.public_base_url, media_dir=settings.media_dir
    )
