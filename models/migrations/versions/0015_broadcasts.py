"""broadcasts: the broadcast and its tracked links; outbox rows know their broadcast and
LINE aggregation unit

Revision ID: 0015_broadcasts
Revises: 0012_catalog_version
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0015_broadcasts"
down_revision: str | Sequence[str] | None = "0012_catalog_version"
branch_labels: str | Sequence[str] | None = None
# The outbox (0004, reshaped by 0007) lives on another branch of the history.
depends_on: str | Sequence[str] | None = ("0007_notifications_perf",)

UTC = models.base.UTCDateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("send_at", UTC, nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("last_member", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("winner", sa.String(length=8), nullable=True),
        sa.Column("winner_at", UTC, nullable=True),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("planned_at", UTC, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast")),
    )
    op.create_index(op.f("ix_broadcast_status"), "broadcast", ["status"])
    op.create_table(
        "broadcast_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=24), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcast.id"],
            name=op.f("fk_broadcast_link_broadcast_id_broadcast"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_link")),
        sa.UniqueConstraint("token", name=op.f("uq_broadcast_link_token")),
    )
    op.create_index("ix_broadcast_link_broadcast", "broadcast_link", ["broadcast_id", "variant"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("broadcast_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("aggregation_unit", sa.String(length=30), nullable=True))
    op.create_index(
        "ix_outbox_broadcast",
        "outbox",
        ["broadcast_id", "status"],
        postgresql_where=sa.text("broadcast_id IS NOT NULL"),
        sqlite_where=sa.text("broadcast_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_broadcast", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("aggregation_unit")
        batch.drop_column("broadcast_id")
    op.drop_index("ix_broadcast_link_broadcast", table_name="broadcast_link")
    op.drop_table("broadcast_link")
    op.drop_index(op.f("ix_broadcast_status"), table_name="broadcast")
    op.drop_table("broadcast")
