"""Podcast feeds: `GET /feeds/` (public feeds as JSON), `/feeds/{podcast}.xml` (RSS 2.0 with
iTunes and Podcasting 2.0 tags), transcripts and chapters, and private per-member feeds of
restricted podcasts at `/feeds/private/{token}.xml`, whose token can be revoked. Each
podcast has cover art drawn from its title (`.../cover.jpg`, 1400 x 1400, as Apple requires).

`podcast_routes()` is the one router app.py includes for podcasts (feeds and `/media/...`).
"""

from __future__ import annotations

import asyncio
import colorsys
import datetime as dt
import email.utils
import hashlib
import io
import os
import re
import tempfile
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.fonts import CJK_FONTS
from bot.ports import LinkSigner
from bot.settings import Settings
from media.files import CONTENT_TYPES, MediaSigner, media_routes, media_url
from models.base import utcnow
from models.members import Member
from models.paths import safe_relative
from models.podcasts import (
    Episode,
    FeedToken,
    Podcast,
    episodes_of,
    get_podcast_by_slug,
    list_podcasts,
    may_listen,
)

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ATOM = "http://www.w3.org/2005/Atom"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
# Podcasting 2.0: podcast:guid is a UUIDv5 of the feed URL (no scheme) in this namespace.
PODCAST_GUID_NS = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
# Apple's podcast spec names these enclosure types.
ENCLOSURE_TYPES = {"audio/mp4": "audio/x-m4a", "audio/mpeg": "audio/mpeg"}
FEED_CACHE = "public, max-age=300"
PORTAL = "https://elearning.taipei/"

# Apple: square JPEG or PNG, 1400 to 3000 pixels a side, RGB.
COVER_SIZE = 1400
COVER_STYLE = "1"  # bump when the drawing changes, so every cover URL changes with it
COVER_CACHE = "public, max-age=31536000, immutable"  # the URL carries the version

for prefix, uri in (("itunes", ITUNES), ("podcast", PODCAST), ("atom", ATOM), ("content", CONTENT)):
    ET.register_namespace(prefix, uri)


