"""Admin API for the dashboards: `GET /admin/api/dashboards/{name}` (JSON; `?format=csv`).

One route per dashboard, each with its own roles (DESIGN.md, "Who may do what"): analyst and
auditor see every dashboard, marketer only `campaigns` and `channels`, admin all. The
figures come from the summary tables only; `edoor run-job rollups` brings them up to date.
"""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, Role, require_role
from bot.i18n import Catalog
from bot.settings import Settings
from models.base import utcnow
from models.dashboards import READERS, Dashboard, FilterError, Filters, version
from models.learning import taipei_day

ROLES: dict[str, tuple[Role, ...]] = {
    "topics": ("analyst", "auditor"),
    "compliance": ("analyst", "auditor"),
    "reminders": ("analyst", "auditor"),
    "search": ("analyst", "auditor"),
    "campaigns": ("marketer", "analyst", "auditor"),
    "channels": ("marketer", "analyst", "auditor"),
}


def page_labels(catalog: Catalog, lang: str) -> dict[str, str]:
    """The dashboards page's texts in `lang` (bot/locales/<lang>/dashboards.toml), keyed
    without the prefix: for admin/templates/dashboards/dashboard.html and, as JSON in its
    data-labels, for admin/static/dashboards.js."""
    prefix = "dashboards."
    return {k[len(prefix) :]: v for k, v in catalog.messages[lang].items() if k.startswith(prefix)}


def boards_for(roles: frozenset[str]) -> list[str]:
    """The dashboards a caller with these roles may open, in the contract's order."""
    return [n for n in ROLES if "admin" in roles or roles & set(ROLES[n])]


def to_json(board: Dashboard) -> dict[str, Any]:
    return {
        "dashboard": board.name,
        "filters": board.filters.as_dict(),
        "as_of": board.as_of.isoformat() if board.as_of else None,
        "columns": board.columns,
        "rows": board.rows,
        "notes": board.notes,
    }


def to_csv(board: Dashboard) -> str:
    """The same table as the JSON rows (UTF-8 with BOM, so spreadsheet programs read 中文)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(board.columns)
    for row in board.rows:
        writer.writerow(["" if row[c] is None else row[c] for c in board.columns])
    return "\ufeff" + out.getvalue()


@dataclass(frozen=True)
class Answer:
    media_type: str
    body: str
    headers: dict[str, str]


class AnswerCache:
    """The latest answers, each kept while the rollup behind it has not run again: the
    figures change only then, so a repeated view (the whole year for every agency is 8,000
    rows) costs one small read of the watermark. Per process, within a memory budget; the
    least recently used go first."""

    def __init__(self, budget_bytes: int = 24 * 1024 * 1024) -> None:
        self.budget = budget_bytes
        self.used = 0
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, Answer]] = OrderedDict()

    def get(self, key: tuple[Any, ...], version: Any) -> Answer | None:
        found = self._items.get(key)
        if found is None or found[0] != version:
            return None
        self._items.move_to_end(key)
        return found[1]

    def clear(self) -> None:
        self._items.clear()
        self.used = 0

    def put(self, key: tuple[Any, ...], version: Any, answer: Answer) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= len(old[1].body)
        if len(answer.body) > self.budget:
            return
        self._items[key] = (version, answer)
        self.used += len(answer.body)
        while self.used > self.budget:
            _, (_, dropped) = self._items.popitem(last=False)
            self.used -= len(dropped.body)


def answer(board: Dashboard, fmt: str) -> Answer:
    filters = board.filters
    if fmt == "csv":
        name = f"{board.name}-{filters.year}-{filters.month_from:02d}-{filters.month_to:02d}.csv"
        return Answer(
            "text/csv; charset=utf-8",
            to_csv(board),
            {"content-disposition": f'attachment; filename="{name}"'},
        )
    # Serialised here: FastAPI's own encoder walks each of thousands of rows slowly.
    return Answer("application/json", json.dumps(to_json(board), ensure_ascii=False), {})


def dashboard_routes(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: AnswerCache | None = None,
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api/dashboards", tags=["dashboards"])
    cache = cache if cache is not None else AnswerCache()

    def add(name: str) -> None:
        allowed = Depends(require_role(settings, *ROLES[name]))

        async def read(
            year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
            month_from: Annotated[int, Query(ge=1, le=12)] = 1,
            month_to: Annotated[int, Query(ge=1, le=12)] = 12,
            agency: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
            fmt: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
            caller: Caller = allowed,
        ) -> Any:
            try:
                filters = Filters(
                    year=year or taipei_day(utcnow()).year,
                    month_from=month_from,
                    month_to=month_to,
                    agency=agency,
                )
                async with sessionmaker() as session:
                    key = (name, filters, fmt)
                    current = await version(session, name)
                    found = cache.get(key, current)
                    if found is None:
                        found = answer(await READERS[name](session, filters), fmt)
                        cache.put(key, current, found)
            except FilterError as exc:
                raise HTTPException(400, str(exc)) from None
            return Response(found.body, media_type=found.media_type, headers=found.headers)

        read.__doc__ = f"The `{name}` dashboard (JSON, or CSV with ?format=csv)."
        routes.add_api_route(f"/{name}", read, methods=["GET"], name=f"dashboard_{name}")

    for name in READERS:
        add(name)
    return routes
