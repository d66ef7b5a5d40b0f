"""Audio in (upload, transcode, duration, TTS, bad files) and out (`/media/...`: Range, content
types, cache headers, signed expiring links), through the real import functions and app."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import mutagen
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from media.episodes import tts_episode, upload_episode
from media.files import AudioError, EspeakNg, MediaSigner, ingest_audio, media_url, probe
from models.db import create_sessionmaker
from models.podcasts import Episode, PodcastError, create_podcast
from tests.podcast_support import make_tone, seed_podcast

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {kind: make_tone(folder / f"tone.{kind}", seconds=1.5) for kind in ("wav", "mp3", "m4a")}


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_wav_is_transcoded_to_m4a_and_mp3_m4a_are_kept(
    tones: dict[str, Path], tmp_path: Path
) -> None:
    media = tmp_path / "media"
    wav = await ingest_audio(tones["wav"], media_dir=media, folder="podcasts/x", stem="001")
    assert wav.path.startswith("podcasts/x/001-")
    assert wav.path.endswith(".m4a")
    assert wav.content_type == "audio/mp4"
    stored = media / wav.path
    assert type(mutagen.File(stored)).__name__ == "MP4"
    assert abs(wav.duration_ms - 1500) < 120  # AAC priming may add a few ms
    assert wav.size_bytes == stored.stat().st_size
    mp3 = await ingest_audio(tones["mp3"], media_dir=media, folder="podcasts/x", stem="002")
    assert mp3.path.endswith(".mp3")
    assert mp3.content_type == "audio/mpeg"
    assert (media / mp3.path).read_bytes() == tones["mp3"].read_bytes()  # kept as it was
    assert abs(mp3.duration_ms - 1500) < 120
    m4a = await ingest_audio(tones["m4a"], media_dir=media, folder="podcasts/x", stem="003")
    assert (media / m4a.path).read_bytes() == tones["m4a"].read_bytes()
    assert probe(tones["wav"]).duration_ms == 1500
    # Only finished files: no temporary file is left beside them.
    assert [p.name.startswith(".part-") for p in _files(media)] == [False, False, False]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.mp3", b"this is not audio at all " * 40, "not a readable mp3, m4a or wav"),
        ("empty.wav", b"", "empty"),
        ("song.flac", None, "not accepted"),
        ("cut.m4a", None, "does not decode"),
    ],
)
async def test_a_bad_file_is_refused_clearly_and_nothing_is_imported(
    name: str,
    content: bytes | None,
    message: str,
    tones: dict[str, Path],
    tmp_path: Path,
    make_settings,  # type: ignore[no-untyped-def]
    sm: async_sessionmaker[AsyncSession],
    session: AsyncSession,
) -> None:
    settings: Settings = make_settings()
    bad = tmp_path / name
    if name == "song.flac":
        make_tone(bad)  # real audio, but not a format we take
    elif name == "cut.m4a":
        # Its index is intact (so the duration reads fine) but half of the audio is missing.
        whole = await ingest_audio(tones["wav"], media_dir=tmp_path / "ok", folder="x", stem="x")
        data = (tmp_path / "ok" / whole.path).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        assert probe(bad).duration_ms > 1000
    else:
        bad.write_bytes(content or b"")
    async with sm() as s:
        await create_podcast(s, slug="infosec", title="資安", now=NOW)
        await s.commit()
    with pytest.raises(AudioError, match=message):
        await upload_episode(sm, settings=settings, podcast="infosec", file=bad, now=NOW)
    assert _files(settings.media_dir) == []
    assert await session.scalar(select(func.count(Episode.id))) == 0


async def test_a_refused_row_leaves_no_file_behind(
    tones: dict[str, Path],
    make_settings,  # type: ignore[no-untyped-def]
    sm: async_sessionmaker[AsyncSession],
) -> None:
    settings: Settings = make_settings()
    async with sm() as s:
        await create_podcast(s, slug="infosec", title="資安", now=NOW)
        await s.commit()
    with pytest.raises(PodcastError, match="chapter 1"):
        await upload_episode(
            sm,
            settings=settings,
            podcast="infosec",
            file=tones["mp3"],
            chapters=[{"start_ms": 99_000, "title": "after the end"}],
            now=NOW,
        )
    assert _files(settings.media_dir) == []
    with pytest.raises(PodcastError, match="no podcast"):
        await upload_episode(sm, settings=settings, podcast="nope", file=tones["mp3"], now=NOW)


async def test_tts_turns_a_zh_tw_script_into_an_episode(
    make_settings,  # type: ignore[no-untyped-def]
    sm: async_sessionmaker[AsyncSession],
) -> None:
    settings: Settings = make_settings()
    async with sm() as s:
        await create_podcast(s, slug="infosec", title="資安", now=NOW)
        await s.commit()
    script = "歡迎收聽。密碼要長，不要重複使用。"
    episode = await tts_episode(
        sm, settings=settings, podcast="infosec", script=script, title="密碼", now=NOW
    )
    assert episode.number == 1
    assert episode.transcript == script
    assert episode.media_path.endswith(".m4a")
    assert episode.content_type == "audio/mp4"
    stored = settings.media_dir / episode.media_path
    assert 1000 < episode.duration_ms < 15_000
    assert abs(mutagen.File(stored).info.length * 1000 - episode.duration_ms) < 50
    # The voice speaks Mandarin with tones ("ni3 hao3" -> n'i35 X'Au214), not "ni three".
    phonemes = espeak_phonemes("你好，密碼要長")
    assert "(en)" not in phonemes
    assert "m'i51" in phonemes
    with pytest.raises(AudioError, match="empty"):
        await tts_episode(sm, settings=settings, podcast="infosec", script="  ", title="x", now=NOW)


def espeak_phonemes(text: str) -> str:
    args = ["espeak-ng", "-q", "-x", "-v", EspeakNg.VOICES["zh-TW"], text]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


# -- serving ---------------------------------------------------------------------------------------
@pytest.fixture
async def media_app(  # type: ignore[no-untyped-def]
    served, tones: dict[str, Path]
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, dict[str, Episode], list[dt.datetime]]]:
    """The real app with the podcast routes, a public and a restricted podcast, and a clock."""
    clock = [NOW]
    async with served() as (url, api):
        runtime = api.state.runtime
        settings = runtime.settings
        runtime.processor.clock = lambda: clock[0]
        public = await seed_podcast(
            runtime.sessionmaker, settings, tones["mp3"], episodes=1, now=NOW
        )
        private = await seed_podcast(
            runtime.sessionmaker,
            settings,
            tones["wav"],
            slug="ethics",
            audience="civil_servant",
            episodes=1,
            now=NOW,
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield (
                http,
                settings,
                {"public": public.episodes[0], "private": private.episodes[0]},
                clock,
            )


def _path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1]


async def test_range_requests_return_exactly_the_bytes_asked(media_app) -> None:  # type: ignore[no-untyped-def]
    http, settings, eps, _ = media_app
    ep = eps["public"]
    url = "/" + _path(media_url(settings, ep.media_path))
    whole = (settings.media_dir / ep.media_path).read_bytes()
    full = await http.get(url)
    assert full.status_code == 200
    assert full.content == whole
    assert full.headers["content-type"] == "audio/mpeg"
    assert full.headers["accept-ranges"] == "bytes"
    assert "immutable" in full.headers["cache-control"]
    for header, (start, end) in {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, len(whole) - 1),
        "bytes=-50": (len(whole) - 50, len(whole) - 1),
        f"bytes=10-{len(whole) + 500}": (10, len(whole) - 1),
    }.items():
        part = await http.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == whole[start : end + 1], header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(whole)}"
        assert int(part.headers["content-length"]) == end - start + 1
    refused = await http.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert refused.status_code == 416
    assert refused.headers["content-range"] == f"bytes */{len(whole)}"
    assert (await http.get("/media/../../etc/passwd")).status_code == 404
    assert (await http.get("/media/podcasts/infosec/none.mp3")).status_code == 404


async def test_restricted_media_needs_a_valid_unexpired_signature(media_app) -> None:  # type: ignore[no-untyped-def]
    http, settings, eps, clock = media_app
    ep = eps["private"]
    signer = MediaSigner.from_settings(settings)
    bare = "/" + _path(media_url(settings, ep.media_path))
    assert (await http.get(bare)).status_code == 403
    signed = "/" + _path(media_url(settings, ep.media_path, signer=signer, now=NOW))
    ok = await http.get(signed, headers={"Range": "bytes=0-9"})
    assert ok.status_code == 206
    assert len(ok.content) == 10
    assert ok.headers["content-type"] == "audio/mp4"
    assert ok.headers["cache-control"].startswith("private")
    # A signature for another file, or a changed expiry, is refused.
    other = "/" + _path(media_url(settings, eps["public"].media_path, signer=signer, now=NOW))
    forged = bare + "?" + other.split("?", 1)[1]
    assert (await http.get(forged)).status_code == 403
    longer = signed.replace("exp=", "exp=9")
    assert (await http.get(longer)).status_code == 403
    # Seven days later the same link has expired.
    clock[0] = NOW + dt.timedelta(days=7, seconds=1)
    expired = await http.get(signed)
    assert expired.status_code == 403
    assert "expired" in expired.text


async def test_seed_builds_three_short_episodes(
    tones: dict[str, Path],
    make_settings,  # type: ignore[no-untyped-def]
    sm: async_sessionmaker[AsyncSession],
) -> None:
    settings: Settings = make_settings()
    seeded = await seed_podcast(sm, settings, tones["wav"], now=NOW)
    assert [e.number for e in seeded.episodes] == [1, 2, 3]
    assert len({e.media_path for e in seeded.episodes}) == 3
    assert all(e.duration_ms > 1000 for e in seeded.episodes)


async def test_demo_seed_speaks_its_episodes_once(
    make_settings,  # type: ignore[no-untyped-def]
    sm: async_sessionmaker[AsyncSession],
    session: AsyncSession,
) -> None:
    from media.episodes import DEMO_PODCASTS, seed_demo_podcasts

    settings: Settings = make_settings()
    first = await seed_demo_podcasts(sm, settings=settings, now=NOW)
    total = sum(len(d.episodes) for d in DEMO_PODCASTS)
    assert (first.podcasts_created, first.episodes_created) == (len(DEMO_PODCASTS), total)
    assert len(DEMO_PODCASTS[0].episodes) == 3
    again = await seed_demo_podcasts(sm, settings=settings, now=NOW)
    assert (again.podcasts_created, again.episodes_created, again.unchanged) == (0, 0, total)
    rows = (await session.scalars(select(Episode).order_by(Episode.id))).all()
    assert len(rows) == total
    assert all(r.transcript and r.duration_ms > 1000 for r in rows)
    # A lost file is spoken again; the rest stays as it was.
    (settings.media_dir / rows[0].media_path).unlink()
    repaired = await seed_demo_podcasts(sm, settings=settings, now=NOW)
    assert (repaired.episodes_repaired, repaired.unchanged) == (1, total - 1)
    assert len(_files(settings.media_dir)) == total


async def test_a_link_inside_media_dir_does_not_serve_a_restricted_episode(media_app) -> None:  # type: ignore[no-untyped-def]
    """Access is judged by the file served: another name for a restricted episode (a symlink
    someone left in MEDIA_DIR) is not a way around its signature."""
    http, settings, eps, _ = media_app
    ep = eps["private"]
    target = settings.media_dir / ep.media_path
    alias = settings.media_dir / "podcasts" / "alias.m4a"
    alias.symlink_to(target)
    assert (await http.get("/media/podcasts/alias.m4a")).status_code == 404
    signer = MediaSigner.from_settings(settings)
    signed = "/" + _path(media_url(settings, "podcasts/alias.m4a", signer=signer, now=NOW))
    assert (await http.get(signed)).status_code == 404  # not even with a signature of its own
    # The public episode behind a link is still public (links to public files are harmless).
    public_alias = settings.media_dir / "podcasts" / "public-alias.mp3"
    public_alias.symlink_to(settings.media_dir / eps["public"].media_path)
    assert (await http.get("/media/podcasts/public-alias.mp3")).status_code == 200
