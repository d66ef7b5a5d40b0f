"""member search interest: a member's recent searches, for recommendations only

Revision ID: 0010_member_searches
Revises: 0009_inbound_sender
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0010_member_searches"
down_revision: str | Sequence[str] | None = "0009_inbound_sender"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_search_interest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("query", sa.String(length=100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_member_search_interest_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_search_interest")),
        sa.UniqueConstraint("member_id", "query", name=op.f("uq_member_search_interest_member_id")),
    )


def downgrade() -> None:
    op.drop_table("member_search_interest")
