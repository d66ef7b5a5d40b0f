"""How many verification texts may go out, to whom, for whom: the send ledger and its caps.

Every text message with a code (and every number the provider refused) is one `otp_send` row;
the caps are counted over those rows in a sliding hour (`sent_at > now - 1 h`), in the same
transaction that issues the code, so they hold across processes and a provider failure that
rolls the savepoint back uses up nothing. (A Redis moving window, as the dispatcher uses for
platform rate limits, could not be rolled back with the savepoint, nor run on `now=`.)

The policy, after Twilio Verify's programmable rate limits and Fraud Guard (keys per user
and per number, velocity per number prefix, more trust for users with history):

- **Who asks.** A *newcomer* is a member created less than `newcomer_age` ago with nothing
  that vouches for them (no verified number, no roster status): a throwaway chat is one.
  Newcomers get `per_newcomer_hour` texts an hour instead of `per_member_hour`.
- **The global budget is spent on members with history first.** All texts together stop at
  `global_hour`; newcomers together stop at `newcomer_share` of it, so a swarm of new chats
  can use up only their share and the rest stays for members with history.
- **Per number.** `per_phone_hour` texts an hour to one number; newcomers together may use
  only `per_phone_newcomer_hour` of them, so strangers cannot use up a number's texts.
- **Per number block** (the first `prefix_digits` digits of the national number, e.g. 100
  consecutive Taiwan mobiles): `per_prefix_hour` texts an hour asked by newcomers. SMS
  pumping walks a range of numbers; a real person asks for one.

Wrong codes are counted per member, never per number (see models.identity): a stranger who
guesses wrong locks only themselves, and the number's owner still gets and uses a code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import ColumnElement, ForeignKey, String, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.members import Member
from models.pii import PiiVault

HOUR = dt.timedelta(hours=1)


class OtpSend(Base):
    """One text message sent (or refused by the provider for the number), for the cool-down
    and the hourly caps (SMS pumping)."""

    __tablename__ = "otp_send"

    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_id: Mapped[int | None] = mapped_column(
        ForeignKey("otp_challenge.id", ondelete="SET NULL"), default=None
    )
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), index=True, default=None
    )
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    # Keyed hash of the number's block (country code and first digits), for pumping.
    prefix_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    # Asked by a newcomer (see the module docstring): counted against their smaller budgets.
    newcomer: Mapped[bool] = mapped_column(default=False)
    sent_at: Mapped[dt.datetime] = mapped_column(index=True)


@dataclass(frozen=True)
class OtpLimits:
    """The caps (OTP_* settings); every count is over the last hour, sliding."""

    per_phone_hour: int = 5
    per_member_hour: int = 10
    global_hour: int = 1000
    wrong_codes_hour: int = 10  # per member, over all their verifications
    per_newcomer_hour: int = 4
    per_phone_newcomer_hour: int = 3
    per_prefix_hour: int = 10
    prefix_digits: int = 7
    newcomer_share: float = 0.3
    newcomer_age: dt.timedelta = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Capped:
    """A cap reached: which (a models.identity.Refusal value) and when a text may go again."""

    reason: str  # "rate_phone", "rate_member", "rate_prefix", "rate_global"
    wait: dt.timedelta


def prefix_hash(vault: PiiVault, phone: str, *, digits: int) -> str:
    """The keyed hash of a number's block: its country code and the first `digits` digits of
    its national number (E.164 in); the same for every number of the block."""
    number = phonenumbers.parse(phone)
    national = phonenumbers.national_significant_number(number)
    return vault.lookup_hash(f"otp-prefix:v1:+{number.country_code}:{national[:digits]}")


async def is_newcomer(
    session: AsyncSession,
    *,
    member_id: int,
    vouched: bool,
    limits: OtpLimits,
    now: dt.datetime,
) -> bool:
    """A member minutes or hours old whom nothing vouches for (`vouched`: a verified number
    already); a civil servant on the roster is never one."""
    if vouched:
        return False
    member = await session.get(Member, member_id)
    if member is None:
        return True
    if member.is_civil_servant:
        return False
    return member.created_at > now - limits.newcomer_age


async def _free_after(
    session: AsyncSession,
    conditions: tuple[ColumnElement[bool], ...],
    *,
    count: int,
    limit: int,
    now: dt.datetime,
) -> dt.timedelta:
    """How long until enough of the `count` matching sends of the last hour have left the
    sliding hour for one more under `limit`."""
    # The (count - limit + 1)-th oldest must leave the window first.
    oldest = await session.scalar(
        select(OtpSend.sent_at)
        .where(OtpSend.sent_at > now - HOUR, *conditions)
        .order_by(OtpSend.sent_at)
        .offset(max(count - limit, 0))
        .limit(1)
    )
    if oldest is None:  # pragma: no cover - the count said there were rows
        return HOUR
    return max(oldest + HOUR - now, dt.timedelta(seconds=1))


async def check_send_caps(
    session: AsyncSession,
    *,
    member_id: int,
    phone_hash: str,
    block_hash: str,
    newcomer: bool,
    limits: OtpLimits,
    now: dt.datetime,
) -> Capped | None:
    """The first cap one more text to this number for this member would break, or None.

    Every count in one statement over the last hour (one index range on sent_at)."""
    checks: list[tuple[str, tuple[ColumnElement[bool], ...], int]] = [
        ("rate_phone", (OtpSend.phone_hash == phone_hash,), limits.per_phone_hour),
        (
            "rate_member",
            (OtpSend.member_id == member_id,),
            limits.per_newcomer_hour if newcomer else limits.per_member_hour,
        ),
    ]
    if newcomer:
        checks += [
            (
                "rate_phone",
                (OtpSend.phone_hash == phone_hash, OtpSend.newcomer.is_(True)),
                limits.per_phone_newcomer_hour,
            ),
            (
                "rate_prefix",
                (OtpSend.prefix_hash == block_hash, OtpSend.newcomer.is_(True)),
                limits.per_prefix_hour,
            ),
            (
                "rate_global",
                (OtpSend.newcomer.is_(True),),
                int(limits.global_hour * limits.newcomer_share),
            ),
        ]
    checks.append(("rate_global", (), limits.global_hour))
    counts = (
        await session.execute(
            select(
                *(
                    func.coalesce(func.sum(case((and_(*cond), 1), else_=0)), 0)
                    if cond
                    else func.count(OtpSend.id)
                    for _, cond, _ in checks
                )
            ).where(OtpSend.sent_at > now - HOUR)
        )
    ).one()
    for (reason, conditions, limit), count in zip(checks, counts, strict=True):
        if int(count) >= limit:
            wait = await _free_after(session, conditions, count=int(count), limit=limit, now=now)
            return Capped(reason, wait)
    return None


def new_send(
    *,
    challenge_id: int | None,
    member_id: int,
    phone_hash: str,
    block_hash: str,
    newcomer: bool,
    now: dt.datetime,
) -> OtpSend:
    """The ledger row for one text (the caller adds it to the session)."""
    return OtpSend(
        challenge_id=challenge_id,
        member_id=member_id,
        phone_hash=phone_hash,
        prefix_hash=block_hash,
        newcomer=newcomer,
        sent_at=now,
    )


__all__ = ["Capped", "OtpLimits", "OtpSend", "check_send_caps", "is_newcomer", "prefix_hash"]
