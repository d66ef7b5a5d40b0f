"""Broadcasts through the real app: the admin API (roles, refused files as 422 with the
field), the `broadcasts` and `drain-outbox` jobs, 取消訂閱 in chat withdrawing a queued
row, the tracked `/r/...` redirect counting clicks, LINE's per-unit figures ("< 20" when
LINE leaves them empty), and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import create_sessionmaker
from models.outbox import OutboxMessage
from tests.dialog import Chat
from tests.fakes.line import FakeLine
from tests.outbox_support import LINE_SECRET, LINE_TOKEN, NOON, add_member

TOKEN = "admin-token-for-broadcast-tests-0123456789"
FILE: dict[str, Any] = {
    "name": "資安週",
    "segment": {"any": [{"channel": "line"}, {"channel": "simulator"}]},
    "message": {
        "text": "資安週課程開跑",
        "text_en": "Security week",
        "buttons": [{"label": "報名", "url": "https://elearning.taipei/sec?week=1"}],
    },
    "send_at": "2026-03-02 12:00",
}


async def test_a_broadcast_from_the_api_to_the_phones_with_figures(
    served: Any, engine: AsyncEngine, fake_line: tuple[FakeLine, str]
) -> None:
    fake, line_url = fake_line
    async with create_sessionmaker(engine)() as s:
        people = [await add_member(s, channel="line", external_id=f"U{i:032x}") for i in range(24)]
        await s.commit()
    async with (
        served(
            admin_token=TOKEN,
            line_channel_secret=LINE_SECRET,
            line_channel_access_token=LINE_TOKEN,
            line_api_base_url=line_url,
            # The simulator beside a real channel needs a real SMS provider (never used here).
            simulator_enabled=True,
            sms_provider="twilio",
            twilio_account_sid="AC00112233445566778899aabbccddeeff",
            twilio_auth_token="twilio-auth-token-for-tests",
            twilio_from="+15005550006",
            twilio_api_base_url="http://127.0.0.1:9",
        ) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        runtime = api.state.runtime
        chat = Chat(http, "sim-broadcast-1")
        await chat.say("選單")  # a simulator member: one more recipient
        auth = {"Authorization": f"Bearer {TOKEN}"}

        assert (await http.post("/admin/api/broadcasts", json=FILE)).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.get("/admin/api/broadcasts", headers=wrong)).status_code == 401
        bad = await http.post(
            "/admin/api/broadcasts",
            json={**FILE, "segment": {"all": [{"channel": "fax"}]}},
            headers=auth,
        )
        assert bad.status_code == 422
        assert bad.json()["detail"]["field"] == "segment.all[0].channel"
        counted = await http.post(
            "/admin/api/broadcasts/count", json={"segment": FILE["segment"]}, headers=auth
        )
        assert counted.json() == {"count": 25}
        created = await http.post("/admin/api/broadcasts", json=FILE, headers=auth)
        assert created.status_code == 201
        broadcast_id = created.json()["id"]
        assert created.json()["send_at"].startswith("2026-03-02T12:00:00+08:00")
        assert (await http.get("/admin/api/broadcasts/999", headers=auth)).status_code == 404

        planned = await runtime.jobs.require("broadcasts").run(NOON)
        assert planned == {str(broadcast_id): 25}
        # 取消訂閱 in chat: the simulator member's queued row is withdrawn at once.
        answer = await chat.say("取消訂閱")
        assert "已停止活動訊息" in json.dumps(answer, ensure_ascii=False)
        async with create_sessionmaker(engine)() as s:
            sim_row = await s.scalar(
                select(OutboxMessage).where(
                    OutboxMessage.broadcast_id == broadcast_id,
                    OutboxMessage.channel == "simulator",
                )
            )
        assert sim_row is not None
        assert sim_row.status == "cancelled"

        await runtime.jobs.require("drain-outbox").run(NOON)
        assert fake.delivered() == {p.external_id: 1 for p in people}
        body = json.dumps(fake.sent("/multicast")[0].body, ensure_ascii=False)
        link = body.split("http://127.0.0.1:8000")[1].split('"')[0]
        assert link.startswith("/r/")
        assert "?p=" not in link  # one multicast body for many people: no personal tag

        followed = await http.get(link, follow_redirects=False)
        assert followed.status_code == 302
        assert followed.headers["location"] == "https://elearning.taipei/sec?week=1"
        assert (await http.get("/r/unknown-token")).status_code == 404

        shown = (await http.get(f"/admin/api/broadcasts/{broadcast_id}", headers=auth)).json()
        assert shown["recipients"] == 25
        assert shown["sent"] == 24
        assert shown["clicks"] == 1
        assert shown["withdrawn"] + shown["unsubscribed"] == 1
        assert shown["claims"] == {"a": 0}  # nobody claimed a prize within 7 days
        unit = f"edoor_bc{broadcast_id}_a"
        assert shown["line_insight"][unit]["uniqueImpression"] == 24
        assert shown["line_insight"][unit]["uniqueClick"] == "< 20"

        preview = await http.get(f"/admin/api/broadcasts/{broadcast_id}/preview", headers=auth)
        assert preview.status_code == 200
        assert preview.json()["a:en"]["line"][0]["altText"] == "Security week"
        for action in ("pause", "resume", "cancel"):
            changed = await http.post(
                f"/admin/api/broadcasts/{broadcast_id}/{action}", headers=auth
            )
            assert changed.status_code == 200, action
        assert changed.json()["status"] == "cancelled"
        again = await http.post(f"/admin/api/broadcasts/{broadcast_id}/pause", headers=auth)
        assert again.status_code == 422
        listed = (await http.get("/admin/api/broadcasts", headers=auth)).json()
        assert [b["id"] for b in listed["broadcasts"]] == [broadcast_id]


def cli_env(database_url: str, tmp_path: Path, monkeypatch: Any) -> Any:
    """The environment `edoor` reads, for this test's database and media folder; the CLI."""
    from typer.testing import CliRunner

    from cli import cli
    from tests.conftest import TEST_PII_KEY

    for key, value in {
        "DATABASE_URL": database_url,
        "PII_KEY": TEST_PII_KEY,
        "EDOOR_BACKGROUND": "off",
        "MEDIA_DIR": str(tmp_path / "media"),
        "PUBLIC_BASE_URL": "https://edoor.example.org",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return CliRunner(), cli


def test_the_cli_creates_counts_shows_and_refuses_with_the_field_named(
    database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    runner, cli = cli_env(database_url, tmp_path, monkeypatch)
    good = tmp_path / "bc.yaml"
    good.write_text(
        "name: 測試\nsegment: {all: [{language: en}]}\n"
        "message: {text: 你好, text_en: Hello}\nsend_at: now\n",
        encoding="utf-8",
    )
    made = runner.invoke(cli, ["broadcast", "create", str(good)])
    assert made.exit_code == 0, made.output
    broadcast_id = made.output.strip().splitlines()[-1]
    assert broadcast_id.isdigit()
    counted = runner.invoke(cli, ["broadcast", "count", str(good)])
    assert counted.exit_code == 0, counted.output
    assert counted.output.strip().splitlines()[-1] == "0"
    shown = runner.invoke(cli, ["broadcast", "show", broadcast_id])
    assert shown.exit_code == 0, shown.output
    assert '"status": "scheduled"' in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nsegment: {all: [{inactive_days: -3}]}\nmessage: {text: hi}\nsend_at: now\n"
    )
    refused = runner.invoke(cli, ["broadcast", "create", str(bad)])
    assert refused.exit_code == 2
    assert "segment.all[0].inactive_days" in refused.output
    missing = runner.invoke(cli, ["broadcast", "pause", "12345"])
    assert missing.exit_code == 2
    assert "no broadcast 12345" in missing.output
    paused = runner.invoke(cli, ["broadcast", "pause", broadcast_id])
    assert paused.exit_code == 0, paused.output
    planned = runner.invoke(cli, ["run-job", "broadcasts"])
    assert planned.exit_code == 0, planned.output
    assert "broadcasts: done ({})" in planned.output  # paused: not planned


def test_the_cli_keeps_an_image_given_as_a_path_and_refuses_a_file_that_is_not_one(
    database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    from bot.qr import qr_png

    runner, cli = cli_env(database_url, tmp_path, monkeypatch)
    picture = qr_png("EDOOR-2026")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "poster.png").write_bytes(picture)
    (tmp_path / "files" / "notes.png").write_text("not a picture", encoding="utf-8")
    good = tmp_path / "files" / "bc.yaml"
    good.write_text(
        "name: 海報\nsegment: {}\nmessage: {text: 看海報, image: poster.png}\nsend_at: now\n",
        encoding="utf-8",
    )
    made = runner.invoke(cli, ["broadcast", "create", str(good)])
    assert made.exit_code == 0, made.output
    shown = runner.invoke(cli, ["broadcast", "show", made.output.strip().splitlines()[-1]])
    assert shown.exit_code == 0, shown.output
    stored = list((tmp_path / "media" / "broadcasts").glob("*.png"))
    assert [p.read_bytes() for p in stored] == [picture]

    async def image_of_last() -> str:
        from models.broadcasts import list_broadcasts
        from models.db import create_engine

        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                (row,) = await list_broadcasts(session)
                return str(row.spec["variants"][0]["message"]["image"])
        finally:
            await engine.dispose()

    import asyncio

    assert asyncio.run(image_of_last()) == (
        f"https://edoor.example.org/media/broadcasts/{stored[0].name}"
    )
    for image, problem in (("notes.png", "not a PNG or JPEG"), ("gone.png", "cannot read")):
        bad = tmp_path / "files" / "bad.yaml"
        bad.write_text(
            f"name: x\nsegment: {{}}\nmessage: {{text: hi, image: {image}}}\nsend_at: now\n",
            encoding="utf-8",
        )
        refused = runner.invoke(cli, ["broadcast", "create", str(bad)])
        assert refused.exit_code == 2, refused.output
        assert f"message.image: {problem}" in refused.output


async def test_an_image_uploaded_for_a_broadcast_is_served_and_bad_ones_are_refused(
    served: Any, tmp_path: Path
) -> None:
    from bot.qr import qr_png

    picture = qr_png("EDOOR-2026")
    async with (
        served(admin_token=TOKEN) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        auth = {"authorization": f"Bearer {TOKEN}", "content-type": "image/png"}
        made = await http.post("/admin/api/broadcasts/images", content=picture, headers=auth)
        assert made.status_code == 201, made.text
        image = made.json()["url"]
        media_dir = api.state.runtime.settings.media_dir
        stored = list((media_dir / "broadcasts").glob("*.png"))
        assert [p.read_bytes() for p in stored] == [picture]
        served_image = await http.get("/media/broadcasts/" + stored[0].name)
        assert served_image.status_code == 200
        assert served_image.headers["content-type"] == "image/png"
        assert served_image.content == picture
        assert image.endswith("/media/broadcasts/" + stored[0].name)
        # The same picture twice is one file.
        again = await http.post("/admin/api/broadcasts/images", content=picture, headers=auth)
        assert again.json()["url"] == image
        # Not a picture, too large, or no right to send: refused, nothing kept.
        fake = await http.post("/admin/api/broadcasts/images", content=b"GIF89a...", headers=auth)
        assert fake.status_code == 422
        assert "PNG or JPEG" in fake.text
        huge = await http.post(
            "/admin/api/broadcasts/images", content=picture + b"\0" * (1 << 20), headers=auth
        )
        assert huge.status_code == 413
        anonymous = await http.post(
            "/admin/api/broadcasts/images", content=picture, headers={"content-type": "image/png"}
        )
        assert anonymous.status_code == 401
        assert len(list((media_dir / "broadcasts").iterdir())) == 1
        # The broadcast file then carries the URL, and the preview shows it on both platforms.
        created = await http.post(
            "/admin/api/broadcasts",
            json={**FILE, "message": {**FILE["message"], "image": image}},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert created.status_code == 201, created.text
        preview = (
            await http.get(
                f"/admin/api/broadcasts/{created.json()['id']}/preview",
                headers={"authorization": f"Bearer {TOKEN}"},
            )
        ).json()
        assert image in json.dumps(preview["a:zh-TW"]["line"])
        assert image in json.dumps(preview["a:zh-TW"]["telegram"])


async def test_links_sent_one_person_at_a_time_count_people_as_well_as_clicks(
    served: Any,
) -> None:
    """Simulator (and Telegram) rows go to one chat each, so their tracked links carry the
    recipient's signed tag: the figures count people, not only clicks; a forged or borrowed
    tag is a click like any other, never somebody's."""
    async with (
        served(admin_token=TOKEN) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        runtime = api.state.runtime
        chats = [Chat(http, f"sim-person-{i}") for i in range(3)]
        for chat in chats:
            await chat.say("選單")
            await chat.pending()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        created = await http.post(
            "/admin/api/broadcasts",
            json={**FILE, "segment": {"all": [{"channel": "simulator"}]}},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        broadcast_id = created.json()["id"]
        assert await runtime.jobs.require("broadcasts").run(NOON) == {str(broadcast_id): 3}
        await runtime.jobs.require("drain-outbox").run(NOON)
        links = []
        for chat in chats:
            (message,) = await chat.pending()
            found = [b["url"] for b in message.get("buttons", []) if "/r/" in (b.get("url") or "")]
            assert len(found) == 1, message
            links.append(found[0].split("http://127.0.0.1:8000")[1])
        assert all("?p=" in link for link in links)
        assert len(set(links)) == 3  # one link per person ...
        assert len({link.split("?")[0] for link in links}) == 1  # ... to the same tracked URL

        for link in (links[0], links[0], links[1]):
            followed = await http.get(link, follow_redirects=False)
            assert followed.status_code == 302
            assert followed.headers["location"] == "https://elearning.taipei/sec?week=1"
        # Somebody else's member id with a made-up MAC: a click, nobody's.
        token = links[2].split("?")[0]
        forged = await http.get(f"{token}?p=3.AAAAAAAAAAAA", follow_redirects=False)
        assert forged.status_code == 302
        garbage = await http.get(f"{token}?p={'9' * 60}", follow_redirects=False)
        assert garbage.status_code == 302

        shown = (await http.get(f"/admin/api/broadcasts/{broadcast_id}", headers=auth)).json()
        assert (shown["clicks"], shown["people_clicked"]) == (5, 2)
