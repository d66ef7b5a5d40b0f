"""Podcast services shared by the chat handler, the episode-drop job and the CLI: the Audio
reply of an episode, upload and text-to-speech import, and the demo podcasts of
`edoor seed-demo`. The drop job itself is notifications/podcast_drops.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.messages import Audio, Button
from bot.ports import LinkSigner
from bot.settings import Settings
from media.files import (
    AudioError,
    EspeakNg,
    SpeechEngine,
    StoredAudio,
    discard,
    ingest_audio,
    media_url,
    speak_to_audio,
)
from models.courses import Course
from models.podcasts import (
    Episode,
    Podcast,
    PodcastError,
    add_episode,
    create_podcast,
    episodes_of,
    get_podcast_by_slug,
    hours_need_evidence,
    next_free_number,
    parse_check,
    require_podcast,
    split_check,
)

log = logging.getLogger("edoor.podcasts")

Translate = Callable[..., str]


# -- replies -----------------------------------------------------------------------------------
def episode_url(
    settings: Settings,
    episode: Episode,
    *,
    now: dt.datetime,
    signer: LinkSigner,
    member_id: int | None = None,
) -> str:
    """Where a player fetches the episode: signed and expiring when the podcast is restricted;
    the member's own link when its hours count (the bytes it serves are the evidence)."""
    personal = member_id if hours_need_evidence(episode.podcast) else None
    if episode.podcast.restricted or personal is not None:
        return media_url(
            settings,
            episode.media_path,
            signer=signer,
            now=now,
            member_id=personal,
        )
    return media_url(settings, episode.media_path)


def episode_title(t: Translate, episode: Episode) -> str:
    return t("podcasts.episode_title", number=episode.number, title=episode.title)


def episode_audio(
    t: Translate,
    settings: Settings,
    episode: Episode,
    *,
    episodes: list[Episode],
    now: dt.datetime,
    signer: LinkSigner,
    member_id: int | None = None,
) -> Audio:
    """The Audio reply of one episode with previous / next / finished / list buttons."""
    index = next((i for i, e in enumerate(episodes) if e.id == episode.id), None)
    buttons: list[Button] = []
    if index is not None and index > 0:
        buttons.append(
            Button(label=t("podcasts.previous"), action=f"pod.ep:{episodes[index - 1].id}")
        )
    if index is not None and index + 1 < len(episodes):
        buttons.append(Button(label=t("podcasts.next"), action=f"pod.ep:{episodes[index + 1].id}"))
    buttons.append(Button(label=t("podcasts.finished"), action=f"pod.done:{episode.id}"))
    buttons.append(
        Button(label=t("podcasts.all_episodes"), action=f"pod.open:{episode.podcast_id}")
    )
    return Audio(
        url=episode_url(settings, episode, now=now, signer=signer, member_id=member_id),
        duration_ms=episode.duration_ms,
        title=episode_title(t, episode),
        performer=episode.podcast.title,
        file_size=episode.size_bytes,
        media_key=f"episode:{episode.media_path}",
        buttons=buttons,
    )


