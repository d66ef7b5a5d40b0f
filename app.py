"""The composition root: builds settings, the engine, channels, router and jobs, and the
FastAPI application that serves webhooks, the simulator, media and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import handlers
from admin.courses import course_admin_routes
from admin.podcasts import podcast_admin_routes
from bot.channels import Channel
from bot.context import Services
from bot.feeds import podcast_routes
from bot.i18n import Catalog
from bot.inbound import InboundProcessor
from bot.line import LineChannel, line_routes
from bot.logs import configure_logging
from bot.podcasts import podcast_drops
from bot.router import Router
from bot.settings import Settings
from bot.simulator import SimulatorChannel, simulator_routes
from bot.sms import build_sms_provider
from bot.telegram import TelegramChannel, run_polling, telegram_routes
from models.conversation import purge_expired_states
from models.db import create_engine, create_sessionmaker
from models.identity import purge_otp_history
from models.learning import requirements_without_courses
from models.pii import PiiVault
from models.search.service import SearchService
from notifications.dispatcher import Dispatcher, build_dispatcher
from notifications.jobs import Job, JobRegistry
from notifications.reminders import reminders_job
from notifications.reminders import retention as notifications_retention
from notifications.scheduler import build_scheduler

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
        return self.services.extra["search"]  # type: ignore[no-any-return]

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
        if self.line is not None:
            await self.line.stop()
        if self.telegram is not None:
            await self.telegram.stop()
        sms = self.services.extra.get("sms")
        if sms is not None and hasattr(sms, "aclose"):
            await sms.aclose()
        await self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """Wire the parts together; nothing here talks to the network or the database yet."""
    settings.ensure_valid()
    configure_logging(level=settings.log_level, secrets=settings.secrets())
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    previous = [settings.pii_key_previous.get_secret_value()] if settings.pii_key_previous else []
    vault = PiiVault(settings.pii_key.get_secret_value(), previous=previous)
    services = Services(settings=settings, catalog=Catalog(), vault=vault)
    services.extra["sms"] = build_sms_provider(settings, vault=vault)
    services.extra["search"] = SearchService()
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
            sessionmaker, now=now, settings=settings, catalog=services.catalog
        )

    jobs.add(Job("podcast-drops", drops, every_seconds=60))

    dispatcher = build_dispatcher(settings, sessionmaker, channels)
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

    async def retention(now: dt.datetime) -> dict[str, int]:
        async with sessionmaker() as session:
            states = await purge_expired_states(session, now=now)
            otp = await purge_otp_history(session, now=now)
            await session.commit()
        outbox = await notifications_retention(sessionmaker, now=now)
        return {"conversation_states": states, "otp_rows": otp, "outbox_rows": outbox}

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

    api = FastAPI(title="edoor", lifespan=lifespan, docs_url=None, redoc_url=None)
    api.state.runtime = runtime

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
    api.include_router(
        podcast_routes(
            sessionmaker=runtime.sessionmaker,
            settings=settings,
            # The app's one notion of "now" (tests move it to check link expiry).
            clock=lambda: runtime.processor.clock(),
        )
    )
    api.include_router(podcast_admin_routes(settings=settings, sessionmaker=runtime.sessionmaker))
    api.include_router(
        course_admin_routes(
            settings=settings, sessionmaker=runtime.sessionmaker, search=runtime.search
        )
    )
    return api


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()
