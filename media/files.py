"""Audio for podcasts: ingest (mp3, m4a, wav) with the duration read from the file, transcoding
to m4a/AAC with ffmpeg, text to speech behind a Protocol, signed expiring links, and the
`/media/...` route (Range requests, content types, cache headers).

Files live under MEDIA_DIR; a file appears there only complete (written beside its final name,
then renamed), so a bad upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import mutagen
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ports import LinkSigner
from bot.settings import Settings
from models.base import utcnow
from models.paths import file_under, safe_relative
from models.podcasts import episode_by_media_path, record_served

log = logging.getLogger("edoor.media")

AUDIO_TYPES = {".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".wav": "audio/wav"}
CONTENT_TYPES = {
    **AUDIO_TYPES,
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".json": "application/json",
}
MAX_UPLOAD_BYTES = 500 * 1024 * 1024
# Episode files are named by content hash, so a URL never changes meaning: cache for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
SIGNED_LINK_TTL = dt.timedelta(days=7)  # long enough to play a delivered episode next week
AAC_BITRATE = "64k"  # speech: mono 64 kb/s AAC is clear and small


class AudioError(ValueError):
    """The file is not usable audio; the message says why, for a person to act on."""


# -- keys and signed links ---------------------------------------------------------------------
def derive_key(secret: str, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, derived from a server secret (HKDF-SHA256, as models.pii)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"edoor-media-v1", info=purpose).derive(
        secret.encode("utf-8")
    )


def _mac(key: bytes, message: str, length: int = 22) -> str:
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:length]


@dataclass(frozen=True)
class MediaSigner:
    """Signs `/media/<path>` links with an expiry; a link cannot be moved to another file.

    Signs with the key of the current PII_KEY and also accepts the key of PII_KEY_PREVIOUS, so
    that links and private feed URLs given out before `edoor rotate-pii-key` keep working
    while the previous key is configured.
    """

    key: bytes
    previous: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaSigner:
        old = settings.pii_key_previous
        return cls(
            derive_key(settings.pii_key.get_secret_value(), b"media-link"),
            previous=(derive_key(old.get_secret_value(), b"media-link"),) if old else (),
        )

    def _matches(self, message: str, mac: str, length: int) -> bool:
        # Every key is tried (no early exit), so timing does not tell which one matched.
        found = False
        for key in (self.key, *self.previous):
            found |= hmac.compare_digest(_mac(key, message, length), mac)
        return found

    def click_tag(self, token: str, member_id: int) -> str:
        """A tracked link's tag for one person (`/r/<token>?p=<tag>`): their member id and a
        MAC of it with the token, so a click can be counted for the person it was sent to
        and nobody can count clicks for somebody else."""
        return f"{member_id}.{_mac(self.key, f'click:{token}:{member_id}', 12)}"

    def click_member(self, token: str, tag: str) -> int | None:
        """The member a tag was made for, if it is one of ours for this token."""
        member, _, mac = tag.partition(".")
        if not member.isdigit() or len(member) > 12 or len(mac) != 12:
            return None
        if not self._matches(f"click:{token}:{int(member)}", mac, 12):
            return None
        return int(member)

    def query(self, path: str, *, expires_at: dt.datetime, member_id: int | None = None) -> str:
        """`exp=...&sig=...`; with `member_id`, a personal link (`m=...`, signed too), whose
        served bytes count as that member's listening."""
        expires = int(expires_at.timestamp())
        if member_id is None:
            return urllib.parse.urlencode(
                {"exp": expires, "sig": _mac(self.key, f"{path}\n{expires}")}
            )
        message = f"{path}\n{expires}\nm{member_id}"
        return urllib.parse.urlencode(
            {"exp": expires, "m": member_id, "sig": _mac(self.key, message)}
        )

    def valid(
        self,
        path: str,
        *,
        exp: str | None,
        sig: str | None,
        now: dt.datetime,
        member: str | None = None,
    ) -> bool:
        if not exp or not sig or not exp.isdigit():
            return False
        if int(exp) < now.timestamp():
            return False
        if member is not None:
            if not member.isdigit() or len(member) > 12:
                return False
            return self._matches(f"{path}\n{exp}\nm{member}", sig, 22)
        return self._matches(f"{path}\n{exp}", sig, 22)

    def feed_token(self, token_id: int, nonce: str) -> str:
        """The URL token of a private feed row: id plus an HMAC, so the row alone is no URL."""
        return f"{token_id}.{_mac(self.key, f'feed:{token_id}:{nonce}', 32)}"

    def feed_token_id(self, token: str) -> tuple[int, str] | None:
        """(row id, mac) from a URL token, or None when malformed; check the mac afterwards."""
        head, _, mac = token.partition(".")
        if not head.isdigit() or not mac or len(head) > 12:
            return None
        return int(head), mac

    def feed_token_matches(self, token_id: int, nonce: str, mac: str) -> bool:
        return self._matches(f"feed:{token_id}:{nonce}", mac, 32)


