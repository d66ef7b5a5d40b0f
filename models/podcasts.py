"""Podcasts (audio lessons): episodes, subscriptions with a Taipei delivery time, listening
progress, completions and private feed tokens, with the rules over them.

A podcast may belong to a course and follows the same access rules as courses: one for civil
servants is open to verified civil servants only, and one whose course has a password is open
to members who have unlocked that course (typed its password in the course step). Episodes
are numbered from 1 in listening order.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import TAIPEI, Base, utcnow
from models.courses import Course, CoursePasswordAttempt
from models.learning import Completion, taipei_day
from models.members import Member
from models.times import parse_time_of_day

AUDIENCES = ("public", "civil_servant")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,46}$")
RESERVED_SLUGS = frozenset({"private", "index"})  # path segments of /feeds/
# A completion of a podcast with hours of its own but no course is recorded as a learning
# completion of this pseudo course id, so that "My learning" counts the hours it promised.
PODCAST_COURSE_PREFIX = "podcast:"


class PodcastError(ValueError):
    """A podcast rule refused the request; the message says why (for CLI and admin)."""


class Podcast(Base):
    __tablename__ = "podcast"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(48), unique=True)  # the feed's file name
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(120), default="臺北e大")
    language: Mapped[str] = mapped_column(String(8), default="zh-TW")
    audience: Mapped[str] = mapped_column(String(16), default="public")
    course_id: Mapped[str | None] = mapped_column(
        ForeignKey("course.id", ondelete="SET NULL"), default=None, index=True
    )
    # Learning hours a completion earns; None means "what the linked course says".
    hours: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    course: Mapped[Course | None] = relationship(lazy="joined")

    @property
    def civil_servant_only(self) -> bool:
        """Open to verified civil servants only (its own audience or its course's)."""
        course_audience = self.course.audience if self.course is not None else "public"
        return "civil_servant" in (self.audience, course_audience)

    @property
    def password_course(self) -> Course | None:
        """The linked course when it has a password: members unlock that course first."""
        course = self.course
        return course if course is not None and course.password_protected else None

    @property
    def restricted(self) -> bool:
        """Not open to everyone (civil servants only, or behind a course password): its audio
        goes out by signed, expiring links and its feeds are private, per member."""
        return self.civil_servant_only or self.password_course is not None

    @property
    def credit_hours(self) -> float:
        if self.hours is not None:
            return self.hours
        return self.course.hours if self.course is not None else 0.0


class Episode(Base):
    __tablename__ = "episode"
    __table_args__ = (UniqueConstraint("podcast_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    podcast_id: Mapped[int] = mapped_column(ForeignKey("podcast.id", ondelete="CASCADE"))
    number: Mapped[int]  # listening order, from 1
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    transcript: Mapped[str] = mapped_column(Text, default="")
    # [{"start_ms": 0, "title": "..."}]: optional chapters (Podcasting 2.0 JSON chapters).
    chapters: Mapped[list[Any]] = mapped_column(default=list)
    # Relative to MEDIA_DIR, POSIX separators; the name holds a content hash (immutable URL).
    media_path: Mapped[str] = mapped_column(String(300), unique=True)
    content_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int]
    # An optional check question asked in chat before hours count without listening evidence:
    # {"question": "...", "choices": ["...", ...], "answer": index of the right choice}.
    check_question: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    duration_ms: Mapped[int]
    published_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    podcast: Mapped[Podcast] = relationship(lazy="joined")


class PodcastSubscription(Base):
    __tablename__ = "podcast_subscription"
    __table_args__ = (UniqueConstraint("member_id", "podcast_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    podcast_id: Mapped[int] = mapped_column(
        ForeignKey("podcast.id", ondelete="CASCADE"), index=True
    )
    delivery_time: Mapped[str] = mapped_column(String(5))  # "HH:MM", Asia/Taipei
    weekdays_only: Mapped[bool] = mapped_column(default=False)
    next_number: Mapped[int] = mapped_column(default=1)  # the next episode to deliver
    active: Mapped[bool] = mapped_column(default=True, index=True)
    # The last delivery slot served (or the moment of subscribing): a slot is due once, and a
    # subscription made at 20:00 for 07:30 does not count today's 07:30 as missed.
    last_slot_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    podcast: Mapped[Podcast] = relationship(lazy="joined")


class EpisodeListen(Base):
    """One member's progress on one episode: played, and perhaps finished."""

    __tablename__ = "episode_listen"
    __table_args__ = (UniqueConstraint("member_id", "episode_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    episode_id: Mapped[int] = mapped_column(
        ForeignKey("episode.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # [[start, end), ...]: the bytes the member's own signed link served, merged.
    served_ranges: Mapped[list[Any]] = mapped_column(default=list)
    # What shows the member listened: "bytes" (90% served), "check" (a right answer), or
    # None (self-marked: enough only for podcasts whose hours do not count).
    evidence: Mapped[str | None] = mapped_column(String(16), default=None)


class PodcastCompletion(Base):
    """Every episode of a podcast finished (once per member and podcast). When the podcast
    belongs to a course, a learning `Completion` of that course is recorded too, so the hours
    count toward the member's learning hours and mandatory requirements; a podcast with hours
    but no course records one under `podcast:<id>`, which counts toward the yearly total."""

    __tablename__ = "podcast_completion"
    __table_args__ = (UniqueConstraint("member_id", "podcast_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    podcast_id: Mapped[int] = mapped_column(ForeignKey("podcast.id", ondelete="CASCADE"))
    course_id: Mapped[str | None] = mapped_column(String(48), default=None)
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    completed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FeedToken(Base):
    """A member's private feed of a restricted podcast. The URL token is an HMAC of the row id
    and nonce under a server key, so the table alone does not reveal any working URL."""

    __tablename__ = "podcast_feed_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    podcast_id: Mapped[int] = mapped_column(
        ForeignKey("podcast.id", ondelete="CASCADE"), index=True
    )
    nonce: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


# -- access ---------------------------------------------------------------------------------
class Access(enum.StrEnum):
    """Whether a member may listen, and if not, what opens the podcast to them."""

    OPEN = "open"
    CIVIL_SERVANT = "civil_servant"  # verify as a civil servant first
    # Unlock the linked course with its password first (a reason, not a password).
    COURSE_PASSWORD = "course_password"  # noqa: S105


async def course_unlocked(session: AsyncSession, *, member_id: int, course_id: str) -> bool:
    """The member typed the course's password right at some point: the course step's own
    record of a successful try (course_password_attempt), not a second password flow."""
    found = await session.scalar(
        select(CoursePasswordAttempt.id)
        .where(
            CoursePasswordAttempt.member_id == member_id,
            CoursePasswordAttempt.course_id == course_id,
            CoursePasswordAttempt.success.is_(True),
        )
        .limit(1)
    )
    return found is not None


async def listen_access(session: AsyncSession, *, member: Member, podcast: Podcast) -> Access:
    """The access rules of courses applied to a podcast: audience first, then the password."""
    if podcast.civil_servant_only and not member.is_civil_servant:
        return Access.CIVIL_SERVANT
    course = podcast.password_course
    if course is not None and not await course_unlocked(
        session, member_id=member.id, course_id=course.id
    ):
        return Access.COURSE_PASSWORD
    return Access.OPEN


async def may_listen(session: AsyncSession, *, member: Member, podcast: Podcast) -> bool:
    """True when the member may play, be sent and subscribe to the feed of this podcast."""
    return await listen_access(session, member=member, podcast=podcast) is Access.OPEN


# -- podcasts and episodes ------------------------------------------------------------------


async def create_podcast(
    session: AsyncSession,
    *,
    slug: str,
    title: str,
    description: str = "",
    audience: str = "public",
    course_id: str | None = None,
    hours: float | None = None,
    now: dt.datetime,
) -> Podcast:
    """A new podcast; refuses a taken or malformed slug, an unknown course or audience."""
    if not SLUG.match(slug) or slug in RESERVED_SLUGS:
        raise PodcastError(f"podcast id {slug!r}: use a-z, 0-9 and '-' (at most 47 characters)")
    if audience not in AUDIENCES:
        raise PodcastError(f"audience {audience!r}: use one of {', '.join(AUDIENCES)}")
    if await get_podcast_by_slug(session, slug=slug) is not None:
        raise PodcastError(f"podcast {slug!r} exists already")
    course = None
    if course_id is not None:
        course = await session.get(Course, course_id)
        if course is None:
            raise PodcastError(f"course {course_id!r} is not in the catalog")
    podcast = Podcast(
        slug=slug,
        title=title,
        description=description,
        audience=audience,
        course_id=course_id,
        course=course,
        hours=hours,
        created_at=now,
        updated_at=now,
    )
    session.add(podcast)
    await session.flush()
    return podcast


async def get_podcast(session: AsyncSession, *, podcast_id: int) -> Podcast | None:
    return await session.get(Podcast, podcast_id)


async def get_podcast_by_slug(session: AsyncSession, *, slug: str) -> Podcast | None:
    return await session.scalar(select(Podcast).where(Podcast.slug == slug))


async def require_podcast(session: AsyncSession, *, slug: str) -> Podcast:
    podcast = await get_podcast_by_slug(session, slug=slug)
    if podcast is None:
        raise PodcastError(f"no podcast {slug!r}")
    return podcast


async def list_podcasts(session: AsyncSession) -> list[Podcast]:
    """Every podcast with at least one episode, oldest first (restricted ones included:
    the chat shows them locked, so that citizens learn what verification opens)."""
    has_episode = select(Episode.id).where(Episode.podcast_id == Podcast.id).exists()
    rows = await session.scalars(select(Podcast).where(has_episode).order_by(Podcast.id))
    return list(rows.unique())


async def episodes_of(session: AsyncSession, *, podcast_id: int, now: dt.datetime) -> list[Episode]:
    """The published episodes of a podcast, in listening order."""
    rows = await session.scalars(
        select(Episode)
        .where(Episode.podcast_id == podcast_id, Episode.published_at <= now)
        .order_by(Episode.number)
    )
    return list(rows.unique())


async def get_episode(session: AsyncSession, *, episode_id: int) -> Episode | None:
    return await session.get(Episode, episode_id)


async def episode_by_media_path(session: AsyncSession, *, path: str) -> Episode | None:
    return await session.scalar(select(Episode).where(Episode.media_path == path))


async def next_free_number(session: AsyncSession, *, podcast_id: int) -> int:
    top = await session.scalar(
        select(func.max(Episode.number)).where(Episode.podcast_id == podcast_id)
    )
    return int(top or 0) + 1


async def add_episode(
    session: AsyncSession,
    *,
    podcast: Podcast,
    title: str,
    media_path: str,
    content_type: str,
    size_bytes: int,
    duration_ms: int,
    number: int | None = None,
    description: str = "",
    transcript: str = "",
    chapters: list[dict[str, Any]] | None = None,
    check_question: dict[str, Any] | None = None,
    published_at: dt.datetime | None = None,
    now: dt.datetime,
) -> Episode:
    """Record a stored audio file as an episode (number: the next free one when omitted)."""
    if number is None:
        number = await next_free_number(session, podcast_id=podcast.id)
    if number < 1:
        raise PodcastError("episode numbers start at 1")
    taken = await session.scalar(
        select(Episode.id).where(Episode.podcast_id == podcast.id, Episode.number == number)
    )
    if taken is not None:
        raise PodcastError(f"episode {number} of {podcast.slug!r} exists already")
    episode = Episode(
        podcast_id=podcast.id,
        podcast=podcast,
        number=number,
        title=title,
        description=description,
        transcript=transcript,
        chapters=check_chapters(chapters or [], duration_ms=duration_ms),
        check_question=parse_check(check_question) if check_question else None,
        media_path=media_path,
        content_type=content_type,
        size_bytes=size_bytes,
        duration_ms=duration_ms,
        published_at=published_at or now,
        created_at=now,
    )
    session.add(episode)
    podcast.updated_at = now
    await session.flush()
    return episode


def check_chapters(chapters: list[Any], *, duration_ms: int) -> list[dict[str, Any]]:
    """Chapters as [{"start_ms": int, "title": str}], ascending and inside the episode."""
    out: list[dict[str, Any]] = []
    last = -1
    for i, item in enumerate(chapters, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            raise PodcastError(f"chapter {i}: needs a title and start_ms")
        start = item.get("start_ms")
        if not isinstance(start, int) or start <= last or start >= duration_ms:
            raise PodcastError(f"chapter {i}: start_ms must increase and lie inside the episode")
        out.append({"start_ms": start, "title": item["title"]})
        last = start
    return out


# -- listening progress and completion ------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    finished: int
    total: int

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.finished >= self.total


async def _listen(
    session: AsyncSession, *, member_id: int, episode_id: int, now: dt.datetime
) -> EpisodeListen:
    row = await session.scalar(
        select(EpisodeListen).where(
            EpisodeListen.member_id == member_id, EpisodeListen.episode_id == episode_id
        )
    )
    if row is None:
        row = EpisodeListen(member_id=member_id, episode_id=episode_id, started_at=now)
        session.add(row)
        await session.flush()
    return row


async def mark_played(
    session: AsyncSession, *, member_id: int, episode_id: int, now: dt.datetime
) -> None:
    """Remember that the member started this episode."""
    await _listen(session, member_id=member_id, episode_id=episode_id, now=now)


async def progress(
    session: AsyncSession, *, member_id: int, podcast_id: int, now: dt.datetime
) -> Progress:
    """How many of the published episodes the member has finished ("3 of 8")."""
    published = (
        select(Episode.id)
        .where(Episode.podcast_id == podcast_id, Episode.published_at <= now)
        .scalar_subquery()
    )
    total = await session.scalar(
        select(func.count(Episode.id)).where(
            Episode.podcast_id == podcast_id, Episode.published_at <= now
        )
    )
    finished = await session.scalar(
        select(func.count(EpisodeListen.id)).where(
            EpisodeListen.member_id == member_id,
            EpisodeListen.finished_at.is_not(None),
            EpisodeListen.episode_id.in_(published),
        )
    )
    return Progress(finished=int(finished or 0), total=int(total or 0))


async def finished_episode_ids(
    session: AsyncSession, *, member_id: int, podcast_id: int
) -> set[int]:
    rows = await session.scalars(
        select(EpisodeListen.episode_id)
        .join(Episode, Episode.id == EpisodeListen.episode_id)
        .where(
            EpisodeListen.member_id == member_id,
            EpisodeListen.finished_at.is_not(None),
            Episode.podcast_id == podcast_id,
        )
    )
    return set(rows)


async def get_completion(
    session: AsyncSession, *, member_id: int, podcast_id: int
) -> PodcastCompletion | None:
    return await session.scalar(
        select(PodcastCompletion).where(
            PodcastCompletion.member_id == member_id, PodcastCompletion.podcast_id == podcast_id
        )
    )


# -- evidence for learning hours ------------------------------------------------------------------
LISTENED_SHARE = 0.9  # the member's own link served at least this share of the file's bytes


class NeedsEvidence(PodcastError):
    """A self-mark without evidence, for a podcast whose hours count: listen (through the
    member's own link) or answer the episode's check question first."""


def hours_need_evidence(podcast: Podcast) -> bool:
    """Hours that count need evidence; podcasts without hours may stay self-marked."""
    return podcast.credit_hours > 0


def merge_range(ranges: list[Any], start: int, end: int) -> list[list[int]]:
    """[[start, end), ...] with [start, end) added, sorted and merged."""
    spans = sorted([*([int(a), int(b)] for a, b in ranges), [start, end]])
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def served_bytes(ranges: list[Any]) -> int:
    return sum(int(b) - int(a) for a, b in ranges)


async def record_served(
    session: AsyncSession,
    *,
    member_id: int,
    episode: Episode,
    spans: list[tuple[int, int]],
    now: dt.datetime,
) -> EpisodeListen:
    """Bytes [start, end) of `episode` the member's own signed link served (Range requests
    count once each byte, however often it is fetched); 90% of the file is evidence."""
    row = await _listen(session, member_id=member_id, episode_id=episode.id, now=now)
    ranges: list[Any] = list(row.served_ranges or [])
    for start, end in spans:
        ranges = merge_range(ranges, max(0, start), min(end, episode.size_bytes))
    row.served_ranges = ranges
    if row.evidence is None and served_bytes(ranges) >= LISTENED_SHARE * episode.size_bytes:
        row.evidence = "bytes"
    await session.flush()
    return row


def parse_check(data: Any) -> dict[str, Any]:
    """A check question as stored: {"question", "choices" (2 to 4), "answer" (index)};
    PodcastError when it is not one."""
    if not isinstance(data, dict):
        raise PodcastError("a check question is an object with question, choices and answer")
    question = str(data.get("question") or "").strip()
    choices = [str(c).strip() for c in data.get("choices") or []]
    answer = data.get("answer")
    if not question or not 2 <= len(choices) <= 4 or not all(choices):
        raise PodcastError("a check question needs a question and 2 to 4 non-empty choices")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise PodcastError("the check question's answer is the index of the right choice")
    return {"question": question, "choices": choices, "answer": answer}


def split_check(script: str) -> tuple[str, dict[str, Any] | None]:
    """A lesson script's check question, written at its end:

        Q: 密碼多久要換一次？        (or 問：)
        * 定期更換，且不重複使用     (the right answer)
        - 永遠不用換                 (a wrong one)

    Returns the script without those lines, and the question (None when there is none)."""
    lines = script.rstrip().splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.strip().startswith(("Q:", "Q：", "問：", "問:"))
        ),
        None,
    )
    if start is None:
        return script, None
    question = lines[start].strip()[2:].strip()
    choices: list[str] = []
    answer = -1
    for line in lines[start + 1 :]:
        text = line.strip()
        if text.startswith("*"):
            answer = len(choices)
            choices.append(text[1:].strip())
        elif text.startswith("-"):
            choices.append(text[1:].strip())
        elif text:
            raise PodcastError(f"the check question's answers start with * or -: {text!r}")
    check = parse_check({"question": question, "choices": choices, "answer": answer})
    return "\n".join(lines[:start]).rstrip(), check


def check_of(episode: Episode) -> dict[str, Any] | None:
    """The episode's check question, when it has a usable one."""
    check = episode.check_question
    if not check or not check.get("question") or len(check.get("choices") or []) < 2:
        return None
    return check


async def answer_check(
    session: AsyncSession, *, member_id: int, episode: Episode, choice: int, now: dt.datetime
) -> bool:
    """Whether `choice` is the right answer; a right one is evidence of listening."""
    check = check_of(episode)
    if check is None or choice != int(check.get("answer", -1)):
        return False
    row = await _listen(session, member_id=member_id, episode_id=episode.id, now=now)
    row.evidence = row.evidence or "check"
    await session.flush()
    return True


async def mark_finished(
    session: AsyncSession, *, member_id: int, episode: Episode, now: dt.datetime
) -> tuple[Progress, PodcastCompletion | None]:
    """The member finished `episode`; when that makes every episode finished, a completion is
    recorded (once). Returns the progress and the completion made now, if any.

    Raises NeedsEvidence for a podcast whose hours count when neither the member's own link
    served 90% of the episode nor the member answered its check question right."""
    row = await _listen(session, member_id=member_id, episode_id=episode.id, now=now)
    if row.finished_at is None:
        if hours_need_evidence(episode.podcast) and row.evidence is None:
            raise NeedsEvidence("no evidence of listening to this episode")
        row.finished_at = now
        await session.flush()
    done = await progress(session, member_id=member_id, podcast_id=episode.podcast_id, now=now)
    if not done.complete:
        return done, None
    if await get_completion(session, member_id=member_id, podcast_id=episode.podcast_id):
        return done, None
    podcast = episode.podcast
    completion = PodcastCompletion(
        member_id=member_id,
        podcast_id=podcast.id,
        course_id=podcast.course_id,
        hours=podcast.credit_hours,
        completed_at=now,
    )
    session.add(completion)
    course_id = podcast.course_id
    if course_id is None and completion.hours > 0:
        # Hours of its own and no course: the hours still count toward "My learning" (the
        # yearly total, which counts every completion; no category requirement matches it).
        course_id = podcast_course_id(podcast.id)
    if course_id is not None:
        await _record_course_completion(
            session, member_id=member_id, course_id=course_id, hours=completion.hours, now=now
        )
    await session.flush()
    return done, completion


def podcast_course_id(podcast_id: int) -> str:
    """The learning-completion course id of a podcast that has hours but no course."""
    return f"{PODCAST_COURSE_PREFIX}{podcast_id}"


async def _record_course_completion(
    session: AsyncSession, *, member_id: int, course_id: str, hours: float, now: dt.datetime
) -> None:
    """A finished podcast counts as its course completed (learning hours, mandatory-course
    reminders); the same person, course and Taipei day is one completion."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(Completion)
        .values(
            person=f"member:{member_id}",
            member_id=member_id,
            course_id=course_id,
            completed_at=now,
            day=taipei_day(now).isoformat(),
            hours=hours,
            imported_at=now,
        )
        .on_conflict_do_nothing(index_elements=["person", "course_id", "day"])
    )


# -- subscriptions ----------------------------------------------------------------------------
def parse_delivery_time(text: str) -> str | None:
    """'7:30', '07:30', '0730', '０７：３０', '7am', '早上七點' -> '07:30' / '07:00'; None
    when it is not a time of day."""
    return parse_time_of_day(text)


def latest_slot(now: dt.datetime, *, delivery_time: str, weekdays_only: bool) -> dt.datetime:
    """The most recent delivery moment at or before `now` (Taipei wall clock), in UTC."""
    hour, minute = (int(x) for x in delivery_time.split(":"))
    local = now.astimezone(TAIPEI)
    slot = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if slot > local:
        slot -= dt.timedelta(days=1)
    while weekdays_only and slot.weekday() >= 5:
        slot -= dt.timedelta(days=1)
    return slot.astimezone(dt.UTC)


async def get_subscription(
    session: AsyncSession, *, member_id: int, podcast_id: int
) -> PodcastSubscription | None:
    return await session.scalar(
        select(PodcastSubscription).where(
            PodcastSubscription.member_id == member_id,
            PodcastSubscription.podcast_id == podcast_id,
        )
    )


async def first_unfinished_number(
    session: AsyncSession, *, member_id: int, podcast_id: int, now: dt.datetime
) -> int:
    """The number of the first published episode not finished yet (or one past the last)."""
    done = await finished_episode_ids(session, member_id=member_id, podcast_id=podcast_id)
    episodes = await episodes_of(session, podcast_id=podcast_id, now=now)
    for ep in episodes:
        if ep.id not in done:
            return ep.number
    return (episodes[-1].number + 1) if episodes else 1


async def subscribe(
    session: AsyncSession,
    *,
    member: Member,
    podcast: Podcast,
    delivery_time: str,
    weekdays_only: bool,
    now: dt.datetime,
) -> PodcastSubscription:
    """Subscribe (or change the time of) a member; deliveries start at the next slot with the
    first episode they have neither finished nor been sent."""
    access = await listen_access(session, member=member, podcast=podcast)
    if access is Access.CIVIL_SERVANT:
        raise PodcastError("this podcast is for verified civil servants")
    if access is Access.COURSE_PASSWORD:
        raise PodcastError("this podcast opens once its course is unlocked with the password")
    parsed = parse_delivery_time(delivery_time)
    if parsed is None:
        raise PodcastError(f"not a time of day: {delivery_time!r}")
    sub = await get_subscription(session, member_id=member.id, podcast_id=podcast.id)
    start = await first_unfinished_number(
        session, member_id=member.id, podcast_id=podcast.id, now=now
    )
    if sub is None:
        sub = PodcastSubscription(
            member_id=member.id, podcast_id=podcast.id, podcast=podcast, created_at=now
        )
        session.add(sub)
    else:
        # Changing the time (or coming back) resumes after the last episode delivered: each
        # episode reaches a member once (the outbox key is podcast + member + episode).
        start = max(start, sub.next_number)
    sub.delivery_time = parsed
    sub.weekdays_only = weekdays_only
    sub.active = True
    sub.next_number = start
    sub.last_slot_at = now
    await session.flush()
    return sub


async def subscribed_podcasts(session: AsyncSession, *, member_id: int) -> list[Podcast]:
    """The podcasts a member gets episodes of, the most recently (re)subscribed first."""
    rows = await session.scalars(
        select(Podcast)
        .join(PodcastSubscription, PodcastSubscription.podcast_id == Podcast.id)
        .where(PodcastSubscription.member_id == member_id, PodcastSubscription.active.is_(True))
        .order_by(PodcastSubscription.last_slot_at.desc(), Podcast.id)
    )
    return list(rows.all())


async def unsubscribe(session: AsyncSession, *, member_id: int, podcast_id: int) -> bool:
    """Stop deliveries; True when there was an active subscription."""
    result = await session.execute(
        update(PodcastSubscription)
        .where(
            PodcastSubscription.member_id == member_id,
            PodcastSubscription.podcast_id == podcast_id,
            PodcastSubscription.active.is_(True),
        )
        .values(active=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass
class Drop:
    """One due delivery: this subscription gets this episode for the slot at `slot`."""

    subscription: PodcastSubscription
    episode: Episode
    slot: dt.datetime


async def due_drops(session: AsyncSession, *, now: dt.datetime, batch: int = 500) -> list[Drop]:
    """Advance every active subscription whose Taipei delivery slot has come since it was last
    served, and return the episode each one gets (one per slot; none when caught up).

    The caller writes the outbox rows in the same transaction and commits once; running this
    twice for the same slot finds nothing the second time.
    """
    drops: list[Drop] = []
    after = 0
    while True:
        subs = list(
            (
                await session.scalars(
                    select(PodcastSubscription)
                    .where(PodcastSubscription.active.is_(True), PodcastSubscription.id > after)
                    .order_by(PodcastSubscription.id)
                    .limit(batch)
                )
            ).unique()
        )
        if not subs:
            return drops
        after = subs[-1].id
        for sub in subs:
            slot = latest_slot(
                now, delivery_time=sub.delivery_time, weekdays_only=sub.weekdays_only
            )
            if slot <= sub.last_slot_at:
                continue
            sub.last_slot_at = slot
            member = await session.get(Member, sub.member_id)
            if member is None or not await may_listen(session, member=member, podcast=sub.podcast):
                continue  # not (or no longer) open to them: the slot passes, nothing is sent
            episode = await _next_unfinished(session, sub=sub, now=now)
            if episode is None:
                continue  # caught up: a new episode goes out at the next slot
            sub.next_number = episode.number + 1
            drops.append(Drop(subscription=sub, episode=episode, slot=slot))


async def _next_unfinished(
    session: AsyncSession, *, sub: PodcastSubscription, now: dt.datetime
) -> Episode | None:
    finished = (
        select(EpisodeListen.episode_id)
        .where(EpisodeListen.member_id == sub.member_id, EpisodeListen.finished_at.is_not(None))
        .scalar_subquery()
    )
    return await session.scalar(
        select(Episode)
        .where(
            Episode.podcast_id == sub.podcast_id,
            Episode.number >= sub.next_number,
            Episode.published_at <= now,
            Episode.id.not_in(finished),
        )
        .order_by(Episode.number)
        .limit(1)
    )


# -- private feed tokens ----------------------------------------------------------------------
async def active_feed_token(
    session: AsyncSession, *, member_id: int, podcast_id: int
) -> FeedToken | None:
    return await session.scalar(
        select(FeedToken)
        .where(
            FeedToken.member_id == member_id,
            FeedToken.podcast_id == podcast_id,
            FeedToken.revoked_at.is_(None),
        )
        .order_by(FeedToken.id.desc())
        .limit(1)
    )


async def ensure_feed_token(
    session: AsyncSession, *, member_id: int, podcast_id: int, now: dt.datetime
) -> FeedToken:
    """The member's current private feed of this podcast, made on first request."""
    token = await active_feed_token(session, member_id=member_id, podcast_id=podcast_id)
    if token is None:
        token = FeedToken(
            member_id=member_id,
            podcast_id=podcast_id,
            nonce=secrets.token_hex(16),
            created_at=now,
        )
        session.add(token)
        await session.flush()
    return token


async def revoke_feed_tokens(
    session: AsyncSession, *, member_id: int, podcast_id: int, now: dt.datetime
) -> int:
    """Revoke the member's private feeds of this podcast; returns how many were active."""
    result = await session.execute(
        update(FeedToken)
        .where(
            FeedToken.member_id == member_id,
            FeedToken.podcast_id == podcast_id,
            FeedToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
