"""SQLAlchemy tables and the rules over them. Imports nothing from bot/handlers/notifications."""

from models.accounts import AdminAccount, AdminSession, AdminToken
from models.audit import AuditChainHead, AuditLog
from models.base import Base
from models.broadcasts import Broadcast, BroadcastLink
from models.campaigns import (
    Campaign,
    CampaignAttempt,
    CampaignClaim,
    CampaignDraw,
    VoucherCode,
)
from models.conversation import ConversationState
from models.courses import CatalogVersion, Course, CoursePasswordAttempt, SavedCourse, SearchLog
from models.identity import CivilServant, OtpChallenge, OtpSend, VerifiedPhone
from models.inbound import InboundEvent, InboundWorker
from models.learning import (
    Completion,
    MandatoryRequirement,
    ReminderDigest,
    ReminderPoint,
    ReminderSnooze,
)
from models.members import ChannelAccount, Member
from models.outbox import ChannelPause, OutboxMessage
from models.podcasts import (
    Episode,
    EpisodeListen,
    FeedToken,
    Podcast,
    PodcastCompletion,
    PodcastSubscription,
)
from models.rollups import (
    CampaignFunnel,
    ChannelActivity,
    ChannelWeek,
    ComplianceRollup,
    CourseRequirement,
    ReminderEffect,
    RequirementProgress,
    RollupWatermark,
    SearchRollup,
    TopicHours,
)
from models.simulator import SimulatorMessage
from models.telegram_files import TelegramFile

__all__ = [
    "AdminAccount",
    "AdminSession",
    "AdminToken",
    "AuditChainHead",
    "AuditLog",
    "Base",
    "Broadcast",
    "BroadcastLink",
    "Campaign",
    "CampaignAttempt",
    "CampaignClaim",
    "CampaignDraw",
    "CampaignFunnel",
    "CatalogVersion",
    "ChannelAccount",
    "ChannelActivity",
    "ChannelPause",
    "ChannelWeek",
    "CivilServant",
    "Completion",
    "ComplianceRollup",
    "ConversationState",
    "Course",
    "CoursePasswordAttempt",
    "CourseRequirement",
    "Episode",
    "EpisodeListen",
    "FeedToken",
    "InboundEvent",
    "InboundWorker",
    "MandatoryRequirement",
    "Member",
    "OtpChallenge",
    "OtpSend",
    "OutboxMessage",
    "Podcast",
    "PodcastCompletion",
    "PodcastSubscription",
    "ReminderDigest",
    "ReminderEffect",
    "ReminderPoint",
    "ReminderSnooze",
    "RequirementProgress",
    "RollupWatermark",
    "SavedCourse",
    "SearchLog",
    "SearchRollup",
    "SimulatorMessage",
    "TelegramFile",
    "TopicHours",
    "VerifiedPhone",
    "VoucherCode",
]
