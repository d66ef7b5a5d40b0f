"""dialogs: evidence for podcast learning hours (bytes of the member's own link, or a right
answer to the episode's check question)

Revision ID: 0020_dialogs
Revises: 0005_podcasts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_dialogs"
down_revision: str | Sequence[str] | None = "0005_podcasts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("episode") as batch:
        # {"question": str, "choices": [str, ...], "answer": index}: optional.
        batch.add_column(sa.Column("check_question", JSON, nullable=True))
    with op.batch_alter_table("episode_listen") as batch:
        # Byte ranges [start, end) the member's own signed link served, merged.
        batch.add_column(
            sa.Column("served_ranges", JSON, nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(sa.Column("evidence", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("episode_listen") as batch:
        batch.drop_column("evidence")
        batch.drop_column("served_ranges")
    with op.batch_alter_table("episode") as batch:
        batch.drop_column("check_question")
