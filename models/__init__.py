"""SQLAlchemy tables and the rules over them. Imports nothing from bot/handlers/notifications."""

from models.base import Base
from models.conversation import ConversationState
from models.inbound import InboundEvent
from models.members import ChannelAccount, Member
from models.simulator import SimulatorMessage

__all__ = [
    "Base",
    "ChannelAccount",
    "ConversationState",
    "InboundEvent",
    "Member",
    "SimulatorMessage",
]
