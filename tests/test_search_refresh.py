"""Every process follows the shared catalog: a course imported or retired elsewhere (another
web process's admin API, `edoor import-courses`) is found, or gone, in chat after the refresh
interval, without a restart; catalog checks run per interval, never per query."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import create_app
from models.base import utcnow
from models.catalog_import import ParsedCatalog, parse_csv, read_catalog
from models.courses import apply_catalog
from models.db import create_sessionmaker
from models.search import SearchService, demo_catalog_path
from models.search.service import catalog_fingerprint
from tests.dialog import Chat, eventually, serve

ADMIN = "test-admin-token-0123456789"
HEADER = "id,title,category,hours,audience\n"
NEW = "refresh-1,糖葫蘆製作與食品衛生,食品安全,1,public\n"
FAST = 0.2  # seconds between catalog checks in these tests (5 s in service)


def demo() -> ParsedCatalog:
    return read_catalog(demo_catalog_path())


def with_new() -> ParsedCatalog:
    parsed = demo()
    parsed.rows.extend(parse_csv((HEADER + NEW).encode()).rows)
    return parsed


@asynccontextmanager
async def app(make_settings, *, refresh: float, **overrides: object) -> AsyncIterator[FastAPI]:  # type: ignore[no-untyped-def]
    """The real app on loopback, checking the catalog every `refresh` seconds."""
    api = create_app(make_settings(**overrides))
    api.state.runtime.search.refresh_seconds = refresh
    async with serve(api) as url:
        api.state.url = url
        yield api


async def shows(chat: Chat, words: str, course_id: str) -> bool:
    """Whether searching `words` in chat offers the course (its id rides on the card's buttons)."""
    return course_id in json.dumps(await chat.say(words), ensure_ascii=False)


async def import_elsewhere(engine: AsyncEngine, parsed: ParsedCatalog, **how: Any) -> None:
    """What `edoor import-courses` does: its own session, straight into the shared database."""
    async with create_sessionmaker(engine)() as session:
        await apply_catalog(session, parsed=parsed, now=utcnow(), **how)
        await session.commit()


@pytest.fixture
async def catalog(session: AsyncSession) -> None:
    await apply_catalog(session, parsed=demo(), now=utcnow())
    await session.commit()


@pytest.mark.usefixtures("catalog")
async def test_an_import_through_one_process_reaches_the_other(make_settings) -> None:  # type: ignore[no-untyped-def]
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(app(make_settings, refresh=FAST, admin_token=ADMIN))
        b = await stack.enter_async_context(app(make_settings, refresh=FAST))
        http_a = await stack.enter_async_context(httpx.AsyncClient(base_url=a.state.url))
        http_b = await stack.enter_async_context(httpx.AsyncClient(base_url=b.state.url))
        on_a, on_b = Chat(http_a, "sim-refresh-a"), Chat(http_b, "sim-refresh-b")
        assert not await shows(on_b, "糖葫蘆", "refresh-1")

        response = await http_a.post(
            "/admin/api/courses/import",
            content=(HEADER + NEW).encode(),
            headers={"authorization": f"Bearer {ADMIN}", "content-type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        assert await shows(on_a, "糖葫蘆", "refresh-1")  # the importing process: at once
        await eventually(lambda: shows(on_b, "糖葫蘆", "refresh-1"), within=10, interval=FAST)
        # The importer's own check finds its index current: no second build there.
        runtime_a = a.state.runtime
        async with runtime_a.sessionmaker() as session:
            assert runtime_a.search.fingerprint == await catalog_fingerprint(session)


@pytest.mark.usefixtures("catalog")
async def test_a_cli_import_and_a_retirement_follow_in_chat(make_settings, engine) -> None:  # type: ignore[no-untyped-def]
    retired = demo().rows[0]
    async with (
        app(make_settings, refresh=FAST) as api,
        httpx.AsyncClient(base_url=api.state.url) as http,
    ):
        chat = Chat(http, "sim-refresh")
        assert await shows(chat, retired.title, retired.id)
        assert not await shows(chat, "糖葫蘆", "refresh-1")

        await import_elsewhere(engine, with_new())
        await eventually(lambda: shows(chat, "糖葫蘆", "refresh-1"), within=10, interval=FAST)

        # The next import leaves out the new course and a demo one, retiring both.
        parsed = demo()
        parsed.rows.remove(retired)
        await import_elsewhere(engine, parsed, retire_absent=True)

        async def both_gone() -> bool:
            return not (
                await shows(chat, "糖葫蘆", "refresh-1")
                or await shows(chat, retired.title, retired.id)
            )

        await eventually(both_gone, within=10, interval=FAST)


@pytest.mark.usefixtures("catalog")
async def test_checks_run_per_interval_not_per_query(make_settings) -> None:  # type: ignore[no-untyped-def]
    async with (
        app(make_settings, refresh=0.5) as api,
        httpx.AsyncClient(base_url=api.state.url) as http,
    ):
        runtime = api.state.runtime
        built = runtime.search.index
        checks: list[float] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "max(course.updated_at)" in statement.lower():
                checks.append(asyncio.get_running_loop().time())

        event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
        try:
            chat = Chat(http, "sim-refresh-many")
            started = asyncio.get_running_loop().time()
            for words in ["資安", "性平", "長照", "AI", "健康", "English"] * 4:
                await chat.say(words)
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
        # 24 searches; at most one check per half second went to the database.
        assert len(checks) <= elapsed / 0.5 + 1
        assert runtime.search.index is built  # nothing changed: nothing rebuilt


async def test_one_build_at_a_time_and_none_when_unchanged(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    sessionmaker = create_sessionmaker(engine)
    service = SearchService()
    builds: list[int] = []
    service.on_rebuilt = lambda: builds.append(len(service.index))
    await service.reload(session)
    await session.commit()
    assert builds == [0]
    assert await service.refresh(sessionmaker) is False  # an empty catalog, unchanged

    await import_elsewhere(engine, demo())
    results = await asyncio.gather(*(service.refresh(sessionmaker) for _ in range(3)))
    assert sorted(results) == [False, False, True]
    assert builds == [0, len(demo().rows)]
    assert await service.refresh(sessionmaker) is False


async def test_an_import_committed_after_a_later_stamped_one_is_still_seen(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    sessionmaker = create_sessionmaker(engine)
    service = SearchService()
    await import_elsewhere(engine, demo())
    await service.reload(session)
    await session.commit()
    first = demo().rows[0]
    later, earlier = utcnow(), utcnow() - dt.timedelta(minutes=5)

    # Import B (stamped later) lands first; import A started earlier but commits after it and
    # only edits a title: same row counts, and the newest stamp is still B's.
    async with sessionmaker() as s:
        await apply_catalog(s, parsed=demo(), now=later)  # nothing changed: no stamp, no bump
        await s.commit()
    touched = demo()
    touched.rows[1] = dataclasses.replace(touched.rows[1], title=touched.rows[1].title + "（新）")
    edited = dataclasses.replace(touched, rows=list(touched.rows))  # B's edit kept
    edited.rows[0] = dataclasses.replace(first, title="糖葫蘆的食品衛生（改版）")
    async with sessionmaker() as s:
        await apply_catalog(s, parsed=touched, now=later)
        await s.commit()
    assert await service.refresh(sessionmaker) is True
    async with sessionmaker() as s:
        await apply_catalog(s, parsed=edited, now=earlier)
        await s.commit()
        assert (await catalog_fingerprint(s)).changed_at == later  # the stamp did not move

    assert await service.refresh(sessionmaker) is True
    assert first.id in [h.id for h in service.search("糖葫蘆").hits]


async def test_a_failed_check_keeps_the_index_and_keeps_watching(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = SearchService(refresh_seconds=0.01)
    before = service.index
    calls: list[int] = []

    def broken() -> Any:
        calls.append(1)
        raise ConnectionRefusedError("database away")

    stop = asyncio.Event()
    sessionmaker: Callable[[], Any] = broken
    with caplog.at_level(logging.WARNING, logger="edoor.search"):
        watch = asyncio.create_task(service.watch(sessionmaker, stop))  # type: ignore[arg-type]
        await eventually(lambda: len(calls) >= 3)
        stop.set()
        await asyncio.wait_for(watch, 5)
    assert service.index is before
    assert "catalog check failed: ConnectionRefusedError" in caplog.text