def media_url(
    settings: Settings,
    path: str,
    *,
    signer: LinkSigner | None = None,
    now: dt.datetime | None = None,
    ttl: dt.timedelta = SIGNED_LINK_TTL,
    member_id: int | None = None,
) -> str:
    """The public URL of a file under MEDIA_DIR; signed (expiring) when a signer is given,
    and personal (the member's own link) with `member_id`."""
    base = settings.public_base_url.rstrip("/")
    url = f"{base}/media/{urllib.parse.quote(path)}"
    if signer is None:
        return url
    if now is None:
        raise ValueError("a signed link needs `now`")
    return f"{url}?{signer.query(path, expires_at=now + ttl, member_id=member_id)}"


# -- ingest ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredAudio:
    path: str  # relative to MEDIA_DIR, POSIX separators
    content_type: str
    size_bytes: int
    duration_ms: int
    sha256: str


@dataclass(frozen=True)
class Probe:
    kind: str  # "mp3", "m4a" or "wav"
    duration_ms: int


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AudioError(
            f"{name} is not installed (Debian: apt-get install {name}; "
            "see scripts/system-packages.sh)"
        )
    return found


def probe(path: Path) -> Probe:
    """What kind of audio the file holds and how long it plays, read from the file itself."""
    try:
        info = mutagen.File(path)
    except (mutagen.MutagenError, OSError, ValueError, EOFError) as exc:
        raise AudioError(f"{path.name}: not a readable mp3, m4a or wav file ({exc})") from None
    if info is None or getattr(info, "info", None) is None:
        raise AudioError(f"{path.name}: not a readable mp3, m4a or wav file")
    name = type(info).__name__
    if name in ("MP3", "EasyMP3"):
        kind = "mp3"
    elif name in ("MP4", "EasyMP4"):
        codec = str(getattr(info.info, "codec", ""))
        # LINE and Telegram play AAC in MP4; ALAC or video tracks would need transcoding.
        kind = "m4a" if codec.startswith("mp4a") else "m4a-other"
    elif name == "WAVE":
        kind = "wav"
    else:
        raise AudioError(f"{path.name}: {name} audio is not accepted (use mp3, m4a or wav)")
    length = float(getattr(info.info, "length", 0) or 0)
    if length <= 0:
        raise AudioError(f"{path.name}: the audio has no length")
    return Probe(kind=kind, duration_ms=round(length * 1000))


async def _run(*args: str, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["failed"]
        raise AudioError(f"{what}: {detail[0]}")


async def check_decodes(path: Path) -> None:
    """Decode the whole file once: a truncated or corrupt file fails here, not in a player."""
    await _run(
        _tool("ffmpeg"), "-nostdin", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-",
        what=f"{path.name}: the audio does not decode",
    )  # fmt: skip


async def transcode_to_m4a(source: Path, target: Path) -> None:
    """Any audio ffmpeg reads -> mono AAC in MP4, with the index first for streaming."""
    await _run(
        _tool("ffmpeg"), "-nostdin", "-v", "error", "-y", "-i", str(source), "-vn",
        "-ac", "1", "-c:a", "aac", "-b:a", AAC_BITRATE, "-movflags", "+faststart",
        "-f", "mp4", str(target),
        what=f"{source.name}: transcoding to m4a failed",
    )  # fmt: skip


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_source(source: Path) -> None:
    if not source.is_file():
        raise AudioError(f"{source}: no such file")
    size = source.stat().st_size
    if size == 0:
        raise AudioError(f"{source.name}: the file is empty")
    if size > MAX_UPLOAD_BYTES:
        raise AudioError(f"{source.name}: larger than {MAX_UPLOAD_BYTES // 2**20} MB")


def _temp_beside(target_dir: Path, suffix: str) -> Path:
    # Beside its final name, so that the rename is atomic (same filesystem).
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".part-", suffix=suffix, dir=target_dir)
    os.close(fd)
    return Path(name)


