"""SQLAlchemy tables and the rules over them. Imports nothing from bot/handlers/notifications."""

from models.base import Base
from models.conversation import ConversationState
from models.courses import Course, SearchLog
from models.identity import AuditLog, CivilServant, OtpChallenge, OtpSend, VerifiedPhone
from models.inbound import InboundEvent
from models.members import ChannelAccount, Member
from models.podcasts import (
    Episode,
    EpisodeListen,
    FeedToken,
    Podcast,
    PodcastCompletion,
    PodcastSubscription,
)
from models.simulator import SimulatorMessage

__all__ = [
    "AuditLog",
    "Base",
    "ChannelAccount",
    "CivilServant",
    "ConversationState",
    "Course",
    "Episode",
    "EpisodeListen",
    "FeedToken",
    "InboundEvent",
    "Member",
    "OtpChallenge",
    "OtpSend",
    "Podcast",
    "PodcastCompletion",
    "PodcastSubscription",
    "SearchLog",
    "SimulatorMessage",
    "VerifiedPhone",
]
