"""admin accounts, sessions and tokens; the audit log hash-chained

Revision ID: 0014_admin_accounts
Revises: 0012_catalog_version
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base
from models.audit import GENESIS, chain_hash, field_digest, plain_details

revision: str = "0014_admin_accounts"
down_revision: str | Sequence[str] | None = "0012_catalog_version"
branch_labels: str | Sequence[str] | None = None
# The audit log it chains was made by 0003 (another branch).
depends_on: str | Sequence[str] | None = "0003_identity"

UTC = models.base.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
CHAIN_COLUMNS = ("actor_digest", "subject_digest", "prev_hash", "row_hash")


def upgrade() -> None:
    op.create_table(
        "admin_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("disabled_at", UTC, nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTC, nullable=True),
        sa.Column("last_login_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_account")),
        sa.UniqueConstraint("email", name=op.f("uq_admin_account_email")),
    )
    op.create_table(
        "admin_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["admin_account.id"],
            name=op.f("fk_admin_session_account_id_admin_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_session")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_admin_session_id_hash")),
    )
    op.create_index(
        op.f("ix_admin_session_account_id"), "admin_session", ["account_id"], unique=False
    )
    op.create_table(
        "admin_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_used_at", UTC, nullable=True),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["admin_account.id"],
            name=op.f("fk_admin_token_account_id_admin_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_token_token_hash")),
    )
    op.create_index(op.f("ix_admin_token_account_id"), "admin_token", ["account_id"], unique=False)
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor_salt", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("subject_salt", sa.String(length=32), nullable=True))
        for name in CHAIN_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=64), nullable=True))
    last_id, last_hash = _chain_existing_rows()
    op.bulk_insert(
        sa.table(
            "audit_chain_head",
            sa.column("id", sa.Integer()),
            sa.column("last_id", sa.Integer()),
            sa.column("last_hash", sa.String()),
        ),
        [{"id": 1, "last_id": last_id, "last_hash": last_hash}],
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        for name in CHAIN_COLUMNS:
            batch_op.alter_column(name, existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_log_row_hash"), ["row_hash"])


def _chain_existing_rows() -> tuple[int, str]:
    """Entries written before the chain existed join it in id order (as they stand today)."""
    conn = op.get_bind()
    log = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("created_at", UTC),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("details", JSON),
        sa.column("actor_salt", sa.String()),
        sa.column("subject_salt", sa.String()),
        *(sa.column(name, sa.String()) for name in CHAIN_COLUMNS),
    )
    prev, last_id = GENESIS, 0
    rows = conn.execute(
        sa.select(log.c.id, log.c.created_at, log.c.actor, log.c.action, log.c.subject)
        .add_columns(log.c.details)
        .order_by(log.c.id)
    ).all()
    for row in rows:
        actor_salt, subject_salt = secrets.token_hex(16), secrets.token_hex(16)
        actor_digest = field_digest(actor_salt, row.actor)
        subject_digest = field_digest(subject_salt, row.subject)
        row_hash = chain_hash(
            prev_hash=prev,
            created_at=row.created_at,
            action=row.action,
            actor_digest=actor_digest,
            subject_digest=subject_digest,
            details=plain_details(row.details),
        )
        conn.execute(
            log.update()
            .where(log.c.id == row.id)
            .values(
                actor_salt=actor_salt,
                subject_salt=subject_salt,
                actor_digest=actor_digest,
                subject_digest=subject_digest,
                prev_hash=prev,
                row_hash=row_hash,
            )
        )
        prev, last_id = row_hash, row.id
    return last_id, prev


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_log_row_hash"), type_="unique")
        for name in (*CHAIN_COLUMNS, "subject_salt", "actor_salt"):
            batch_op.drop_column(name)
    op.drop_table("audit_chain_head")
    op.drop_index(op.f("ix_admin_token_account_id"), table_name="admin_token")
    op.drop_table("admin_token")
    op.drop_index(op.f("ix_admin_session_account_id"), table_name="admin_session")
    op.drop_table("admin_session")
    op.drop_table("admin_account")
