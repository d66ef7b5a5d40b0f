"""Broadcast images: a PNG or JPEG kept under MEDIA_DIR/broadcasts, named by its content hash,
and served by /media as a public file (LINE fetches an image from an https URL; Telegram
takes the same URL).

A broadcast file's `image` may be a URL or a path (read beside the file); a path is stored
here and replaced by its URL, so the stored broadcast only ever holds URLs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from bot.settings import Settings
from media.files import media_url

# LINE shows an image message's preview from the same file, and refuses a preview over 1 MB.
MAX_IMAGE_BYTES = 1024 * 1024
FOLDER = "broadcasts"
_KINDS = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"))


class ImageRefused(ValueError):
    """Not an image a broadcast can carry; the message says why."""


def image_suffix(data: bytes) -> str:
    """'.png' or '.jpg', judged by the bytes themselves (never by a name or a header)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRefused(f"image larger than {MAX_IMAGE_BYTES // 1024} KB (LINE's limit)")
    for magic, suffix in _KINDS:
        if data.startswith(magic):
            return suffix
    raise ImageRefused("not a PNG or JPEG image")


def store_image(data: bytes, *, media_dir: Path) -> str:
    """Keep the image under MEDIA_DIR/broadcasts; its path relative to MEDIA_DIR. The same
    bytes give the same name, so storing twice keeps one file."""
    suffix = image_suffix(data)
    folder = media_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"{FOLDER}/{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    target = media_dir / rel
    if not target.exists():
        tmp = folder / f".{target.name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)  # whole or not at all: /media never serves half a file
    return rel


def image_url(settings: Settings, data: bytes) -> str:
    """Store the image and give its public URL (under PUBLIC_BASE_URL)."""
    return media_url(settings, store_image(data, media_dir=settings.media_dir))


def resolve_image_paths(raw: Any, *, base_dir: Path, settings: Settings) -> Any:
    """A broadcast file with each `image` that is a path (relative to `base_dir`) stored and
    replaced by its URL; URLs and anything else are left for the file's own checks."""
    if not isinstance(raw, dict):
        return raw
    messages = [raw.get("message")]
    variants = raw.get("variants")
    if isinstance(variants, list):
        messages += [v.get("message") for v in variants if isinstance(v, dict)]
    for field, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        image = message.get("image")
        if not isinstance(image, str) or image.startswith(("http://", "https://")):
            continue
        path = (base_dir / image).expanduser()
        where = "message.image" if field == 0 else f"variants[{field - 1}].message.image"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageRefused(f"{where}: cannot read {image!r} ({exc.strerror})") from None
        try:
            message["image"] = image_url(settings, data)
        except ImageRefused as exc:
            raise ImageRefused(f"{where}: {exc}") from None
    return raw
