"""Console pages of the office side: campaigns, broadcasts and dashboards.

Like the rest of the console (admin/console.py), a page only reads, through the same
functions as the JSON API; every change goes to the audited /admin/api endpoint from the
page's script (console.js forms, broadcasts.js for the composer), so each rule lives once.
Page roles follow the menu (admin/console.py NAV) and the API they call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import Caller, Role, require_role
from admin.console import ConsolePages, page_language
from admin.dashboards import ROLES as BOARD_ROLES
from admin.dashboards import boards_for, page_labels
from bot import broadcasts as bot_bc
from bot.i18n import Catalog
from bot.ports import ChannelPreview
from bot.settings import Settings
from models import broadcasts as bc
from models.base import utcnow
from models.campaigns import claims as campaigns
from models.courses import Course
from models.identity import CivilServant
from models.learning import taipei_day
from models.podcasts import list_podcasts

# LINE cuts a button's label at 20 characters: the preview shows what people will see.
LINE_LABEL = 20
OFFICE: tuple[Role, ...] = ("marketer", "auditor")  # and admin, always
EDITORS = frozenset({"admin", "marketer"})
BroadcastId = Path(ge=1, le=2**31 - 1)


def office_pages(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    pages: ConsolePages,
    catalog: Catalog,
    channels: Sequence[str],
    render: ChannelPreview,
) -> APIRouter:
    routes = APIRouter(prefix="/admin", include_in_schema=False)
    office = Depends(require_role(settings, *OFFICE, page=True))
    anyone = Depends(require_role(settings, "marketer", "analyst", "auditor", page=True))

    def not_found(request: Request, caller: Caller, nav: str) -> HTMLResponse:
        """A page of the console's own for a campaign or broadcast that is not there."""
        return pages.render(
            request, caller, "not_found.html", nav=nav, back=f"/admin/{nav}", status_code=404
        )

    # -- dashboards ------------------------------------------------------------------------
    @routes.get("/dashboards")
    async def dashboards(caller: Caller = anyone) -> RedirectResponse:
        """The first dashboard this person may open."""
        return RedirectResponse(f"/admin/dashboards/{boards_for(caller.roles)[0]}", 303)

    def add_board(name: str) -> None:
        allowed = Depends(require_role(settings, *BOARD_ROLES[name], page=True))

        async def board(request: Request, caller: Caller = allowed) -> HTMLResponse:
            labels = page_labels(catalog, page_language(request))
            return pages.render(
                request,
                caller,
                "dashboards/dashboard.html",
                nav="dashboards",
                name=name,
                boards=boards_for(caller.roles),
                labels=labels,
                labels_json=json.dumps(labels, ensure_ascii=False),
                year=taipei_day(utcnow()).year,
            )

        routes.add_api_route(
            f"/dashboards/{name}",
            board,
            methods=["GET"],
            response_class=HTMLResponse,
            name=f"console_dashboard_{name}",
        )

    for name in BOARD_ROLES:
        add_board(name)

    # -- campaigns -------------------------------------------------------------------------
    @routes.get("/campaigns", response_class=HTMLResponse)
    async def campaign_list(request: Request, caller: Caller = office) -> HTMLResponse:
        async with sessionmaker() as session:
            rows = [
                (await campaigns.summary(session, campaign=c)).as_json()
                for c in await campaigns.list_campaigns(session)
            ]
        return pages.render(
            request,
            caller,
            "campaigns.html",
            nav="campaigns",
            campaigns=rows,
            edits=bool(caller.roles & EDITORS),
            example=EXAMPLE_CAMPAIGN,
        )

    @routes.get("/campaigns/{slug}", response_class=HTMLResponse)
    async def campaign_page(request: Request, slug: str, caller: Caller = office) -> HTMLResponse:
        async with sessionmaker() as session:
            found = await campaigns.get_campaign(session, slug=slug[:64])
            if found is None:
                return not_found(request, caller, "campaigns")
            data = (await campaigns.summary(session, campaign=found)).as_json()
            source = yaml.safe_dump(found.spec, allow_unicode=True, sort_keys=False)
        rule = data["rule"] if isinstance(data["rule"], dict) else {}
        data["rule_text"] = "; ".join(
            f"{key}: {'、'.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in rule.items()
            if value not in (None, [], False, 0, 0.0, "")
        )
        if not caller.roles & {"admin", "auditor"}:
            for flag in data["flags"]:
                flag.pop("phone", None)  # masked numbers: admin and auditor only
        return pages.render(
            request,
            caller,
            "campaign.html",
            nav="campaigns",
            c=data,
            source=source,
            edits=bool(caller.roles & EDITORS),
            exports=bool(caller.roles & {"admin", "auditor"}),
        )

    # -- broadcasts ------------------------------------------------------------------------
    @routes.get("/broadcasts", response_class=HTMLResponse)
    async def broadcast_list(request: Request, caller: Caller = office) -> HTMLResponse:
        async with sessionmaker() as session:
            rows = [await bot_bc.describe(session, b) for b in await bc.list_broadcasts(session)]
            choices = await _composer_choices(session)
        return pages.render(
            request,
            caller,
            "broadcasts.html",
            nav="broadcasts",
            broadcasts=rows,
            edits=bool(caller.roles & EDITORS),
            choices=choices,
            channels=list(channels),
        )

    async def one_broadcast(broadcast_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        async with sessionmaker() as session:
            row = await bc.get_broadcast(session, broadcast_id)
            if row is None:
                return None
            shown = await bot_bc.describe(session, row)
            looks = await bot_bc.preview(
                session, row, catalog=catalog, settings=settings, render=render
            )
        return shown, looks

    @routes.get("/broadcasts/{broadcast_id}", response_class=HTMLResponse)
    async def broadcast_page(
        request: Request, broadcast_id: int = BroadcastId, caller: Caller = office
    ) -> HTMLResponse:
        found = await one_broadcast(broadcast_id)
        if found is None:
            return not_found(request, caller, "broadcasts")
        shown, looks = found
        return pages.render(
            request,
            caller,
            "broadcast.html",
            nav="broadcasts",
            b=shown,
            previews={key: looks_of(value) for key, value in looks.items()},
            edits=bool(caller.roles & EDITORS),
        )

    @routes.get("/broadcasts/{broadcast_id}/figures", response_class=HTMLResponse)
    async def broadcast_figures(
        request: Request, broadcast_id: int = BroadcastId, caller: Caller = office
    ) -> HTMLResponse:
        """The figures fragment, polled by htmx while the broadcast is being sent."""
        async with sessionmaker() as session:
            row = await bc.get_broadcast(session, broadcast_id)
            if row is None:
                raise HTTPException(404, "no such broadcast")
            shown = await bot_bc.describe(session, row)
        return pages.render(request, caller, "_broadcast_figures.html", b=shown)

    return routes


async def _composer_choices(session: AsyncSession) -> dict[str, list[str]]:
    """What the composer's fields offer (datalists): agencies, categories, campaigns, podcasts."""
    agencies = await session.scalars(
        select(CivilServant.agency).where(CivilServant.active.is_(True)).distinct().limit(500)
    )
    categories = await session.scalars(
        select(Course.category).where(Course.retired.is_(False)).distinct().limit(200)
    )
    return {
        "agencies": sorted(a for a in agencies if a),
        "categories": sorted(c for c in categories if c),
        "campaigns": [c.slug for c in await campaigns.list_campaigns(session)],
        "podcasts": [p.slug for p in await list_podcasts(session)],
    }


# -- the preview, as each platform shows it ------------------------------------------------------
def _line_label(label: str) -> str:
    return label if len(label) <= LINE_LABEL else label[: LINE_LABEL - 1] + "…"


def _flex_parts(node: Any, texts: list[str], buttons: list[str], images: list[str]) -> None:
    """Walk a LINE Flex message's boxes, gathering texts, button labels and images in order."""
    if isinstance(node, list):
        for item in node:
            _flex_parts(item, texts, buttons, images)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "text" and node.get("text"):
        texts.append(str(node["text"]))
    elif kind == "button":
        buttons.append(_line_label(str((node.get("action") or {}).get("label", ""))))
    elif kind == "image" and node.get("url"):
        images.append(str(node["url"]))
    for key in ("hero", "header", "body", "footer", "contents"):
        if key in node:
            _flex_parts(node[key], texts, buttons, images)


def looks_of(preview: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A variant's LINE messages and Telegram calls as bubbles: texts, images and buttons."""
    line: list[dict[str, Any]] = []
    for message in preview.get("line", []):
        kind = message.get("type")
        texts: list[str] = []
        buttons: list[str] = []
        images: list[str] = []
        if kind == "text":
            texts.append(str(message.get("text", "")))
        elif kind == "image":
            images.append(str(message.get("originalContentUrl", "")))
        elif kind == "flex":
            _flex_parts(message.get("contents"), texts, buttons, images)
        else:
            texts.append(str(message.get("altText") or kind))
        quick = (message.get("quickReply") or {}).get("items") or []
        line.append(
            {
                "texts": texts,
                "buttons": buttons,
                "images": images,
                "quick": [_line_label(str(i["action"].get("label", ""))) for i in quick],
            }
        )
    telegram: list[dict[str, Any]] = []
    for call in preview.get("telegram", []):
        params = call.get("params") or {}
        markup = params.get("reply_markup") or {}
        if isinstance(markup, str):
            markup = json.loads(markup)
        rows = markup.get("inline_keyboard") or []
        telegram.append(
            {
                "texts": [str(params.get("text") or params.get("caption") or "")],
                "images": [str(params["photo"])] if isinstance(params.get("photo"), str) else [],
                "buttons": [str(b.get("text", "")) for row in rows for b in row],
                "quick": [],
            }
        )
    return {"line": line, "telegram": telegram}


EXAMPLE_CAMPAIGN = """\
slug: gender-2027
title: 性平課程領好禮
title_en: Gender equality course gift
starts_at: 2027-01-01 09:00
ends_at: 2027-01-31 23:59
mode: instant
rule:
  min_hours: 2
  categories: [性別平等]
prize:
  name: NT$200 禮券
  name_en: NT$200 voucher
  redeem: 到臺北e大服務台出示兌換碼
  redeem_en: Show the code at the service desk
  redeem_until: 2027-03-31 23:59
  generate: 100
"""
