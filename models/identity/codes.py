"""One-time codes: sending one (cool-downs, caps, one open verification per member),
checking it (locks, the hourly cap on wrong codes), and their retention.

Codes are kept only as keyed hashes bound to the member and channel account that asked."""

from __future__ import annotations

import datetime as dt
import enum
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import otp_limits
from models.identity.tables import (
    CLOSED,
    LOCKED,
    PENDING,
    VERIFIED,
    OtpChallenge,
    get_verified_phone,
)
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
    await _refuse_while_held(session, member_id=member_id, limits=limits, now=now)
    challenge = await _open_challenge(
        session, member_id=member_id, account_id=account_id, phone_hash=phone_hash, now=now
    )
    if challenge is not None and challenge.sends >= MAX_SENDS:
        raise VerificationRefused(Refusal.TOO_MANY_SENDS, challenge_id=challenge.id)
    await _refuse_while_cooling(
        session, member_id=member_id, phone_hash=phone_hash, challenge=challenge, now=now
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
        challenge = await _start_challenge(
            session,
            vault=vault,
            member_id=member_id,
            account_id=account_id,
            phone=phone,
            phone_hash=phone_hash,
            now=now,
        )
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


async def _refuse_while_held(
    session: AsyncSession, *, member_id: int, limits: OtpLimits, now: dt.datetime
) -> None:
    """No text message while the member is locked out, or for a code that could not be
    checked anyway (the hourly cap on wrong codes)."""
    locked = await _active_lock(session, member_id=member_id, now=now)
    if locked is not None:
        raise VerificationRefused(Refusal.LOCKED, wait=locked - now)
    wait, _ = await wrong_codes_wait(
        session, member_id=member_id, limit=limits.wrong_codes_hour, now=now
    )
    if wait is not None:
        raise VerificationRefused(Refusal.TOO_MANY_WRONG, wait=wait)


async def _open_challenge(
    session: AsyncSession, *, member_id: int, account_id: int, phone_hash: str, now: dt.datetime
) -> OtpChallenge | None:
    """This member's and account's open verification of the number, from the last hour."""
    return await session.scalar(
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


async def _refuse_while_cooling(
    session: AsyncSession,
    *,
    member_id: int,
    phone_hash: str,
    challenge: OtpChallenge | None,
    now: dt.datetime,
) -> None:
    """The cool-down between two texts to one number, whoever asked for them."""
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


async def _start_challenge(
    session: AsyncSession,
    *,
    vault: PiiVault,
    member_id: int,
    account_id: int,
    phone: str,
    phone_hash: str,
    now: dt.datetime,
) -> OtpChallenge:
    """A new verification; one open per member: a new number or channel closes the old one."""
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
    return challenge


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
