"""inbound actor: the person behind each event, indexed, so delete-my-data finds their events
without scanning payloads

Revision ID: 0021_inbound_actor
Revises: 0009_inbound_sender
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0021_inbound_actor"
down_revision: str | Sequence[str] | None = "0009_inbound_sender"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def _person(channel: str, payload: Any) -> str | None:
    """Who sent a stored event, read from its (masked) payload as the webhooks do now."""
    if not isinstance(payload, dict):
        return None
    if channel == "line":
        source = payload.get("source")
        who = source.get("userId") if isinstance(source, dict) else None
    else:  # Telegram: {"update_id": ..., "<kind>": {"from": {"id": ...}}}
        body = next((v for k, v in payload.items() if k != "update_id"), None)
        author = body.get("from") if isinstance(body, dict) else None
        who = author.get("id") if isinstance(author, dict) else None
    return str(who)[:80] if who is not None else None


def upgrade() -> None:
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=80), nullable=True))
    op.create_index("ix_inbound_event_actor", "inbound_event", ["channel", "actor"])
    events = sa.table(
        "inbound_event",
        sa.column("id", sa.Integer),
        sa.column("channel", sa.String),
        sa.column("sender", sa.String),
        sa.column("actor", sa.String),
        sa.column("payload", sa.JSON),
    )
    bind = op.get_bind()
    # The sender first (one statement), then the group events whose person differs.
    bind.execute(sa.update(events).values(actor=events.c.sender))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(events.c.id, events.c.channel, events.c.payload)
            .where(events.c.id > last, events.c.channel.in_(("line", "telegram")))
            .order_by(events.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            person = _person(row.channel, row.payload)
            if person is not None:
                bind.execute(
                    sa.update(events)
                    .where(events.c.id == row.id, events.c.actor.is_distinct_from(person))
                    .values(actor=person)
                )


def downgrade() -> None:
    op.drop_index("ix_inbound_event_actor", table_name="inbound_event")
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.drop_column("actor")
