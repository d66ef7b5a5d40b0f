"""course password lock: a per-course pause after too many wrong tries from everyone

Revision ID: 0019_course_password_lock
Revises: 0008_course_password_attempts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0019_course_password_lock"
down_revision: str | Sequence[str] | None = "0008_course_password_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("course") as batch:
        batch.add_column(
            sa.Column(
                "password_locked_until", models.base.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.create_index(
        "ix_course_password_attempt_course_at",
        "course_password_attempt",
        ["course_id", "attempted_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_course_password_attempt_course_at", table_name="course_password_attempt")
    with op.batch_alter_table("course") as batch:
        batch.drop_column("password_locked_until")
