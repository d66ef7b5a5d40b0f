"""Fonts for the images the bot draws (the LINE rich menu, podcast covers)."""

from __future__ import annotations

# Fonts that carry Traditional Chinese, in order of preference (Debian's fonts-noto-cjk first).
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
