"""`edoor line-richmenu`: draw the default rich menu, upload it and make it the default.

Five areas in one row (找課程 · 聽課 · 我的學習 · 活動領獎 · 設定); each is a postback that runs
the same command as the typed words, so a tap escapes any conversation step.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    PostbackAction,
    RichMenuArea,
    RichMenuBounds,
    RichMenuRequest,
    RichMenuSize,
)
from PIL import Image, ImageDraw, ImageFont

from bot.fonts import CJK_FONTS
from bot.router import COMMAND_ACTION
from bot.settings import Settings

WIDTH, HEIGHT = 2500, 843  # LINE's "compact" size; aspect ratio 2.97 (>= 1.45 required)
ITEMS = (
    ("search", "找課程", "Courses"),
    ("podcasts", "聽課", "Podcasts"),
    ("learning", "我的學習", "My learning"),
    ("prizes", "活動領獎", "Prizes"),
    ("settings", "設定", "Settings"),
)
COLOURS = ("#0B6E4F", "#1F7A8C", "#3D5A80", "#C8553D", "#5C5C5C")


@dataclass(frozen=True)
class RichMenuImage:
    png: bytes
    chinese: bool  # False when no CJK font was found and the labels are English


def _font(size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    for path in CJK_FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size), True
    return ImageFont.load_default(size=size), False


def draw_menu() -> RichMenuImage:
    """The menu picture: five coloured tiles with a pictogram-free, large label each."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    pen = ImageDraw.Draw(image)
    font, chinese = _font(104)
    small, _ = _font(56)
    tile = WIDTH // len(ITEMS)
    for i, ((_, zh, en), colour) in enumerate(zip(ITEMS, COLOURS, strict=True)):
        box = (i * tile + 12, 12, (i + 1) * tile - 12, HEIGHT - 12)
        pen.rounded_rectangle(box, radius=48, fill=colour)
        centre = ((box[0] + box[2]) / 2, HEIGHT / 2)
        label = zh if chinese else en
        pen.text((centre[0], centre[1] - 40), label, font=font, fill="white", anchor="mm")
        if chinese:
            pen.text((centre[0], centre[1] + 110), en, font=small, fill="#E8F1F2", anchor="mm")
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return RichMenuImage(png=out.getvalue(), chinese=chinese)


def menu_request() -> RichMenuRequest:
    tile = WIDTH // len(ITEMS)
    return RichMenuRequest(
        size=RichMenuSize(width=WIDTH, height=HEIGHT),
        selected=True,
        name="edoor main menu",
        chatBarText="選單 Menu",
        areas=[
            RichMenuArea(
                bounds=RichMenuBounds(x=i * tile, y=0, width=tile, height=HEIGHT),
                action=PostbackAction(label=zh, data=f"{COMMAND_ACTION}:{name}", displayText=zh),
            )
            for i, (name, zh, _) in enumerate(ITEMS)
        ],
    )


async def install_rich_menu(settings: Settings) -> str:
    """Create the menu, upload its picture and set it as every user's default; returns its id."""
    assert settings.line_channel_access_token is not None
    token = settings.line_channel_access_token.get_secret_value()
    api_config = Configuration(host=settings.line_api_base_url.rstrip("/"), access_token=token)
    data_config = Configuration(
        host=settings.line_data_api_base_url.rstrip("/"), access_token=token
    )
    picture = draw_menu()
    async with AsyncApiClient(api_config) as client, AsyncApiClient(data_config) as data_client:
        api = AsyncMessagingApi(client)
        created = await api.create_rich_menu(menu_request())
        blob = AsyncMessagingApiBlob(data_client)
        await blob.set_rich_menu_image(
            created.rich_menu_id, picture.png, _headers={"Content-Type": "image/png"}
        )
        await api.set_default_rich_menu(created.rich_menu_id)
    return str(created.rich_menu_id)
