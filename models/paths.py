"""Path safety for files under MEDIA_DIR: one rule for the media routes, the feeds, the
upload and the Telegram adapter (which reads a file of ours instead of linking it)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path, PurePosixPath


def safe_relative(path: str) -> PurePosixPath:
    """A relative POSIX path with no '..', absolute or empty parts (for MEDIA_DIR lookups)."""
    if "\x00" in path:  # the OS refuses such names: a client's mistake, not ours
        raise ValueError("not a media path: it holds a NUL")
    rel = PurePosixPath(path)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise ValueError(f"not a media path: {path!r}")
    return rel


def file_under(root: Path, rel: PurePosixPath) -> Path | None:
    """The existing file `rel` under `root`, or None when it is missing or (through a link)
    resolves outside `root`."""
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def local_media_path(url: str, *, public_base_url: str, media_dir: Path) -> Path | None:
    """The file under MEDIA_DIR that a `/media/...` URL of ours serves; None for any other
    URL, a path that leaves MEDIA_DIR, or a file that is not there."""
    prefix = public_base_url.rstrip("/") + "/media/"
    bare = url.split("#", 1)[0].split("?", 1)[0]
    if not bare.startswith(prefix):
        return None
    try:
        rel = safe_relative(urllib.parse.unquote(bare[len(prefix) :]))
    except ValueError:
        return None
    return file_under(media_dir, rel)
