"""`edoor line-richmenu` against a fake LINE API: menu, picture and default, as LINE wants."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from starlette.responses import JSONResponse, Response

from bot.line.richmenu import HEIGHT, WIDTH, draw_menu, install_rich_menu, menu_request
from tests.conftest import LINE_SECRET, LINE_TOKEN
from tests.fakes.server import FakeServer, RecordedRequest
from tests.openapi import line_schema_errors


class FakeLineRichMenu(FakeServer):
    async def respond(self, request: RecordedRequest) -> Response:
        if request.path == "/v2/bot/richmenu":
            return JSONResponse({"richMenuId": "richmenu-0123456789abcdef"})
        return Response(status_code=200)


def test_picture_meets_line_limits() -> None:
    picture = draw_menu()
    image = Image.open(io.BytesIO(picture.png))
    assert image.format == "PNG"
    assert image.size == (WIDTH, HEIGHT)
    assert 800 <= WIDTH <= 2500
    assert HEIGHT >= 250
    assert WIDTH / HEIGHT >= 1.45
    assert len(picture.png) < 1_000_000  # LINE accepts at most 1 MB


def test_menu_areas_cover_the_picture_and_run_commands(shared_dir: Path | None) -> None:
    body = menu_request().to_dict()
    assert [a["action"]["data"] for a in body["areas"]] == [
        "cmd:search",
        "cmd:podcasts",
        "cmd:learning",
        "cmd:prizes",
        "cmd:settings",
    ]
    assert sum(a["bounds"]["width"] for a in body["areas"]) <= WIDTH
    assert len(body["chatBarText"]) <= 14
    if shared_dir is not None:
        assert line_schema_errors(shared_dir, "RichMenuRequest", body) == []


async def test_install_creates_uploads_and_sets_default(make_settings) -> None:  # type: ignore[no-untyped-def]
    fake = FakeLineRichMenu()
    url = await fake.start()
    try:
        settings = make_settings(
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=url,
            line_data_api_base_url=url,
        )
        assert await install_rich_menu(settings) == "richmenu-0123456789abcdef"
    finally:
        await fake.stop()
    paths = [(r.method, r.path) for r in fake.requests]
    assert paths == [
        ("POST", "/v2/bot/richmenu"),
        ("POST", "/v2/bot/richmenu/richmenu-0123456789abcdef/content"),
        ("POST", "/v2/bot/user/all/richmenu/richmenu-0123456789abcdef"),
    ]
    upload = fake.requests[1]
    assert upload.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(upload.body)).size == (WIDTH, HEIGHT)
    assert all(r.headers["authorization"] == f"Bearer {LINE_TOKEN}" for r in fake.requests)
