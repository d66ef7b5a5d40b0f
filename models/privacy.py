"""Personal data done right: erase a member on request, and rotate the PII key.

Neither commits: the caller (a handler's unit of work, or the CLI) commits once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.audit import new_pseudonym, pseudonymise
from models.campaigns.claims import forget_member
from models.campaigns.tables import CampaignClaim
from models.conversation import ConversationState
from models.identity import (
    CivilServant,
    OtpChallenge,
    OtpSend,
    VerifiedPhone,
    phone_subject,
    record_audit,
    sms_inbox_prefix,
)
from models.inbound import InboundEvent
from models.members import ChannelAccount, Member
from models.pii import PiiVault
from models.simulator import SimulatorMessage

# Audit entries auditors need after an erasure (prize claims); they keep only hashes.
KEPT_AUDIT_PREFIXES = ("prize.", "claim.", "campaign.")
_SEALED = re.compile(r"^[0-9a-f]{8}:gAAAA[A-Za-z0-9_\-=]+$")
_HANDLED = {
    "member",
    "channel_account",
    "conversation_state",
    "verified_phone",
    "otp_challenge",
    "otp_send",
    "civil_servant",
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _references(sync_conn: Any, target: str) -> list[tuple[str, str, bool]]:
    """(table, column, nullable) for every single-column foreign key to `target`.id."""
    insp = inspect(sync_conn)
    out: list[tuple[str, str, bool]] = []
    for table in insp.get_table_names():
        nullable = {c["name"]: bool(c["nullable"]) for c in insp.get_columns(table)}
        for fk in insp.get_foreign_keys(table):
            cols = fk["constrained_columns"]
            if fk.get("referred_table") == target and len(cols) == 1:
                out.append((table, cols[0], nullable[cols[0]]))
    return out


@dataclass
class ErasureReport:
    accounts: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    rows_anonymised: dict[str, int] = field(default_factory=dict)
    audit_pseudonymised: int = 0


async def erase_member(
    session: AsyncSession,
    *,
    vault: PiiVault,
    member_id: int,
    now: dt.datetime,
    keep_event: tuple[str, str] | None = None,
) -> ErasureReport:
    """Erase everything personal about a member ("刪除我的資料").

    Kept: anonymous aggregates (rows of other features whose member reference can be set to
    NULL are kept with NULL), the audit log (append-only: entries naming the member are
    pseudonymised; those of prize claims keep their hashed subject), and the
    training office's roster row (unlinked; the office owns it). Everything else that names
    the member, their accounts, numbers or conversations is deleted. `keep_event` is the
    (channel, event_id) being processed: its payload is scrubbed, not deleted, so the
    caller can still finish it.
    """
    report = ErasureReport()
    accounts = await _accounts_of(session, member_id=member_id)
    report.accounts = len(accounts)
    account_ids = [a.id for a in accounts]
    # Every number this member verified or tried, for the dev SMS inbox and audit hashes.
    phones = await _numbers_of(session, vault=vault, member_id=member_id)
    hashes = {vault.lookup_hash(p) for p in phones}

    await _erase_conversations(session, accounts, vault=vault, phones=phones, keep_event=keep_event)
    report.rows_anonymised["otp_send"] = await _erase_identity(session, member_id=member_id)
    # The audit log is append-only: its rows about the member are pseudonymised (one
    # pseudonym for all of them, so an auditor still sees they concern one person), never
    # deleted. Prize entries keep their subject (a keyed hash) for the auditors.
    subjects = [f"member:{member_id}", *(phone_subject(h) for h in hashes)]
    report.audit_pseudonymised = await pseudonymise(
        session, names=subjects, pseudonym=new_pseudonym(), keep_actions=KEPT_AUDIT_PREFIXES
    )
    # Prize claims stay for the auditors (masked number and its hash), without the member.
    await forget_member(session, member_id=member_id)
    await _erase_references(session, report, account_ids=account_ids, member_id=member_id)
    await _delete_member(session, member_id=member_id, accounts=accounts)
    await record_audit(
        session,
        actor="system",
        action="member.erased",
        subject=f"member:{member_id}",
        details={"accounts": report.accounts},
        now=now,
    )
    return report


async def _accounts_of(session: AsyncSession, *, member_id: int) -> list[ChannelAccount]:
    return list(
        (await session.scalars(select(ChannelAccount).where(ChannelAccount.member_id == member_id)))
        .unique()
        .all()
    )


async def _numbers_of(session: AsyncSession, *, vault: PiiVault, member_id: int) -> set[str]:
    """Every number the member verified or asked a code for, in plaintext (E.164)."""
    sealed = list(
        (
            await session.scalars(
                select(VerifiedPhone.phone_sealed).where(VerifiedPhone.member_id == member_id)
            )
        ).all()
    ) + list(
        (
            await session.scalars(
                select(OtpChallenge.phone_sealed).where(OtpChallenge.member_id == member_id)
            )
        ).all()
    )
    return {vault.decrypt(s) for s in sealed}


async def _erase_conversations(
    session: AsyncSession,
    accounts: list[ChannelAccount],
    *,
    vault: PiiVault,
    phones: set[str],
    keep_event: tuple[str, str] | None,
) -> None:
    """Conversations and raw events that carry the person's platform ids, and the dev SMS
    inboxes of their numbers."""
    for account in accounts:
        if account.channel == "simulator":
            # Scrubbed rather than deleted: the web chat reads "messages after id N", and
            # SQLite would reuse deleted ids for the replies still to come.
            await session.execute(
                update(SimulatorMessage)
                .where(SimulatorMessage.user_key == account.external_id)
                .values(reply={"kind": "text", "text": "-"})
            )
        # By the indexed person column (the sender when no one else is named), not by
        # scanning payloads: every event someone sent, also in groups, carries them there.
        rows = await session.scalars(
            select(InboundEvent).where(
                InboundEvent.channel == account.channel,
                InboundEvent.actor == account.external_id,
            )
        )
        for event in rows.all():
            if keep_event == (event.channel, event.event_id):
                event.payload, event.sender, event.actor = {"erased": True}, None, None
            else:
                await session.delete(event)
    for phone in phones:
        inboxes = sms_inbox_prefix(vault, phone)
        await session.execute(
            delete(SimulatorMessage).where(
                SimulatorMessage.user_key.startswith(inboxes, autoescape=True)
            )
        )


async def _erase_identity(session: AsyncSession, *, member_id: int) -> int:
    """The identity tables: numbers and codes deleted, the roster row unlinked, the SMS send
    records kept for the caps without anything that names the person; returns those."""
    await session.execute(delete(VerifiedPhone).where(VerifiedPhone.member_id == member_id))
    await session.execute(delete(OtpChallenge).where(OtpChallenge.member_id == member_id))
    result = await session.execute(
        update(OtpSend)
        .where(OtpSend.member_id == member_id)
        .values(member_id=None, phone_hash=None, prefix_hash=None, challenge_id=None)
    )
    await session.execute(
        update(CivilServant)
        .where(CivilServant.member_id == member_id)
        .values(member_id=None, linked_at=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _erase_references(
    session: AsyncSession, report: ErasureReport, *, account_ids: list[int], member_id: int
) -> None:
    """Other features' rows: anonymise where the reference may be NULL, else delete."""
    conn = await session.connection()
    for target, ids in (("channel_account", account_ids), ("member", [member_id])):
        if not ids:
            continue
        refs = await conn.run_sync(_references, target)
        for table, column, nullable in refs:
            if table in _HANDLED or table == "audit_log":
                continue
            params = {f"i{n}": v for n, v in enumerate(ids)}
            where = f"{_q(column)} IN ({', '.join(':' + k for k in params)})"
            if nullable:
                sql = f"UPDATE {_q(table)} SET {_q(column)} = NULL WHERE {where}"  # noqa: S608
                res = await session.execute(text(sql), params)
                report.rows_anonymised[table] = int(res.rowcount or 0)  # type: ignore[attr-defined]
            else:
                sql = f"DELETE FROM {_q(table)} WHERE {where}"  # noqa: S608
                res = await session.execute(text(sql), params)
                report.rows_deleted[table] = int(res.rowcount or 0)  # type: ignore[attr-defined]


