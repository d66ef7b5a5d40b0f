"""Tiny test audio made with ffmpeg, and podcasts built through the real import functions."""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from media.episodes import upload_episode
from models.podcasts import Episode, Podcast, create_podcast, episodes_of, require_podcast


def make_tone(path: Path, *, seconds: float = 1.0, hz: int = 440) -> Path:
    """A mono sine tone; the container and codec follow the file's suffix (wav, mp3, m4a)."""
    codec = {
        ".wav": ["-c:a", "pcm_s16le"],
        ".flac": ["-c:a", "flac"],
        ".mp3": ["-c:a", "libmp3lame", "-b:a", "32k"],
    }.get(path.suffix, ["-c:a", "aac", "-b:a", "32k"])
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency={hz}:duration={seconds}", "-ac", "1", "-ar", "16000",
         *codec, str(path)],
        check=True,
    )  # fmt: skip
    return path


@dataclass
class Seeded:
    podcast: Podcast
    episodes: list[Episode]


async def seed_podcast(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tone: Path,
    *,
    slug: str = "infosec",
    title: str = "資安小學堂",
    episodes: int = 3,
    audience: str = "public",
    course_id: str | None = None,
    hours: float | None = None,
    now: dt.datetime,
) -> Seeded:
    """A podcast with `episodes` episodes, each the same tone file, imported for real."""
    async with sessionmaker() as session:
        await create_podcast(
            session,
            slug=slug,
            title=title,
            description="測試用的語音課",
            audience=audience,
            course_id=course_id,
            hours=hours,
            now=now,
        )
        await session.commit()
    for n in range(1, episodes + 1):
        await upload_episode(
            sessionmaker,
            settings=settings,
            podcast=slug,
            file=tone,
            title=f"第{n}課",
            transcript=f"這是第{n}課的逐字稿。",
            chapters=[{"start_ms": 0, "title": "開場"}, {"start_ms": 500, "title": "重點"}]
            if n == 1
            else None,
            now=now,
        )
    async with sessionmaker() as session:
        podcast = await require_podcast(session, slug=slug)
        eps = await episodes_of(session, podcast_id=podcast.id, now=now)
    return Seeded(podcast=podcast, episodes=eps)
