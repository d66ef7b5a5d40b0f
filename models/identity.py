"""Who is who: verified phone numbers, one-time codes, the civil-servant roster, account links.

Rules over a session (keyword-only, never committing). A phone number is never stored or
compared in plaintext: rows keep it encrypted (PiiVault) next to its keyed hash, and codes
are kept only as keyed hashes bound to the member and channel account that asked.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    delete,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models import otp_limits
from models.audit import AuditLog, record_audit
from models.base import Base
from models.members import ChannelAccount, Member
from models.otp_limits import OtpLimits, OtpSend
from models.pii import PiiVault

CODE_TTL = dt.timedelta(minutes=10)
LOCK_TIME = dt.timedelta(minutes=15)
RESEND_COOLDOWN = dt.timedelta(seconds=60)
MAX_CHECKS = 5
MAX_SENDS = 5
HOUR = dt.timedelta(hours=1)
# Wrong codes per member in an hour over all their verifications: cancelling or starting
# again opens a new verification with five fresh checks, so without this cap the guesses
# would be bounded only by the SMS caps. (Never per number: a stranger guessing wrong must
# not lock the number's owner out; guesses at one number are bounded by its SMS caps, as
# each verification has its own code.)
MAX_WRONG_CODES_HOUR = OtpLimits.wrong_codes_hour
DEFAULT_LIMITS = OtpLimits()

# otp_challenge.status
PENDING, VERIFIED, LOCKED, CLOSED = "pending", "verified", "locked", "closed"


# -- tables ------------------------------------------------------------------------------------
class VerifiedPhone(Base):
    """A member's verified number: one number per member, one member per number."""

    __tablename__ = "verified_phone"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), unique=True)
    phone_hash: Mapped[str] = mapped_column(String(64), unique=True)
    phone_sealed: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(16))  # "sms" or "telegram_contact"
    channel: Mapped[str] = mapped_column(String(16))
    verified_at: Mapped[dt.datetime]


class OtpChallenge(Base):
    """One verification: a number, the member and account that asked, and the current code."""

    __tablename__ = "otp_challenge"
    __table_args__ = (Index("ix_otp_challenge_member_status", "member_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_account.id", ondelete="CASCADE"))
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_sealed: Mapped[str] = mapped_column(Text)
    # Keyed hash of the current code, salted per challenge; cleared once used.
    code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    salt: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    sends: Mapped[int] = mapped_column(default=0)
    checks: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime]
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime]
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    verified_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CivilServant(Base):
    """A roster row from the training office; linked to the member who verified its mobile."""

    __tablename__ = "civil_servant"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(64), unique=True)
    name_sealed: Mapped[str] = mapped_column(Text)
    agency: Mapped[str] = mapped_column(String(200), index=True)
    email_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_sealed: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), unique=True, default=None
    )
    linked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    imported_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


def phone_subject(phone_hash: str) -> str:
    return f"phone:{phone_hash}"


def sms_inbox_prefix(vault: PiiVault, phone: str) -> str:
    """Every simulated inbox of one number starts with this (delete-my-data erases them)."""
    return "sms:" + vault.lookup_hash(phone)[:30] + ":"


def sms_inbox_key(vault: PiiVault, phone: str, *, requester: str) -> str:
    """The simulator's phone-inbox key for a number as one simulated person sees it (dev SMS):
    derived from keyed hashes of the number and of who asked for the code, never the number
    itself, and short enough for simulator_message.user_key. Binding it to the requester
    means the inbox shows a code only to the simulator session that asked for it."""
    return sms_inbox_prefix(vault, phone) + vault.lookup_hash("requester:" + requester)[:29]


# -- results -------------------------------------------------------------------------------------
class Refusal(enum.StrEnum):
    """Why a code was not sent or not accepted; each has a message in both languages."""

    ALREADY_VERIFIED = "already_verified"
    COOLDOWN = "cooldown"
    COOLDOWN_OTHER = "cooldown_other"  # the code in flight is someone else's
    LOCKED = "locked"
    TOO_MANY_SENDS = "too_many_sends"
    RATE_PHONE = "rate_phone"
    RATE_MEMBER = "rate_member"
    RATE_PREFIX = "rate_prefix"
    RATE_GLOBAL = "rate_global"
    NO_CHALLENGE = "no_challenge"
    EXPIRED = "expired"
    USED = "used"
    WRONG_CODE = "wrong_code"
    TOO_MANY_WRONG = "too_many_wrong"


