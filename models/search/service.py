"""The search service the bot and the admin share: a swappable index plus query logging.

Every process holds its own in-memory index over the one shared database, so each process
also watches a cheap catalog fingerprint and rebuilds its index when another process (an
admin import elsewhere, `edoor import-courses`) changed the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.courses import CatalogVersion, Course, log_search
from models.search.index import Filters, SearchIndex, SearchResult
from models.search.synonyms import DEFAULT_PATH, Dictionary, load_dictionary

DEMO_CATALOG = Path(__file__).resolve().parents[1] / "data" / "demo_courses.json"
# How often a process asks the database whether the catalog changed: one aggregate over the
# course table (a few ms at 100,000 rows), never per query.
REFRESH_SECONDS = 5.0
# Rows per step when reading the catalog for a build; the event loop serves requests between
# steps (read in one piece, 100,000 courses held it for 1.5 s on SQLite, 1.8 s on PostgreSQL;
# in steps, for about 0.1 s at most).
READ_STEP = 500

log = logging.getLogger("edoor.search")


@dataclass(frozen=True)
class CatalogFingerprint:
    """What changes whenever an import adds, edits, retires or revives a course.

    Imports stamp `updated_at` on every row they change (retiring included) and insert with
    it, and no course row is ever deleted, so (rows, active rows, newest stamp) moves with
    every change the index can see. Popularity bumps do not stamp: they would rebuild the
    index on every opened course card, and the index keeps the popularity of its build.
    Password changes (admin API) do not stamp either; the index holds no password state.
    Stamps come from each writer's clock and are taken when an import starts, so they do not
    follow commit order; `version` (catalog_version, moved once by every committed import)
    does, and catches an import that only edited rows under an older stamp.
    """

    rows: int
    active: int
    changed_at: dt.datetime | None
    version: int


async def catalog_fingerprint(session: AsyncSession) -> CatalogFingerprint:
    """The catalog's current fingerprint (one aggregate query)."""
    row = (
        await session.execute(
            select(
                func.count(Course.id),
                func.coalesce(func.sum(case((Course.retired.is_(False), 1), else_=0)), 0),
                func.max(Course.updated_at),
                select(CatalogVersion.version).where(CatalogVersion.id == 1).scalar_subquery(),
            )
        )
    ).one()
    return CatalogFingerprint(
        rows=int(row[0]), active=int(row[1]), changed_at=row[2], version=int(row[3] or 0)
    )


async def index_records(session: AsyncSession) -> list[dict[str, Any]]:
    """The fields the index needs of every active course, read in steps of READ_STEP rows
    (plain dicts, no ORM objects: 100,000 rows)."""
    result = await session.stream(
        select(
            Course.id,
            Course.title,
            Course.category,
            Course.hours,
            Course.audience,
            Course.tags,
            Course.popularity,
            Course.created_at,
        )
        .where(Course.retired.is_(False))
        .execution_options(yield_per=READ_STEP)
    )
    records: list[dict[str, Any]] = []
    async for rows in result.partitions():
        records.extend(dict(r._mapping) for r in rows)
    return records


def demo_catalog_path() -> Path:
    """The demo catalog bundled with the project (imported by `make run`, used by tests)."""
    return DEMO_CATALOG


