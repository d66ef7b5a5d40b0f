"""The SMS caps over a real database, with the shipped defaults: a swarm of throwaway chats,
a walk through one block of numbers, and who counts as a newcomer."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.identity import (
    OtpLimits,
    OtpSend,
    Refusal,
    VerificationRefused,
    check_code,
    issue_code,
    record_verified_phone,
)
from models.members import ChannelAccount, ensure_account
from models.otp_limits import is_newcomer, prefix_hash
from tests.test_identity_rules import T0, VAULT

DEFAULTS = OtpLimits()
SECOND = dt.timedelta(seconds=1)


async def account(
    session: AsyncSession, external_id: str, *, days_old: float = 0
) -> ChannelAccount:
    created = T0 - dt.timedelta(days=days_old)
    acc, _ = await ensure_account(session, channel="telegram", external_id=external_id, now=created)
    await session.flush()
    return acc


async def ask(
    session: AsyncSession, acc: ChannelAccount, phone: str, now: dt.datetime
) -> Refusal | None:
    """One request for a code in its own savepoint (as the handler does); the refusal, if any."""
    try:
        async with session.begin_nested():
            await issue_code(
                session,
                vault=VAULT,
                member_id=acc.member_id,
                account_id=acc.id,
                phone=phone,
                limits=DEFAULTS,
                now=now,
            )
    except VerificationRefused as refused:
        return refused.reason
    return None


async def test_110_throwaway_chats_leave_the_global_budget_to_members_with_history(
    session: AsyncSession,
) -> None:
    """What used up the 1,000-an-hour budget in 74 s: 110 new chats, each asking for as many
    numbers as it may. Now newcomers stop at their 30 % share, and a member since last year
    (and one with a verified number) still get a code in the same minute."""
    sent = refused = 0
    now = T0
    for chat in range(110):
        acc = await account(session, f"throwaway-{chat}")
        for n in range(10):  # up to ten numbers each, all in different blocks
            now += dt.timedelta(milliseconds=130)
            if await ask(session, acc, f"+8869{chat:03d}{n:02d}{chat % 100:03d}"[:13], now) is None:
                sent += 1
            else:
                refused += 1
                break  # this chat's budget (or the newcomers' share) is used up
        session.expunge_all()  # one chat's requests, as the app's session per event would
    assert sent == int(DEFAULTS.global_hour * DEFAULTS.newcomer_share) == 300
    assert refused == 110  # every chat, in the end
    assert now - T0 < dt.timedelta(seconds=74)

    regular = await account(session, "regular", days_old=400)
    assert await ask(session, regular, "+886912345678", now + SECOND) is None
    vouched = await account(session, "vouched")  # new, but with a verified number
    await record_verified_phone(
        session,
        vault=VAULT,
        member_id=vouched.member_id,
        phone="+886933000111",
        method="sms",
        channel="telegram",
        now=T0,
    )
    assert await ask(session, vouched, "+886955000222", now + SECOND) is None
    # And one more newcomer is still refused, for the global share.
    late = await account(session, "late-newcomer")
    assert await ask(session, late, "+886966000333", now + SECOND) is Refusal.RATE_GLOBAL


async def test_each_newcomer_has_a_smaller_budget(session: AsyncSession) -> None:
    new = await account(session, "new")
    old = await account(session, "old", days_old=2)
    minute = dt.timedelta(minutes=1)
    for i in range(DEFAULTS.per_newcomer_hour):
        assert await ask(session, new, f"+88691{i}000000", T0 + i * minute) is None
    assert await ask(session, new, "+886919000000", T0 + 9 * minute) is Refusal.RATE_MEMBER
    for i in range(DEFAULTS.per_member_hour):
        assert await ask(session, old, f"+88692{i}000000", T0 + i * minute) is None
    assert await ask(session, old, "+886939000000", T0 + 11 * minute) is Refusal.RATE_MEMBER


async def test_walking_one_block_of_numbers_is_stopped_for_newcomers(session: AsyncSession) -> None:
    """SMS pumping walks consecutive numbers; 100 numbers share a block (first 7 digits)."""
    now = T0
    results = []
    for i in range(30):
        acc = await account(session, f"pump-{i}")
        now += SECOND * 2
        results.append(await ask(session, acc, f"+8869123456{i:02d}", now))
    assert results[: DEFAULTS.per_prefix_hour] == [None] * DEFAULTS.per_prefix_hour
    assert set(results[DEFAULTS.per_prefix_hour :]) == {Refusal.RATE_PREFIX}
    # The next block, and a member with history inside the block, are not held back.
    other = await account(session, "pump-next-block")
    assert await ask(session, other, "+886912345700", now + SECOND) is None
    regular = await account(session, "regular", days_old=90)
    assert await ask(session, regular, "+886912345699", now + SECOND) is None
    # The block's hash is keyed and shared by the block only.
    assert prefix_hash(VAULT, "+886912345600", digits=7) == prefix_hash(
        VAULT, "+886912345699", digits=7
    )
    assert prefix_hash(VAULT, "+886912345600", digits=7) != prefix_hash(
        VAULT, "+886912345700", digits=7
    )


async def test_strangers_cannot_use_up_a_numbers_texts_for_its_owner(session: AsyncSession) -> None:
    """Newcomers together get three of a number's five texts an hour; the owner, a member
    with history, gets a code after them and it works."""
    minute = dt.timedelta(minutes=1)
    outcomes = []
    for i in range(5):
        stranger = await account(session, f"stranger-{i}")
        outcomes.append(await ask(session, stranger, "+886912345678", T0 + 2 * i * minute))
    assert outcomes == [None, None, None, Refusal.RATE_PHONE, Refusal.RATE_PHONE]
    owner = await account(session, "owner", days_old=200)
    issued = await issue_code(
        session,
        vault=VAULT,
        member_id=owner.member_id,
        account_id=owner.id,
        phone="+886912345678",
        limits=DEFAULTS,
        now=T0 + 11 * minute,
    )
    checked = await check_code(
        session,
        vault=VAULT,
        challenge_id=issued.challenge.id,
        member_id=owner.member_id,
        account_id=owner.id,
        code=issued.code,
        now=T0 + 12 * minute,
    )
    assert checked.status == "verified"


async def test_sends_record_block_and_trust_and_the_window_slides(session: AsyncSession) -> None:
    acc = await account(session, "one")
    assert await is_newcomer(
        session, member_id=acc.member_id, vouched=False, limits=DEFAULTS, now=T0
    )
    later = T0 + DEFAULTS.newcomer_age + SECOND
    assert not await is_newcomer(
        session, member_id=acc.member_id, vouched=False, limits=DEFAULTS, now=later
    )
    assert await ask(session, acc, "+886912345678", T0) is None
    row = await session.scalar(select(OtpSend))
    assert row is not None
    assert row.newcomer
    assert row.prefix_hash == prefix_hash(VAULT, "+886912345678", digits=7)
    assert "912345" not in (row.prefix_hash or "")
    total = await session.scalar(select(func.count(OtpSend.id)))
    assert total == 1


@pytest.mark.parametrize("digits", [4, 7])
def test_prefix_digits_are_a_setting(digits: int) -> None:
    a = prefix_hash(VAULT, "+886912300000", digits=digits)
    b = prefix_hash(VAULT, "+886912399999", digits=digits)
    assert (a == b) is (digits == 4)
