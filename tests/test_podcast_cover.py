"""Podcast cover art: drawn from the title, served under /feeds, named in the RSS by
itunes:image and <image> (read back with feedparser, as podcast apps do)."""

from __future__ import annotations

import datetime as dt
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
from PIL import Image
from sqlalchemy import update

from bot.fonts import CJK_FONTS
from media.feeds import ITUNES, draw_cover, private_feed_url
from media.files import MediaSigner
from models.members import ensure_account
from models.podcasts import Podcast, ensure_feed_token
from tests.podcast_support import make_tone, seed_podcast

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
BASE = "https://edoor.example"


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone(tmp_path_factory.mktemp("tones") / "tone.mp3", seconds=0.5)


@pytest.fixture
async def feeds_app(served, tone: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with served(public_base_url=BASE) as (url, api):
        runtime = api.state.runtime
        sm, settings = runtime.sessionmaker, runtime.settings
        public = await seed_podcast(sm, settings, tone, episodes=1, now=NOW)
        private = await seed_podcast(
            sm, settings, tone, slug="ethics", audience="civil_servant", episodes=1, now=NOW
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield {"http": http, "runtime": runtime, "public": public, "private": private}


def _cover_links(body: bytes) -> tuple[str, str]:
    """(itunes:image href, <image><url>) as the feed states them."""
    channel = ET.fromstring(body).find("channel")  # noqa: S314 (our own feed)
    assert channel is not None
    itunes = channel.find(f"{{{ITUNES}}}image")
    image_url = channel.findtext("image/url")
    assert itunes is not None
    assert image_url is not None
    return itunes.attrib["href"], image_url


def _jpeg(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert image.size == (1400, 1400)
    return image


async def test_public_feed_names_its_cover_and_the_cover_is_apple_sized(
    feeds_app: dict[str, Any],
) -> None:
    http: httpx.AsyncClient = feeds_app["http"]
    response = await http.get("/feeds/infosec.xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    href = feed.feed.image.href
    assert href.startswith(f"{BASE}/feeds/infosec/cover.jpg?v=")
    assert _cover_links(response.content) == (href, href)
    assert feed.feed.image.title == "資安小學堂"
    cover = await http.get(href.removeprefix(BASE))
    assert cover.status_code == 200
    assert cover.headers["content-type"] == "image/jpeg"
    assert "immutable" in cover.headers["cache-control"]
    image = _jpeg(cover.content)
    assert len(image.getcolors(1 << 20) or []) > 2  # the title is drawn, not a flat square
    # The same URL gives the same file (drawn once, kept under MEDIA_DIR).
    assert (await http.get(href.removeprefix(BASE))).content == cover.content
    covers = list((feeds_app["runtime"].settings.media_dir / "covers").glob("infosec-*.jpg"))
    assert len(covers) == 1


async def test_a_new_title_gives_a_new_cover_url(feeds_app: dict[str, Any]) -> None:
    http: httpx.AsyncClient = feeds_app["http"]
    runtime = feeds_app["runtime"]
    before = feedparser.parse((await http.get("/feeds/infosec.xml")).content).feed.image.href
    old = (await http.get(before.removeprefix(BASE))).content
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Podcast).where(Podcast.slug == "infosec").values(title="資安新學堂 2026")
        )
        await session.commit()
    after = feedparser.parse((await http.get("/feeds/infosec.xml")).content).feed.image.href
    assert after != before
    new = await http.get(after.removeprefix(BASE))
    assert new.status_code == 200
    assert new.content != old
    # An outdated link still shows the current art, but is not cached for long.
    stale = await http.get(before.removeprefix(BASE))
    assert stale.content == new.content
    assert "immutable" not in stale.headers["cache-control"]


async def test_restricted_podcast_cover_goes_through_the_private_feed(
    feeds_app: dict[str, Any],
) -> None:
    http: httpx.AsyncClient = feeds_app["http"]
    runtime = feeds_app["runtime"]
    assert (await http.get("/feeds/ethics/cover.jpg")).status_code == 403
    async with runtime.sessionmaker() as session:
        account, _ = await ensure_account(session, channel="simulator", external_id="cs", now=NOW)
        account.member.is_civil_servant = True
        token = await ensure_feed_token(
            session,
            member_id=account.member_id,
            podcast_id=feeds_app["private"].podcast.id,
            now=NOW,
        )
        await session.commit()
    url = private_feed_url(runtime.settings, MediaSigner.from_settings(runtime.settings), token)
    response = await http.get(url.removeprefix(BASE))
    feed = feedparser.parse(response.content)
    assert not feed.bozo
    href = feed.feed.image.href
    assert href.startswith(url.removesuffix(".xml") + "/cover.jpg?v=")
    cover = await http.get(href.removeprefix(BASE))
    assert cover.status_code == 200
    assert cover.headers["cache-control"].startswith("private")
    _jpeg(cover.content)
    # Without the version (or with an old one) it stays out of shared caches too.
    for stale in (href.split("?")[0], href.split("?")[0] + "?v=old"):
        response = await http.get(stale.removeprefix(BASE))
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("private"), stale
        assert "public" not in response.headers["cache-control"]
    forged = href.replace(href.split("/private/")[1].split("/")[0], "1." + "A" * 32)
    assert (await http.get(forged.removeprefix(BASE))).status_code == 404


def test_without_a_cjk_font_the_cover_falls_back_to_the_slug() -> None:
    # CI images may lack a CJK font: the cover is still valid, drawn from the Latin slug.
    plain = draw_cover(title="資安小學堂", fallback_title="infosec", author="臺北e大", fonts=())
    image = _jpeg(plain)
    assert len(image.getcolors(1 << 20) or []) > 2
    # Chinese words are left out (they would be empty boxes): the author becomes English too.
    same = draw_cover(title="資安小學堂", fallback_title="infosec", author="臺北e大學", fonts=())
    assert plain == same
    other = draw_cover(title="資安小學堂", fallback_title="other", author="臺北e大", fonts=())
    assert plain != other
    if any(Path(p).exists() for p in CJK_FONTS):
        # With a CJK font (Debian's fonts-noto-cjk here), the Chinese title itself is drawn.
        assert draw_cover(title="資安小學堂", fallback_title="infosec", author="臺北e大") != plain


def test_long_titles_wrap_within_the_margins() -> None:
    title = "Information Security Awareness for Public Servants: Phishing, Passwords and More"
    image = _jpeg(draw_cover(title=title, fallback_title="x", author="Taipei e-University"))
    background = image.getpixel((5, 5))
    # Nothing drawn in the side margins (the title wraps instead of running off).
    for x in (*range(0, 100, 7), *range(1301, 1400, 7)):
        for y in range(0, 1400, 25):
            assert image.getpixel((x, y)) == background
