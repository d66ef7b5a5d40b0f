"""The web console at /admin: server-rendered pages (Jinja2) with htmx for partial updates.

Pages read through the same functions as the JSON API (admin/*.py); changes go to the
/admin/api endpoints themselves from the page's script (admin/static/console.js), with the
session cookie and the CSRF token, so every rule lives once. Every JavaScript and CSS file
is served from admin/static (vendored; see scripts/vendor-assets.py): no CDN, no web font.

Adding a page: put a template in admin/templates/ that extends "base.html" (blocks `title`
and `main`), add its route in your own router (as admin/office_pages.py does for campaigns,
broadcasts and dashboards) with `Depends(require_role(settings, ..., page=True))` and render
it with `ConsolePages.render(request, caller, "x.html", nav="x", ...)`, add its texts to
bot/locales/*/console.toml, and point its entry in `NAV` at it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.accounts import account_view
from admin.audit import AuditFilters, entry_view
from admin.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    AdminAuth,
    Caller,
    admin_auth,
    any_role,
    require_role,
)
from admin.courses import course_page, search_preview
from admin.learning import requirement_matches
from admin.members import audited_lookup, find_member_id
from admin.podcasts import subscriber_counts
from bot.i18n import LANGUAGES, Catalog, taipei_time
from bot.settings import Settings
from models.accounts import (
    LoginRefused,
    authenticate,
    end_session,
    list_accounts,
    list_tokens,
    start_session,
)
from models.audit import AuditLog, record_audit, verify_chain
from models.base import utcnow
from models.courses import Course
from models.db import begin_write
from models.members import Member
from models.pii import PiiVault
from models.podcasts import PodcastSubscription, episodes_of, list_podcasts
from models.search.service import SearchService

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LANG_COOKIE = "edoor_lang"
SESSION_MAX_AGE = 12 * 3600
# Routes anyone may reach (signing in, the language switch); every other /admin route
# declares its roles (tests/test_admin_roles.py checks it).
PUBLIC_ROUTES = frozenset(
    {("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/admin/lang/{lang}")}
)
SECURITY_HEADERS = {
    # Scripts only from the console itself (vendored); ECharts sets inline styles.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    key: str  # console.nav.<key> in the catalogs
    path: str
    roles: frozenset[str]


_ALL = frozenset({"admin", "marketer", "analyst", "auditor"})
# The console's menu, in order; a person sees the entries their role may open.
NAV: tuple[NavItem, ...] = (
    NavItem("home", "/admin", _ALL),
    NavItem("courses", "/admin/courses", _ALL),
    NavItem("requirements", "/admin/requirements", _ALL),
    NavItem("podcasts", "/admin/podcasts", _ALL),
    NavItem("campaigns", "/admin/campaigns", frozenset({"admin", "marketer", "auditor"})),
    NavItem("broadcasts", "/admin/broadcasts", frozenset({"admin", "marketer", "auditor"})),
    NavItem("dashboards", "/admin/dashboards", _ALL),
    NavItem("members", "/admin/members", frozenset({"admin", "auditor"})),
    NavItem("imports", "/admin/imports", frozenset({"admin"})),
    NavItem("audit", "/admin/audit", frozenset({"admin", "auditor"})),
    NavItem("accounts", "/admin/accounts", frozenset({"admin"})),
)


def _taipei(moment: dt.datetime | str | None) -> str:
    """A time (or an API's ISO 8601 text of one) as Taipei time, for the templates."""
    if not moment:
        return ""
    return taipei_time(dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment)


def page_language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return "zh-TW"


class ConsolePages:
    """The template environment and the page frame (menu, language, CSRF token)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["taipei"] = _taipei

    def render(
        self,
        request: Request,
        caller: Caller | None,
        template: str,
        *,
        nav: str = "",
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        lang = page_language(request)

        def t(key: str, **kw: object) -> str:
            return self.catalog.t(lang, f"console.{key}", **kw)

        menu = [
            item
            for item in NAV
            if caller is not None and ("admin" in caller.roles or caller.roles & item.roles)
        ]
        html = self.env.get_template(template).render(
            t=t,
            lang=lang,
            caller=caller,
            menu=menu,
            nav=nav,
            csrf_token=caller.csrf_token if caller is not None else "",
            csrf_field=CSRF_FIELD,
            path=request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def console_routes(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    search: SearchService,
    vault: PiiVault,
    pages: ConsolePages,
) -> APIRouter:
    routes = APIRouter(prefix="/admin", include_in_schema=False)
    anyone = Depends(any_role(settings, page=True))
    admin_only = Depends(require_role(settings, "admin", page=True))
    readers_of_people = Depends(require_role(settings, "admin", "auditor", page=True))

    # -- signing in and out ----------------------------------------------------------------
    @routes.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> HTMLResponse:
        return pages.render(request, None, "login.html", error=None, email="")

    @routes.post("/login", response_class=HTMLResponse, response_model=None)
    async def login(
        request: Request,
        email: Annotated[str, Form(max_length=254)],
        password: Annotated[str, Form(max_length=1024)],
    ) -> Response:
        auth = admin_auth(request)
        ip = request.client.host if request.client else "unknown"
        if not await auth.ip_may_try(ip):
            return pages.render(
                request, None, "login.html", error="too_many", email=email, status_code=429
            )
        now = auth.clock()
        async with sessionmaker() as session:
            try:
                account = await authenticate(session, email=email, password=password, now=now)
            except LoginRefused as refused:
                if refused.reason == "locked" and refused.retry_at is not None:
                    await record_audit(
                        session,
                        actor="system",
                        action="accounts.login_locked",
                        subject=f"login:{email.strip().lower()[:100]}",
                        now=now,
                    )
                await session.commit()
                await auth.ip_failed(ip)
                locked = refused.reason == "locked"
                return pages.render(
                    request,
                    None,
                    "login.html",
                    error=refused.reason,
                    email=email,
                    status_code=429 if locked else 401,
                )
            cookie, _ = await start_session(session, account=account, now=now)
            await record_audit(
                session,
                actor=account.actor,
                action="accounts.login",
                subject=f"account:{account.id}",
                now=now,
            )
            await session.commit()
        response = RedirectResponse("/admin", status_code=303)
        _set_session_cookie(response, auth, cookie)
        return response

    @routes.post("/logout", response_model=None)
    async def logout(request: Request, caller: Caller = anyone) -> Response:
        auth = admin_auth(request)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        async with sessionmaker() as session:
            if cookie and await end_session(session, cookie=cookie, now=auth.clock()):
                await record_audit(
                    session,
                    actor=caller.name,
                    action="accounts.logout",
                    subject=f"account:{caller.account_id}",
                    now=auth.clock(),
                )
            await session.commit()
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/admin")
        return response

    @routes.get("/lang/{lang}")
    async def language(
        lang: str, next_page: Annotated[str, Query(alias="next")] = "/admin"
    ) -> Response:
        if lang not in LANGUAGES:
            raise HTTPException(404, "no such language")
        target = next_page if next_page.startswith("/admin") and "//" not in next_page else "/admin"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/admin", samesite="lax")
        return response

    # -- pages -------------------------------------------------------------------------------
    @routes.get("", response_class=HTMLResponse)
    async def home(request: Request, caller: Caller = anyone) -> HTMLResponse:
        async with sessionmaker() as session:
            figures = {
                "courses": await session.scalar(
                    select(func.count()).select_from(Course).where(Course.retired.is_(False))
                ),
                "members": await session.scalar(select(func.count()).select_from(Member)),
                "subscriptions": await session.scalar(
                    select(func.count())
                    .select_from(PodcastSubscription)
                    .where(PodcastSubscription.active.is_(True))
                ),
                "audit": await session.scalar(select(func.count()).select_from(AuditLog)),
            }
        return pages.render(request, caller, "home.html", nav="home", figures=figures)

    @routes.get("/courses", response_class=HTMLResponse)
    async def courses(
        request: Request,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        caller: Caller = anyone,
    ) -> HTMLResponse:
        async with sessionmaker() as session:
            listing = await course_page(session, audience=None, offset=offset, limit=50)
        return pages.render(
            request, caller, "courses.html", nav="courses", listing=listing, offset=offset
        )

    @routes.get("/courses/search", response_class=HTMLResponse)
    async def course_search(
        request: Request,
        q: Annotated[str, Query(max_length=200)] = "",
        audience: Annotated[str, Query(pattern="^(|public|civil_servant)$")] = "",
        caller: Caller = anyone,
    ) -> HTMLResponse:
        result = (
            search_preview(search, q, audience=audience or None, limit=10) if q.strip() else None
        )
        return pages.render(request, caller, "_search_results.html", result=result)

    @routes.get("/requirements", response_class=HTMLResponse)
    async def requirements(request: Request, caller: Caller = anyone) -> HTMLResponse:
        async with sessionmaker() as session:
            rows = await requirement_matches(session)
            await session.commit()
        return pages.render(
            request, caller, "requirements.html", nav="requirements", requirements=rows
        )

    @routes.get("/podcasts", response_class=HTMLResponse)
    async def podcasts(request: Request, caller: Caller = anyone) -> HTMLResponse:
        now = utcnow()
        async with sessionmaker() as session:
            subscribers = await subscriber_counts(session)
            shows = [
                {
                    "podcast": p,
                    "subscribers": int(subscribers.get(p.id, 0)),
                    "episodes": await episodes_of(session, podcast_id=p.id, now=now),
                }
                for p in await list_podcasts(session)
            ]
        return pages.render(request, caller, "podcasts.html", nav="podcasts", shows=shows)

    @routes.get("/members", response_class=HTMLResponse)
    async def members(request: Request, caller: Caller = readers_of_people) -> HTMLResponse:
        return pages.render(request, caller, "members.html", nav="members")

    @routes.post("/members/lookup", response_class=HTMLResponse)
    async def member_lookup(
        request: Request,
        channel: Annotated[str, Form(max_length=16)] = "",
        external_id: Annotated[str, Form(max_length=64)] = "",
        phone: Annotated[str, Form(max_length=32)] = "",
        caller: Caller = readers_of_people,
    ) -> HTMLResponse:
        """The member card (an htmx fragment); a phone number is hashed for the lookup."""
        summary, problem = None, None
        async with sessionmaker() as session:
            await begin_write(session)  # the lookup is audited: a write follows the reads
            try:
                found = await find_member_id(
                    session,
                    settings=settings,
                    vault=vault,
                    channel=channel or None,
                    external_id=external_id or None,
                    phone=phone or None,
                )
                summary = await audited_lookup(
                    session,
                    vault=vault,
                    member_id=found,
                    caller=caller,
                    by="phone" if phone else "channel",
                )
            except HTTPException as exc:
                problem = "not_found" if exc.status_code == 404 else "bad_input"
        return pages.render(
            request,
            caller,
            "_member_card.html",
            member=summary,
            problem=problem,
            status_code=200,
        )

    @routes.get("/imports", response_class=HTMLResponse)
    async def imports(request: Request, caller: Caller = admin_only) -> HTMLResponse:
        async with sessionmaker() as session:
            recent = [
                entry_view(e)
                for e in (
                    await session.scalars(
                        select(AuditLog)
                        .where(
                            AuditLog.action.in_(
                                ["roster.imported", "completions.imported", "courses.import"]
                            )
                        )
                        .order_by(AuditLog.id.desc())
                        .limit(10)
                    )
                ).all()
            ]
        return pages.render(request, caller, "imports.html", nav="imports", recent=recent)

    @routes.get("/audit", response_class=HTMLResponse)
    async def audit(
        request: Request,
        filters: Annotated[AuditFilters, Depends()],
        caller: Caller = readers_of_people,
    ) -> HTMLResponse:
        async with sessionmaker() as session:
            report = await verify_chain(session)
            rows = [entry_view(e) for e in await filters.rows(session)]
        query = request.url.query
        return pages.render(
            request,
            caller,
            "audit.html",
            nav="audit",
            report=report,
            entries=rows,
            filters=filters,
            csv_url="/admin/api/audit?format=csv" + ("&" + query if query else ""),
        )

    @routes.get("/audit/rows", response_class=HTMLResponse)
    async def audit_rows(
        request: Request,
        filters: Annotated[AuditFilters, Depends()],
        caller: Caller = readers_of_people,
    ) -> HTMLResponse:
        async with sessionmaker() as session:
            rows = [entry_view(e) for e in await filters.rows(session)]
        query = request.url.query
        return pages.render(
            request,
            caller,
            "_audit_rows.html",
            entries=rows,
            csv_url="/admin/api/audit?format=csv" + ("&" + query if query else ""),
        )

    @routes.get("/accounts", response_class=HTMLResponse)
    async def accounts(request: Request, caller: Caller = admin_only) -> HTMLResponse:
        async with sessionmaker() as session:
            people = []
            for account in await list_accounts(session):
                tokens = await list_tokens(session, account_id=account.id)
                people.append({**account_view(account), "tokens": tokens})
        return pages.render(request, caller, "accounts.html", nav="accounts", people=people)

    return routes


def _set_session_cookie(response: Response, auth: AdminAuth, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_MAX_AGE,
        path="/admin",
        httponly=True,
        secure=auth.secure_cookies,
        samesite="lax",
    )


__all__ = ["NAV", "PUBLIC_ROUTES", "ConsolePages", "console_routes"]
