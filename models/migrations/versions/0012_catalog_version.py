"""catalog version: one counter moved by every committed catalog import

Revision ID: 0012_catalog_version
Revises: 0010_member_searches
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_catalog_version"
down_revision: str | Sequence[str] | None = "0010_member_searches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_version")),
    )


def downgrade() -> None:
    op.drop_table("catalog_version")
