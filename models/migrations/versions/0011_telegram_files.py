"""telegram files: file_ids of our media per bot, so every process re-sends instead of uploading

Revision ID: 0011_telegram_files
Revises: 0009_inbound_sender
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0011_telegram_files"
down_revision: str | Sequence[str] | None = "0009_inbound_sender"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telegram_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bot_hash", sa.String(length=64), nullable=False),
        sa.Column("media_key", sa.String(length=500), nullable=False),
        sa.Column("file_size", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.String(length=255), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_file")),
        sa.UniqueConstraint(
            "bot_hash",
            "media_key",
            "file_size",
            name=op.f("uq_telegram_file_bot_hash"),
        ),
    )


def downgrade() -> None:
    op.drop_table("telegram_file")
