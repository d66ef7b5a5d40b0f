"""The `rollups` job: brings every dashboard's summary tables up to date.

Each source (models.rollups.SOURCES) is absorbed in its own transaction, behind its
watermark's lock. On PostgreSQL the transaction is REPEATABLE READ, so the ids the run
plans and the rows it absorbs come from one snapshot; a run that meets another run's
commit on the watermark gets a serialization failure and simply tries that source again
(finding nothing new or only what came since).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.rollups import SOURCES, AbsorbReport

log = logging.getLogger("edoor.rollups")
ATTEMPTS = 3


def _serialization_failure(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40001", "40P01") or "could not serialize" in str(exc.orig)


async def _absorb(
    sessionmaker: async_sessionmaker[AsyncSession],
    absorb: Callable[..., Awaitable[AbsorbReport]],
    now: dt.datetime,
) -> AbsorbReport:
    for attempt in range(1, ATTEMPTS + 1):
        async with sessionmaker() as session:
            if session.get_bind().dialect.name == "postgresql":
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                report = await absorb(session, now=now)
                await session.commit()
                return report
            except DBAPIError as exc:
                await session.rollback()
                if attempt == ATTEMPTS or not _serialization_failure(exc):
                    raise
                log.info("rollups: another run moved the watermark first; trying again")
    raise AssertionError("unreachable")


async def refresh_rollups(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: dt.datetime
) -> dict[str, str]:
    """Absorb every source once; {source: what was absorbed}."""
    out: dict[str, str] = {}
    for source, absorb in SOURCES.items():
        out[source] = str(await _absorb(sessionmaker, absorb, now))
    log.info("rollups: %s", out)
    return out


def rollups_job(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[[dt.datetime], Awaitable[dict[str, str]]]:
    """The `rollups` job: a plain function of `now`."""

    async def run(now: dt.datetime) -> dict[str, str]:
        return await refresh_rollups(sessionmaker, now=now)

    return run
