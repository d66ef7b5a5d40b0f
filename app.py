"""The composition root: builds settings, the engine, channels, router and jobs, and the
FastAPI application that serves webhooks, the simulator, media and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import handlers
from admin.accounts import account_admin_routes
from admin.audit import audit_admin_routes
from admin.auth import AdminAuth
from admin.broadcasts import broadcast_admin_routes
from admin.campaigns import campaign_admin_routes
from admin.console import STATIC, ConsolePages, console_routes
from admin.courses import course_admin_routes
from admin.dashboards import AnswerCache, dashboard_routes
from admin.learning import learning_admin_routes
from admin.members import member_admin_routes
from admin.office_pages import office_pages
from admin.openapi import openapi_routes
from admin.podcasts import podcast_admin_routes
from bot.broadcasts import redirect_routes
from bot.channels import Channel
from bot.context import Services
from bot.http_limits import BodyLimit, RouteLimit, StrictJsonBodies, validation_problem
from bot.i18n import Catalog
from bot.inbound import InboundProcessor
from bot.line import LineChannel, line_routes
from bot.line.render import render as line_render
from bot.logs import configure_logging
from bot.messages import Reply
from bot.router import Router
from bot.settings import Settings
from bot.simulator import SimulatorChannel, simulator_routes
from bot.telegram import TelegramChannel, run_polling, telegram_routes
from bot.telegram.render import render as tg_render
from media.feeds import podcast_routes
from media.files import MediaSigner
from media.images import MAX_IMAGE_BYTES
from media.qr import prize_qr_routes
from models.conversation import purge_expired_states
from models.courses import purge_search_log
from models.db import begin_write, create_engine, create_sessionmaker
from models.identity import purge_otp_history
from models.inbound import purge_finished_events
from models.learning import requirements_without_courses
from models.pii import PiiVault
from models.search.service import SearchService
from models.simulator import purge_simulator_messages
from notifications.broadcasts import broadcasts_job
from notifications.campaigns import notify_winners, winners_job
from notifications.dispatcher import Dispatcher, build_dispatcher
from notifications.jobs import Job, JobRegistry
from notifications.podcast_drops import podcast_drops
from notifications.reminders import reminders_job
from notifications.reminders import retention as notifications_retention
from notifications.rollups import rollups_job
from notifications.scheduler import build_scheduler
from sms.providers import build_sms_provider

log = logging.getLogger("edoor.app")


@dataclass
class Runtime:
    """Everything one process needs, built once from the settings."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    services: Services
    router: Router
    processor: InboundProcessor
    jobs: JobRegistry
    channels: dict[str, Channel] = field(default_factory=dict)
    line: LineChannel | None = None
    telegram: TelegramChannel | None = None
    simulator: SimulatorChannel | None = None
    dispatcher: Dispatcher | None = None
    # The catalog watch (see SearchService.watch), running from start() to close().
    _catalog_stop: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _catalog_watch: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @property
    def search(self) -> SearchService:
        return self.services.search

    async def start(self) -> None:
        """Open platform clients and load the search index (before serving or sending)."""
        if self.telegram is not None:
            await self.telegram.start()
        async with self.sessionmaker() as session:
            await self.search.reload(session)
            await warn_unsatisfiable_requirements(session)
        # Every process holds its own index over the shared catalog: it follows imports made
        # by other processes (and the CLI) within the search service's refresh interval.
        self._catalog_stop.clear()
        self._catalog_watch = asyncio.create_task(
            self.search.watch(self.sessionmaker, self._catalog_stop)
        )
        # A rebuilt index lives as long as the first one did: out of the collector's sight too
        # (the old one has no reference cycles, so dropping it frees it, frozen or not). The
        # collection first, so that garbage made since the last freeze is not frozen with it.
        self.search.on_rebuilt = _collect_and_freeze
        # What is loaded by now (modules, SDK models, the search index) lives as long as
        # the process: moved out of the collector's sight, a full collection no longer
        # walks a few hundred thousand objects, a pause of 100 ms or more that every
        # request in flight would wait out.
        gc.freeze()

    async def notify_winners(self, campaign_id: int | None, now: dt.datetime) -> int:
        """Queue the messages of drawn winners not told yet, and wake the dispatcher."""
        quiet = self.dispatcher.config.quiet if self.dispatcher is not None else None
        async with self.sessionmaker() as session:
            await begin_write(session)  # read, then write: the SQLite lock up front
            queued = await notify_winners(
                session,
                catalog=self.services.catalog,
                now=now,
                campaign_id=campaign_id,
                **({"quiet": quiet} if quiet is not None else {}),
            )
            await session.commit()
        if queued and self.dispatcher is not None:
            self.dispatcher.wake.set()
        return queued

    async def close(self) -> None:
        if self._catalog_watch is not None:
            self._catalog_stop.set()
            try:
                # A rebuild in progress finishes first (its thread cannot be interrupted).
                await asyncio.wait_for(self._catalog_watch, 30)
            except TimeoutError:
                log.warning("catalog watch did not stop in time")
            self._catalog_watch = None
        gc.unfreeze()  # after the watch: a rebuild finishing now freezes again
        await self.processor.close()
        if self.line is not None:
            await self.line.stop()
        if self.telegram is not None:
            await self.telegram.stop()
        aclose = getattr(self.services.sms, "aclose", None)
        if aclose is not None:
            await aclose()
        await self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """Wire the parts together; nothing here talks to the network or the database yet."""
    settings.ensure_valid()
    configure_logging(level=settings.log_level, secrets=settings.secrets())
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    previous = [settings.pii_key_previous.get_secret_value()] if settings.pii_key_previous else []
    vault = PiiVault(settings.pii_key.get_secret_value(), previous=previous)
    services = Services(
        settings=settings,
        catalog=Catalog(),
        vault=vault,
        search=SearchService(),
        sms=build_sms_provider(settings, vault=vault),
        media_signer=MediaSigner.from_settings(settings),
    )
    router = handlers.build_router()
    channels: dict[str, Channel] = {}
    line = simulator = telegram = None
    if settings.line_enabled:
        line = LineChannel(settings)
        channels[line.name] = line
    if settings.telegram_enabled:
        telegram = TelegramChannel(settings, sessionmaker=sessionmaker)
        channels[telegram.name] = telegram
    if settings.simulator_on:
        simulator = SimulatorChannel(sessionmaker)
        channels[simulator.name] = simulator
    processor = InboundProcessor(
        sessionmaker=sessionmaker, services=services, router=router, channels=channels
    )
    jobs = JobRegistry()

    async def recover_inbound(now: dt.datetime) -> int:
        return await processor.recover()

    jobs.add(Job("recover-inbound", recover_inbound, every_seconds=settings.inbound_sweep_seconds))

    async def drops(now: dt.datetime) -> int:
        return await podcast_drops(
            sessionmaker,
            now=now,
            settings=settings,
            catalog=services.catalog,
            signer=services.media_signer,
        )

    jobs.add(Job("podcast-drops", drops, every_seconds=60))

    dispatcher = build_dispatcher(settings, sessionmaker, channels, signer=services.media_signer)
    processor.on_enqueued = dispatcher.wake.set
    # No trigger: the worker loop drains continuously; `run-job drain-outbox` drains once.
    jobs.add(Job("drain-outbox", dispatcher.drain))
    reminders = reminders_job(
        sessionmaker,
        catalog=services.catalog,
        channels=list(channels),
        quiet=dispatcher.config.quiet,
    )
    jobs.add(Job("reminders", reminders, cron={"minute": settings.reminders_cron_minute}))
    planner = broadcasts_job(
        sessionmaker,
        catalog=services.catalog,
        settings=settings,
        channels=list(channels),
        quiet=dispatcher.config.quiet,
    )
    jobs.add(Job("broadcasts", planner, every_seconds=60))
    # Draw winners not told yet (the telling after a draw failed, or its process died).
    winners = winners_job(
        sessionmaker,
        catalog=services.catalog,
        quiet=dispatcher.config.quiet,
        on_queued=dispatcher.wake.set,
    )
    jobs.add(Job("campaign-winners", winners, every_seconds=60))

    async def retention(now: dt.datetime) -> dict[str, int]:
        days = dt.timedelta(days=1)
        async with sessionmaker() as session:
            states = await purge_expired_states(session, now=now)
            otp = await purge_otp_history(session, now=now)
            events = await purge_finished_events(
                session, before=now - settings.retention_inbound_days * days
            )
            searches = await purge_search_log(
                session, before=now - settings.retention_search_log_days * days
            )
            simulated = await purge_simulator_messages(
                session, before=now - settings.retention_simulator_days * days
            )
            await session.commit()
        outbox = await notifications_retention(sessionmaker, now=now)
        return {
            "conversation_states": states,
            "otp_rows": otp,
            "outbox_rows": outbox,
            "inbound_events": events,
            "search_log": searches,
            "simulator_messages": simulated,
        }

    jobs.add(
        Job("rollups", rollups_job(sessionmaker), every_seconds=settings.rollups_every_seconds)
    )
    jobs.add(Job("retention", retention, cron={"hour": "3", "minute": "17"}))
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        services=services,
        router=router,
        processor=processor,
        jobs=jobs,
        channels=channels,
        line=line,
        telegram=telegram,
        simulator=simulator,
        dispatcher=dispatcher,
    )


