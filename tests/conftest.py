"""Shared fixtures: a migrated database per test (SQLite always, PostgreSQL when
TEST_DATABASE_URL is set), settings pointing at loopback fakes, and no network."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models.db import create_engine, create_sessionmaker
from models.migrate import upgrade

PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if PG_URL else [])]
SHARED = Path(__file__).resolve().parents[2] / "shared"


# -- no network: every connection a test opens stays on this machine ---------------------------
# Fakes, PostgreSQL and Redis listen on loopback; a connection anywhere else (a real platform
# left in a setting, a DNS name that resolves outside) fails the test that made it. The
# attempt raises OutsideLoopback, and the test fails at teardown even if the code under test
# swallowed that error, as a sender that retries on any exception would.
class OutsideLoopback(OSError):
    """A test tried to connect outside loopback."""


_outside: list[str] = []


def is_loopback(family: int, address: object) -> bool:
    """True for AF_UNIX, 127.0.0.0/8, ::1 (and ::ffff:127.x) and the name localhost."""
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _guarded(real):  # type: ignore[no-untyped-def]
    def connect(sock: socket.socket, address: object):  # type: ignore[no-untyped-def]
        if not is_loopback(sock.family, address):
            _outside.append(repr(address))
            raise OutsideLoopback(f"tests may not connect outside loopback: {address!r}")
        return real(sock, address)

    return connect


def pytest_configure(config: pytest.Config) -> None:
    # Every way Python opens a TCP connection (asyncio's sock_connect and create_connection,
    # httpx, aiohttp, asyncpg, redis) ends in one of these two.
    socket.socket.connect = _guarded(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(socket.socket.connect_ex)  # type: ignore[method-assign]


def fail_if_outside() -> None:
    """Fail the current test when it tried to leave loopback (and forget the attempts)."""
    if _outside:
        tried = ", ".join(_outside)
        _outside.clear()
        pytest.fail(f"the test tried to connect outside loopback: {tried}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    _outside.clear()
    yield
    fail_if_outside()


@pytest.fixture
def outside_attempts() -> list[str]:
    """The attempts the guard stopped in this test (a test of the guard clears them)."""
    return _outside


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres_only` tests run on the PostgreSQL backend only (CI sets TEST_DATABASE_URL)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("backend") == "sqlite"
        (drop if item.get_closest_marker("postgres_only") and on_sqlite else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _pg_dsn(url: str, database: str | None = None) -> str:
    u = make_url(url)
    if database:
        u = u.set(database=database)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def _template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated template database, made once per backend and run."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("tpl") / "template.db"
        asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
        yield str(path)
        return
    assert PG_URL
    name = f"edoor_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        conn = await asyncpg.connect(_pg_dsn(PG_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await _migrate(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))

    async def drop() -> None:
        conn = await asyncpg.connect(_pg_dsn(PG_URL))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@pytest.fixture
async def database_url(backend: str, _template: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    if backend == "sqlite":
        target = tmp_path / "edoor.db"
        shutil.copyfile(_template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    assert PG_URL
    name = f"edoor_t_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_pg_dsn(PG_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"')
    finally:
        await conn.close()
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(_pg_dsn(PG_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(engine)() as s:
        yield s


@pytest.fixture
def shared_dir() -> Path | None:
    """../shared when present (tests use it then; the project never needs it)."""
    return SHARED if SHARED.is_dir() else None


# -- the real app, served on loopback, with fake platforms ---------------------------------------
TEST_PII_KEY = "test-pii-key-0123456789abcdef-0123456789"
LINE_SECRET = "8f1c4e0b2a7d4c96b3e5f7a9d1c3e5f7"  # the one the shared samples are signed with
LINE_TOKEN = "test-line-access-token-abcdef"


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for one test: its own database, no background work, no real platforms."""
    from bot.settings import Settings

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "edoor_background": "off",
            "pii_key": TEST_PII_KEY,
            "media_dir": tmp_path / "media",
            "public_base_url": "http://127.0.0.1:8000",
            "log_level": "INFO",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    return build


@pytest.fixture
async def fake_line() -> AsyncIterator[tuple[object, str]]:
    """A fake LINE API on loopback: (state, base_url)."""
    from tests.dialog import serve
    from tests.fakes.line import FakeLine

    fake = FakeLine()
    async with serve(fake.app(), lifespan="off") as url:
        yield fake, url


@pytest.fixture
async def served(make_settings):  # type: ignore[no-untyped-def]
    """Start the real app with given settings: `async with served(**overrides) as (url, app)`."""
    import contextlib

    from app import create_app
    from tests.dialog import serve

    @contextlib.asynccontextmanager
    async def start(**overrides: object):  # type: ignore[no-untyped-def]
        api = create_app(make_settings(**overrides))
        async with serve(api) as url:
            yield url, api

    return start


TG_SECRET = "tg-webhook-secret_0123456789"


@pytest.fixture(scope="session")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of mp3 made by ffmpeg, for podcast tests that need some real audio (a file
    that needs another length or format makes its own)."""
    from tests.podcast_support import make_tone

    return make_tone(tmp_path_factory.mktemp("tones") / "tone.mp3", seconds=1.0)


@pytest.fixture
async def both_platforms(served, fake_line):  # type: ignore[no-untyped-def]
    """The real app with LINE and Telegram switched on, both pointed at loopback fakes:
    `async with both_platforms(**settings) as (http, fake_line, fake_telegram, app)`."""
    import contextlib

    import httpx

    from tests.fakes.telegram import TOKEN, FakeTelegram

    line, line_url = fake_line

    @contextlib.asynccontextmanager
    async def start(**overrides: object):  # type: ignore[no-untyped-def]
        async with (
            FakeTelegram() as telegram,
            served(
                line_channel_secret=LINE_SECRET,
                line_channel_access_token=LINE_TOKEN,
                line_api_base_url=line_url,
                telegram_bot_token=TOKEN,
                telegram_webhook_secret=TG_SECRET,
                telegram_api_base_url=telegram.api_base_url,
                **overrides,
            ) as (url, api),
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield http, line, telegram, api

    return start


@pytest.fixture
async def app_url(served) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The real app with the simulator only."""
    async with served() as (url, _):
        yield url


@pytest.fixture
async def chat(app_url: str) -> AsyncIterator[object]:
    """A simulated citizen talking to the real app over HTTP."""
    import httpx

    from tests.dialog import Chat

    async with httpx.AsyncClient(base_url=app_url, timeout=30) as http:
        yield Chat(http, "sim-citizen-1")