class VerificationRefused(Exception):
    """An expected refusal; `wait` says how long until trying again makes sense."""

    def __init__(
        self,
        reason: Refusal,
        *,
        wait: dt.timedelta | None = None,
        remaining: int | None = None,
        challenge_id: int | None = None,
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.wait = wait
        self.remaining = remaining
        self.challenge_id = challenge_id


@dataclass(frozen=True)
class IssuedCode:
    """A fresh code to send (held only in memory until it is in the text message)."""

    challenge: OtpChallenge
    code: str

    @property
    def reference(self) -> str:
        return f"otp-{self.challenge.id}-{self.challenge.sends}"


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    ALREADY_VERIFIED = "already_verified"
    OWNED_BY_OTHER = "owned_by_other"  # offer to link the two accounts


@dataclass(frozen=True)
class VerificationResult:
    outcome: Outcome
    phone_hash: str
    owner_member_id: int | None = None  # for OWNED_BY_OTHER
    civil_servant: bool = False
    replaced_previous: bool = False


# -- codes ---------------------------------------------------------------------------------------
def new_code() -> str:
    """Six digits from the operating system's CSPRNG."""
    return f"{secrets.randbelow(1_000_000):06d}"


def _code_hash(vault: PiiVault, challenge: OtpChallenge, code: str) -> str:
    # Keyed (a bare hash of six digits is reversed by trying all million) and bound to
    # the challenge, member and channel account that asked.
    message = f"otp:v1:{challenge.salt}:{challenge.member_id}:{challenge.account_id}:{code}"
    return vault.lookup_hash(message)


def _later(a: dt.datetime | None, b: dt.datetime) -> bool:
    return a is not None and a > b


# -- queries -------------------------------------------------------------------------------------
async def get_verified_phone(session: AsyncSession, *, member_id: int) -> VerifiedPhone | None:
    return await session.scalar(select(VerifiedPhone).where(VerifiedPhone.member_id == member_id))


async def find_phone_owner(
    session: AsyncSession, *, vault: PiiVault, phone: str
) -> VerifiedPhone | None:
    """The verified-phone row for a number (E.164), looked up by keyed hash."""
    return await session.scalar(
        select(VerifiedPhone).where(VerifiedPhone.phone_hash == vault.lookup_hash(phone))
    )


async def get_civil_servant(session: AsyncSession, *, member_id: int) -> CivilServant | None:
    return await session.scalar(select(CivilServant).where(CivilServant.member_id == member_id))


async def get_challenge(
    session: AsyncSession, *, challenge_id: int, member_id: int, account_id: int
) -> OtpChallenge | None:
    """A challenge, only for the member and account it is bound to."""
    return await session.scalar(
        select(OtpChallenge).where(
            OtpChallenge.id == challenge_id,
            OtpChallenge.member_id == member_id,
            OtpChallenge.account_id == account_id,
        )
    )


async def _active_lock(
    session: AsyncSession, *, member_id: int, now: dt.datetime
) -> dt.datetime | None:
    """Until when this member's locked verification holds them (any number): the lock stops
    the one who guessed wrong, not the number, whose owner may verify it meanwhile."""
    return await session.scalar(
        select(func.max(OtpChallenge.locked_until)).where(
            OtpChallenge.member_id == member_id, OtpChallenge.locked_until > now
        )
    )


def _free_at(rows: list[tuple[dt.datetime, int]], limit: int) -> dt.datetime | None:
    """When the wrong codes of these challenges ((counted until, checks), oldest first) fall
    below `limit`; None when they are below it already."""
    total = sum(checks for _, checks in rows)
    for until, checks in rows:
        if total < limit:
            break
        total -= checks
        if total < limit:
            return until
    return None


async def wrong_codes_wait(
    session: AsyncSession, *, member_id: int, limit: int, now: dt.datetime
) -> tuple[dt.timedelta | None, int]:
    """(how long until this member may check a code again, or None when they may now; wrong
    codes left this hour), over every verification of the member, whatever the number.

    A challenge's wrong codes were all typed before its code expired, so they count until an
    hour after `expires_at` (an hour after the last guess at the earliest, 70 minutes at most):
    a closed or replaced challenge keeps counting, whatever ended it.
    """
    rows = (
        await session.execute(
            select(OtpChallenge.expires_at, OtpChallenge.checks)
            .where(
                OtpChallenge.member_id == member_id,
                OtpChallenge.checks > 0,
                OtpChallenge.expires_at > now - HOUR,
            )
            .order_by(OtpChallenge.expires_at)
        )
    ).all()
    counted = [(until + HOUR, int(checks)) for until, checks in rows]
    left = limit - sum(c for _, c in counted)
    free_at = _free_at(counted, limit)
    return (free_at - now if free_at is not None else None), max(left, 0)


# -- sending a code ----------------------------------------------------------------------------
async def issue_code(
    session: AsyncSession,
    *,
    vault: PiiVault,
    member_id: int,
    account_id: int,
    phone: str,
    limits: OtpLimits,
    now: dt.datetime,
) -> IssuedCode:
    """Start a verification of `phone` (E.164) or resend its code; raises VerificationRefused.

    A new code replaces the previous one of the same verification; wrong-code checks carry
    over, so resending never buys more guesses. Run it in a savepoint and roll that back when
    the provider refuses the message: a failed send must not use up attempts or caps.
    """
    phone_hash = vault.lookup_hash(phone)
    mine = await get_verified_phone(session, member_id=member_id)
    if mine is not None and mine.phone_hash == phone_hash:
        raise VerificationRefused(Refusal.ALREADY_VERIFIED)
    locked = await _active_lock(session, member_id=member_id, now=now)
    if locked is not None:
        raise VerificationRefused(Refusal.LOCKED, wait=locked - now)
    # No text message for a code that could not be checked anyway.
    wait, _ = await wrong_codes_wait(
        session, member_id=member_id, limit=limits.wrong_codes_hour, now=now
    )
    if wait is not None:
        raise VerificationRefused(Refusal.TOO_MANY_WRONG, wait=wait)

    challenge = await session.scalar(
        select(OtpChallenge)
        .where(
            OtpChallenge.member_id == member_id,
            OtpChallenge.account_id == account_id,
            OtpChallenge.phone_hash == phone_hash,
            OtpChallenge.status == PENDING,
            OtpChallenge.created_at > now - HOUR,
        )
        .order_by(OtpChallenge.id.desc())
        .limit(1)
    )
    if challenge is not None and challenge.sends >= MAX_SENDS:
        raise VerificationRefused(Refusal.TOO_MANY_SENDS, challenge_id=challenge.id)

    last = (
        await session.execute(
            select(OtpSend.sent_at, OtpSend.member_id)
            .where(OtpSend.phone_hash == phone_hash)
            .order_by(OtpSend.sent_at.desc(), OtpSend.id.desc())
            .limit(1)
        )
    ).first()
    if last is not None and now - last.sent_at < RESEND_COOLDOWN:
        # Per number, whoever asked: say whose code is in flight, so that the answer is true
        # for the one who reads it (their own code, or someone else's verification).
        raise VerificationRefused(
            Refusal.COOLDOWN if last.member_id == member_id else Refusal.COOLDOWN_OTHER,
            wait=RESEND_COOLDOWN - (now - last.sent_at),
            challenge_id=challenge.id if challenge else None,
        )
    newcomer = await otp_limits.is_newcomer(
        session, member_id=member_id, vouched=mine is not None, limits=limits, now=now
    )
    block = otp_limits.prefix_hash(vault, phone, digits=limits.prefix_digits)
    capped = await otp_limits.check_send_caps(
        session,
        member_id=member_id,
        phone_hash=phone_hash,
        block_hash=block,
        newcomer=newcomer,
        limits=limits,
        now=now,
    )
    if capped is not None:
        raise VerificationRefused(Refusal(capped.reason), wait=capped.wait)

    if challenge is None:
        # One open verification per member: a new number or channel closes the old one.
        await session.execute(
            update(OtpChallenge)
            .where(OtpChallenge.member_id == member_id, OtpChallenge.status == PENDING)
            .values(status=CLOSED, code_hash=None)
        )
        challenge = OtpChallenge(
            member_id=member_id,
            account_id=account_id,
            phone_hash=phone_hash,
            phone_sealed=vault.encrypt(phone),
            salt=secrets.token_hex(16),
            status=PENDING,
            sends=0,
            checks=0,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
        session.add(challenge)
        await session.flush()
    code = new_code()
    challenge.code_hash = _code_hash(vault, challenge, code)
    challenge.sends += 1
    challenge.last_sent_at = now
    challenge.expires_at = now + CODE_TTL
    session.add(
        otp_limits.new_send(
            challenge_id=challenge.id,
            member_id=member_id,
            phone_hash=phone_hash,
            block_hash=block,
            newcomer=newcomer,
            now=now,
        )
    )
    await session.flush()
    return IssuedCode(challenge=challenge, code=code)


async def record_refused_send(
    session: AsyncSession,
    *,
    vault: PiiVault,
    member_id: int,
    phone: str,
    now: dt.datetime,
    limits: OtpLimits = DEFAULT_LIMITS,
) -> None:
    """The provider refused the number itself (invalid, landline, opted out). Nothing was
    delivered, but the attempt counts toward the cool-down and the hourly caps, or anyone
    could make us ask the provider about numbers without limit."""
    mine = await get_verified_phone(session, member_id=member_id)
    newcomer = await otp_limits.is_newcomer(
        session, member_id=member_id, vouched=mine is not None, limits=limits, now=now
    )
    session.add(
        otp_limits.new_send(
            challenge_id=None,
            member_id=member_id,
            phone_hash=vault.lookup_hash(phone),
            block_hash=otp_limits.prefix_hash(vault, phone, digits=limits.prefix_digits),
            newcomer=newcomer,
            now=now,
        )
    )
    await session.flush()


async def close_challenges(session: AsyncSession, *, member_id: int) -> None:
    """Cancel: any open verification of the member stops accepting codes."""
    await session.execute(
        update(OtpChallenge)
        .where(OtpChallenge.member_id == member_id, OtpChallenge.status == PENDING)
        .values(status=CLOSED, code_hash=None)
    )


# -- checking a code ---------------------------------------------------------------------------
async def check_code(
    session: AsyncSession,
    *,
    vault: PiiVault,
    challenge_id: int,
    member_id: int,
    account_id: int,
    code: str,
    now: dt.datetime,
    limits: OtpLimits = DEFAULT_LIMITS,
) -> OtpChallenge:
    """Accept the right code once; raises VerificationRefused otherwise.

    Five wrong codes lock the verification (and new ones for this member) for 15 minutes;
    `limits.wrong_codes_hour` wrong codes in an hour, over all verifications of the member,
    stop checks until the hour has passed (TOO_MANY_WRONG). Neither stops anyone else
    verifying the same number: their verification has its own code.
    An expired code does not count as a wrong guess.
    """
    challenge = await get_challenge(
        session, challenge_id=challenge_id, member_id=member_id, account_id=account_id
    )
    if challenge is None or challenge.status == CLOSED:
        raise VerificationRefused(Refusal.NO_CHALLENGE)
    if challenge.status == VERIFIED:
        raise VerificationRefused(Refusal.USED)
    if _later(challenge.locked_until, now):
        assert challenge.locked_until is not None
        raise VerificationRefused(Refusal.LOCKED, wait=challenge.locked_until - now)
    if challenge.status == LOCKED or challenge.checks >= MAX_CHECKS:
        raise VerificationRefused(Refusal.NO_CHALLENGE)  # lock over: start again

    async def hourly() -> tuple[dt.timedelta | None, int]:
        return await wrong_codes_wait(
            session,
            member_id=challenge.member_id,
            limit=limits.wrong_codes_hour,
            now=now,
        )

    wait, _ = await hourly()
    if wait is not None:
        # Not even compared: a right guess past the cap would defeat it. (Before "expired":
        # a new code would not help while the cap holds.)
        raise VerificationRefused(Refusal.TOO_MANY_WRONG, wait=wait)
    if challenge.expires_at <= now or challenge.code_hash is None:
        raise VerificationRefused(Refusal.EXPIRED, challenge_id=challenge.id)
    typed = "".join(ch for ch in code if ch.isdigit())
    if len(typed) == 6 and hmac.compare_digest(
        challenge.code_hash, _code_hash(vault, challenge, typed)
    ):
        challenge.status = VERIFIED
        challenge.code_hash = None
        challenge.verified_at = now
        return challenge
    challenge.checks += 1
    if challenge.checks >= MAX_CHECKS:
        challenge.status = LOCKED
        challenge.code_hash = None
        challenge.locked_until = now + LOCK_TIME
    await session.flush()
    wait, left = await hourly()
    if wait is not None and (challenge.status != LOCKED or wait > LOCK_TIME):
        # The hourly cap outlasts the lock: say the longer wait.
        raise VerificationRefused(Refusal.TOO_MANY_WRONG, wait=wait, challenge_id=challenge.id)
    if challenge.status == LOCKED:
        raise VerificationRefused(Refusal.LOCKED, wait=LOCK_TIME, challenge_id=challenge.id)
    raise VerificationRefused(
        Refusal.WRONG_CODE,
        remaining=min(MAX_CHECKS - challenge.checks, left),
        challenge_id=challenge.id,
    )


# -- recording a verified number ----------------------------------------------------------------
async def record_verified_phone(
    session: AsyncSession,
    *,
    vault: PiiVault,
    member_id: int,
    phone: str,
    method: str,
    channel: str,
    now: dt.datetime,
) -> VerificationResult:
    """Make `phone` the member's verified number, unless another member holds it.

    Safe against two members racing for one number: the unique hash decides, and the loser
    gets OWNED_BY_OTHER (an offer to link the accounts) instead of an error.
    """
    phone_hash = vault.lookup_hash(phone)
    owner = await session.scalar(
        select(VerifiedPhone).where(VerifiedPhone.phone_hash == phone_hash)
    )
    if owner is not None:
        if owner.member_id == member_id:
            return VerificationResult(Outcome.ALREADY_VERIFIED, phone_hash)
        return VerificationResult(Outcome.OWNED_BY_OTHER, phone_hash, owner.member_id)
    mine = await get_verified_phone(session, member_id=member_id)
    try:
        async with session.begin_nested():
            if mine is not None:
                await session.delete(mine)
                await session.flush()
            session.add(
                VerifiedPhone(
                    member_id=member_id,
                    phone_hash=phone_hash,
                    phone_sealed=vault.encrypt(phone),
                    method=method,
                    channel=channel,
                    verified_at=now,
                )
            )
            await session.flush()
    except IntegrityError:
        winner = await session.scalar(
            select(VerifiedPhone.member_id).where(VerifiedPhone.phone_hash == phone_hash)
        )
        if winner is None:
            raise
        return VerificationResult(Outcome.OWNED_BY_OTHER, phone_hash, winner)
    await record_audit(
        session,
        actor=f"member:{member_id}",
        action="phone.verified",
        subject=phone_subject(phone_hash),
        details={"method": method, "channel": channel},
        now=now,
    )
    status = await sync_civil_servant(session, member_id=member_id, now=now)
    return VerificationResult(
        Outcome.VERIFIED, phone_hash, civil_servant=status, replaced_previous=mine is not None
    )


async def sync_civil_servant(session: AsyncSession, *, member_id: int, now: dt.datetime) -> bool:
    """Recompute a member's civil-servant status from their verified number and the roster.

    The status holds while an active roster row carries the member's verified number; such
    a row is linked to at most one member.
    """
    member = await session.get(Member, member_id)
    if member is None:
        return False
    phone = await get_verified_phone(session, member_id=member_id)
    linked = await get_civil_servant(session, member_id=member_id)
    if linked is not None and (phone is None or linked.phone_hash != phone.phone_hash):
        linked.member_id, linked.linked_at = None, None
        await session.flush()
        linked = None
    if linked is None and phone is not None:
        linked = await session.scalar(
            select(CivilServant)
            .where(
                CivilServant.phone_hash == phone.phone_hash,
                CivilServant.active.is_(True),
                CivilServant.member_id.is_(None),
            )
            .order_by(CivilServant.id)
            .limit(1)
        )
        if linked is not None:
            linked.member_id, linked.linked_at = member_id, now
            await session.flush()
    status = linked is not None and linked.active
    if member.is_civil_servant != status:
        member.is_civil_servant = status
        await record_audit(
            session,
            actor="system",
            action="civil_servant.granted" if status else "civil_servant.removed",
            subject=f"member:{member_id}",
            details={"employee_id": linked.employee_id} if linked is not None else {},
            now=now,
        )
    return status


# -- linking two accounts of one person --------------------------------------------------------
def _member_references(sync_conn: Any) -> list[tuple[str, str, list[str]]]:
    """(table, column, primary key) for every column that references member.id."""
    insp = inspect(sync_conn)
    out: list[tuple[str, str, list[str]]] = []
    for table in insp.get_table_names():
        for fk in insp.get_foreign_keys(table):
            if fk.get("referred_table") == "member" and len(fk["constrained_columns"]) == 1:
                pk = insp.get_pk_constraint(table).get("constrained_columns") or []
                out.append((table, fk["constrained_columns"][0], list(pk)))
    return out


# Tables whose member rows the merge handles itself (the rest are moved generically).
_OWN_TABLES = {"verified_phone", "otp_challenge", "otp_send", "civil_servant"}


async def merge_members(
    session: AsyncSession, *, keep_id: int, absorb_id: int, now: dt.datetime
) -> None:
    """Make two members one: `absorb`'s channel accounts and data move to `keep`.

    Every table that references member.id (including other features' tables) is moved;
    a row that would duplicate one of `keep`'s (a unique constraint says so) is dropped.
    The caller must refresh ORM objects that pointed at `absorb` (e.g. the context's account).
    """
    if keep_id == absorb_id:
        return
    keep = await session.get(Member, keep_id)
    absorb = await session.get(Member, absorb_id)
    if keep is None or absorb is None:
        raise LookupError("member to link no longer exists")
    # `keep` holds the number; `absorb`'s own number and roster link give way.
    await session.execute(delete(VerifiedPhone).where(VerifiedPhone.member_id == absorb_id))
    await session.execute(
        update(CivilServant)
        .where(CivilServant.member_id == absorb_id)
        .values(member_id=None, linked_at=None)
    )
    await session.execute(delete(OtpChallenge).where(OtpChallenge.member_id == absorb_id))
    await session.execute(
        update(OtpSend).where(OtpSend.member_id == absorb_id).values(member_id=keep_id)
    )
    conn = await session.connection()
    references = await conn.run_sync(_member_references)
    for table, column, pk in references:
        if table in _OWN_TABLES:
            continue
        await _move_rows(session, table, column, pk, keep_id=keep_id, absorb_id=absorb_id)
    keep.marketing_opt_in = keep.marketing_opt_in and absorb.marketing_opt_in
    await session.flush()
    await session.execute(delete(Member).where(Member.id == absorb_id))
    session.expunge(absorb)
    await sync_civil_servant(session, member_id=keep_id, now=now)
    await record_audit(
        session,
        actor=f"member:{keep_id}",
        action="member.linked",
        subject=f"member:{keep_id}",
        details={"absorbed_member_id": absorb_id},
        now=now,
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _move_rows(
    session: AsyncSession, table: str, column: str, pk: list[str], *, keep_id: int, absorb_id: int
) -> None:
    # Names come from the database's own catalogue, quoted; values are bound.
    move = text(f"UPDATE {_q(table)} SET {_q(column)} = :keep WHERE {_q(column)} = :absorb")  # noqa: S608
    try:
        async with session.begin_nested():
            await session.execute(move, {"keep": keep_id, "absorb": absorb_id})
        return
    except IntegrityError:
        if not pk:
            raise
    # Some rows collide with keep's (same course, same podcast, ...): move one by one.
    cols = ", ".join(_q(c) for c in pk)
    rows = (
        await session.execute(
            text(f"SELECT {cols} FROM {_q(table)} WHERE {_q(column)} = :absorb"),  # noqa: S608
            {"absorb": absorb_id},
        )
    ).all()
    where = " AND ".join(f"{_q(c)} = :pk{i}" for i, c in enumerate(pk))
    for row in rows:
        keys = {f"pk{i}": value for i, value in enumerate(row)}
        try:
            async with session.begin_nested():
                await session.execute(
                    text(f"UPDATE {_q(table)} SET {_q(column)} = :keep WHERE {where}"),  # noqa: S608
                    {"keep": keep_id, **keys},
                )
        except IntegrityError:
            await session.execute(text(f"DELETE FROM {_q(table)} WHERE {where}"), keys)  # noqa: S608


async def linked_accounts(session: AsyncSession, *, member_id: int) -> list[ChannelAccount]:
    """The member's channel accounts, oldest first."""
    rows = await session.scalars(
        select(ChannelAccount)
        .where(ChannelAccount.member_id == member_id)
        .order_by(ChannelAccount.id)
    )
    return list(rows.all())


async def purge_otp_history(session: AsyncSession, *, now: dt.datetime) -> int:
    """Drop finished challenges and send records older than a day (retention job)."""
    cutoff = now - dt.timedelta(days=1)
    await session.execute(delete(OtpSend).where(OtpSend.sent_at < cutoff))
    result = await session.execute(
        delete(OtpChallenge).where(
            OtpChallenge.created_at < cutoff,
            or_(OtpChallenge.locked_until.is_(None), OtpChallenge.locked_until < now),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = [
    "AuditLog",  # re-exported: models.audit owns it (other modules import it from here)
    "CivilServant",
    "IssuedCode",
    "OtpChallenge",
    "OtpLimits",
    "OtpSend",
    "Outcome",
    "Refusal",
    "VerificationRefused",
    "VerificationResult",
    "VerifiedPhone",
    "record_audit",  # re-exported from models.audit
]
