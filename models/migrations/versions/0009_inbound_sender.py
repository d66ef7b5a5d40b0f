"""inbound sender: each person's events are answered in order, across workers

Revision ID: 0009_inbound_sender
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_inbound_sender"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('pending', 'processing')"


def upgrade() -> None:
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender", sa.String(length=80), nullable=True))
    op.create_index(
        "ix_inbound_event_open_sender",
        "inbound_event",
        ["channel", "sender", "id"],
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_event_open_sender", table_name="inbound_event")
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.drop_column("sender")
