"""Helpers for the outbox, dispatcher and reminder tests, and a worker/scheduler process.

As a script it runs one dispatcher or one reminder sweep in its own process, so tests can
start two of each against PostgreSQL and kill one with SIGKILL:

    python -m tests.outbox_support worker --database-url URL --line-url URL [--telegram-url URL]
    python -m tests.outbox_support sweep --database-url URL --now 2026-12-17T09:00
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Reply, Text, dump_replies
from models.members import ChannelAccount, Member
from models.outbox import PRIORITY_BROADCAST, NewMessage, Target, enqueue_many

ROOT = Path(__file__).resolve().parents[1]
LINE_SECRET = "8f1c4e0b2a7d4c96b3e5f7a9d1c3e5f7"
LINE_TOKEN = "test-line-access-token-abcdef"
TG_TOKEN = "7012345678:AAFakeTokenForTests_0123456789abcdefXYZ"
PII_KEY = "test-pii-key-0123456789abcdef-0123456789"
NOON = dt.datetime(2026, 3, 2, 4, 0, tzinfo=dt.UTC)  # 12:00 in Taipei, a Monday


async def add_member(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    civil_servant: bool = False,
    language: str = "zh-TW",
    seen: dt.datetime = NOON,
) -> Target:
    """A member with one channel account; returns where proactive messages go."""
    member = Member(language=language, is_civil_servant=civil_servant, created_at=seen)
    account = ChannelAccount(
        member=member, channel=channel, external_id=external_id, created_at=seen, last_seen_at=seen
    )
    session.add(account)
    await session.flush()
    return Target(member.id, account.id, channel, external_id)


async def never_quiet(session: AsyncSession) -> None:
    """No quiet hours for anyone (tests whose processes run on the real clock, day or night)."""
    await session.execute(sql("UPDATE member SET quiet_hours = '00:00-00:00'"))


def text(words: str) -> list[dict[str, Any]]:
    replies: list[Reply] = [Text(text=words)]
    return dump_replies(replies)


async def queue(
    session: AsyncSession,
    targets: list[Target],
    body: list[dict[str, Any]],
    *,
    key: str,
    now: dt.datetime = NOON,
    proactive: bool = True,
    priority: int = PRIORITY_BROADCAST,
) -> list[str]:
    return await enqueue_many(
        session,
        [
            NewMessage(f"{key}:{t.member_id}", t, body, "broadcast", priority, now, proactive)
            for t in targets
        ],
        now=now,
    )


def settings_env(
    database_url: str, *, line_url: str | None = None, telegram_url: str | None = None
) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PII_KEY": PII_KEY,
        "EDOOR_BACKGROUND": "off",
        "SIMULATOR_ENABLED": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
    }
    if line_url:
        env |= {
            "LINE_CHANNEL_SECRET": LINE_SECRET,
            "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN,
            "LINE_API_BASE_URL": line_url,
        }
    if telegram_url:
        env |= {"TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_MODE": "polling"}
        env["TELEGRAM_API_BASE_URL"] = telegram_url
    return env


async def start_process(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.outbox_support",
        *args,
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


# -- the process -----------------------------------------------------------------------------
async def _worker(args: argparse.Namespace) -> None:
    from bot.settings import Settings
    from models.db import create_engine, create_sessionmaker
    from notifications.dispatcher import Dispatcher, DispatcherConfig

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = create_engine(settings.database_url)
    channels: dict[str, Any] = {}
    line = telegram = None
    if settings.line_enabled:
        from bot.line import LineChannel

        line = channels["line"] = LineChannel(settings)
    if settings.telegram_enabled:
        from bot.telegram import TelegramChannel

        telegram = channels["telegram"] = TelegramChannel(settings)
        await telegram.start()
    config = DispatcherConfig(
        batch_size=args.batch, lease=dt.timedelta(seconds=args.lease), poll_seconds=0.05
    )
    dispatcher = Dispatcher(create_sessionmaker(engine), channels, config=config)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        if args.until_empty:
            await dispatcher.drain(dt.datetime.now(dt.UTC))
        else:
            await dispatcher.run(stop)
    finally:
        if line is not None:
            await line.stop()
        if telegram is not None:
            await telegram.stop()
        await engine.dispose()


async def _sweep(args: argparse.Namespace) -> None:
    from bot.i18n import Catalog
    from models.db import create_engine, create_sessionmaker
    from notifications.reminders import sweep_reminders

    engine = create_engine(args.database_url)
    try:
        report = await sweep_reminders(
            create_sessionmaker(engine),
            catalog=Catalog(),
            now=dt.datetime.fromisoformat(args.now),
            channels=["line", "telegram"],
        )
        sys.stdout.write(f"digests={report.digests}\n")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--batch", type=int, default=100)
    worker.add_argument("--lease", type=float, default=120)
    worker.add_argument("--until-empty", action="store_true")
    sweep = sub.add_parser("sweep")
    sweep.add_argument("--database-url", required=True)
    sweep.add_argument("--now", required=True)
    args = parser.parse_args()
    asyncio.run(_worker(args) if args.command == "worker" else _sweep(args))


if __name__ == "__main__":
    main()
