"""Engine and session factory for SQLite (embedded default, WAL) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_WRITER = "edoor_writer"


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The driver's own implicit BEGIN is off: we emit BEGIN ourselves below.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # Our own BEGIN (the driver's implicit one is off) keeps SAVEPOINTs well-defined.
            # It is DEFERRED, so reads take no lock; code that reads and then writes under
            # concurrent writers should write first (see bot.inbound), as WAL cannot upgrade
            # a stale read snapshot and answers "database is locked" at once.
            # begin_write() asks for IMMEDIATE: the write lock from the first statement on.
            immediate = conn.get_execution_options().get(_WRITER, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a writer (its first call, before any statement):
    `BEGIN IMMEDIATE` on SQLite, so that a read-then-write unit of work (a prize claim) waits
    for the write lock up front instead of failing on a stale snapshot. PostgreSQL needs
    nothing: its row locks do the job."""
    await session.connection(execution_options={_WRITER: True})
