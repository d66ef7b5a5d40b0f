"""podcasts: podcasts, episodes, subscriptions, listening progress, completions, feed tokens

Revision ID: 0005_podcasts
Revises: 0001_foundation
Depends on: 0002_courses (podcast.course_id)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0005_podcasts"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("podcasts",)
depends_on: str | Sequence[str] | None = "0002_courses"


def upgrade() -> None:
    op.create_table(
        "podcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=48), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=120), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("course_id", sa.String(length=48), nullable=True),
        sa.Column("hours", sa.Float(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_podcast_course_id_course"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_podcast")),
        sa.UniqueConstraint("slug", name=op.f("uq_podcast_slug")),
    )
    op.create_index(op.f("ix_podcast_course_id"), "podcast", ["course_id"], unique=False)
    op.create_table(
        "episode",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("podcast_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column(
            "chapters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("media_path", sa.String(length=300), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("published_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["podcast_id"],
            ["podcast.id"],
            name=op.f("fk_episode_podcast_id_podcast"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episode")),
        sa.UniqueConstraint("media_path", name=op.f("uq_episode_media_path")),
        sa.UniqueConstraint("podcast_id", "number", name=op.f("uq_episode_podcast_id")),
    )
    op.create_table(
        "podcast_completion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("podcast_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.String(length=48), nullable=True),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("completed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_podcast_completion_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["podcast_id"],
            ["podcast.id"],
            name=op.f("fk_podcast_completion_podcast_id_podcast"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_podcast_completion")),
        sa.UniqueConstraint(
            "member_id", "podcast_id", name=op.f("uq_podcast_completion_member_id")
        ),
    )
    op.create_table(
        "podcast_feed_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("podcast_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_podcast_feed_token_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["podcast_id"],
            ["podcast.id"],
            name=op.f("fk_podcast_feed_token_podcast_id_podcast"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_podcast_feed_token")),
    )
    op.create_index(
        op.f("ix_podcast_feed_token_podcast_id"), "podcast_feed_token", ["podcast_id"], unique=False
    )
    op.create_table(
        "podcast_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("podcast_id", sa.Integer(), nullable=False),
        sa.Column("delivery_time", sa.String(length=5), nullable=False),
        sa.Column("weekdays_only", sa.Boolean(), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_slot_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_podcast_subscription_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["podcast_id"],
            ["podcast.id"],
            name=op.f("fk_podcast_subscription_podcast_id_podcast"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_podcast_subscription")),
        sa.UniqueConstraint(
            "member_id", "podcast_id", name=op.f("uq_podcast_subscription_member_id")
        ),
    )
    op.create_index(
        op.f("ix_podcast_subscription_active"), "podcast_subscription", ["active"], unique=False
    )
    op.create_index(
        op.f("ix_podcast_subscription_podcast_id"),
        "podcast_subscription",
        ["podcast_id"],
        unique=False,
    )
    op.create_table(
        "episode_listen",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("started_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episode.id"],
            name=op.f("fk_episode_listen_episode_id_episode"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_episode_listen_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episode_listen")),
        sa.UniqueConstraint("member_id", "episode_id", name=op.f("uq_episode_listen_member_id")),
    )
    op.create_index(
        op.f("ix_episode_listen_episode_id"), "episode_listen", ["episode_id"], unique=False
    )


def downgrade() -> None:
    for table in (
        "episode_listen",
        "podcast_subscription",
        "podcast_feed_token",
        "podcast_completion",
        "episode",
        "podcast",
    ):
        op.drop_table(table)
