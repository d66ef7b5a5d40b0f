"""The search service the bot and the admin share: a swappable index plus query logging."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from models.courses import active_course_records, log_search
from models.search.index import Filters, SearchIndex, SearchResult
from models.search.synonyms import DEFAULT_PATH, Dictionary, load_dictionary

DEMO_CATALOG = Path(__file__).resolve().parents[1] / "data" / "demo_courses.json"


def demo_catalog_path() -> Path:
    """The demo catalog bundled with the project (imported by `make run`, used by tests)."""
    return DEMO_CATALOG


class SearchService:
    """Holds the current index; `reload` builds a new one off the event loop and swaps it in.

    Readers take `self.index` once per query, so a reload never shows half an index.
    """

    def __init__(
        self, index: SearchIndex | None = None, *, dictionary_path: Path = DEFAULT_PATH
    ) -> None:
        self.dictionary_path = dictionary_path
        self.index = index or SearchIndex([], load_dictionary(dictionary_path))
        self.built_at: float = time.time()
        self.build_seconds: float = 0.0

    @classmethod
    def from_catalog_file(cls, path: Path = DEMO_CATALOG) -> SearchService:
        """An index straight from a catalog JSON file (tests, evaluation, benchmarks)."""
        records = json.loads(path.read_text("utf-8"))
        return cls(SearchIndex.from_records(records))

    async def reload(self, session: AsyncSession) -> int:
        """Rebuild from the active courses in the database (after an import); returns size."""
        records = await active_course_records(session)
        started = time.perf_counter()
        dictionary: Dictionary = load_dictionary(self.dictionary_path)
        self.index = await asyncio.to_thread(SearchIndex.from_records, records, dictionary)
        self.build_seconds = time.perf_counter() - started
        self.built_at = time.time()
        return len(self.index)

    def search(
        self,
        query: str,
        *,
        filters: Filters | None = None,
        offset: int = 0,
        limit: int = 10,
        facets: bool = False,
    ) -> SearchResult:
        """Ranked matches for typed words; with no words, the filtered courses by popularity."""
        if not query.strip():
            return self.index.listing(filters=filters, offset=offset, limit=limit)
        return self.index.search(query, filters=filters, offset=offset, limit=limit, facets=facets)

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
        logged_as: str | None = None,
    ) -> SearchResult:
        """Search and record the query for analytics (first page only: paging is no new search).

        `logged_as` is what the person typed when it differs from the words searched (typed
        filters such as "1小時內" are taken out of the query but kept in the log).
        """
        result = self.search(query, filters=filters, offset=offset, limit=limit, facets=facets)
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
