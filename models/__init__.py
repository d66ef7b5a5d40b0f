"""SQLAlchemy tables and the rules over them. Imports nothing from bot/handlers/notifications."""

from models.base import Base
from models.broadcasts import Broadcast, BroadcastLink
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
from models.simulator import SimulatorMessage
from models.telegram_files import TelegramFile

__all__ = [
    "AuditLog",
    "Base",
    "Broadcast",
    "BroadcastLink",
    "CatalogVersion",
    "ChannelAccount",
    "ChannelPause",
    "CivilServant",
    "Completion",
    "ConversationState",
    "Course",
    "CoursePasswordAttempt",
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
    "ReminderPoint",
    "ReminderSnooze",
    "SavedCourse",
    "SearchLog",
    "SimulatorMessage",
    "TelegramFile",
    "VerifiedPhone",
]
