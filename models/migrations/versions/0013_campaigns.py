"""campaigns: campaigns, voucher codes, claims and entries, attempts, draws

Revision ID: 0013_campaigns
Revises: 0012_catalog_version
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import JSONType, UTCDateTime

revision: str = "0013_campaigns"
down_revision: str | Sequence[str] | None = "0012_catalog_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("title_en", sa.String(200), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("per_person", sa.Integer(), nullable=False),
        sa.Column("claim_days", sa.Integer(), nullable=False),
        sa.Column("rule", JSONType, nullable=False),
        sa.Column("prize", JSONType, nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("slug", name=op.f("uq_campaign_slug")),
    )
    op.create_index(op.f("ix_campaign_ends_at"), "campaign", ["ends_at"])
    op.create_table(
        "voucher_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("redeemed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_voucher_code_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_code")),
        sa.UniqueConstraint("campaign_id", "code", name=op.f("uq_voucher_code_campaign_id")),
    )
    op.create_index("ix_voucher_code_free", "voucher_code", ["campaign_id", "status", "id"])
    op.create_table(
        "campaign_claim",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("claimant_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("phone_hash", sa.String(64), nullable=False),
        sa.Column("block_hash", sa.String(64), nullable=False),
        sa.Column("phone_masked", sa.String(24), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("flag", sa.String(32), nullable=True),
        sa.Column("code_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("won_at", UTCDateTime(), nullable=True),
        sa.Column("claim_until", UTCDateTime(), nullable=True),
        sa.Column("draw_round", sa.Integer(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_campaign_claim_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_campaign_claim_member_id_member"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["code_id"],
            ["voucher_code.id"],
            name=op.f("fk_campaign_claim_code_id_voucher_code"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_claim")),
        sa.UniqueConstraint("code_id", name=op.f("uq_campaign_claim_code_id")),
        sa.UniqueConstraint("campaign_id", "claimant_id", "seq", name="uq_campaign_claim_claimant"),
        sa.UniqueConstraint("campaign_id", "phone_hash", "seq", name="uq_campaign_claim_phone"),
    )
    op.create_index(op.f("ix_campaign_claim_member_id"), "campaign_claim", ["member_id"])
    op.create_index(op.f("ix_campaign_claim_phone_hash"), "campaign_claim", ["phone_hash"])
    op.create_index("ix_campaign_claim_status", "campaign_claim", ["campaign_id", "status"])
    op.create_index(
        "ix_campaign_claim_block", "campaign_claim", ["campaign_id", "block_hash", "claimed_at"]
    )
    op.create_table(
        "campaign_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("phone_hash", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_campaign_attempt_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_campaign_attempt_member_id_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_attempt")),
    )
    op.create_index("ix_campaign_attempt_outcome", "campaign_attempt", ["campaign_id", "outcome"])
    op.create_index("ix_campaign_attempt_member", "campaign_attempt", ["member_id", "created_at"])
    op.create_index("ix_campaign_attempt_phone", "campaign_attempt", ["phone_hash", "created_at"])
    op.create_table(
        "campaign_draw",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("entries", JSONType, nullable=False),
        sa.Column("winners", JSONType, nullable=False),
        sa.Column("prizes", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_campaign_draw_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_draw")),
        sa.UniqueConstraint("campaign_id", "round", name=op.f("uq_campaign_draw_campaign_id")),
    )


def downgrade() -> None:
    op.drop_table("campaign_draw")
    op.drop_table("campaign_attempt")
    op.drop_table("campaign_claim")
    op.drop_table("voucher_code")
    op.drop_index(op.f("ix_campaign_ends_at"), table_name="campaign")
    op.drop_table("campaign")
