"""The dispatcher: claims due outbox rows, sends them within the platforms' limits, records
every outcome. Any number of these may run (in-process under `make run`, or `edoor worker`
on several machines); the outbox's claims and leases keep them from sending a row twice.

- LINE: identical messages go out as multicast calls of at most 500 people, others as push;
  every call carries an X-Line-Retry-Key stored with (or derived from) the rows, so a retry
  after a crash or a 5xx reuses it and LINE answers 409 (already accepted) instead of sending
  again. "Monthly limit reached" pauses LINE for every worker and alerts the admins.
- Telegram: one chat at a time, about 30 messages/s overall and 1/s per chat (shared through
  Redis when REDIS_URL is set); 429 pauses Telegram sends for `retry_after`. Each row is marked
  sent in its own commit right after its call, so a crash can repeat at most that one call.
- Quiet hours are checked again at send time; a member who blocked the bot is marked
  unreachable and their other channel (if any) takes the message.

The parts: `core` (the Dispatcher: claim, screen, plan, record), `line` (LINE's calls and
retry keys), `chats` (Telegram and other chats, one at a time) and `common` (settings, the
report, rate limits, outcomes).
"""

from __future__ import annotations

from notifications.dispatcher.chats import CHAT_MEMORY, ChatStrategy
from notifications.dispatcher.common import DispatcherConfig, DrainReport, Outcome, RateLimits
from notifications.dispatcher.core import Dispatcher, build_dispatcher, run_worker
from notifications.dispatcher.line import (
    BATCH_FLOOR,
    PREPARED_MEMORY,
    KeyedSender,
    LineStrategy,
    LineUnit,
    PreparingSender,
)

__all__ = [
    "BATCH_FLOOR",
    "CHAT_MEMORY",
    "PREPARED_MEMORY",
    "ChatStrategy",
    "Dispatcher",
    "DispatcherConfig",
    "DrainReport",
    "KeyedSender",
    "LineStrategy",
    "LineUnit",
    "Outcome",
    "PreparingSender",
    "RateLimits",
    "build_dispatcher",
    "run_worker",
]
