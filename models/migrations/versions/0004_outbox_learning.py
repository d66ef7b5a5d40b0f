"""outbox and channel pauses; mandatory requirements, completions, reminder digests, snoozes;
member.quiet_hours

Revision ID: 0004_outbox_learning
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0004_outbox_learning"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("notifications",)
depends_on: str | Sequence[str] | None = None

UTC = models.base.UTCDateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    # A member's own quiet window, "HH:MM-HH:MM" in Asia/Taipei; NULL: the default window.
    op.add_column("member", sa.Column("quiet_hours", sa.String(length=11), nullable=True))

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("proactive", sa.Boolean(), nullable=False),
        sa.Column("replies", _json(), nullable=False),
        sa.Column("body_hash", sa.String(length=32), nullable=False),
        sa.Column("not_before", UTC, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("claimed_by", sa.String(length=36), nullable=True),
        sa.Column("claimed_at", UTC, nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("retry_key", sa.String(length=36), nullable=True),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_outbox_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["channel_account.id"],
            name=op.f("fk_outbox_account_id_channel_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_key")),
    )
    op.create_index(op.f("ix_outbox_member_id"), "outbox", ["member_id"])
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["priority", "not_before", "id"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_outbox_leased",
        "outbox",
        ["lease_until"],
        postgresql_where=sa.text("status = 'sending'"),
        sqlite_where=sa.text("status = 'sending'"),
    )
    op.create_index(
        "ix_outbox_retry_key",
        "outbox",
        ["retry_key"],
        postgresql_where=sa.text("retry_key IS NOT NULL"),
        sqlite_where=sa.text("retry_key IS NOT NULL"),
    )

    op.create_table(
        "channel_pause",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("paused_until", UTC, nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_pause")),
    )

    op.create_table(
        "mandatory_requirement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("title_en", sa.String(length=100), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("categories", _json(), nullable=False),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("course_ids", _json(), nullable=False),
        sa.Column("agencies", _json(), nullable=False),
        sa.Column("deadline", sa.String(length=5), nullable=False),
        sa.Column("cadence_days", _json(), nullable=False),
        sa.Column("overdue_every_days", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mandatory_requirement")),
        sa.UniqueConstraint("code", name=op.f("uq_mandatory_requirement_code")),
    )

    op.create_table(
        "completion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person", sa.String(length=80), nullable=False),
        sa.Column("employee_id", sa.String(length=64), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("course_id", sa.String(length=48), nullable=False),
        sa.Column("completed_at", UTC, nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("imported_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_completion_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_completion")),
        sa.UniqueConstraint("person", "course_id", "day", name=op.f("uq_completion_person")),
    )
    op.create_index(op.f("ix_completion_employee_id"), "completion", ["employee_id"])
    op.create_index(op.f("ix_completion_member_id"), "completion", ["member_id"])
    op.create_index(op.f("ix_completion_completed_at"), "completion", ["completed_at"])

    op.create_table(
        "reminder_digest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("outbox_key", sa.String(length=160), nullable=False),
        sa.Column("open_requirements", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_reminder_digest_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_digest")),
        sa.UniqueConstraint("member_id", "day", name=op.f("uq_reminder_digest_member_id")),
    )

    op.create_table(
        "reminder_point",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requirement_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("point", sa.String(length=10), nullable=False),
        sa.Column("digest_day", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["requirement_id"],
            ["mandatory_requirement.id"],
            name=op.f("fk_reminder_point_requirement_id_mandatory_requirement"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_reminder_point_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_point")),
        sa.UniqueConstraint(
            "requirement_id", "member_id", "point", name=op.f("uq_reminder_point_requirement_id")
        ),
    )
    op.create_index(op.f("ix_reminder_point_member_id"), "reminder_point", ["member_id"])

    op.create_table(
        "reminder_snooze",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("until", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_reminder_snooze_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_reminder_snooze")),
    )


def downgrade() -> None:
    op.drop_table("reminder_snooze")
    op.drop_index(op.f("ix_reminder_point_member_id"), table_name="reminder_point")
    op.drop_table("reminder_point")
    op.drop_table("reminder_digest")
    op.drop_index(op.f("ix_completion_completed_at"), table_name="completion")
    op.drop_index(op.f("ix_completion_member_id"), table_name="completion")
    op.drop_index(op.f("ix_completion_employee_id"), table_name="completion")
    op.drop_table("completion")
    op.drop_table("mandatory_requirement")
    op.drop_table("channel_pause")
    op.drop_index("ix_outbox_retry_key", table_name="outbox")
    op.drop_index("ix_outbox_leased", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_index(op.f("ix_outbox_member_id"), table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_column("quiet_hours")
