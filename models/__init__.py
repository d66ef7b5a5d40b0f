"""SQLAlchemy tables and the rules over them. Imports nothing from bot/handlers/notifications."""

from models.base import Base
from models.conversation import ConversationState
from models.courses import CatalogVersion, Course, CoursePasswordAttempt, SavedCourse, SearchLog
from models.identity import AuditLog, CivilServant, OtpChallenge, OtpSend, VerifiedPhone
from models.inbound import InboundEvent
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
    "AuditLog",
    "Base",
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
]
