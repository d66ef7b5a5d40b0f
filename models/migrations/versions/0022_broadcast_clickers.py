"""broadcast clickers: who followed a tracked link, where the message went to one person at a
time (Telegram, the simulator), so a broadcast's figures count people as well as clicks

Revision ID: 0022_broadcast_clickers
Revises: 0015_broadcasts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0022_broadcast_clickers"
down_revision: str | Sequence[str] | None = "0015_broadcasts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "broadcast_clicker",
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("first_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["broadcast_link.id"],
            name=op.f("fk_broadcast_clicker_link_id_broadcast_link"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_broadcast_clicker_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "member_id", name=op.f("pk_broadcast_clicker")),
    )
    op.create_index(
        op.f("ix_broadcast_clicker_member_id"), "broadcast_clicker", ["member_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_broadcast_clicker_member_id"), table_name="broadcast_clicker")
    op.drop_table("broadcast_clicker")
