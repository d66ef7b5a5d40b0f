"""The audit log: append-only and hash-chained, so an auditor can trust what it says.

Each row stores the hash of the row before it (`prev_hash`) and its own (`row_hash`), over
its time, action, details and keyed digests of its actor and subject. Rows are only ever
appended (`record_audit`); the one change allowed afterwards is pseudonymisation on a
delete-my-data request (`pseudonymise`), which replaces an actor or subject that names the
person by a pseudonym and drops that field's digest key: the chain still verifies (the
digest stays) and the person can no longer be linked to it (the key is gone).

Appends are serialised by the chain-head row (one row, id 1): when a unit of work commits,
an UPDATE of it takes the row lock on PostgreSQL and the write lock on SQLite before the
head is read, so concurrent writers extend the chain one after the other and it stays
linear (rows get their ids under the lock, so id order is chain order). `verify_chain` walks the
rows in order and names the first broken link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import UTC, Base

GENESIS = "0" * 64
HEAD_ID = 1
PSEUDONYM = re.compile(r"^erased:[0-9a-f]{16}$")


class AuditLog(Base):
    """Who did what to whom; details hold ids and hashes, never personal data in clear."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))  # "member:12", "admin:alice", "system"
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128), index=True)  # "member:12", "phone:<hash>"
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Keys of the two digests (hex); NULL once the field was pseudonymised.
    actor_salt: Mapped[str | None] = mapped_column(String(32))
    subject_salt: Mapped[str | None] = mapped_column(String(32))
    actor_digest: Mapped[str] = mapped_column(String(64))
    subject_digest: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(Base):
    """The end of the chain (one row): the lock appends take, and the last row's hash, so
    that a row removed from the end is noticed too."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


def plain_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """Details as plain JSON values (what the database gives back, so hashes agree)."""
    return json.loads(json.dumps(details or {}, ensure_ascii=False, default=str))


def field_digest(salt: str, value: str) -> str:
    return hmac.new(bytes.fromhex(salt), value.encode("utf-8"), hashlib.sha256).hexdigest()


def _moment(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def chain_hash(
    *,
    prev_hash: str,
    created_at: dt.datetime,
    action: str,
    actor_digest: str,
    subject_digest: str,
    details: dict[str, Any],
) -> str:
    """The hash of one row over the previous row's hash and this row's content."""
    payload = json.dumps(
        {
            "prev": prev_hash,
            "at": _moment(created_at),
            "action": action,
            "actor": actor_digest,
            "subject": subject_digest,
            "details": details,
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _lock_head(session: Session) -> str:
    """Take the chain's lock (held until the transaction ends) and return the last hash."""
    # One round trip: the no-op UPDATE takes the lock and hands back the hash it guards.
    last = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(last_id=AuditChainHead.last_id)
        .returning(AuditChainHead.last_hash)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if last is None:
        # A database made without the migration's head row (never in practice): start it.
        session.add(AuditChainHead(id=HEAD_ID, last_id=0, last_hash=GENESIS))
        session.flush()
        return GENESIS
    return str(last)


async def record_audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    now: dt.datetime,
) -> AuditLog:
    """Append one audit entry (ids and hashes only) to the caller's unit of work.

    The entry joins the chain when the session commits: only then is the chain's lock
    taken, as the last step of the transaction, so it is held for the shortest time and
    always after every other lock (no deadlock between two audited transactions). A
    rolled-back transaction appends nothing.
    """
    clean = plain_details(details)
    actor_salt, subject_salt = secrets.token_hex(16), secrets.token_hex(16)
    entry = AuditLog(
        created_at=now,
        actor=actor,
        action=action,
        subject=subject,
        details=clean,
        actor_salt=actor_salt,
        subject_salt=subject_salt,
        actor_digest=field_digest(actor_salt, actor),
        subject_digest=field_digest(subject_salt, subject),
    )
    # In a transaction from now on, so that closing the session without a commit rolls it
    # back and forgets the entry (see _forget_pending).
    await session.connection()
    session.info.setdefault(_PENDING, []).append(entry)
    return entry


_PENDING = "edoor.audit.pending"


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    """Link the unit of work's new entries to the end of the chain, under its lock."""
    pending: list[AuditLog] = session.info.pop(_PENDING, [])
    if not pending:
        return
    prev = _lock_head(session)
    for entry in pending:
        entry.prev_hash = prev
        entry.row_hash = prev = chain_hash(
            prev_hash=prev,
            created_at=entry.created_at,
            action=entry.action,
            actor_digest=entry.actor_digest,
            subject_digest=entry.subject_digest,
            details=entry.details,
        )
        session.add(entry)
    session.flush()
    session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(last_id=pending[-1].id, last_hash=prev)
        .execution_options(synchronize_session=False)
    )


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


