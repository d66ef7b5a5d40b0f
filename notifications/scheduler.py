"""APScheduler triggers for the named jobs; the schedule lives in code, not in a job store.

APScheduler 3 must never share a job store between schedulers, and `uvicorn --workers 2`
starts two: each process keeps its own in-memory schedule, and every job is idempotent.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from models.base import TAIPEI, utcnow
from notifications.jobs import Job, JobRegistry

log = logging.getLogger("edoor.scheduler")


def build_scheduler(registry: JobRegistry) -> AsyncIOScheduler:
    """An asyncio scheduler with one trigger per job (coalesced, one instance at a time)."""
    scheduler = AsyncIOScheduler(timezone=TAIPEI)
    for job in registry.jobs.values():
        if job.every_seconds:
            trigger: IntervalTrigger | CronTrigger = IntervalTrigger(seconds=job.every_seconds)
        elif job.cron:
            trigger = CronTrigger(timezone=TAIPEI, **job.cron)
        else:
            continue
        scheduler.add_job(
            _runner(job),
            trigger,
            id=job.name,
            name=job.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=60,
        )
    return scheduler


def _runner(job: Job):  # type: ignore[no-untyped-def]
    async def run() -> None:
        try:
            await job.run(utcnow())
        except Exception:
            log.exception("job failed", extra={"job": job.name})

    return run
