"""identity: verified phones, one-time codes, civil-servant roster, audit log

Revision ID: 0003_identity
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0003_identity"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("identity",)
depends_on: str | Sequence[str] | None = None

UTC = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    # Preferred reminder time ("HH:MM", Asia/Taipei), chosen in the settings menu.
    op.add_column("member", sa.Column("reminder_time", sa.String(length=5), nullable=True))
    op.create_table(
        "verified_phone",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("phone_sealed", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("verified_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_verified_phone_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verified_phone")),
        sa.UniqueConstraint("member_id", name=op.f("uq_verified_phone_member_id")),
        sa.UniqueConstraint("phone_hash", name=op.f("uq_verified_phone_phone_hash")),
    )
    op.create_table(
        "otp_challenge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("phone_sealed", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_sent_at", UTC, nullable=True),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("locked_until", UTC, nullable=True),
        sa.Column("verified_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["channel_account.id"],
            name=op.f("fk_otp_challenge_account_id_channel_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_otp_challenge_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_challenge")),
    )
    with op.batch_alter_table("otp_challenge", schema=None) as batch_op:
        batch_op.create_index(
            "ix_otp_challenge_member_status", ["member_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_otp_challenge_phone_hash"), ["phone_hash"], unique=False
        )

    op.create_table(
        "otp_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("sent_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["challenge_id"],
            ["otp_challenge.id"],
            name=op.f("fk_otp_send_challenge_id_otp_challenge"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_otp_send_member_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_send")),
    )
    with op.batch_alter_table("otp_send", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_otp_send_member_id"), ["member_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_otp_send_phone_hash"), ["phone_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_otp_send_sent_at"), ["sent_at"], unique=False)

    op.create_table(
        "civil_servant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.String(length=64), nullable=False),
        sa.Column("name_sealed", sa.Text(), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("email_sealed", sa.Text(), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("phone_sealed", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("linked_at", UTC, nullable=True),
        sa.Column("imported_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_civil_servant_member_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civil_servant")),
        sa.UniqueConstraint("employee_id", name=op.f("uq_civil_servant_employee_id")),
        sa.UniqueConstraint("member_id", name=op.f("uq_civil_servant_member_id")),
    )
    with op.batch_alter_table("civil_servant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_civil_servant_agency"), ["agency"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_civil_servant_phone_hash"), ["phone_hash"], unique=False
        )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_subject"), ["subject"], unique=False)


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("civil_servant")
    op.drop_table("otp_send")
    op.drop_table("otp_challenge")
    op.drop_table("verified_phone")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_column("reminder_time")
