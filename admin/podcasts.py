"""Admin API for podcasts: create a podcast, upload an episode's audio, speak a script (TTS),
and list what exists. Every change is audited; a refused upload leaves nothing behind."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, any_role, require_role
from bot.settings import Settings
from media.episodes import tts_episode, upload_episode
from media.files import AUDIO_TYPES, MAX_UPLOAD_BYTES, AudioError
from models.base import utcnow
from models.identity import record_audit
from models.podcasts import (
    Episode,
    PodcastError,
    PodcastSubscription,
    create_podcast,
    episodes_of,
    list_podcasts,
)

_SUFFIX_BY_TYPE = {v: k for k, v in AUDIO_TYPES.items()} | {
    "audio/x-m4a": ".m4a",
    "audio/mp3": ".mp3",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
}


# Episode numbers are listening order; no podcast has anywhere near this many.
MAX_EPISODES = 100_000


class NewPodcast(BaseModel):
    slug: str = Field(min_length=1, max_length=47)
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    audience: str = "public"
    course_id: str | None = None
    hours: float | None = Field(default=None, ge=0, le=1000, allow_inf_nan=False)


class Script(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    script: str = Field(min_length=1, max_length=20_000)
    number: int | None = Field(default=None, ge=1, le=MAX_EPISODES)
    language: str = "zh-TW"


def _episode(ep: Episode) -> dict[str, Any]:
    return {
        "id": ep.id,
        "number": ep.number,
        "title": ep.title,
        "duration_ms": ep.duration_ms,
        "size_bytes": ep.size_bytes,
        "content_type": ep.content_type,
        "media_path": ep.media_path,
        "published_at": ep.published_at.isoformat(),
    }


async def subscriber_counts(session: AsyncSession) -> dict[int, int]:
    """Active subscribers per podcast id."""
    rows = await session.execute(
        select(PodcastSubscription.podcast_id, func.count())
        .where(PodcastSubscription.active.is_(True))
        .group_by(PodcastSubscription.podcast_id)
    )
    return {int(pid): int(n) for pid, n in rows.all()}


def podcast_admin_routes(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/podcasts")
    admin_only = Depends(require_role(settings, "admin"))
    readers = Depends(any_role(settings))

    async def audit(caller: Caller, action: str, subject: str, details: dict[str, Any]) -> None:
        async with sessionmaker() as session:
            await record_audit(
                session,
                actor=caller.name,
                action=action,
                subject=subject,
                details=details,
                now=utcnow(),
            )
            await session.commit()

    @routes.get("")
    async def index(caller: Caller = readers) -> dict[str, Any]:
        """Every podcast with its episodes and active subscribers."""
        now = utcnow()
        async with sessionmaker() as session:
            subscribers = await subscriber_counts(session)
            out = [
                {
                    "slug": p.slug,
                    "title": p.title,
                    "audience": p.audience,
                    "restricted": p.restricted,
                    "course_id": p.course_id,
                    "subscribers": int(subscribers.get(p.id, 0)),
                    "episodes": [
                        _episode(e) for e in await episodes_of(session, podcast_id=p.id, now=now)
                    ],
                }
                for p in await list_podcasts(session)
            ]
        return {"podcasts": out}

    @routes.post("", status_code=201)
    async def create(body: NewPodcast, caller: Caller = admin_only) -> dict[str, Any]:
        """A new podcast (422 with the reason when the slug, audience or course is refused)."""
        try:
            async with sessionmaker() as session:
                podcast = await create_podcast(session, **body.model_dump(), now=utcnow())
                await session.commit()
        except PodcastError as exc:
            raise HTTPException(422, str(exc)) from None
        await audit(caller, "podcasts.create", podcast.slug, {"audience": podcast.audience})
        return {"slug": podcast.slug, "id": podcast.id}

    @routes.post("/{slug}/episodes", status_code=201)
    async def upload(
        slug: str,
        request: Request,
        title: Annotated[str, Query(min_length=1, max_length=200)],
        number: Annotated[int | None, Query(ge=1, le=MAX_EPISODES)] = None,
        filename: Annotated[str | None, Query(max_length=200)] = None,
        caller: Caller = admin_only,
    ) -> dict[str, Any]:
        """The request body is the audio file (mp3, m4a or wav); `filename` or the
        Content-Type says which. 422 with a clear reason when the audio is refused."""
        suffix = Path(filename or "").suffix.lower() or _SUFFIX_BY_TYPE.get(
            request.headers.get("content-type", "").split(";")[0].strip(), ""
        )
        if suffix not in AUDIO_TYPES:
            raise HTTPException(415, "send mp3, m4a or wav (say which by filename or type)")
        with tempfile.TemporaryDirectory(prefix="edoor-upload-") as work:
            path = Path(work) / f"upload{suffix}"
            size = 0
            async with await anyio.open_file(path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise HTTPException(413, "audio larger than 500 MB")
                    await out.write(chunk)
            if size == 0:
                raise HTTPException(400, "empty body: send the audio file as the request body")
            try:
                episode = await upload_episode(
                    sessionmaker,
                    settings=settings,
                    podcast=slug,
                    file=path,
                    title=title,
                    number=number,
                    now=utcnow(),
                )
            except (AudioError, PodcastError) as exc:
                raise HTTPException(422, str(exc)) from None
        await audit(caller, "podcasts.upload", slug, {"episode": episode.number})
        return _episode(episode)

    @routes.post("/{slug}/tts", status_code=201)
    async def speak(slug: str, body: Script, caller: Caller = admin_only) -> dict[str, Any]:
        """A lesson script spoken by the offline voice and stored as an episode."""
        try:
            episode = await tts_episode(
                sessionmaker,
                settings=settings,
                podcast=slug,
                script=body.script,
                title=body.title,
                number=body.number,
                language=body.language,
                now=utcnow(),
            )
        except (AudioError, PodcastError) as exc:
            raise HTTPException(422, str(exc)) from None
        await audit(caller, "podcasts.tts", slug, {"episode": episode.number})
        return _episode(episode)

    return routes
