"""rollups: the dashboards' summary tables and their watermarks

Revision ID: 0016_rollups
Revises: 0012_catalog_version
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0016_rollups"
down_revision: str | Sequence[str] | None = "0012_catalog_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollup_campaign_funnel",
        sa.Column("campaign", sa.String(length=80), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("starts_on", sa.String(length=10), nullable=False),
        sa.Column("eligible", sa.Integer(), nullable=False),
        sa.Column("opened", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("claimed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("campaign", name=op.f("pk_rollup_campaign_funnel")),
    )
    op.create_table(
        "rollup_channel_activity",
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint(
            "week", "channel", "sender", name=op.f("pk_rollup_channel_activity")
        ),
    )
    op.create_table(
        "rollup_channel_week",
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("week", "channel", name=op.f("pk_rollup_channel_week")),
    )
    op.create_table(
        "rollup_compliance",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("requirement_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("deadline", sa.String(length=10), nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.Column("met", sa.Integer(), nullable=False),
        sa.Column("met_by_deadline", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "year", "month", "agency", "requirement_id", name=op.f("pk_rollup_compliance")
        ),
    )
    op.create_table(
        "rollup_course_requirement",
        sa.Column("course_id", sa.String(length=48), nullable=False),
        sa.Column("requirement_id", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.String(length=5), nullable=False),
        sa.PrimaryKeyConstraint(
            "course_id", "requirement_id", name=op.f("pk_rollup_course_requirement")
        ),
    )
    op.create_table(
        "rollup_reminder_effect",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("reminded", sa.Integer(), nullable=False),
        sa.Column("reminded_completed", sa.Integer(), nullable=False),
        sa.Column("control", sa.Integer(), nullable=False),
        sa.Column("control_completed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "agency", name=op.f("pk_rollup_reminder_effect")),
    )
    op.create_table(
        "rollup_requirement_progress",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.String(length=64), nullable=False),
        sa.Column("requirement_id", sa.Integer(), nullable=False),
        sa.Column("by_deadline", sa.Float(), nullable=False),
        sa.Column("m1", sa.Float(), nullable=False),
        sa.Column("m2", sa.Float(), nullable=False),
        sa.Column("m3", sa.Float(), nullable=False),
        sa.Column("m4", sa.Float(), nullable=False),
        sa.Column("m5", sa.Float(), nullable=False),
        sa.Column("m6", sa.Float(), nullable=False),
        sa.Column("m7", sa.Float(), nullable=False),
        sa.Column("m8", sa.Float(), nullable=False),
        sa.Column("m9", sa.Float(), nullable=False),
        sa.Column("m10", sa.Float(), nullable=False),
        sa.Column("m11", sa.Float(), nullable=False),
        sa.Column("m12", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "year", "employee_id", "requirement_id", name=op.f("pk_rollup_requirement_progress")
        ),
    )
    op.create_table(
        "rollup_search",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("normalised", sa.String(length=200), nullable=False),
        sa.Column("searches", sa.Integer(), nullable=False),
        sa.Column("zero_results", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", "month", "normalised", name=op.f("pk_rollup_search")),
    )
    op.create_table(
        "rollup_search_year",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("normalised", sa.String(length=200), nullable=False),
        sa.Column("searches", sa.Integer(), nullable=False),
        sa.Column("zero_results", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", "normalised", name=op.f("pk_rollup_search_year")),
    )
    op.create_index(
        "ix_rollup_search_year_searches", "rollup_search_year", ["year", "searches"], unique=False
    )
    op.create_index(
        "ix_rollup_search_year_zero_results",
        "rollup_search_year",
        ["year", "zero_results"],
        unique=False,
    )
    op.create_table(
        "rollup_topic_hours",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("completions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "year", "month", "agency", "category", name=op.f("pk_rollup_topic_hours")
        ),
    )
    op.create_table(
        "rollup_watermark",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_day", sa.String(length=10), nullable=False),
        sa.Column(
            "gaps",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("roster_stamp", sa.String(length=80), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_rollup_watermark")),
    )


def downgrade() -> None:
    op.drop_table("rollup_watermark")
    op.drop_table("rollup_topic_hours")
    op.drop_index("ix_rollup_search_year_zero_results", table_name="rollup_search_year")
    op.drop_index("ix_rollup_search_year_searches", table_name="rollup_search_year")
    op.drop_table("rollup_search_year")
    op.drop_table("rollup_search")
    op.drop_table("rollup_requirement_progress")
    op.drop_table("rollup_reminder_effect")
    op.drop_table("rollup_course_requirement")
    op.drop_table("rollup_compliance")
    op.drop_table("rollup_channel_week")
    op.drop_table("rollup_channel_activity")
    op.drop_table("rollup_campaign_funnel")
