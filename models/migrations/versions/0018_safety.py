"""safety: SMS caps by trust and number block; inbound claims by process, replies in flight

Revision ID: 0018_safety
Revises: 0012_catalog_version
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0018_safety"
down_revision: str | Sequence[str] | None = "0012_catalog_version"
branch_labels: str | Sequence[str] | None = None
# otp_send comes from 0003_identity, on another branch of the graph.
depends_on: str | Sequence[str] | None = "0003_identity"


def upgrade() -> None:
    with op.batch_alter_table("otp_send", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prefix_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("newcomer", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(batch_op.f("ix_otp_send_prefix_hash"), ["prefix_hash"], unique=False)
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("reply_started_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "inbound_worker",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("started_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("beat_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_worker")),
    )
    op.create_index(op.f("ix_inbound_worker_beat_at"), "inbound_worker", ["beat_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_inbound_worker_beat_at"), table_name="inbound_worker")
    op.drop_table("inbound_worker")
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.drop_column("reply_started_at")
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("otp_send", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_otp_send_prefix_hash"))
        batch_op.drop_column("newcomer")
        batch_op.drop_column("prefix_hash")