async def warn_unsatisfiable_requirements(session: AsyncSession) -> list[str]:
    """Log every active requirement that no active course satisfies; their codes."""
    unmatched = await requirements_without_courses(session)
    for req in unmatched:
        log.warning(
            "requirement %s (%s) matches no active course: people cannot complete it here; "
            "add title_keywords, categories or tags that the catalog has",
            req.code,
            req.title,
        )
    return [r.code for r in unmatched]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application; `settings` defaults to the environment (and .env)."""
    runtime = build_runtime(settings or Settings())
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler = recovery = polling = None
        stop_polling = asyncio.Event()
        await runtime.start()
        if runtime.telegram is not None and settings.telegram_mode == "polling":
            polling = asyncio.create_task(
                run_polling(runtime.telegram, runtime.processor, stop_polling)
            )
        stop_worker = asyncio.Event()
        worker = None
        if settings.background_on and runtime.dispatcher is not None:
            worker = asyncio.create_task(runtime.dispatcher.run(stop_worker))
        if settings.background_on:
            # Events recorded before a crash are finished now, then by the periodic sweep.
            recovery = asyncio.create_task(runtime.processor.recover())
            scheduler = build_scheduler(runtime.jobs)
            scheduler.start()
        try:
            yield
        finally:
            stop_polling.set()
            if polling is not None:
                await polling
            await runtime.processor.drain()
            stop_worker.set()
            if worker is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker, 10)
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            if recovery is not None:
                recovery.cancel()
            await runtime.close()

    # In production the API's shape is not advertised: the admin API's own document
    # (/admin/api/openapi.json) asks for a token, and the whole app's is off.
    openapi_url = None if settings.edoor_env == "production" else "/openapi.json"
    api = FastAPI(
        title="edoor",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=openapi_url,
    )
    api.state.runtime = runtime
    # Every console page and /admin/api endpoint finds who is calling through this.
    api.state.admin_auth = AdminAuth(
        settings, runtime.sessionmaker, clock=lambda: runtime.processor.clock()
    )

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_problem(exc.errors()), status_code=422)

    # Webhooks and imports read their raw bodies with models.safejson themselves.
    api.add_middleware(
        StrictJsonBodies, skip=[re.compile(r"^/webhooks/"), re.compile(IMPORT_PATHS)]
    )
    # Added last, so it runs first: the body limit bounds what the JSON check reads.
    api.add_middleware(
        BodyLimit,
        default_bytes=settings.max_body_bytes,
        routes=body_limits(settings),
        body_timeout=settings.http_body_timeout_seconds,
    )

    @api.get("/healthz")
    async def healthz() -> Response:
        """200 when the database answers, 503 otherwise."""
        try:
            async with runtime.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            log.warning("health check: database unreachable")
            return Response(
                '{"status":"unavailable","database":false}',
                status_code=503,
                media_type="application/json",
            )
        return Response('{"status":"ok","database":true}', media_type="application/json")

    if runtime.line is not None:
        api.include_router(line_routes(processor=runtime.processor, settings=settings))
    if runtime.telegram is not None and settings.telegram_mode == "webhook":
        api.include_router(telegram_routes(processor=runtime.processor, settings=settings))
    if runtime.simulator is not None:
        api.include_router(simulator_routes(processor=runtime.processor))
    # Before the podcast routes: their /media/{path} would take the prize QR links too.
    api.include_router(
        prize_qr_routes(
            sessionmaker=runtime.sessionmaker,
            settings=settings,
            signer=runtime.services.media_signer,
            clock=lambda: runtime.processor.clock(),
        )
    )
    api.include_router(
        podcast_routes(
            sessionmaker=runtime.sessionmaker,
            settings=settings,
            # The app's one notion of "now" (tests move it to check link expiry).
            clock=lambda: runtime.processor.clock(),
        )
    )
    api.include_router(podcast_admin_routes(settings=settings, sessionmaker=runtime.sessionmaker))
    api.state.dashboard_answers = AnswerCache()  # the benchmark times it empty and full
    api.include_router(
        dashboard_routes(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            cache=api.state.dashboard_answers,
        )
    )
    api.include_router(
        campaign_admin_routes(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            on_drawn=runtime.notify_winners,
            clock=lambda: runtime.processor.clock(),
        )
    )
    api.include_router(
        redirect_routes(sessionmaker=runtime.sessionmaker, signer=runtime.services.media_signer)
    )
    api.include_router(
        broadcast_admin_routes(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            catalog=runtime.services.catalog,
            channels=list(runtime.channels),
            render=channel_preview,
            wake=runtime.dispatcher.wake.set if runtime.dispatcher is not None else None,
        )
    )
    api.include_router(
        course_admin_routes(
            settings=settings, sessionmaker=runtime.sessionmaker, search=runtime.search
        )
    )
    vault = runtime.services.vault
    api.include_router(account_admin_routes(settings=settings, sessionmaker=runtime.sessionmaker))
    api.include_router(audit_admin_routes(settings=settings, sessionmaker=runtime.sessionmaker))
    api.include_router(
        member_admin_routes(settings=settings, sessionmaker=runtime.sessionmaker, vault=vault)
    )
    api.include_router(
        learning_admin_routes(settings=settings, sessionmaker=runtime.sessionmaker, vault=vault)
    )
    pages = ConsolePages(runtime.services.catalog)
    api.include_router(
        console_routes(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            search=runtime.search,
            vault=vault,
            pages=pages,
        )
    )
    api.include_router(
        office_pages(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            pages=pages,
            catalog=runtime.services.catalog,
            channels=list(runtime.channels),
            render=channel_preview,
        )
    )
    api.mount("/admin/static", StaticFiles(directory=STATIC), name="admin-static")
    # Last, so that it documents every /admin/api route mounted above.
    api.include_router(openapi_routes(settings=settings, api=api))
    return api


IMPORT_PATHS = r"^/admin/(api/)?[a-z-]+/import$"


def body_limits(settings: Settings) -> list[RouteLimit]:
    """Routes that may carry more than MAX_BODY_BYTES (webhooks and forms stay within it)."""
    return [
        RouteLimit(re.compile(r"^/admin/api/podcasts/[^/]+/episodes$"), settings.max_upload_bytes),
        RouteLimit(re.compile(IMPORT_PATHS), settings.max_import_bytes),
        # Campaign files, voucher codes and the vendor's redemptions are imports too.
        RouteLimit(
            re.compile(r"^/admin/api/campaigns(/[^/]+(/codes|/redemptions)?)?$"),
            settings.max_import_bytes,
        ),
        RouteLimit(re.compile(r"^/admin/api/broadcasts/images$"), MAX_IMAGE_BYTES),
    ]


def channel_preview(replies: list[Reply]) -> dict[str, Any]:
    """Replies as LINE (through the SDK's models, so LINE's rules are checked) and Telegram
    send them: the composition root lends the adapters' renderers to previews."""
    return {
        "line": [m.to_dict() for m in line_render(replies)],
        "telegram": [{"method": c.method, "params": c.json_params()} for c in tg_render(replies)],
    }


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()