def _publish(tmp: Path, target_dir: Path, stem: str, suffix: str) -> tuple[Path, str, int]:
    digest = _sha256(tmp)
    final = target_dir / f"{stem}-{digest[:12]}{suffix}"
    tmp.replace(final)
    return final, digest, final.stat().st_size


async def ingest_audio(source: Path, *, media_dir: Path, folder: str, stem: str) -> StoredAudio:
    """Check, (trans)code and store an audio file as `<folder>/<stem>-<hash>.<mp3|m4a>`.

    mp3 and AAC m4a are kept as they are; wav and other m4a become AAC m4a. Nothing appears
    under MEDIA_DIR unless every step succeeded. Raises AudioError with a clear reason.
    """
    await asyncio.to_thread(_check_source, source)
    found = await asyncio.to_thread(probe, source)
    await check_decodes(source)
    target_dir = media_dir / safe_relative(folder)
    keep = found.kind in ("mp3", "m4a")
    suffix = ".mp3" if found.kind == "mp3" else ".m4a"
    tmp = await asyncio.to_thread(_temp_beside, target_dir, suffix)
    try:
        if keep:
            await asyncio.to_thread(shutil.copyfile, source, tmp)
            duration_ms = found.duration_ms
        else:
            await transcode_to_m4a(source, tmp)
            duration_ms = (await asyncio.to_thread(probe, tmp)).duration_ms
        final, digest, size = await asyncio.to_thread(_publish, tmp, target_dir, stem, suffix)
    except BaseException:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    return StoredAudio(
        path=final.relative_to(media_dir).as_posix(),
        content_type=AUDIO_TYPES[suffix],
        size_bytes=size,
        duration_ms=duration_ms,
        sha256=digest,
    )


def discard(media_dir: Path, stored: StoredAudio) -> None:
    """Remove a stored file whose database row could not be written (no orphan left)."""
    with contextlib.suppress(OSError, ValueError):
        (media_dir / safe_relative(stored.path)).unlink(missing_ok=True)


# -- text to speech ----------------------------------------------------------------------------
class SpeechEngine(Protocol):
    """Text to speech; writes a wav file. A cloud voice can implement this later."""

    name: str

    async def synthesize(self, text: str, *, out_wav: Path, language: str = "zh-TW") -> None: ...


class EspeakNg:
    """espeak-ng (offline, Debian): Mandarin for zh-TW, English for en."""

    name = "espeak-ng"
    # Mandarin `cmn` turns characters into tone-numbered pinyin and, in its default variant
    # ("latin as English"), then reads "ni3" as "ni three"; the pinyin variant speaks tones.
    VOICES = {"zh-TW": "cmn-latn-pinyin", "en": "en"}

    def __init__(self, *, words_per_minute: int = 150) -> None:
        self.words_per_minute = words_per_minute

    async def synthesize(self, text: str, *, out_wav: Path, language: str = "zh-TW") -> None:
        if not text.strip():
            raise AudioError("the lesson script is empty")
        voice = self.VOICES.get(language, self.VOICES["zh-TW"])
        with tempfile.TemporaryDirectory(prefix="edoor-tts-") as work:
            script = Path(work) / "script.txt"
            script.write_text(text, encoding="utf-8")
            await _run(
                _tool("espeak-ng"), "-v", voice, "-s", str(self.words_per_minute),
                "-f", str(script), "-w", str(out_wav),
                what="text to speech failed",
            )  # fmt: skip


