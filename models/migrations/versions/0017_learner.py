"""requirement title keywords: a requirement may count courses by words of their titles

Revision ID: 0017_learner
Revises: 0012_catalog_version
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0017_learner"
down_revision: str | Sequence[str] | None = "0012_catalog_version"
branch_labels: str | Sequence[str] | None = None
# The table comes from 0004 (another branch of the history): it must run first.
depends_on: str | Sequence[str] | None = "0004_outbox_learning"


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
    with op.batch_alter_table("mandatory_requirement") as batch:
        batch.add_column(
            sa.Column("title_keywords", json_type, nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("mandatory_requirement") as batch:
        batch.drop_column("title_keywords")
