"""The Alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models import Base
from models.db import create_engine
from models.migrate import alembic_config


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []


async def test_the_actor_migration_backfills_stored_events(tmp_path: Path) -> None:
    """Events stored before 0021 get their person: the sender, or a group event's member
    read from its payload, so delete-my-data finds them by the new index."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    heads = [h for h in ScriptDirectory.from_config(cfg).get_heads() if h != "0021_inbound_actor"]

    def run(connection: object, target: str | list[str]) -> None:
        cfg.attributes["connection"] = connection
        for each in [target] if isinstance(target, str) else target:
            command.upgrade(cfg, each)

    group_event = {"type": "message", "source": {"groupId": "C1", "userId": "U-mei"}}
    tg_update = {"update_id": 9, "message": {"from": {"id": 42}, "chat": {"id": -100}}}
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run, heads)
            for channel, event_id, sender, payload in (
                ("line", "e1", "U-wei", {"type": "message", "source": {"userId": "U-wei"}}),
                ("line", "e2", "C1", group_event),
                ("telegram", "9", "-100", tg_update),
                ("simulator", "s1", "sim-a", {"text": "hi"}),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO inbound_event (channel, event_id, kind, sender, status,"
                        " attempts, received_at, payload) VALUES (:c, :e, 'message', :s,"
                        " 'done', 1, '2026-12-01 00:00:00', :p)"
                    ),
                    {"c": channel, "e": event_id, "s": sender, "p": json.dumps(payload)},
                )
        async with engine.begin() as conn:
            await conn.run_sync(run, "heads")
            rows = (
                await conn.execute(text("SELECT event_id, actor FROM inbound_event ORDER BY id"))
            ).all()
        assert [tuple(r) for r in rows] == [
            ("e1", "U-wei"),
            ("e2", "U-mei"),
            ("9", "42"),
            ("s1", "sim-a"),
        ]
    finally:
        await engine.dispose()
