"""QR codes as PNG (segno, pure Python): drawn where the bytes are needed, not before.

A won prize's reply names its code (`Image.qr`); the Telegram renderer draws the picture
and uploads it, while LINE fetches the same picture from the signed link (media.qr), so a
LINE win costs no PNG at all until the person's phone asks for it."""

from __future__ import annotations

import io

import segno


def qr_png(code: str, *, scale: int = 8) -> bytes:
    """The code as a QR image (PNG, error correction M, a quiet zone of 4 modules)."""
    buffer = io.BytesIO()
    segno.make(code, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