async def speak_to_audio(
    engine: SpeechEngine,
    text: str,
    *,
    media_dir: Path,
    folder: str,
    stem: str,
    language: str = "zh-TW",
) -> StoredAudio:
    """A lesson script spoken by `engine`, stored as m4a under MEDIA_DIR."""
    with tempfile.TemporaryDirectory(prefix="edoor-tts-") as work:
        wav = Path(work) / f"{stem}.wav"
        await engine.synthesize(text, out_wav=wav, language=language)
        return await ingest_audio(wav, media_dir=media_dir, folder=folder, stem=stem)


# -- serving -----------------------------------------------------------------------------------
def served_spans(header: str | None, size: int) -> list[tuple[int, int]]:
    """The byte spans [start, end) a GET with this Range header is served (the whole file
    without one); [] when the header cannot be satisfied (a 416)."""
    if size <= 0:
        return []
    if not header:
        return [(0, size)]
    unit, _, ranges = header.partition("=")
    if unit.strip().lower() != "bytes":
        return [(0, size)]  # an unknown unit is ignored: the whole file is sent
    spans: list[tuple[int, int]] = []
    for part in ranges.split(","):
        first, dash, last = part.strip().partition("-")
        if not dash:
            return []
        try:
            if not first:  # the last N bytes
                start, end = max(0, size - int(last)), size
            else:
                start = int(first)
                end = min(size, int(last) + 1) if last else size
        except ValueError:
            return []
        if start < end:
            spans.append((start, end))
    return spans


def media_routes(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Callable[[], dt.datetime] = utcnow,
) -> APIRouter:
    """`GET /media/<path>`: files under MEDIA_DIR with Range support (206/416, from Starlette's
    FileResponse). Episodes of restricted podcasts need a valid, unexpired signature."""
    router = APIRouter()
    signer = MediaSigner.from_settings(settings)

    # HEAD as its own route, left out of the OpenAPI document (one operation id per route).
    @router.api_route("/media/{path:path}", methods=["HEAD"], include_in_schema=False)
    @router.get("/media/{path:path}")
    async def media(
        request: Request,
        path: str,
        exp: Annotated[str | None, Query()] = None,
        sig: Annotated[str | None, Query()] = None,
        m: Annotated[str | None, Query(max_length=12)] = None,
    ) -> FileResponse:
        try:
            rel = safe_relative(path)
        except ValueError:
            raise HTTPException(404) from None
        file = file_under(settings.media_dir, rel)
        if file is None or rel.name.startswith("."):
            raise HTTPException(404)
        # Access is judged by the file that would be served, not by the name asked for: a
        # link (or a second name) inside MEDIA_DIR must not serve a restricted episode unsigned.
        served = file.relative_to(settings.media_dir.resolve()).as_posix()
        async with sessionmaker() as session:
            episode = await episode_by_media_path(session, path=served)
            restricted = episode is not None and episode.podcast.restricted
            if restricted and served != rel.as_posix():
                raise HTTPException(404)
            personal = m is not None
            if (restricted or personal) and not signer.valid(
                served, exp=exp, sig=sig, now=clock(), member=m
            ):
                raise HTTPException(403, "this link is not valid or has expired")
            if episode is not None and m is not None and request.method == "GET":
                spans = served_spans(request.headers.get("range"), file.stat().st_size)
                # Telegram's servers fetch a sendAudio URL whole, once, for everyone: that
                # is no person listening.
                agent = request.headers.get("user-agent", "")
                if spans and "TelegramBot" not in agent:
                    await record_served(
                        session, member_id=int(m), episode=episode, spans=spans, now=clock()
                    )
                    await session.commit()
        if restricted:
            # Signed links are personal: no shared caches, and no longer than the link lives.
            left = max(0, int(exp or 0) - int(clock().timestamp()))
            cache = f"private, max-age={min(left, 86400)}"
        else:
            cache = IMMUTABLE if episode is not None else "public, max-age=3600"
        return FileResponse(
            file,
            media_type=CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream"),
            headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
        )

    return router