# -- pseudonymisation (delete-my-data) ----------------------------------------------------------
def new_pseudonym() -> str:
    return f"erased:{secrets.token_hex(8)}"


async def pseudonymise(
    session: AsyncSession,
    *,
    names: Sequence[str],
    pseudonym: str,
    keep_actions: Sequence[str] = (),
) -> int:
    """Replace every actor or subject in `names` by `pseudonym` and drop that field's digest
    key; rows whose action starts with one of `keep_actions` keep their subject. Returns the
    rows changed. The only change ever made to an audit row."""
    if not PSEUDONYM.match(pseudonym):
        raise ValueError("a pseudonym looks like erased:<16 hex digits>")
    changed = 0
    kept = tuple(keep_actions)
    targets = list(names)
    if not targets:
        return 0
    rows = await session.scalars(
        select(AuditLog).where((AuditLog.actor.in_(targets)) | (AuditLog.subject.in_(targets)))
    )
    # Entries of this unit of work not yet committed (they join the chain at commit) too.
    for row in [*rows.all(), *session.info.get(_PENDING, [])]:
        touched = False
        if row.actor in targets:
            row.actor, row.actor_salt, touched = pseudonym, None, True
        if row.subject in targets and not row.action.startswith(kept):
            row.subject, row.subject_salt, touched = pseudonym, None, True
        changed += touched
    await session.flush()
    return changed


# -- verification ---------------------------------------------------------------------------------
@dataclass
class ChainReport:
    rows: int = 0
    pseudonymised: int = 0
    broken_at: int | None = None  # the id of the first row that does not verify
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.reason is None


def _field_ok(value: str, salt: str | None, digest: str) -> bool:
    if salt is None:
        return bool(PSEUDONYM.match(value))
    return hmac.compare_digest(field_digest(salt, value), digest)


async def verify_chain(session: AsyncSession, *, batch: int = 2000) -> ChainReport:
    """Walk the chain from the first row; stop at the first broken link."""
    report = ChainReport()
    expected, last = GENESIS, 0
    while True:
        # Plain rows, not entities: a long chain does not fill the session's identity map.
        rows = (
            await session.execute(
                select(*AuditLog.__table__.columns)
                .where(AuditLog.id > last)
                .order_by(AuditLog.id)
                .limit(batch)
            )
        ).all()
        if not rows:
            break
        for row in rows:
            report.rows += 1
            if row.actor_salt is None or row.subject_salt is None:
                report.pseudonymised += 1
            problem = None
            if row.prev_hash != expected:
                problem = "prev_hash is not the hash of the row before (a row removed or moved)"
            elif not _field_ok(row.actor, row.actor_salt, row.actor_digest):
                problem = "actor changed"
            elif not _field_ok(row.subject, row.subject_salt, row.subject_digest):
                problem = "subject changed"
            elif row.row_hash != chain_hash(
                prev_hash=row.prev_hash,
                created_at=row.created_at,
                action=row.action,
                actor_digest=row.actor_digest,
                subject_digest=row.subject_digest,
                details=plain_details(row.details),
            ):
                problem = "content changed (time, action or details)"
            if problem is not None:
                report.broken_at, report.reason = row.id, problem
                return report
            expected, last = row.row_hash, row.id
    head = (
        await session.execute(
            select(AuditChainHead.last_id, AuditChainHead.last_hash).where(
                AuditChainHead.id == HEAD_ID
            )
        )
    ).first()
    head_hash = head.last_hash if head is not None else GENESIS
    if head_hash != expected:
        report.broken_at = head.last_id if head is not None else None
        report.reason = "the chain head names a row that is missing (rows removed at the end)"
    return report


# -- reading ------------------------------------------------------------------------------------
async def list_audit(
    session: AsyncSession,
    *,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditLog]:
    """Newest first; `action` matches a prefix ("courses." finds every course change)."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        query = query.where(AuditLog.action.startswith(action, autoescape=True))
    if subject:
        query = query.where(AuditLog.subject == subject)
    if since is not None:
        query = query.where(AuditLog.created_at >= since)
    if until is not None:
        query = query.where(AuditLog.created_at < until)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list((await session.scalars(query)).all())


__all__ = [
    "GENESIS",
    "AuditChainHead",
    "AuditLog",
    "ChainReport",
    "chain_hash",
    "list_audit",
    "new_pseudonym",
    "pseudonymise",
    "record_audit",
    "verify_chain",
]
