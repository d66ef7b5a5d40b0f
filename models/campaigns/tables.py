"""Campaign tables: a campaign, its voucher codes, claims (and draw entries), attempts, draws.

One prize per real person is held by the database itself: a claim is unique per campaign and
claimant (the member at the time of the claim) and per campaign and phone hash, each with the
claim's number `seq` (1..per_person). A code belongs to at most one claim.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

INSTANT, DRAW = "instant", "draw"

# voucher_code.status
FREE, TAKEN, VOIDED = "free", "taken", "revoked"

# campaign_claim.status
WON = "won"  # a code was handed out
ENTERED = "entered"  # a draw entry, waiting for the draw
DRAWN = "drawn"  # drawn as a winner, to claim in chat before claim_until
LAPSED = "lapsed"  # drawn but not claimed in time (its prize goes to the redraw)
REVIEW = "review"  # flagged for an auditor: no code until approved
REJECTED = "rejected"  # refused on review
REVOKED = "revoked"  # taken back; its code is never handed out again


class Campaign(Base):
    """A prize campaign, as its campaign file describes it (the file itself is kept in `spec`)."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime] = mapped_column(index=True)
    mode: Mapped[str] = mapped_column(String(8), default=INSTANT)
    per_person: Mapped[int] = mapped_column(default=1)
    claim_days: Mapped[int] = mapped_column(default=7)  # draw winners claim within this
    rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prize: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class VoucherCode(Base):
    __tablename__ = "voucher_code"
    __table_args__ = (
        UniqueConstraint("campaign_id", "code"),
        Index("ix_voucher_code_free", "campaign_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(12), default=FREE)
    source: Mapped[str] = mapped_column(String(12), default="generated")  # or "imported"
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime]


class CampaignClaim(Base):
    """A claim (instant) or an entry (draw) of one person in one campaign."""

    __tablename__ = "campaign_claim"
    __table_args__ = (
        UniqueConstraint("campaign_id", "claimant_id", "seq", name="uq_campaign_claim_claimant"),
        UniqueConstraint("campaign_id", "phone_hash", "seq", name="uq_campaign_claim_phone"),
        Index("ix_campaign_claim_status", "campaign_id", "status"),
        Index("ix_campaign_claim_block", "campaign_id", "block_hash", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    # The member now (follows account links; NULL once they erased their data) ...
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), index=True, default=None
    )
    # ... and the member who claimed: the unique key of "one per person". It never changes
    # but when that member erases their data: then it becomes a negative pseudonym (see
    # claims.forget_member), never a member's id.
    claimant_id: Mapped[int]
    seq: Mapped[int] = mapped_column(default=1)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    # Keyed hash of the number without its last two digits: a run of claims from one block
    # of consecutive numbers (a SIM farm) shares it.
    block_hash: Mapped[str] = mapped_column(String(64))
    phone_masked: Mapped[str] = mapped_column(String(24))  # 0912-***-678, never the whole
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12))
    flag: Mapped[str | None] = mapped_column(String(32), default=None)
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("voucher_code.id", ondelete="SET NULL"), unique=True, default=None
    )
    claimed_at: Mapped[dt.datetime]
    won_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    claim_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    draw_round: Mapped[int | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoke_reason: Mapped[str | None] = mapped_column(Text, default=None)


class CampaignAttempt(Base):
    """Every claim tap and its outcome: refusals by reason, and the rate limits."""

    __tablename__ = "campaign_attempt"
    __table_args__ = (
        Index("ix_campaign_attempt_outcome", "campaign_id", "outcome"),
        Index("ix_campaign_attempt_member", "member_id", "created_at"),
        Index("ix_campaign_attempt_phone", "phone_hash", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), default=None
    )
    phone_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    outcome: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[dt.datetime]


class CampaignDraw(Base):
    """One round of a draw: the seed, the entries it drew from and the winners, so that an
    auditor can run it again and get the same winners."""

    __tablename__ = "campaign_draw"
    __table_args__ = (UniqueConstraint("campaign_id", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    round: Mapped[int]
    seed: Mapped[str] = mapped_column(String(64))
    entries: Mapped[list[Any]] = mapped_column()  # claim ids, in the order drawn from
    winners: Mapped[list[Any]] = mapped_column()  # claim ids
    prizes: Mapped[int]
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]


__all__ = [
    "DRAW",
    "DRAWN",
    "ENTERED",
    "FREE",
    "INSTANT",
    "LAPSED",
    "REJECTED",
    "REVIEW",
    "REVOKED",
    "TAKEN",
    "VOIDED",
    "WON",
    "Campaign",
    "CampaignAttempt",
    "CampaignClaim",
    "CampaignDraw",
    "VoucherCode",
]
