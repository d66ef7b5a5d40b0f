"""Podcast feeds: `GET /feeds/` (public feeds as JSON), `/feeds/{podcast}.xml` (RSS 2.0 with
iTunes and Podcasting 2.0 tags), transcripts and chapters, and private per-member feeds of
restricted podcasts at `/feeds/private/{token}.xml`, whose token can be revoked.

`podcast_routes()` is the one router app.py includes for podcasts (feeds and `/media/...`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.media import CONTENT_TYPES, MediaSigner, media_routes, media_url, safe_relative
from bot.settings import Settings
from models.base import utcnow
from models.members import Member
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

for prefix, uri in (("itunes", ITUNES), ("podcast", PODCAST), ("atom", ATOM), ("content", CONTENT)):
    ET.register_namespace(prefix, uri)


def feed_url(settings: Settings, slug: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/feeds/{slug}.xml"


def private_feed_url(settings: Settings, signer: MediaSigner, token: FeedToken) -> str:
    return f"{settings.public_base_url.rstrip('/')}/feeds/private/{_token(signer, token)}.xml"


def _token(signer: MediaSigner, row: FeedToken) -> str:
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


def podcast_routes(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Callable[[], dt.datetime] = utcnow,
) -> APIRouter:
    """Every podcast HTTP route: `/media/...` and `/feeds/...`."""
    router = APIRouter()
    router.include_router(media_routes(sessionmaker=sessionmaker, settings=settings, clock=clock))
    signer = MediaSigner.from_settings(settings)
    base_url = settings.public_base_url.rstrip("/")

    def xml(body: bytes, cache: str) -> Response:
        return Response(
            body, media_type="application/rss+xml; charset=utf-8", headers={"Cache-Control": cache}
        )

    async def public_podcast(session: AsyncSession, slug: str) -> Podcast:
        podcast = await get_podcast_by_slug(session, slug=slug)
        if podcast is None:
            raise HTTPException(404, "no such podcast")
        if podcast.restricted:
            raise HTTPException(403, "this podcast has private feeds only; ask the bot for yours")
        return podcast

    async def private_podcast(session: AsyncSession, token: str) -> tuple[Podcast, FeedToken]:
        parsed = signer.feed_token_id(token)
        row = await session.get(FeedToken, parsed[0]) if parsed else None
        if (
            parsed is None
            or row is None
            or not signer.feed_token_matches(row.id, row.nonce, parsed[1])
            or row.revoked_at is not None
        ):
            raise HTTPException(404, "this feed does not exist or was revoked")
        podcast = await session.get(Podcast, row.podcast_id)
        member = await session.get(Member, row.member_id)
        if podcast is None or member is None or not may_listen(member, podcast):
            raise HTTPException(403, "this feed is no longer open to you")
        return podcast, row

    async def episode(session: AsyncSession, podcast: Podcast, number: int) -> Episode:
        for ep in await episodes_of(session, podcast_id=podcast.id, now=clock()):
            if ep.number == number:
                return ep
        raise HTTPException(404, "no such episode")

    def transcript_response(ep: Episode, cache: str) -> Response:
        if not ep.transcript:
            raise HTTPException(404, "this episode has no transcript")
        return PlainTextResponse(ep.transcript, headers={"Cache-Control": cache})

    def chapters_response(ep: Episode, cache: str) -> Response:
        if not ep.chapters:
            raise HTTPException(404, "this episode has no chapters")
        return JSONResponse(
            chapters_json(ep),
            media_type="application/json+chapters",
            headers={"Cache-Control": cache},
        )

    @router.get("/feeds/")
    async def feeds() -> JSONResponse:
        """The public feeds, for people and directories."""
        async with sessionmaker() as session:
            podcasts = [p for p in await list_podcasts(session) if not p.restricted]
            out = []
            for p in podcasts:
                eps = await episodes_of(session, podcast_id=p.id, now=clock())
                out.append(
                    {
                        "id": p.slug,
                        "title": p.title,
                        "description": p.description,
                        "url": feed_url(settings, p.slug),
                        "episodes": len(eps),
                        "course_id": p.course_id,
                    }
                )
        return JSONResponse({"feeds": out}, headers={"Cache-Control": FEED_CACHE})

    # Private routes first: /feeds/private/<token>/... would also fit /feeds/{slug}/...
    @router.get("/feeds/private/{token}.xml")
    async def private_feed(token: str) -> Response:
        """One member's feed of a restricted podcast; audio goes through the same token."""
        async with sessionmaker() as session:
            podcast, _ = await private_podcast(session, token)
            eps = await episodes_of(session, podcast_id=podcast.id, now=clock())
        base = f"{base_url}/feeds/private/{token}"
        links = FeedLinks(
            base=base,
            self_url=f"{base}.xml",
            audio=lambda ep: f"{base}/{ep.number}/audio{_suffix(ep)}",
        )
        return xml(render_feed(podcast, eps, links=links, private=True), "private, max-age=300")

    @router.api_route("/feeds/private/{token}/{number}/audio{suffix}", methods=["GET", "HEAD"])
    async def private_audio(token: str, number: int, suffix: str) -> FileResponse:
        async with sessionmaker() as session:
            podcast, _ = await private_podcast(session, token)
            ep = await episode(session, podcast, number)
        file = settings.media_dir / safe_relative(ep.media_path)
        if suffix != _suffix(ep) or not file.is_file():
            raise HTTPException(404)
        return FileResponse(
            file,
            media_type=CONTENT_TYPES.get(file.suffix, "application/octet-stream"),
            headers={"Cache-Control": "private, max-age=86400"},
        )

    @router.get("/feeds/private/{token}/{number}/transcript.txt")
    async def private_transcript(token: str, number: int) -> Response:
        async with sessionmaker() as session:
            podcast, _ = await private_podcast(session, token)
            ep = await episode(session, podcast, number)
        return transcript_response(ep, "private, max-age=300")

    @router.get("/feeds/private/{token}/{number}/chapters.json")
    async def private_chapters(token: str, number: int) -> Response:
        async with sessionmaker() as session:
            podcast, _ = await private_podcast(session, token)
            ep = await episode(session, podcast, number)
        return chapters_response(ep, "private, max-age=300")

    @router.get("/feeds/{slug}.xml")
    async def public_feed(slug: str) -> Response:
        """The RSS feed of a public podcast."""
        async with sessionmaker() as session:
            podcast = await public_podcast(session, slug)
            eps = await episodes_of(session, podcast_id=podcast.id, now=clock())
        links = FeedLinks(
            base=f"{base_url}/feeds/{urllib.parse.quote(slug)}",
            self_url=feed_url(settings, slug),
            audio=lambda ep: media_url(settings, ep.media_path),
        )
        return xml(render_feed(podcast, eps, links=links, private=False), FEED_CACHE)

    @router.get("/feeds/{slug}/{number}/transcript.txt")
    async def transcript(slug: str, number: int) -> Response:
        async with sessionmaker() as session:
            ep = await episode(session, await public_podcast(session, slug), number)
        return transcript_response(ep, FEED_CACHE)

    @router.get("/feeds/{slug}/{number}/chapters.json")
    async def chapters(slug: str, number: int) -> Response:
        async with sessionmaker() as session:
            ep = await episode(session, await public_podcast(session, slug), number)
        return chapters_response(ep, FEED_CACHE)

    return router
