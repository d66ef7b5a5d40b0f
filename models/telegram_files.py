"""Telegram file_ids of our media, per bot: a file goes to Telegram once (upload or fetch by
URL) and is re-sent by its id from every process, after every restart."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

from sqlalchemy import String, UniqueConstraint, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

MAX_KEY = 500
# (media key, file size in bytes): the size guards a key whose file was replaced in place.
FileKey = tuple[str, int]


class TelegramFile(Base):
    """One file Telegram holds for one bot. A file_id is valid only for the bot that received
    it, so rows are keyed by a hash of the bot token (never the token itself)."""

    __tablename__ = "telegram_file"
    __table_args__ = (UniqueConstraint("bot_hash", "media_key", "file_size"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bot_hash: Mapped[str] = mapped_column(String(64))
    media_key: Mapped[str] = mapped_column(String(MAX_KEY))  # e.g. "episode:<media path>"
    file_size: Mapped[int]  # bytes as the reply gave them (0 when unknown)
    file_id: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime]


def bot_hash(token: str) -> str:
    """What identifies a bot in this table: SHA-256 of its token, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def storable(key: FileKey) -> bool:
    return 0 < len(key[0]) <= MAX_KEY


async def get_file_ids(
    session: AsyncSession, *, bot: str, keys: Iterable[FileKey]
) -> dict[FileKey, str]:
    """The stored file_ids of these files for this bot (those known; one query)."""
    wanted = sorted({k for k in keys if storable(k)})
    if not wanted:
        return {}
    rows = await session.execute(
        select(TelegramFile.media_key, TelegramFile.file_size, TelegramFile.file_id).where(
            TelegramFile.bot_hash == bot,
            tuple_(TelegramFile.media_key, TelegramFile.file_size).in_(wanted),
        )
    )
    return {(key, size): file_id for key, size, file_id in rows.all()}


async def remember_file_id(
    session: AsyncSession, *, bot: str, key: FileKey, file_id: str, now: dt.datetime
) -> None:
    """Store (or replace) the file_id Telegram returned for this file and bot."""
    if not storable(key) or len(file_id) > 255:
        return
    make = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = make(TelegramFile).values(
        bot_hash=bot, media_key=key[0], file_size=key[1], file_id=file_id, updated_at=now
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["bot_hash", "media_key", "file_size"],
            set_={"file_id": file_id, "updated_at": now},
        )
    )


async def forget_file_id(session: AsyncSession, *, bot: str, key: FileKey, file_id: str) -> None:
    """Drop a file_id Telegram refused, unless another process already stored a newer one."""
    await session.execute(
        delete(TelegramFile).where(
            TelegramFile.bot_hash == bot,
            TelegramFile.media_key == key[0],
            TelegramFile.file_size == key[1],
            TelegramFile.file_id == file_id,
        )
    )
