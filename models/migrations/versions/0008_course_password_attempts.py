"""course password attempts: wrong tries per member per rolling hour, across courses

Revision ID: 0008_course_password_attempts
Revises: 0006_saved_courses
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0008_course_password_attempts"
down_revision: str | Sequence[str] | None = "0006_saved_courses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "course_password_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.String(length=48), nullable=False),
        sa.Column("attempted_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_course_password_attempt_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_course_password_attempt")),
    )
    op.create_index(
        "ix_course_password_attempt_member_at",
        "course_password_attempt",
        ["member_id", "attempted_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_course_password_attempt_member_at", table_name="course_password_attempt")
    op.drop_table("course_password_attempt")
