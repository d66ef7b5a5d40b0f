"""Prize campaigns: tables, the campaign file, eligibility, claims, draws and audits."""

from models.campaigns.tables import (
    Campaign,
    CampaignAttempt,
    CampaignClaim,
    CampaignDraw,
    VoucherCode,
)

__all__ = ["Campaign", "CampaignAttempt", "CampaignClaim", "CampaignDraw", "VoucherCode"]
