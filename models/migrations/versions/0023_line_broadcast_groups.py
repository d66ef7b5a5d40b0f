"""LINE broadcast groups: a broadcast's LINE recipients are planned in groups of up to 500,
one outbox row per group (no member, `external_id` empty) that the dispatcher claims, sends
as one multicast and settles; each recipient's own row waits as `grouped` under the group's
key, so that per-person rules (unsubscribe, delete-my-data, the frequency cap, figures)
still see one row per person, while claiming and settling cost one row per call

Revision ID: 0023_line_broadcast_groups
Revises: 0022_broadcast_clickers
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_line_broadcast_groups"
down_revision: str | Sequence[str] | None = "0022_broadcast_clickers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_key", sa.String(length=160), nullable=True))
        batch_op.alter_column("member_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "ix_outbox_group_key",
        "outbox",
        ["group_key"],
        postgresql_where=sa.text("group_key IS NOT NULL"),
        sqlite_where=sa.text("group_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_group_key", table_name="outbox")
    op.execute("DELETE FROM outbox WHERE member_id IS NULL")
    op.execute("UPDATE outbox SET status = 'pending' WHERE status = 'grouped'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("member_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("group_key")