async def _delete_member(
    session: AsyncSession, *, member_id: int, accounts: list[ChannelAccount]
) -> None:
    """The member, their accounts and conversation steps; the session forgets them too."""
    account_ids = [a.id for a in accounts]
    if account_ids:
        await session.execute(
            delete(ConversationState).where(ConversationState.account_id.in_(account_ids))
        )
    await session.execute(delete(ChannelAccount).where(ChannelAccount.member_id == member_id))
    await session.execute(delete(Member).where(Member.id == member_id))
    for account in accounts:
        session.expunge(account)
    member = await session.get(Member, member_id)
    if member is not None:
        session.expunge(member)


# -- key rotation ------------------------------------------------------------------------------
@dataclass
class RotationReport:
    reencrypted: dict[str, int] = field(default_factory=dict)
    rehashed: dict[str, int] = field(default_factory=dict)
    # old hash -> new hash, for other features' tables that keep phone hashes.
    hash_map: dict[str, str] = field(default_factory=dict)


def _is_sealed(value: object) -> bool:
    return isinstance(value, str) and bool(_SEALED.match(value))


async def rotate_pii_key(
    session: AsyncSession, *, old: PiiVault, new: PiiVault, batch: int = 500
) -> RotationReport:
    """Re-encrypt every sealed value under `new`'s key and re-hash phone numbers with it.

    `new` must also hold the old key as a previous key (so it can read rows not yet done);
    rows already under the new key are skipped, so a rerun after a failure is harmless.
    Pending one-time codes become invalid (their hashes used the old key): people ask again.
    """
    report = RotationReport()
    prefix = new.current.key_id + ":"

    def reseal(value: str) -> str:
        return new.encrypt(new.decrypt(value))

    def rehash(sealed_value: str) -> str:
        phone = new.decrypt(sealed_value)
        old_hash, new_hash = old.lookup_hash(phone), new.lookup_hash(phone)
        report.hash_map[old_hash] = new_hash
        return new_hash

    async def each(model: Any, *columns: Any) -> Any:
        last = 0
        while True:
            rows = (
                await session.scalars(
                    select(model).where(model.id > last).order_by(model.id).limit(batch)
                )
            ).all()
            if not rows:
                return
            for row in rows:
                yield row
            last = rows[-1].id

    async for row in each(VerifiedPhone):
        if not row.phone_sealed.startswith(prefix):
            row.phone_hash = rehash(row.phone_sealed)
            row.phone_sealed = reseal(row.phone_sealed)
            _count(report.rehashed, "verified_phone")
    await session.flush()
    async for row in each(OtpChallenge):
        if not row.phone_sealed.startswith(prefix):
            row.phone_hash = rehash(row.phone_sealed)
            row.phone_sealed = reseal(row.phone_sealed)
            row.code_hash = None
            _count(report.rehashed, "otp_challenge")
    async for row in each(CivilServant):
        if not row.phone_sealed.startswith(prefix):
            row.phone_hash = rehash(row.phone_sealed)
            row.phone_sealed = reseal(row.phone_sealed)
            row.name_sealed = reseal(row.name_sealed)
            if row.email_sealed:
                row.email_sealed = reseal(row.email_sealed)
            _count(report.rehashed, "civil_servant")
    await session.flush()
    # Hashes kept without the number: mapped where we know it, else dropped (caps history).
    async for row in each(OtpSend):
        if row.phone_hash and row.phone_hash not in report.hash_map.values():
            row.phone_hash = report.hash_map.get(row.phone_hash)
            # A block's hash cannot be mapped (no number behind it): its count starts again.
            row.prefix_hash = None
            _count(report.rehashed, "otp_send")
    # Prize claims keep their number's hash for "one per phone": mapped where the number is
    # still known; a claim whose number is verified nowhere any more keeps its old hash.
    async for row in each(CampaignClaim):
        if row.phone_hash in report.hash_map:
            row.phone_hash = report.hash_map[row.phone_hash]
            _count(report.rehashed, "campaign_claim")
    # The audit log is append-only (and hash-chained): its entries keep the hash under the
    # key of their day; the rotation itself is recorded as a new entry by the caller.
    # Sealed values inside conversation steps (e.g. a number waiting for its code).
    states = (await session.scalars(select(ConversationState))).all()
    for state in states:
        data = dict(state.data)
        changed = {
            k: reseal(v) for k, v in data.items() if _is_sealed(v) and not v.startswith(prefix)
        }
        if changed:
            state.data = {**data, **changed}
            _count(report.reencrypted, "conversation_state")
    # Raw inbound events waiting to be processed.
    async for event in each(InboundEvent):
        if event.sealed is not None:
            event.sealed = new.encrypt_bytes(new.decrypt_bytes(event.sealed))
            _count(report.reencrypted, "inbound_event")
    await session.flush()
    return report


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def dump_report(report: RotationReport | ErasureReport) -> str:
    """A summary for the CLI (counts only; never hashes or values)."""
    data = {k: v for k, v in report.__dict__.items() if k != "hash_map"}
    return json.dumps(data, ensure_ascii=False, sort_keys=True)