# -- import (CLI and admin) --------------------------------------------------------------------
def read_chapters(path: Path | None) -> list[dict[str, Any]] | None:
    """Chapters from a JSON file: [{"start_ms": 0, "title": "..."}, ...]."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PodcastError(f"{path.name}: not a readable JSON file ({exc})") from None
    if not isinstance(data, list):
        raise PodcastError(f"{path.name}: expected a JSON list of chapters")
    return data


async def _store_episode(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    podcast: str,
    title: str,
    number: int | None,
    produce: Callable[[str, str], Any],
    description: str,
    transcript: str,
    chapters: list[dict[str, Any]] | None,
    published_at: dt.datetime | None,
    now: dt.datetime,
    check_question: dict[str, Any] | None = None,
) -> Episode:
    # Refuse early (unknown podcast, taken number) before spending time on audio.
    async with sessionmaker() as session:
        found = await require_podcast(session, slug=podcast)
        wanted = number or await next_free_number(session, podcast_id=found.id)
        taken = {e.number for e in await episodes_of(session, podcast_id=found.id, now=now)}
        if number is not None and number in taken:
            raise PodcastError(f"episode {number} of {podcast!r} exists already")
    stored: StoredAudio = await produce(f"podcasts/{podcast}", f"{wanted:03d}")
    try:
        async with sessionmaker() as session:
            found = await require_podcast(session, slug=podcast)
            episode = await add_episode(
                session,
                podcast=found,
                title=title,
                media_path=stored.path,
                content_type=stored.content_type,
                size_bytes=stored.size_bytes,
                duration_ms=stored.duration_ms,
                number=wanted,
                description=description,
                transcript=transcript,
                chapters=chapters,
                check_question=check_question,
                published_at=published_at,
                now=now,
            )
            await session.commit()
    except BaseException:
        # The row did not land: the file must not stay behind either.
        discard(settings.media_dir, stored)
        raise
    return episode


async def upload_episode(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    podcast: str,
    file: Path,
    title: str | None = None,
    number: int | None = None,
    description: str = "",
    transcript: str = "",
    chapters: list[dict[str, Any]] | None = None,
    published_at: dt.datetime | None = None,
    check_question: dict[str, Any] | None = None,
    now: dt.datetime,
) -> Episode:
    """`edoor podcast upload`: an mp3/m4a/wav file becomes the next (or given) episode,
    with an optional check question ({"question", "choices", "answer"}) asked in chat.

    Raises AudioError (bad audio) or PodcastError (unknown podcast, taken number, bad chapters);
    either way nothing is left half-imported."""

    async def produce(folder: str, stem: str) -> StoredAudio:
        return await ingest_audio(file, media_dir=settings.media_dir, folder=folder, stem=stem)

    return await _store_episode(
        sessionmaker,
        settings=settings,
        podcast=podcast,
        title=title or file.stem,
        number=number,
        produce=produce,
        description=description,
        transcript=transcript,
        chapters=chapters,
        published_at=published_at,
        now=now,
        check_question=parse_check(check_question) if check_question else None,
    )


async def tts_episode(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    podcast: str,
    script: str,
    title: str,
    number: int | None = None,
    engine: SpeechEngine | None = None,
    language: str = "zh-TW",
    description: str = "",
    published_at: dt.datetime | None = None,
    now: dt.datetime,
) -> Episode:
    """`edoor podcast tts`: a lesson script spoken (espeak-ng by default) and stored as an
    episode whose transcript is the script; a check question at the script's end (Q: ...,
    * right, - wrong) is asked in chat, not spoken."""
    script, check = split_check(script)
    if not script.strip():
        raise AudioError("the lesson script is empty")
    voice = engine or EspeakNg()

    async def produce(folder: str, stem: str) -> StoredAudio:
        return await speak_to_audio(
            voice, script, media_dir=settings.media_dir, folder=folder, stem=stem, language=language
        )

    return await _store_episode(
        sessionmaker,
        settings=settings,
        podcast=podcast,
        title=title,
        number=number,
        produce=produce,
        description=description,
        transcript=script.strip(),
        chapters=None,
        published_at=published_at,
        now=now,
        check_question=check,
    )


# -- demo ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoPodcast:
    slug: str
    title: str
    description: str
    audience: str
    course_id: str | None
    episodes: tuple[tuple[str, str], ...]  # (title, script)


DEMO_PODCASTS = (
    DemoPodcast(
        slug="demo-infosec",
        title="資安小學堂（示範）",
        description="三集各十幾秒的資訊安全小提醒，通勤時就能聽完。",
        audience="public",
        course_id="egov-pg-706050ad94",
        episodes=(
            (
                "密碼怎麼設",
                "歡迎收聽資安小學堂。第一課：密碼要長，不要重複使用，並且開啟兩步驟驗證。",
            ),
            ("釣魚郵件", "第二課：收到要求輸入帳號密碼的郵件，先確認寄件人，不要直接點連結。"),
            ("更新與備份", "第三課：系統要定期更新，重要資料要備份。恭喜您完成本課程。"),
        ),
    ),
    DemoPodcast(
        slug="demo-civil-ethics",
        title="公務倫理三分鐘（公務人員限定示範）",
        description="公務人員限定的示範節目：行政中立與利益迴避。",
        audience="civil_servant",
        course_id=None,
        episodes=(
            ("行政中立", "公務倫理第一課：依法行政，執行職務保持中立。"),
            ("利益迴避", "公務倫理第二課：與自己有利害關係的案件，應該迴避。"),
        ),
    ),
)


@dataclass
class SeedReport:
    podcasts_created: int = 0
    episodes_created: int = 0
    episodes_repaired: int = 0
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)


async def seed_demo_podcasts(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    now: dt.datetime,
    engine: SpeechEngine | None = None,
) -> SeedReport:
    """The demo podcasts, their episodes spoken by `engine` (espeak-ng). Idempotent: a second
    run changes nothing; an episode whose file went missing is spoken again."""
    voice = engine or EspeakNg()
    report = SeedReport()
    for demo in DEMO_PODCASTS:
        async with sessionmaker() as session:
            podcast = await get_podcast_by_slug(session, slug=demo.slug)
            if podcast is None:
                course_id = demo.course_id
                if course_id and await session.get(Course, course_id) is None:
                    course_id = None  # the demo catalog is not imported: stand alone
                await create_podcast(
                    session,
                    slug=demo.slug,
                    title=demo.title,
                    description=demo.description,
                    audience=demo.audience,
                    course_id=course_id,
                    now=now,
                )
                await session.commit()
                report.podcasts_created += 1
            podcast = await require_podcast(session, slug=demo.slug)
            existing = {
                e.number: e for e in await episodes_of(session, podcast_id=podcast.id, now=now)
            }
        for number, (title, script) in enumerate(demo.episodes, start=1):
            ep = existing.get(number)
            if ep is None:
                await tts_episode(
                    sessionmaker,
                    settings=settings,
                    podcast=demo.slug,
                    script=script,
                    title=title,
                    number=number,
                    engine=voice,
                    now=now,
                )
                report.episodes_created += 1
            elif not (settings.media_dir / ep.media_path).is_file():
                await _respeak(sessionmaker, settings=settings, episode_id=ep.id, voice=voice)
                report.episodes_repaired += 1
            else:
                report.unchanged += 1
    return report


async def _respeak(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    episode_id: int,
    voice: SpeechEngine,
) -> None:
    async with sessionmaker() as session:
        ep = await session.get(Episode, episode_id)
        assert ep is not None
        podcast: Podcast = ep.podcast
        stored = await speak_to_audio(
            voice,
            ep.transcript,
            media_dir=settings.media_dir,
            folder=f"podcasts/{podcast.slug}",
            stem=f"{ep.number:03d}",
        )
        ep.media_path = stored.path
        ep.size_bytes = stored.size_bytes
        ep.duration_ms = stored.duration_ms
        ep.content_type = stored.content_type
        await session.commit()