class SearchService:
    """Holds the current index; a rebuild happens off the event loop and is swapped in.

    Readers take `self.index` once per query, so a rebuild never shows half an index, and
    queries keep using the old index while the new one builds.
    """

    def __init__(
        self,
        index: SearchIndex | None = None,
        *,
        dictionary_path: Path = DEFAULT_PATH,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.dictionary_path = dictionary_path
        self.index = index or SearchIndex([], load_dictionary(dictionary_path))
        self.built_at: float = time.time()
        self.build_seconds: float = 0.0
        # Seconds between catalog checks in `watch` (tests shorten it; 0 turns it off).
        self.refresh_seconds = refresh_seconds
        # The catalog the index was built from; None until built from the database.
        self.fingerprint: CatalogFingerprint | None = None
        # Called after each swap (app.py hides the new long-lived index from the GC).
        self.on_rebuilt: Callable[[], object] | None = None
        # One build at a time: two would double the memory and CPU for the same result.
        self._building = asyncio.Lock()

    @classmethod
    def from_catalog_file(cls, path: Path = DEMO_CATALOG) -> SearchService:
        """An index straight from a catalog JSON file (tests, evaluation, benchmarks)."""
        records = json.loads(path.read_text("utf-8"))
        return cls(SearchIndex.from_records(records))

    async def reload(self, session: AsyncSession) -> int:
        """Rebuild from the active courses in the database (after an import); returns size.

        A reload asked for while another build runs waits for it, then builds again: the
        other one may have read the catalog before this caller's change.
        """
        async with self._building:
            # The fingerprint is read before the records: a change landing in between is
            # seen as a change at the next check (one extra build), never missed.
            fingerprint = await catalog_fingerprint(session)
            records = await index_records(session)
            await self._build(fingerprint, records)
        return len(self.index)

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
        """Rebuild when the catalog changed since the index was built; True when it did.

        While another build runs this does nothing: that build, or the next check, sees
        the change.
        """
        if self._building.locked():
            return False
        async with self._building:
            async with sessionmaker() as session:
                current = await catalog_fingerprint(session)
                if current == self.fingerprint:
                    return False
                records = await index_records(session)
            # The session is closed before the build: no connection (or, on SQLite, read
            # snapshot) is held for the seconds a large catalog takes to index.
            await self._build(current, records)
        log.info(
            "search index rebuilt after a catalog change",
            extra={"courses": len(self.index), "seconds": round(self.build_seconds, 3)},
        )
        return True

    async def watch(
        self, sessionmaker: async_sessionmaker[AsyncSession], stop: asyncio.Event
    ) -> None:
        """Check the catalog every `refresh_seconds` until `stop` is set; each process that
        answers searches runs one, so an import anywhere reaches every process's index."""
        if self.refresh_seconds <= 0:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.refresh_seconds)
            if stop.is_set():
                return
            try:
                await self.refresh(sessionmaker)
            except Exception as exc:
                # The database may be away for a moment; the current index keeps serving.
                log.warning("catalog check failed: %s", type(exc).__name__)

    async def _build(self, fingerprint: CatalogFingerprint, records: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        dictionary: Dictionary = load_dictionary(self.dictionary_path)
        self.index = await asyncio.to_thread(SearchIndex.from_records, records, dictionary)
        self.build_seconds = time.perf_counter() - started
        self.built_at = time.time()
        self.fingerprint = fingerprint
        if self.on_rebuilt is not None:
            self.on_rebuilt()

    def search(
        self,
        query: str,
        *,
        filters: Filters | None = None,
        offset: int = 0,
        limit: int = 10,
        facets: bool = False,
        also: Filters | None = None,
    ) -> SearchResult:
        """Ranked matches for typed words; with no words, the filtered courses by popularity.
        `also`: count the matches these filters would keep instead (see SearchIndex.search)."""
        if not query.strip():
            result = self.index.listing(filters=filters, offset=offset, limit=limit)
            if also is not None:
                hidden = self.index.listing(filters=also, limit=1).total
                result = dataclasses.replace(result, also_total=hidden)
            return result
        return self.index.search(
            query, filters=filters, offset=offset, limit=limit, facets=facets, also=also
        )

    async def search_and_log(
        self,
        session: AsyncSession,
        query: str,
        *,
        channel: str,
        now: dt.datetime,
        filters: Filters | None = None,
        offset: int = 0,
        limit: int = 10,
        facets: bool = False,
        also: Filters | None = None,
        logged_as: str | None = None,
    ) -> SearchResult:
        """Search and record the query for analytics (first page only: paging is no new search).

        `logged_as` is what the person typed when it differs from the words searched (typed
        filters such as "1小時內" are taken out of the query but kept in the log).
        """
        result = self.search(
            query, filters=filters, offset=offset, limit=limit, facets=facets, also=also
        )
        if offset == 0:
            await log_search(
                session,
                query=logged_as or query,
                normalised=result.normalised,
                result_count=result.total,
                channel=channel,
                now=now,
            )
        return result
