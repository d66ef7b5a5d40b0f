"""The outbox: one row per recipient and message, for everything the bot says unasked.

Rows are written by handlers, jobs and imports (idempotent by `key`) and sent by the
dispatcher, which claims due rows with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
sends them and records the outcome. A row claimed by a worker that died is taken over when
its lease ends. LINE groups of identical messages carry a stored `retry_key`, so a retry of
the same group (after a crash or a 5xx) reuses the key and LINE answers 409, never sends
twice; such a group always moves as one unit (claimed, retried and marked together).

A broadcast's LINE recipients go in groups: one row per multicast of up to 500, its people
waiting under its key (`groups`).

The parts: `tables` (rows, statuses, priorities), `write` (enqueue, choose_targets),
`claim` (claim_batch, retry keys, the outcomes of a send), `groups` (LINE broadcast groups)
and `maintenance` (channel pauses, cancel_pending, figures, retention). Importers use
`models.outbox` as before.
"""

from __future__ import annotations

from models.outbox.claim import (
    Claimed,
    assign_retry_keys,
    backoff,
    claim_batch,
    clear_retry_keys,
    defer,
    group_key,
    mark_failed,
    mark_retry,
    mark_sent,
    mark_sent_ids,
    paused_channels,
    reroute,
    row_key,
    withdraw,
)
from models.outbox.groups import dissolve as dissolve_groups
from models.outbox.groups import is_group
from models.outbox.groups import people as group_people
from models.outbox.maintenance import (
    cancel_pending,
    pause_channel,
    purge_finished,
    resume_channel,
    stats,
)
from models.outbox.tables import (
    CANCELLED,
    FAILED,
    GROUPED,
    MAX_GROUP,
    PENDING,
    PRIORITY_BROADCAST,
    PRIORITY_EPISODE,
    PRIORITY_REMINDER,
    PRIORITY_REPLY,
    SENDING,
    SENT,
    ChannelPause,
    OutboxMessage,
    ids_match,
)
from models.outbox.write import NewMessage, Target, body_hash, choose_targets, enqueue, enqueue_many

__all__ = [
    "CANCELLED",
    "FAILED",
    "GROUPED",
    "MAX_GROUP",
    "PENDING",
    "PRIORITY_BROADCAST",
    "PRIORITY_EPISODE",
    "PRIORITY_REMINDER",
    "PRIORITY_REPLY",
    "SENDING",
    "SENT",
    "ChannelPause",
    "Claimed",
    "NewMessage",
    "OutboxMessage",
    "Target",
    "assign_retry_keys",
    "backoff",
    "body_hash",
    "cancel_pending",
    "choose_targets",
    "claim_batch",
    "clear_retry_keys",
    "defer",
    "dissolve_groups",
    "enqueue",
    "enqueue_many",
    "group_key",
    "group_people",
    "ids_match",
    "is_group",
    "mark_failed",
    "mark_retry",
    "mark_sent",
    "mark_sent_ids",
    "pause_channel",
    "paused_channels",
    "purge_finished",
    "reroute",
    "resume_channel",
    "row_key",
    "stats",
    "withdraw",
]
