"""The `broadcasts` job: plan every due broadcast into the outbox, once (the dispatcher sends).

Quiet hours: a broadcast due inside the quiet window is planned with its rows' not-before at
the window's end (deferred, not dropped); the dispatcher checks each member's own window
again at send time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcasts import plan_due
from bot.i18n import Catalog
from bot.settings import Settings
from notifications.jobs import JobFn
from notifications.quiet_hours import QuietWindow


def broadcasts_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    catalog: Catalog,
    settings: Settings,
    channels: Sequence[str],
    quiet: QuietWindow,
    claims: Any = None,
) -> JobFn:
    """The job function for the registry (`edoor run-job broadcasts [--now T]`)."""

    def not_before(now: dt.datetime) -> dt.datetime:
        return quiet.until(now) or now

    async def run(now: dt.datetime) -> dict[str, int]:
        return await plan_due(
            sessionmaker,
            now=now,
            catalog=catalog,
            settings=settings,
            channels=list(channels),
            not_before=not_before,
            claims=claims,
        )

    return run