def feed_url(settings: Settings, slug: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/feeds/{slug}.xml"


def private_feed_url(settings: Settings, signer: LinkSigner, token: FeedToken) -> str:
    return f"{settings.public_base_url.rstrip('/')}/feeds/private/{_token(signer, token)}.xml"


def _token(signer: LinkSigner, row: FeedToken) -> str:
    return signer.feed_token(row.id, row.nonce)


def duration_text(duration_ms: int) -> str:
    """'0:07', '12:05', '1:02:03': what a person reads next to an episode."""
    total = max(1, round(duration_ms / 1000))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _suffix(episode: Episode) -> str:
    return Path(episode.media_path).suffix or ".m4a"


@dataclass(frozen=True)
class FeedLinks:
    """Where a feed's items point: public URLs, or through one member's private token."""

    base: str  # .../feeds/<slug> or .../feeds/private/<token>
    self_url: str
    audio: Callable[[Episode], str]
    cover: str | None = None  # the cover art's URL (itunes:image and <image>)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text
    return node


def render_feed(
    podcast: Podcast, episodes: list[Episode], *, links: FeedLinks, private: bool
) -> bytes:
    """RSS 2.0 for podcast apps: iTunes tags (serial, episode numbers, durations) and
    Podcasting 2.0 (medium course, transcripts, chapters, guid)."""
    rss = ET.Element("rss", {"version": "2.0"})
    channel = _sub(rss, "channel")
    _sub(channel, "title", podcast.title)
    _sub(channel, "link", PORTAL)
    _sub(channel, "description", podcast.description or podcast.title)
    _sub(channel, "language", podcast.language.lower())
    _sub(channel, f"{{{ATOM}}}link", href=links.self_url, rel="self", type="application/rss+xml")
    _sub(channel, f"{{{ITUNES}}}author", podcast.author)
    _sub(channel, f"{{{ITUNES}}}summary", podcast.description or podcast.title)
    _sub(channel, f"{{{ITUNES}}}type", "serial")
    _sub(channel, f"{{{ITUNES}}}explicit", "false")
    ET.SubElement(channel, f"{{{ITUNES}}}category", {"text": "Education"})
    if links.cover is not None:
        _sub(channel, f"{{{ITUNES}}}image", href=links.cover)
        image = _sub(channel, "image")
        _sub(image, "url", links.cover)
        _sub(image, "title", podcast.title)
        _sub(image, "link", PORTAL)
    if private:
        # A personal feed must not be listed by directories or imported elsewhere.
        _sub(channel, f"{{{ITUNES}}}block", "Yes")
        _sub(channel, f"{{{PODCAST}}}locked", "yes")
    _sub(channel, f"{{{PODCAST}}}medium", "course")
    feed_id = links.self_url.split("://", 1)[-1] if not private else f"edoor/{podcast.slug}"
    _sub(channel, f"{{{PODCAST}}}guid", str(uuid.uuid5(PODCAST_GUID_NS, feed_id)))
    if episodes:
        _sub(channel, "lastBuildDate", email.utils.format_datetime(episodes[-1].published_at))
    for ep in episodes:
        item = _sub(channel, "item")
        _sub(item, "title", ep.title)
        _sub(item, "description", ep.description or ep.title)
        _sub(item, "guid", f"edoor-{podcast.slug}-{ep.id}", isPermaLink="false")
        _sub(item, "pubDate", email.utils.format_datetime(ep.published_at))
        _sub(
            item,
            "enclosure",
            url=links.audio(ep),
            length=str(ep.size_bytes),
            type=ENCLOSURE_TYPES.get(ep.content_type, ep.content_type),
        )
        _sub(item, f"{{{ITUNES}}}title", ep.title)
        _sub(item, f"{{{ITUNES}}}episode", str(ep.number))
        _sub(item, f"{{{ITUNES}}}episodeType", "full")
        _sub(item, f"{{{ITUNES}}}duration", str(max(1, round(ep.duration_ms / 1000))))
        if ep.transcript:
            _sub(
                item,
                f"{{{PODCAST}}}transcript",
                url=f"{links.base}/{ep.number}/transcript.txt",
                type="text/plain",
                language=podcast.language,
            )
        if ep.chapters:
            _sub(
                item,
                f"{{{PODCAST}}}chapters",
                url=f"{links.base}/{ep.number}/chapters.json",
                type="application/json+chapters",
            )
    body: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return body


def chapters_json(episode: Episode) -> dict[str, object]:
    """Podcasting 2.0 JSON chapters."""
    return {
        "version": "1.2.0",
        "chapters": [
            {"startTime": c["start_ms"] / 1000, "title": c["title"]} for c in episode.chapters
        ],
    }


# -- cover art -------------------------------------------------------------------------------
def cover_version(podcast: Podcast) -> str:
    """Changes when anything drawn on the cover changes (podcast apps cache art by URL)."""
    seed = "\x1f".join((COVER_STYLE, podcast.slug, podcast.title, podcast.author))
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def _cover_font(
    size: int, fonts: tuple[str, ...]
) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    for path in fonts:
        if Path(path).exists():
            return ImageFont.truetype(path, size), True
    return ImageFont.load_default(size=size), False


# Latin words stay whole; any other character (CJK) may start a new line.
_TOKENS = re.compile(r"[A-Za-z0-9][\w'’.\-]*|\s+|.")


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for token in _TOKENS.findall(text):
        candidate = line + token
        if line and font.getlength(candidate.strip()) > width:
            lines.append(line.strip())
            line = token.lstrip()
        else:
            line = candidate
    if line.strip():
        lines.append(line.strip())
    return lines or [text]


def draw_cover(
    *, title: str, fallback_title: str, author: str, fonts: tuple[str, ...] = CJK_FONTS
) -> bytes:
    """A 1400 x 1400 JPEG: the title large on a colour of its own, the author below.

    Without a CJK font (some CI images) a non-Latin title is drawn as `fallback_title`
    (the feed's slug) rather than as empty boxes, as the rich menu falls back to English.
    """
    _, cjk = _cover_font(10, fonts)
    if not cjk and not title.isascii():
        title = fallback_title
        author = author if author.isascii() else "Taipei e-University"
    hue = int(hashlib.sha256(title.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.32, 0.55)
    background = (int(r * 255), int(g * 255), int(b * 255))
    image = Image.new("RGB", (COVER_SIZE, COVER_SIZE), background)
    pen = ImageDraw.Draw(image)
    margin = 120
    width = COVER_SIZE - 2 * margin
    # The largest size at which the title fits in at most four lines.
    for size in (200, 170, 140, 120, 100, 84, 70):
        font, _ = _cover_font(size, fonts)
        lines = _wrap(title, font, width)
        if len(lines) <= 4 and all(font.getlength(x) <= width for x in lines):
            break
    lines = lines[:4]
    step = int(size * 1.3)
    top = (COVER_SIZE - step * len(lines)) // 2 - 60
    for i, line in enumerate(lines):
        pen.text((COVER_SIZE // 2, top + i * step), line, font=font, fill="white", anchor="mt")
    pen.rectangle((margin, COVER_SIZE - 300, COVER_SIZE - margin, COVER_SIZE - 292), fill="white")
    small, _ = _cover_font(72, fonts)
    pen.text((COVER_SIZE // 2, COVER_SIZE - 200), author, font=small, fill="white", anchor="mt")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


async def ensure_cover(settings: Settings, podcast: Podcast) -> Path:
    """The podcast's cover under MEDIA_DIR/covers/, drawn once per version (any process)."""
    target = settings.media_dir / "covers" / f"{podcast.slug}-{cover_version(podcast)}.jpg"
    return await asyncio.to_thread(
        _write_cover, target, title=podcast.title, slug=podcast.slug, author=podcast.author
    )


def _write_cover(target: Path, *, title: str, slug: str, author: str) -> Path:
    if target.is_file():
        return target
    jpeg = draw_cover(title=title, fallback_title=slug, author=author)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its name and renamed: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(fd, "wb") as fh:
        fh.write(jpeg)
    Path(tmp).replace(target)
    return target


def _xml(body: bytes, cache: str) -> Response:
    return Response(
        body, media_type="application/rss+xml; charset=utf-8", headers={"Cache-Control": cache}
    )


def _transcript_response(ep: Episode, cache: str) -> Response:
    if not ep.transcript:
        raise HTTPException(404, "this episode has no transcript")
    return PlainTextResponse(ep.transcript, headers={"Cache-Control": cache})


def _chapters_response(ep: Episode, cache: str) -> Response:
    if not ep.chapters:
        raise HTTPException(404, "this episode has no chapters")
    return JSONResponse(
        chapters_json(ep),
        media_type="application/json+chapters",
        headers={"Cache-Control": cache},
    )


def _cover_url(base: str, podcast: Podcast) -> str:
    return f"{base}/cover.jpg?v={cover_version(podcast)}"


@dataclass(frozen=True)
class _FeedDeps:
    """What every feed route needs (the database, settings, the token signer, the clock), and
    the look-ups that answer 403 or 404 instead of a podcast or an episode."""

    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    signer: MediaSigner
    clock: Callable[[], dt.datetime]

    @property
    def base_url(self) -> str:
        return self.settings.public_base_url.rstrip("/")

    async def public_podcast(self, session: AsyncSession, slug: str) -> Podcast:
        podcast = await get_podcast_by_slug(session, slug=slug)
        if podcast is None:
            raise HTTPException(404, "no such podcast")
        if podcast.restricted:
            raise HTTPException(403, "this podcast has private feeds only; ask the bot for yours")
        return podcast

    async def private_podcast(self, session: AsyncSession, token: str) -> tuple[Podcast, FeedToken]:
        parsed = self.signer.feed_token_id(token)
        row = await session.get(FeedToken, parsed[0]) if parsed else None
        if (
            parsed is None
            or row is None
            or not self.signer.feed_token_matches(row.id, row.nonce, parsed[1])
            or row.revoked_at is not None
        ):
            raise HTTPException(404, "this feed does not exist or was revoked")
        podcast = await session.get(Podcast, row.podcast_id)
        member = await session.get(Member, row.member_id)
        if (
            podcast is None
            or member is None
            or not await may_listen(session, member=member, podcast=podcast)
        ):
            raise HTTPException(403, "this feed is no longer open to you")
        return podcast, row

    async def episode(self, session: AsyncSession, podcast: Podcast, number: int) -> Episode:
        for ep in await episodes_of(session, podcast_id=podcast.id, now=self.clock()):
            if ep.number == number:
                return ep
        raise HTTPException(404, "no such episode")

    async def cover_response(
        self, podcast: Podcast, v: str | None, cache: str, *, private: bool = False
    ) -> FileResponse:
        path = await ensure_cover(self.settings, podcast)
        if v != cover_version(podcast):
            # An old or missing version: do not let it stick, and a private feed's cover is
            # never for shared caches, whatever was asked.
            cache = "private, max-age=300" if private else FEED_CACHE
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": cache})


def podcast_routes(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Callable[[], dt.datetime] = utcnow,
) -> APIRouter:
    """Every podcast HTTP route: `/media/...` and `/feeds/...`."""
    deps = _FeedDeps(sessionmaker, settings, MediaSigner.from_settings(settings), clock)
    router = APIRouter()
    router.include_router(media_routes(sessionmaker=sessionmaker, settings=settings, clock=clock))
    router.include_router(_feed_list_routes(deps))
    # Private routes first: /feeds/private/<token>/... would also fit /feeds/{slug}/...
    router.include_router(_private_feed_routes(deps))
    router.include_router(_public_feed_routes(deps))
    return router


def _feed_list_routes(deps: _FeedDeps) -> APIRouter:
    router = APIRouter()

    @router.get("/feeds/")
    async def feeds() -> JSONResponse:
        """The public feeds, for people and directories."""
        async with deps.sessionmaker() as session:
            podcasts = [p for p in await list_podcasts(session) if not p.restricted]
            out = []
            for p in podcasts:
                eps = await episodes_of(session, podcast_id=p.id, now=deps.clock())
                out.append(
                    {
                        "id": p.slug,
                        "title": p.title,
                        "description": p.description,
                        "url": feed_url(deps.settings, p.slug),
                        "episodes": len(eps),
                        "course_id": p.course_id,
                    }
                )
        return JSONResponse({"feeds": out}, headers={"Cache-Control": FEED_CACHE})

    return router


def _private_feed_routes(deps: _FeedDeps) -> APIRouter:
    """One member's feed of a restricted podcast, by its revocable token, and all it links."""
    router = APIRouter()
    cache = "private, max-age=300"

    @router.get("/feeds/private/{token}.xml")
    async def private_feed(token: str) -> Response:
        """One member's feed of a restricted podcast; audio goes through the same token."""
        async with deps.sessionmaker() as session:
            podcast, _ = await deps.private_podcast(session, token)
            eps = await episodes_of(session, podcast_id=podcast.id, now=deps.clock())
        base = f"{deps.base_url}/feeds/private/{token}"
        links = FeedLinks(
            base=base,
            self_url=f"{base}.xml",
            audio=lambda ep: f"{base}/{ep.number}/audio{_suffix(ep)}",
            cover=_cover_url(base, podcast),
        )
        return _xml(render_feed(podcast, eps, links=links, private=True), cache)

    @router.get("/feeds/private/{token}/cover.jpg")
    async def private_cover(token: str, v: str | None = None) -> FileResponse:
        async with deps.sessionmaker() as session:
            podcast, _ = await deps.private_podcast(session, token)
        return await deps.cover_response(
            podcast, v, "private, max-age=31536000, immutable", private=True
        )

    # HEAD as its own route, left out of the OpenAPI document (one operation id per route).
    @router.api_route(
        "/feeds/private/{token}/{number}/audio{suffix}", methods=["HEAD"], include_in_schema=False
    )
    @router.get("/feeds/private/{token}/{number}/audio{suffix}")
    async def private_audio(token: str, number: int, suffix: str) -> FileResponse:
        async with deps.sessionmaker() as session:
            podcast, _ = await deps.private_podcast(session, token)
            ep = await deps.episode(session, podcast, number)
        file = deps.settings.media_dir / safe_relative(ep.media_path)
        if suffix != _suffix(ep) or not file.is_file():
            raise HTTPException(404)
        return FileResponse(
            file,
            media_type=CONTENT_TYPES.get(file.suffix, "application/octet-stream"),
            headers={"Cache-Control": "private, max-age=86400"},
        )

    @router.get("/feeds/private/{token}/{number}/transcript.txt")
    async def private_transcript(token: str, number: int) -> Response:
        async with deps.sessionmaker() as session:
            podcast, _ = await deps.private_podcast(session, token)
            ep = await deps.episode(session, podcast, number)
        return _transcript_response(ep, cache)

    @router.get("/feeds/private/{token}/{number}/chapters.json")
    async def private_chapters(token: str, number: int) -> Response:
        async with deps.sessionmaker() as session:
            podcast, _ = await deps.private_podcast(session, token)
            ep = await deps.episode(session, podcast, number)
        return _chapters_response(ep, cache)

    return router


def _public_feed_routes(deps: _FeedDeps) -> APIRouter:
    """A public podcast's feed, cover, transcripts and chapters (its audio is under /media)."""
    router = APIRouter()

    @router.get("/feeds/{slug}.xml")
    async def public_feed(slug: str) -> Response:
        """The RSS feed of a public podcast."""
        async with deps.sessionmaker() as session:
            podcast = await deps.public_podcast(session, slug)
            eps = await episodes_of(session, podcast_id=podcast.id, now=deps.clock())
        base = f"{deps.base_url}/feeds/{urllib.parse.quote(slug)}"
        links = FeedLinks(
            base=base,
            self_url=feed_url(deps.settings, slug),
            audio=lambda ep: media_url(deps.settings, ep.media_path),
            cover=_cover_url(base, podcast),
        )
        return _xml(render_feed(podcast, eps, links=links, private=False), FEED_CACHE)

    @router.get("/feeds/{slug}/cover.jpg")
    async def cover(slug: str, v: str | None = None) -> FileResponse:
        """The podcast's cover art (drawn from its title)."""
        async with deps.sessionmaker() as session:
            podcast = await deps.public_podcast(session, slug)
        return await deps.cover_response(podcast, v, COVER_CACHE)

    @router.get("/feeds/{slug}/{number}/transcript.txt")
    async def transcript(slug: str, number: int) -> Response:
        async with deps.sessionmaker() as session:
            ep = await deps.episode(session, await deps.public_podcast(session, slug), number)
        return _transcript_response(ep, FEED_CACHE)

    @router.get("/feeds/{slug}/{number}/chapters.json")
    async def chapters(slug: str, number: int) -> Response:
        async with deps.sessionmaker() as session:
            ep = await deps.episode(session, await deps.public_podcast(session, slug), number)
        return _chapters_response(ep, FEED_CACHE)

    return router
