"""saved courses: a member's "save for later" list

Revision ID: 0006_saved_courses
Revises: 0002_courses
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0006_saved_courses"
down_revision: str | Sequence[str] | None = "0002_courses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saved_course",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.String(length=48), nullable=False),
        sa.Column("saved_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_saved_course_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_saved_course_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_course")),
        sa.UniqueConstraint("member_id", "course_id", name=op.f("uq_saved_course_member_id")),
    )
    op.create_index(op.f("ix_saved_course_course_id"), "saved_course", ["course_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_saved_course_course_id"), table_name="saved_course")
    op.drop_table("saved_course")
