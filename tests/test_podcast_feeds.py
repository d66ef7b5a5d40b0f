"""RSS feeds through the real app, read back with feedparser (as podcast apps do)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest

from media.feeds import ITUNES, PODCAST, private_feed_url
from media.files import MediaSigner
from models.members import ensure_account
from models.podcasts import ensure_feed_token, revoke_feed_tokens
from tests.podcast_support import Seeded, make_tone, seed_podcast

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone(tmp_path_factory.mktemp("tones") / "tone.mp3", seconds=1.2)


@pytest.fixture
async def feeds_app(served, tone: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with served(public_base_url="https://edoor.example") as (url, api):
        runtime = api.state.runtime
        sm, settings = runtime.sessionmaker, runtime.settings
        public = await seed_podcast(sm, settings, tone, now=NOW)
        private = await seed_podcast(
            sm, settings, tone, slug="ethics", audience="civil_servant", episodes=2, now=NOW
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield {"http": http, "runtime": runtime, "public": public, "private": private}


def _local(url: str) -> str:
    assert url.startswith("https://edoor.example/")
    return url.removeprefix("https://edoor.example")


async def test_public_feed_has_the_fields_podcast_apps_need(feeds_app: dict[str, Any]) -> None:
    http: httpx.AsyncClient = feeds_app["http"]
    seeded: Seeded = feeds_app["public"]
    response = await http.get("/feeds/infosec.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/rss+xml")
    assert "max-age" in response.headers["cache-control"]
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "rss20"
    assert feed.feed.title == "資安小學堂"
    assert feed.feed.itunes_type == "serial"
    assert feed.feed.language == "zh-tw"
    assert [t.term for t in feed.feed.tags] == ["Education"]
    assert len(feed.entries) == 3
    for entry, episode in zip(feed.entries, seeded.episodes, strict=True):
        assert entry.title == episode.title
        assert entry.itunes_episode == str(episode.number)
        assert entry.itunes_duration == str(round(episode.duration_ms / 1000))
        (enclosure,) = entry.enclosures
        assert enclosure.type == "audio/mpeg"
        assert int(enclosure.length) == episode.size_bytes
        assert enclosure.href == f"https://edoor.example/media/{episode.media_path}"
        audio = await http.get(_local(enclosure.href))
        assert len(audio.content) == episode.size_bytes
    # Podcasting 2.0 tags, read from the XML itself (feedparser does not know them).
    root = ET.fromstring(response.content)  # noqa: S314 (our own output)
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext(f"{{{PODCAST}}}medium") == "course"
    category = channel.find(f"{{{ITUNES}}}category")
    assert category is not None
    assert category.get("text") == "Education"  # Apple reads the attribute, not the text
    assert channel.find(f"{{{ITUNES}}}block") is None
    first = channel.findall("item")[0]
    transcript = first.find(f"{{{PODCAST}}}transcript")
    assert transcript is not None
    assert transcript.get("type") == "text/plain"
    text = await http.get(_local(transcript.get("url", "")))
    assert text.text == "這是第1課的逐字稿。"
    chapters = first.find(f"{{{PODCAST}}}chapters")
    assert chapters is not None
    data = (await http.get(_local(chapters.get("url", "")))).json()
    assert data["chapters"] == [
        {"startTime": 0.0, "title": "開場"},
        {"startTime": 0.5, "title": "重點"},
    ]


async def test_feed_list_shows_public_feeds_only(feeds_app: dict[str, Any]) -> None:
    http: httpx.AsyncClient = feeds_app["http"]
    listing = (await http.get("/feeds/")).json()
    assert listing["feeds"] == [
        {
            "id": "infosec",
            "title": "資安小學堂",
            "description": "測試用的語音課",
            "url": "https://edoor.example/feeds/infosec.xml",
            "episodes": 3,
            "course_id": None,
        }
    ]
    assert (await http.get("/feeds/ethics.xml")).status_code == 403
    assert (await http.get("/feeds/ethics/1/transcript.txt")).status_code == 403
    assert (await http.get("/feeds/nothing.xml")).status_code == 404


async def test_private_feed_works_for_its_member_until_revoked(feeds_app: dict[str, Any]) -> None:
    http: httpx.AsyncClient = feeds_app["http"]
    runtime = feeds_app["runtime"]
    private: Seeded = feeds_app["private"]
    signer = MediaSigner.from_settings(runtime.settings)
    async with runtime.sessionmaker() as session:
        account, _ = await ensure_account(session, channel="simulator", external_id="cs", now=NOW)
        account.member.is_civil_servant = True
        token = await ensure_feed_token(
            session, member_id=account.member_id, podcast_id=private.podcast.id, now=NOW
        )
        await session.commit()
        member_id = account.member_id
    url = _local(private_feed_url(runtime.settings, signer, token))
    response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("private")
    feed = feedparser.parse(response.content)
    assert not feed.bozo
    assert [e.itunes_episode for e in feed.entries] == ["1", "2"]
    assert "<itunes:block>Yes</itunes:block>" in response.text
    enclosure = feed.entries[0].enclosures[0]
    part = await http.get(_local(enclosure.href), headers={"Range": "bytes=0-15"})
    assert part.status_code == 206
    assert len(part.content) == 16
    # A guessed token (right id, wrong MAC) opens nothing.
    forged = url.replace(url.rsplit(".", 2)[1], "A" * 32)
    assert (await http.get(forged)).status_code == 404
    # Revoked: the feed and its audio are gone.
    async with runtime.sessionmaker() as session:
        await revoke_feed_tokens(
            session, member_id=member_id, podcast_id=private.podcast.id, now=NOW
        )
        await session.commit()
    assert (await http.get(url)).status_code == 404
    assert (await http.get(_local(enclosure.href))).status_code == 404
