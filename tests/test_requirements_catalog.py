"""Requirements people can satisfy: each matches at least one active course (by category, tag
or title keyword), one that matches none is reported (import, start-up, the console's
function), and a reminder never points at an empty list."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.i18n import TAIPEI, Catalog
from bot.line.render import render as line_render
from bot.messages import load_replies
from bot.telegram.render import render as telegram_render
from models.catalog_import import read_catalog
from models.courses import Course, apply_catalog
from models.db import create_sessionmaker
from models.learning import (
    default_requirements,
    import_requirements,
    member_progress,
    requirements_without_courses,
)
from models.outbox import OutboxMessage
from notifications.reminders import sweep_reminders
from tests.outbox_support import add_member

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 12, 1, 9, tzinfo=TAIPEI)


def small_catalog(session: AsyncSession) -> None:
    """One course per shipped requirement, found the way the real catalog names them."""
    for cid, title, category, tags in (
        ("env", "淨零排放與生活", "環境教育", []),
        ("gen", "CEDAW 與性別主流化", "人權教育", []),
        ("pol", "當前國家重大政策議題", "公務知能", ["政策"]),
        ("dem", "行政中立與公務倫理", "行政中立", []),
        ("sec", "資通安全意識", "資訊安全", ["資安"]),
    ):
        session.add(Course(id=cid, title=title, category=category, hours=1, tags=tags))


async def test_the_shipped_defaults_match_a_small_catalog_and_title_keywords_count(
    session: AsyncSession,
) -> None:
    small_catalog(session)
    await session.flush()
    # Nothing stored yet: the shipped defaults are checked as they would be stored.
    assert await requirements_without_courses(session) == []
    await import_requirements(session, default_requirements(), now=NOW)
    assert await requirements_without_courses(session) == []
    # 當前重大政策 has no category in the catalog: its course counts by its title.
    pol = await session.get(Course, "pol")
    assert pol is not None
    pol.retired = True
    await session.flush()
    assert [r.code for r in await requirements_without_courses(session)] == ["policy"]


async def test_a_requirement_matching_no_course_is_reported(session: AsyncSession) -> None:
    small_catalog(session)
    bees = {
        **default_requirements()[1],
        "code": "bees",
        "title": "養蜂",
        "categories": ["養蜂"],
        "tags": ["蜜蜂"],
        "title_keywords": ["養蜂"],
        "position": 99,
    }
    records = [*default_requirements(), bees]
    await import_requirements(session, records, now=NOW)
    unmatched = await requirements_without_courses(session)
    assert [(r.code, r.title) for r in unmatched] == [("bees", "養蜂")]


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "shared" / "data" / "courses.json").is_file(),
    reason="../shared/data/courses.json is not on this machine",
)
async def test_every_shipped_requirement_matches_a_course_of_the_real_catalog(
    session: AsyncSession, shared_dir: Path
) -> None:
    path = shared_dir / "data" / "courses.json"
    real = json.loads(path.read_text("utf-8"))
    categories = {c["category"] for c in real}
    for record in default_requirements():
        assert set(record["categories"]) <= categories, record["code"]
    await apply_catalog(session, parsed=read_catalog(path), now=NOW)
    await import_requirements(session, default_requirements(), now=NOW)
    assert [r.code for r in await requirements_without_courses(session)] == []


async def test_start_up_warns_about_a_requirement_no_course_satisfies(
    served,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    # A fresh database holds no course: no requirement that needs one can be satisfied.
    with caplog.at_level(logging.WARNING, logger="edoor.app"):
        async with served():
            pass
    warned = [r.getMessage() for r in caplog.records if "matches no active course" in r.message]
    assert len(warned) == 5  # every "match" requirement; the yearly total needs no course
    assert any("policy (當前重大政策)" in w for w in warned)


async def test_the_reminder_with_no_matching_course_offers_search_not_an_empty_list(
    engine: AsyncEngine,
) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        zh = await add_member(s, channel="line", external_id="U" + "a" * 32, civil_servant=True)
        en = await add_member(
            s, channel="telegram", external_id="777", civil_servant=True, language="en"
        )
        policy = [r for r in default_requirements() if r["code"] == "policy"]
        await import_requirements(s, policy, now=NOW)
        s.add(Course(id="other", title="園藝入門", category="文化藝術", hours=2))
        await s.commit()
    report = await sweep_reminders(maker, catalog=Catalog(), now=NOW, channels=["line", "telegram"])
    assert report.digests == 2
    async with maker() as s:
        rows = {
            m.key.split(":")[1]: m
            for m in await s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))
        }
        progress = await member_progress(s, member_id=zh.member_id, now=NOW)
    assert [(p.requirement.code, p.open) for p in progress] == [("policy", True)]
    texts = {}
    for target, lang in ((zh, "zh-TW"), (en, "en")):
        replies = load_replies(rows[str(target.member_id)].replies)
        (reply,) = replies
        actions = [b.action for b in reply.buttons]  # type: ignore[attr-defined]
        assert actions == ["cmd:search", "learning.snooze"], lang
        texts[lang] = reply.text  # type: ignore[attr-defined]
        # Both renderers keep the search button: the reader can act on it.
        line = json.dumps([m.to_dict() for m in line_render(replies)], ensure_ascii=False)
        assert "cmd:search" in line
        calls = telegram_render(replies)
        assert "cmd:search" in repr(calls[0].params)
    assert "點下方課程" not in texts["zh-TW"]
    assert "臺北e大目前沒有可直接選讀的這類課程" in texts["zh-TW"]
    assert "輸入主題即可搜尋課程" in texts["zh-TW"]
    assert "Tap a course below" not in texts["en"]
    assert "no course here counts toward this yet" in texts["en"]


def test_requirements_import_warns_about_a_requirement_no_course_satisfies(
    tmp_path: Path,
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "DATABASE_URL": db, "LOG_LEVEL": "WARNING"}

    def edoor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    assert edoor("migrate").returncode == 0
    courses = tmp_path / "courses.csv"
    courses.write_text(
        "id,title,category,hours\npol,當前國家重大政策議題,公務知能,1\n", encoding="utf-8"
    )
    assert edoor("import-courses", str(courses)).returncode == 0
    reqs = tmp_path / "requirements.yaml"
    reqs.write_text(
        "requirements:\n"
        "  - {code: policy, title: 當前重大政策, hours: 1, title_keywords: [重大政策]}\n"
        "  - {code: bees, title: 養蜂, hours: 1, categories: [養蜂]}\n",
        encoding="utf-8",
    )
    out = edoor("requirements", "import", str(reqs))
    assert out.returncode == 0, out.stderr
    assert "requirements: 2 loaded" in out.stdout
    assert "requirement bees (養蜂) matches no active course" in out.stderr
    assert "policy" not in out.stderr
