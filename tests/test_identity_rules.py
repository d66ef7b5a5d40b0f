"""Verification rules over a real database: codes, locks, cool-down, caps, ownership, links."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models.base import UTC
from models.db import create_sessionmaker
from models.identity import (
    AuditLog,
    CivilServant,
    OtpChallenge,
    OtpLimits,
    Outcome,
    Refusal,
    VerificationRefused,
    VerifiedPhone,
    check_code,
    issue_code,
    linked_accounts,
    merge_members,
    record_verified_phone,
)
from models.members import ChannelAccount, Member, ensure_account
from models.pii import PiiVault

MINUTE = dt.timedelta(minutes=1)
VAULT = PiiVault("test-pii-key-0123456789abcdef0123456789")
PHONE = "+886912345678"
OTHER = "+886987654321"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LIMITS = OtpLimits(per_phone_hour=5, per_member_hour=10, global_hour=1000)


async def account(session: AsyncSession, external_id: str, channel: str = "line") -> ChannelAccount:
    acc, _ = await ensure_account(session, channel=channel, external_id=external_id, now=T0)
    await session.flush()
    return acc


async def issue(
    session: AsyncSession,
    acc: ChannelAccount,
    phone: str = PHONE,
    *,
    now=T0,
    limits: OtpLimits = LIMITS,
):
    return await issue_code(
        session,
        vault=VAULT,
        member_id=acc.member_id,
        account_id=acc.id,
        phone=phone,
        limits=limits,
        now=now,
    )


async def check(
    session: AsyncSession, acc: ChannelAccount, challenge_id: int, code: str, *, now=T0
):
    return await check_code(
        session,
        vault=VAULT,
        challenge_id=challenge_id,
        member_id=acc.member_id,
        account_id=acc.id,
        code=code,
        now=now,
    )


async def age(session: AsyncSession, *accounts: ChannelAccount, days: int = 30) -> None:
    """Members with history: created long before T0 (not newcomers)."""
    for acc in accounts:
        acc.member.created_at = T0 - dt.timedelta(days=days)
    await session.flush()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_code_is_six_digits_stored_only_as_keyed_hash(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    issued = await issue(session, acc)
    await session.commit()
    assert len(issued.code) == 6
    assert issued.code.isdigit()
    row = await session.get(OtpChallenge, issued.challenge.id)
    assert row is not None
    values = [str(v) for v in row.__dict__.values()]
    assert not any(issued.code in v for v in values if len(v) < 20)
    assert all(PHONE not in v and "912345678" not in v for v in values)
    assert VAULT.decrypt(row.phone_sealed) == PHONE
    assert row.code_hash is not None
    assert len(row.code_hash) == 64
    ok = await check(session, acc, row.id, issued.code, now=T0 + dt.timedelta(minutes=9))
    assert ok.status == "verified"
    assert ok.code_hash is None


async def test_used_code_cannot_be_used_again(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    issued = await issue(session, acc)
    await check(session, acc, issued.challenge.id, issued.code)
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, issued.challenge.id, issued.code)
    assert info.value.reason is Refusal.USED


async def test_code_is_bound_to_member_and_account(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    other = await account(session, "T1", channel="telegram")
    issued = await issue(session, acc)
    with pytest.raises(VerificationRefused) as info:
        await check(session, other, issued.challenge.id, issued.code)
    assert info.value.reason is Refusal.NO_CHALLENGE


async def test_expired_code_is_refused_without_using_a_check(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    issued = await issue(session, acc)
    later = T0 + dt.timedelta(minutes=10, seconds=1)
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, issued.challenge.id, issued.code, now=later)
    assert info.value.reason is Refusal.EXPIRED
    assert issued.challenge.checks == 0
    # A resend re-arms the verification with a new code.
    again = await issue(session, acc, now=later)
    assert again.challenge.id == issued.challenge.id
    await check(session, acc, again.challenge.id, again.code, now=later)


async def test_five_wrong_codes_lock_for_fifteen_minutes(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    issued = await issue(session, acc)
    cid = issued.challenge.id
    for remaining in (4, 3, 2, 1):
        with pytest.raises(VerificationRefused) as info:
            await check(session, acc, cid, wrong(issued.code))
        assert info.value.reason is Refusal.WRONG_CODE
        assert info.value.remaining == remaining
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, cid, wrong(issued.code))
    assert info.value.reason is Refusal.LOCKED
    # Even the right code is refused now, and no new code can be had for this number.
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, cid, issued.code, now=T0 + dt.timedelta(minutes=1))
    assert info.value.reason is Refusal.LOCKED
    with pytest.raises(VerificationRefused) as info:
        await issue(session, acc, now=T0 + dt.timedelta(minutes=14))
    assert info.value.reason is Refusal.LOCKED
    assert info.value.wait == dt.timedelta(minutes=1)
    # The lock holds the one who guessed, not the number: its owner, on another account,
    # gets a code of their own meanwhile and it works.
    other = await account(session, "U2")
    owners = await issue(session, other, now=T0 + dt.timedelta(minutes=5))
    verified = await check(session, other, owners.challenge.id, owners.code, now=T0 + MINUTE * 5)
    assert verified.status == "verified"
    fresh = await issue(session, acc, OTHER, now=T0 + dt.timedelta(minutes=15, seconds=1))
    assert fresh.challenge.id != cid


async def test_resend_keeps_wrong_guesses_and_replaces_the_code(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    first = await issue(session, acc)
    for _ in range(3):
        with pytest.raises(VerificationRefused):
            await check(session, acc, first.challenge.id, wrong(first.code))
    second = await issue(session, acc, now=T0 + dt.timedelta(seconds=61))
    assert second.challenge.id == first.challenge.id
    assert second.challenge.checks == 3
    if second.code != first.code:
        with pytest.raises(VerificationRefused) as info:
            await check(session, acc, first.challenge.id, first.code)
        assert info.value.reason is Refusal.WRONG_CODE
        assert info.value.remaining == 1
    await check(session, acc, first.challenge.id, second.code)


async def test_resend_cooldown_is_per_phone_number(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    await issue(session, acc)
    with pytest.raises(VerificationRefused) as info:
        await issue(session, acc, now=T0 + dt.timedelta(seconds=20))
    assert info.value.reason is Refusal.COOLDOWN
    assert info.value.wait == dt.timedelta(seconds=40)
    other = await account(session, "U2")
    with pytest.raises(VerificationRefused) as info:
        await issue(session, other, now=T0 + dt.timedelta(seconds=30))
    # The same wait, told as what it is: the code in flight is not theirs.
    assert info.value.reason is Refusal.COOLDOWN_OTHER
    assert info.value.wait == dt.timedelta(seconds=30)
    # A different number is not held back by this one's cool-down.
    await issue(session, other, OTHER, now=T0 + dt.timedelta(seconds=30))
    await issue(session, acc, now=T0 + dt.timedelta(seconds=60))


async def test_at_most_five_sends_per_verification(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    await age(session, acc)
    roomy = OtpLimits(per_phone_hour=50, per_member_hour=50, global_hour=50)
    for i in range(5):
        await issue(session, acc, now=T0 + dt.timedelta(minutes=i), limits=roomy)
    with pytest.raises(VerificationRefused) as info:
        await issue(session, acc, now=T0 + dt.timedelta(minutes=6), limits=roomy)
    assert info.value.reason is Refusal.TOO_MANY_SENDS


async def test_hourly_caps_per_phone_member_and_global(session: AsyncSession) -> None:
    members = [await account(session, f"U{i}") for i in range(8)]
    await age(session, *members)
    # Per phone: five texts an hour to one number, whoever asks.
    for i in range(5):
        await issue(session, members[i], now=T0 + dt.timedelta(minutes=2 * i))
    with pytest.raises(VerificationRefused) as info:
        await issue(session, members[5], now=T0 + dt.timedelta(minutes=11))
    assert info.value.reason is Refusal.RATE_PHONE
    # A sliding hour: free again when the first text is an hour old.
    assert info.value.wait == dt.timedelta(minutes=49)
    await issue(session, members[5], now=T0 + dt.timedelta(minutes=61))

    # Per member: ten texts an hour, whatever the numbers.
    limits = OtpLimits(per_phone_hour=5, per_member_hour=3, global_hour=1000)
    acc = members[6]
    for i in range(3):
        await issue(
            session, acc, f"+88691100000{i}", now=T0 + dt.timedelta(minutes=i), limits=limits
        )
    with pytest.raises(VerificationRefused) as info:
        await issue(session, acc, "+886911000009", now=T0 + dt.timedelta(minutes=5), limits=limits)
    assert info.value.reason is Refusal.RATE_MEMBER

    # Global: the whole service.
    limits = OtpLimits(per_phone_hour=5, per_member_hour=10, global_hour=1)
    with pytest.raises(VerificationRefused) as info:
        await issue(
            session, members[7], "+886922000000", now=T0 + dt.timedelta(minutes=62), limits=limits
        )
    assert info.value.reason is Refusal.RATE_GLOBAL


async def test_failed_send_rolled_back_uses_up_nothing(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    savepoint = await session.begin_nested()
    await issue(session, acc)
    await savepoint.rollback()  # what the handler does when the provider fails
    # No cool-down, no send counted: the person can ask again at once.
    issued = await issue(session, acc, now=T0 + dt.timedelta(seconds=1))
    assert issued.challenge.sends == 1


async def test_number_belongs_to_one_member_and_the_other_is_offered_a_link(
    session: AsyncSession,
) -> None:
    a = await account(session, "U1")
    b = await account(session, "T1", channel="telegram")
    first = await record_verified_phone(
        session,
        vault=VAULT,
        member_id=a.member_id,
        phone=PHONE,
        method="sms",
        channel="line",
        now=T0,
    )
    assert first.outcome is Outcome.VERIFIED
    again = await record_verified_phone(
        session,
        vault=VAULT,
        member_id=a.member_id,
        phone=PHONE,
        method="sms",
        channel="line",
        now=T0,
    )
    assert again.outcome is Outcome.ALREADY_VERIFIED
    second = await record_verified_phone(
        session,
        vault=VAULT,
        member_id=b.member_id,
        phone=PHONE,
        method="telegram_contact",
        channel="telegram",
        now=T0,
    )
    assert second.outcome is Outcome.OWNED_BY_OTHER
    assert second.owner_member_id == a.member_id
    with pytest.raises(VerificationRefused) as info:
        await issue(session, a)
    assert info.value.reason is Refusal.ALREADY_VERIFIED


async def test_two_members_racing_for_one_number(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    async with maker() as s:
        a = await account(s, "U1")
        b = await account(s, "T1", channel="telegram")
        ids = (a.member_id, b.member_id)
        await s.commit()

    async def verify(member_id: int) -> Outcome:
        for attempt in range(20):
            try:
                async with maker() as s:
                    result = await record_verified_phone(
                        s,
                        vault=VAULT,
                        member_id=member_id,
                        phone=PHONE,
                        method="sms",
                        channel="line",
                        now=T0,
                    )
                    await s.commit()
                    return result.outcome
            except Exception as exc:  # SQLite: the loser's snapshot is stale; retry
                if "locked" not in str(exc) and "busy" not in str(exc).lower():
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("never settled")

    outcomes = await asyncio.gather(verify(ids[0]), verify(ids[1]))
    assert sorted(outcomes) == sorted([Outcome.VERIFIED, Outcome.OWNED_BY_OTHER])
    async with maker() as s:
        rows = (await s.scalars(select(VerifiedPhone))).all()
        assert len(rows) == 1


async def test_merge_moves_accounts_and_keeps_the_number(session: AsyncSession) -> None:
    a = await account(session, "U1")
    b = await account(session, "T1", channel="telegram")
    keep_id, absorb_id = a.member_id, b.member_id
    await record_verified_phone(
        session, vault=VAULT, member_id=keep_id, phone=PHONE, method="sms", channel="line", now=T0
    )
    await record_verified_phone(
        session,
        vault=VAULT,
        member_id=absorb_id,
        phone=OTHER,
        method="sms",
        channel="telegram",
        now=T0,
    )
    b_member = await session.get(Member, absorb_id)
    assert b_member is not None
    b_member.marketing_opt_in = False
    await session.flush()
    await merge_members(session, keep_id=keep_id, absorb_id=absorb_id, now=T0)
    await session.commit()
    await session.refresh(b)
    assert b.member_id == keep_id
    assert [x.channel for x in await linked_accounts(session, member_id=keep_id)] == [
        "line",
        "telegram",
    ]
    assert await session.get(Member, absorb_id) is None
    phones = (await session.scalars(select(VerifiedPhone))).all()
    assert [(p.member_id, VAULT.decrypt(p.phone_sealed)) for p in phones] == [(keep_id, PHONE)]
    keep = await session.get(Member, keep_id)
    assert keep is not None
    assert keep.marketing_opt_in is False
    actions = (await session.scalars(select(AuditLog.action))).all()
    assert "member.linked" in actions


async def test_verifying_a_roster_number_grants_the_status(session: AsyncSession) -> None:
    acc = await account(session, "U1")
    session.add(
        CivilServant(
            employee_id="E1",
            name_sealed=VAULT.encrypt("王小明"),
            agency="資訊局",
            phone_hash=VAULT.lookup_hash(PHONE),
            phone_sealed=VAULT.encrypt(PHONE),
            active=True,
            imported_at=T0,
            updated_at=T0,
        )
    )
    await session.flush()
    result = await record_verified_phone(
        session,
        vault=VAULT,
        member_id=acc.member_id,
        phone=PHONE,
        method="sms",
        channel="line",
        now=T0,
    )
    assert result.civil_servant
    member = await session.get(Member, acc.member_id)
    assert member is not None
    assert member.is_civil_servant
    # A new number drops the link and the status.
    result = await record_verified_phone(
        session,
        vault=VAULT,
        member_id=acc.member_id,
        phone=OTHER,
        method="sms",
        channel="line",
        now=T0,
    )
    assert result.replaced_previous
    assert not result.civil_servant
    assert not member.is_civil_servant
    row = await session.scalar(select(CivilServant))
    assert row is not None
    assert row.member_id is None


async def test_past_the_hourly_wrong_code_cap_even_the_right_code_is_refused(
    session: AsyncSession,
) -> None:
    """Ten wrong codes an hour over new verifications (a cancel closes each), then the right
    code is not even compared; another member's verification of the number is capped too."""
    acc = await account(session, "U-guess")
    minute = dt.timedelta(minutes=1)
    now = T0
    for _ in range(2):
        issued = await issue(session, acc, now=now)
        for _ in range(4):
            with pytest.raises(VerificationRefused):
                await check(session, acc, issued.challenge.id, wrong(issued.code), now=now)
        issued.challenge.status = "closed"  # as a cancel leaves it
        now += 2 * minute
    issued = await issue(session, acc, now=now)
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, issued.challenge.id, wrong(issued.code), now=now)
    assert (info.value.reason, info.value.remaining) == (Refusal.WRONG_CODE, 1)
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, issued.challenge.id, wrong(issued.code), now=now)
    assert info.value.reason is Refusal.TOO_MANY_WRONG
    # The first verification's code expired at 09:10: its guesses count until 10:10.
    assert info.value.wait == T0 + dt.timedelta(minutes=70) - now
    with pytest.raises(VerificationRefused) as info:
        await check(session, acc, issued.challenge.id, issued.code, now=now)
    assert info.value.reason is Refusal.TOO_MANY_WRONG
    # The cap is the guesser's: someone else verifying the number is not held back.
    stranger = await account(session, "U-other")
    await age(session, stranger)  # newcomers together have used the number's share
    theirs = await issue(session, stranger, now=now + 2 * minute)
    assert (await check(session, stranger, theirs.challenge.id, theirs.code, now=now)).status == (
        "verified"
    )
    # Once the hour has passed, a new code is sent and accepted.
    later = T0 + dt.timedelta(minutes=70)
    again = await issue(session, acc, now=later)
    assert (await check(session, acc, again.challenge.id, again.code, now=later)).status == (
        "verified"
    )
