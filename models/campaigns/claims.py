"""Claiming a prize, entering and running a draw, and the auditor's side (revoke, export,
redemptions). Rules over a session; nothing here commits: the caller's unit of work does,
and only then tells the person (so a rolled-back claim never says "you won").

A code is taken by one statement: on PostgreSQL `UPDATE ... WHERE id = (SELECT ... FOR UPDATE
SKIP LOCKED LIMIT 1) RETURNING`, so concurrent claims take different codes without waiting on
each other; on SQLite the same UPDATE runs in a transaction that already holds the one write
lock (the inbound batch writes first; standalone callers use models.db.begin_write).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import hashlib
import io
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.campaigns.eligibility import Verdict, evaluate
from models.campaigns.spec import CampaignSpec, Redemption
from models.campaigns.tables import (
    DRAW,
    DRAWN,
    ENTERED,
    FREE,
    LAPSED,
    REJECTED,
    REVIEW,
    REVOKED,
    TAKEN,
    VOIDED,
    WON,
    Campaign,
    CampaignAttempt,
    CampaignClaim,
    CampaignDraw,
    VoucherCode,
)
from models.identity import AuditLog, VerifiedPhone, phone_subject, record_audit
from models.pii import PiiVault

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
# Claims per member and per number: taps beyond these in the window are refused (a script
# hammering the button gains nothing and leaves a trace).
RATE_WINDOW = dt.timedelta(minutes=10)
RATE_PER_MEMBER = 10
RATE_PER_PHONE = 10
# A number verified on this many accounts within a day, or this many claims from one block
# of consecutive numbers within BLOCK_WINDOW, is flagged for review instead of winning.
ACCOUNTS_PER_PHONE_DAY = 3
BLOCK_CLAIMS = 3
BLOCK_WINDOW = dt.timedelta(hours=24)
# A claim that was revoked, rejected or lapsed still counts as that person's claim.
HOLDS_PRIZE = (WON, DRAWN, REVIEW)
# The audit action that records a drawn winner's message queued (once per winner).
WINNER_TOLD = "prize.winner_told"


class Outcome(enum.StrEnum):
    """What a claim tap led to; every refusal has its own answer in chat and its own count."""

    WON = "won"
    ENTERED = "entered"
    REVIEW = "review"
    NEEDS_PHONE = "needs_phone"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    NOT_ELIGIBLE = "not_eligible"
    ALREADY_CLAIMED = "already_claimed"
    ALREADY_ENTERED = "already_entered"
    OUT_OF_STOCK = "out_of_stock"
    RATE_LIMITED = "rate_limited"
    NOT_DRAWN = "not_drawn"  # a draw campaign after its end, for someone not drawn

    @property
    def refused(self) -> bool:
        return self not in (Outcome.WON, Outcome.ENTERED, Outcome.REVIEW)


@dataclass(frozen=True)
class ClaimResult:
    outcome: Outcome
    claim: CampaignClaim | None = None
    code: str | None = None
    verdict: Verdict | None = None


class CampaignError(ValueError):
    """An operator's request that cannot be done; the message says why."""


# -- campaigns -----------------------------------------------------------------------------------
def _random_code(length: int = 10) -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
    return f"{raw[:5]}-{raw[5:]}"


async def get_campaign(session: AsyncSession, *, slug: str) -> Campaign | None:
    return await session.scalar(select(Campaign).where(Campaign.slug == slug))


async def require_campaign(session: AsyncSession, *, slug: str) -> Campaign:
    found = await get_campaign(session, slug=slug)
    if found is None:
        raise CampaignError(f"no campaign {slug!r}")
    return found


async def running_campaigns(session: AsyncSession, *, now: dt.datetime) -> list[Campaign]:
    """Campaigns open now (a drawn winner's ended draw is found through member_prizes)."""
    rows = await session.scalars(
        select(Campaign)
        .where(Campaign.starts_at <= now, Campaign.ends_at > now)
        .order_by(Campaign.ends_at, Campaign.id)
    )
    return list(rows.all())


async def list_campaigns(session: AsyncSession) -> list[Campaign]:
    return list((await session.scalars(select(Campaign).order_by(Campaign.id))).all())


def _apply(campaign: Campaign, spec: CampaignSpec, now: dt.datetime) -> None:
    campaign.title, campaign.title_en = spec.title, spec.title_en
    campaign.starts_at, campaign.ends_at = spec.starts_at, spec.ends_at
    campaign.mode, campaign.per_person, campaign.claim_days = (
        spec.mode,
        spec.per_person,
        spec.claim_days,
    )
    campaign.rule, campaign.prize, campaign.spec = spec.rule.as_json(), spec.prize, spec.raw
    campaign.updated_at = now


async def _generate(session: AsyncSession, campaign: Campaign, count: int, now: dt.datetime) -> int:
    made = 0
    while made < count:
        batch = {_random_code() for _ in range(min(1000, count - made))}
        existing = set(
            (
                await session.scalars(
                    select(VoucherCode.code).where(
                        VoucherCode.campaign_id == campaign.id, VoucherCode.code.in_(batch)
                    )
                )
            ).all()
        )
        fresh = sorted(batch - existing)
        session.add_all(
            VoucherCode(
                campaign_id=campaign.id, code=c, status=FREE, source="generated", created_at=now
            )
            for c in fresh
        )
        made += len(fresh)
    await session.flush()
    return made


async def stock(session: AsyncSession, *, campaign_id: int) -> dict[str, int]:
    """Codes by status ({"free": .., "taken": .., "revoked": ..}) and their total."""
    rows = await session.execute(
        select(VoucherCode.status, func.count())
        .where(VoucherCode.campaign_id == campaign_id)
        .group_by(VoucherCode.status)
    )
    out = {FREE: 0, TAKEN: 0, VOIDED: 0}
    out.update({status: int(n) for status, n in rows})
    out["total"] = sum(out[k] for k in (FREE, TAKEN, VOIDED))
    return out


async def create_campaign(
    session: AsyncSession, *, spec: CampaignSpec, actor: str, now: dt.datetime
) -> Campaign:
    """A new campaign (and its generated codes); the slug must be new."""
    if await get_campaign(session, slug=spec.slug) is not None:
        raise CampaignError(f"slug: campaign {spec.slug!r} exists already (use update)")
    campaign = Campaign(slug=spec.slug, created_at=now)
    _apply(campaign, spec, now)
    session.add(campaign)
    await session.flush()
    made = await _generate(session, campaign, spec.generate or 0, now)
    await record_audit(
        session,
        actor=actor,
        action="campaign.created",
        subject=f"campaign:{spec.slug}",
        details={"mode": spec.mode, "generated": made, "spec": spec.raw},
        now=now,
    )
    return campaign


async def update_campaign(
    session: AsyncSession, *, spec: CampaignSpec, actor: str, now: dt.datetime
) -> Campaign:
    """Change a campaign from its file; `generate` may grow (new codes), never shrink."""
    campaign = await require_campaign(session, slug=spec.slug)
    claims = await session.scalar(
        select(func.count()).where(CampaignClaim.campaign_id == campaign.id)
    )
    if claims and spec.mode != campaign.mode:
        raise CampaignError("mode: cannot change once people have claimed or entered")
    generated = int(
        await session.scalar(
            select(func.count()).where(
                VoucherCode.campaign_id == campaign.id, VoucherCode.source == "generated"
            )
        )
        or 0
    )
    wanted = spec.generate or 0
    if spec.generate is not None and wanted < generated:
        raise CampaignError(
            f"prize.generate: {generated} codes were generated already; it cannot go down"
        )
    before = dict(campaign.spec)
    _apply(campaign, spec, now)
    made = await _generate(session, campaign, max(0, wanted - generated), now)
    await record_audit(
        session,
        actor=actor,
        action="campaign.updated",
        subject=f"campaign:{spec.slug}",
        details={"before": before, "after": spec.raw, "generated": made},
        now=now,
    )
    return campaign


def _chunks(items: list[Any], size: int = 5000) -> list[list[Any]]:
    """Lists small enough for one statement (PostgreSQL takes at most 32,767 parameters)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def load_codes(
    session: AsyncSession, *, campaign: Campaign, codes: Sequence[str], actor: str, now: dt.datetime
) -> int:
    """Add the vendor's codes; a code the campaign has already refuses them all."""
    clash: list[str] = []
    for part in _chunks(list(codes)):
        clash += (
            await session.scalars(
                select(VoucherCode.code).where(
                    VoucherCode.campaign_id == campaign.id, VoucherCode.code.in_(part)
                )
            )
        ).all()
    if clash:
        raise CampaignError(
            f"code: {len(clash)} code(s) already loaded for this campaign, nothing changed"
        )
    for part in _chunks(list(codes)):
        await session.execute(
            insert(VoucherCode),
            [
                {
                    "campaign_id": campaign.id,
                    "code": c,
                    "status": FREE,
                    "source": "imported",
                    "created_at": now,
                }
                for c in part
            ],
        )
    digest = hashlib.sha256("\n".join(codes).encode()).hexdigest()
    await record_audit(
        session,
        actor=actor,
        action="campaign.codes_imported",
        subject=f"campaign:{campaign.slug}",
        details={"count": len(codes), "sha256": digest},
        now=now,
    )
    return len(codes)


# -- claiming ------------------------------------------------------------------------------------
async def _attempt(
    session: AsyncSession,
    campaign: Campaign,
    member_id: int,
    phone_hash: str | None,
    outcome: Outcome,
    now: dt.datetime,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        CampaignAttempt(
            campaign_id=campaign.id,
            member_id=member_id,
            phone_hash=phone_hash,
            outcome=outcome.value,
            created_at=now,
        )
    )
    action = "claim.refused" if outcome.refused else f"claim.{outcome.value}"
    await record_audit(
        session,
        actor=f"member:{member_id}",
        action=action,
        subject=f"campaign:{campaign.slug}",
        details={
            "outcome": outcome.value,
            **({"phone_hash": phone_hash} if phone_hash else {}),
            **(details or {}),
        },
        now=now,
    )


async def _rate_limited(
    session: AsyncSession, member_id: int, phone_hash: str, now: dt.datetime
) -> bool:
    since = now - RATE_WINDOW
    # Both counts in one round trip (each over its own index).
    by_member, by_phone = (
        await session.execute(
            select(
                select(func.count())
                .where(CampaignAttempt.member_id == member_id, CampaignAttempt.created_at > since)
                .scalar_subquery(),
                select(func.count())
                .where(CampaignAttempt.phone_hash == phone_hash, CampaignAttempt.created_at > since)
                .scalar_subquery(),
            )
        )
    ).one()
    return int(by_member or 0) >= RATE_PER_MEMBER or int(by_phone or 0) >= RATE_PER_PHONE


def block_hash(vault: PiiVault, phone: str) -> str:
    """Keyed hash of a number's block: all of it but the last two digits."""
    return vault.lookup_hash("block:" + phone[:-2])


async def _flag(
    session: AsyncSession, campaign: Campaign, phone_hash: str, block: str, now: dt.datetime
) -> str | None:
    """Why this claim should wait for an auditor, if it should (both counts in one trip)."""
    accounts, neighbours = (
        await session.execute(
            select(
                select(func.count(func.distinct(AuditLog.actor)))
                .where(
                    AuditLog.subject == phone_subject(phone_hash),
                    AuditLog.action == "phone.verified",
                    AuditLog.created_at > now - dt.timedelta(days=1),
                )
                .scalar_subquery(),
                select(func.count(func.distinct(CampaignClaim.phone_hash)))
                .where(
                    CampaignClaim.campaign_id == campaign.id,
                    CampaignClaim.block_hash == block,
                    CampaignClaim.phone_hash != phone_hash,
                    CampaignClaim.claimed_at > now - BLOCK_WINDOW,
                )
                .scalar_subquery(),
            )
        )
    ).one()
    if int(accounts or 0) >= ACCOUNTS_PER_PHONE_DAY:
        return "phone_many_accounts"
    if int(neighbours or 0) + 1 >= BLOCK_CLAIMS:
        return "number_block"
    return None


async def take_code(session: AsyncSession, *, campaign_id: int) -> tuple[int, str] | None:
    """Mark one free code taken and return (id, code); None when none is left. One statement:
    concurrent callers on PostgreSQL skip each other's locked rows instead of queueing."""
    lock = "FOR UPDATE SKIP LOCKED" if session.get_bind().dialect.name == "postgresql" else ""
    row = (
        await session.execute(
            text(
                "UPDATE voucher_code SET status = :taken WHERE id = ("  # noqa: S608
                "SELECT id FROM voucher_code WHERE campaign_id = :campaign AND status = :free "
                f"ORDER BY id LIMIT 1 {lock}) RETURNING id, code"
            ),
            {"taken": TAKEN, "free": FREE, "campaign": campaign_id},
        )
    ).first()
    return (int(row[0]), str(row[1])) if row is not None else None


async def _mine(
    session: AsyncSession, campaign: Campaign, member_id: int, phone_hash: str
) -> list[CampaignClaim]:
    """This person's claims in the campaign: by this member (accounts linked to it included)
    or by anyone with the same verified number."""
    rows = await session.scalars(
        select(CampaignClaim)
        .where(
            CampaignClaim.campaign_id == campaign.id,
            or_(
                CampaignClaim.member_id == member_id,
                CampaignClaim.claimant_id == member_id,
                CampaignClaim.phone_hash == phone_hash,
            ),
        )
        .order_by(CampaignClaim.id)
    )
    return list(rows.all())


async def _win(
    session: AsyncSession, campaign: Campaign, claim: CampaignClaim, now: dt.datetime
) -> str | None:
    taken = await take_code(session, campaign_id=campaign.id)
    if taken is None:
        return None
    claim.code_id, claim.status, claim.won_at = taken[0], WON, now
    await session.flush()
    return taken[1]


async def claim_prize(
    session: AsyncSession,
    *,
    vault: PiiVault,
    campaign: Campaign,
    member_id: int,
    channel: str,
    mask: Callable[[str], str],
    now: dt.datetime,
) -> ClaimResult:
    """One claim tap (or a draw entry): the outcome, recorded with its reason.

    One per real person holds in the database: the claim row is unique per campaign and
    claimant and per campaign and phone hash; a concurrent duplicate fails its insert and
    gets ALREADY_CLAIMED. `mask` shows a number as 0912-***-678 (the export's form).
    """
    phone = await session.scalar(select(VerifiedPhone).where(VerifiedPhone.member_id == member_id))
    phone_hash = phone.phone_hash if phone is not None else None

    async def refuse(outcome: Outcome, **extra: Any) -> ClaimResult:
        await _attempt(session, campaign, member_id, phone_hash, outcome, now)
        return ClaimResult(outcome, **extra)

    if now < campaign.starts_at:
        return await refuse(Outcome.NOT_STARTED)
    if phone is None or phone_hash is None:
        return await refuse(Outcome.NEEDS_PHONE)
    if await _rate_limited(session, member_id, phone_hash, now):
        return await refuse(Outcome.RATE_LIMITED)
    mine = await _mine(session, campaign, member_id, phone_hash)
    drawn = next((c for c in mine if c.status == DRAWN), None)
    if campaign.mode == DRAW and now >= campaign.ends_at:
        # After a draw only its winners claim, within their claim window.
        if drawn is None or drawn.claim_until is None or drawn.claim_until <= now:
            won = next((c for c in mine if c.status == WON), None)
            if won is not None:
                return await refuse(Outcome.ALREADY_CLAIMED, claim=won)
            return await refuse(Outcome.NOT_DRAWN if mine else Outcome.ENDED)
        async with session.begin_nested():
            prize = await _win(session, campaign, drawn, now)
        if prize is None:
            return await refuse(Outcome.OUT_OF_STOCK)
        await _attempt(
            session,
            campaign,
            member_id,
            phone_hash,
            Outcome.WON,
            now,
            {"claim_id": drawn.id, "code_id": drawn.code_id},
        )
        return ClaimResult(Outcome.WON, drawn, prize)
    if now >= campaign.ends_at:
        return await refuse(Outcome.ENDED)
    verdict: Verdict | None = None
    flag: str | None = None
    plain = block = ""
    # Up to per_person + 1 rounds: a round that loses a race for this person's next claim
    # number (a concurrent tap, or another account with the number, committed it first)
    # reads the person's claims again and tries the next one while some are left.
    for _ in range(campaign.per_person + 1):
        seq = _next_seq(mine, member_id, phone_hash, campaign.per_person)
        if len(mine) >= campaign.per_person or seq is None:
            if campaign.mode == DRAW:
                return await refuse(Outcome.ALREADY_ENTERED, claim=mine[0])
            return await refuse(Outcome.ALREADY_CLAIMED, claim=mine[-1])
        if verdict is None:
            verdict = await evaluate(session, campaign=campaign, member_id=member_id, now=now)
            if not verdict.eligible:
                return await refuse(Outcome.NOT_ELIGIBLE, verdict=verdict)
            plain = vault.decrypt(phone.phone_sealed)
            block = block_hash(vault, plain)
            flag = await _flag(session, campaign, phone_hash, block, now)
        claim = CampaignClaim(
            campaign_id=campaign.id,
            member_id=member_id,
            claimant_id=member_id,
            seq=seq,
            phone_hash=phone_hash,
            block_hash=block,
            phone_masked=mask(plain),
            channel=channel,
            status=REVIEW if flag else (ENTERED if campaign.mode == DRAW else WON),
            flag=flag,
            claimed_at=now,
        )
        code: str | None = None
        try:
            async with session.begin_nested():
                session.add(claim)
                await session.flush()
                if claim.status == WON:
                    code = await _win(session, campaign, claim, now)
                    if code is None:
                        raise _OutOfStock
        except IntegrityError:
            mine = await _mine(session, campaign, member_id, phone_hash)
            continue
        except _OutOfStock:
            return await refuse(Outcome.OUT_OF_STOCK)
        break
    else:  # every round lost its race: the person's claims are being made elsewhere
        return await refuse(
            Outcome.ALREADY_ENTERED if campaign.mode == DRAW else Outcome.ALREADY_CLAIMED
        )
    outcome = (
        Outcome.REVIEW if flag else (Outcome.ENTERED if campaign.mode == DRAW else Outcome.WON)
    )
    await _attempt(
        session,
        campaign,
        member_id,
        phone_hash,
        outcome,
        now,
        {"claim_id": claim.id, "code_id": claim.code_id, **({"flag": flag} if flag else {})},
    )
    return ClaimResult(outcome, claim, code)


def _next_seq(
    mine: Sequence[CampaignClaim], member_id: int, phone_hash: str, per_person: int
) -> int | None:
    """The lowest claim number in 1..per_person free under both unique keys, (claimant, seq)
    and (phone, seq); None when there is none. Numbers never go past per_person, so the
    database itself holds each claimant and each number to per_person claims."""
    used = {c.seq for c in mine if c.claimant_id == member_id or c.phone_hash == phone_hash}
    return next((n for n in range(1, per_person + 1) if n not in used), None)


class _OutOfStock(Exception):
    """Raised inside the claim's savepoint so that the claim row goes with it."""


@dataclass(frozen=True)
class Prize:
    """A won prize as its winner sees it again."""

    campaign: Campaign
    claim: CampaignClaim
    code: str | None


async def member_prizes(session: AsyncSession, *, member_id: int) -> list[Prize]:
    """The member's claims that hold a prize or wait for one (newest first)."""
    rows = await session.execute(
        select(CampaignClaim, Campaign, VoucherCode.code)
        .join(Campaign, Campaign.id == CampaignClaim.campaign_id)
        .outerjoin(VoucherCode, VoucherCode.id == CampaignClaim.code_id)
        .where(CampaignClaim.member_id == member_id, CampaignClaim.status.in_(HOLDS_PRIZE))
        .order_by(CampaignClaim.id.desc())
    )
    return [Prize(campaign, claim, code) for claim, campaign, code in rows]


async def claims_left(session: AsyncSession, *, campaign: Campaign, member_id: int) -> int:
    """How many more prizes (or draw entries) this person may still claim: per_person less
    what they hold, by this member or by anyone with their verified number (as a claim
    counts them); per_person when they have no verified number yet."""
    phone_hash = await session.scalar(
        select(VerifiedPhone.phone_hash).where(VerifiedPhone.member_id == member_id)
    )
    if phone_hash is None:
        return campaign.per_person
    return max(0, campaign.per_person - len(await _mine(session, campaign, member_id, phone_hash)))


async def claim_of(
    session: AsyncSession, *, campaign: Campaign, member_id: int
) -> CampaignClaim | None:
    """This member's latest claim or entry in the campaign, if any."""
    return await session.scalar(
        select(CampaignClaim)
        .where(CampaignClaim.campaign_id == campaign.id, CampaignClaim.member_id == member_id)
        .order_by(CampaignClaim.id.desc())
        .limit(1)
    )


# -- draws ---------------------------------------------------------------------------------------
def pick_winners(entries: Sequence[int], *, seed: str, prizes: int) -> list[int]:
    """The winners among `entries` (claim ids) for `seed`: the same inputs, the same winners."""
    ordered = sorted(entries)
    rng = random.Random(f"edoor-draw-v1:{seed}")  # noqa: S311 - reproducible by design
    return rng.sample(ordered, min(prizes, len(ordered)))


@dataclass
class DrawResult:
    round: int
    seed: str
    entries: int
    prizes: int
    winners: list[CampaignClaim] = field(default_factory=list)
    lapsed: int = 0


async def draw(
    session: AsyncSession,
    *,
    campaign: Campaign,
    actor: str,
    now: dt.datetime,
    seed: str | None = None,
) -> DrawResult:
    """Draw as many winners as there are prizes left (after `ends_at`). A later call is a
    redraw: winners who did not claim in time lapse and their prizes are drawn again."""
    if campaign.mode != DRAW:
        raise CampaignError("mode: not a draw campaign")
    if now < campaign.ends_at:
        raise CampaignError("ends_at: the draw is after the campaign has ended")
    lapsed = await session.execute(
        update(CampaignClaim)
        .where(
            CampaignClaim.campaign_id == campaign.id,
            CampaignClaim.status == DRAWN,
            CampaignClaim.claim_until <= now,
        )
        .values(status=LAPSED)
    )
    waiting = int(
        await session.scalar(
            select(func.count()).where(
                CampaignClaim.campaign_id == campaign.id, CampaignClaim.status == DRAWN
            )
        )
        or 0
    )
    prizes = (await stock(session, campaign_id=campaign.id))[FREE] - waiting
    if prizes <= 0:
        raise CampaignError("no prize left to draw (every code is taken or held by a winner)")
    entries = list(
        (
            await session.scalars(
                select(CampaignClaim.id).where(
                    CampaignClaim.campaign_id == campaign.id, CampaignClaim.status == ENTERED
                )
            )
        ).all()
    )
    if not entries:
        raise CampaignError("no entries left to draw from")
    seed = seed or secrets.token_hex(16)
    winners = pick_winners(entries, seed=seed, prizes=prizes)
    previous = await session.scalar(
        select(func.max(CampaignDraw.round)).where(CampaignDraw.campaign_id == campaign.id)
    )
    number = int(previous or 0) + 1
    until = now + dt.timedelta(days=campaign.claim_days)
    await session.execute(
        update(CampaignClaim)
        .where(CampaignClaim.id.in_(winners))
        .values(status=DRAWN, claim_until=until, draw_round=number)
    )
    session.add(
        CampaignDraw(
            campaign_id=campaign.id,
            round=number,
            seed=seed,
            entries=sorted(entries),
            winners=winners,
            prizes=prizes,
            actor=actor,
            created_at=now,
        )
    )
    await record_audit(
        session,
        actor=actor,
        action="campaign.drawn",
        subject=f"campaign:{campaign.slug}",
        details={
            "round": number,
            "seed": seed,
            "entries": len(entries),
            "prizes": prizes,
            "winners": winners,
        },
        now=now,
    )
    await session.flush()
    rows = await session.scalars(
        select(CampaignClaim).where(CampaignClaim.id.in_(winners)).order_by(CampaignClaim.id)
    )
    return DrawResult(
        number,
        seed,
        len(entries),
        prizes,
        list(rows.all()),
        int(lapsed.rowcount or 0),  # type: ignore[attr-defined]
    )


async def draws(session: AsyncSession, *, campaign: Campaign) -> list[CampaignDraw]:
    rows = await session.scalars(
        select(CampaignDraw)
        .where(CampaignDraw.campaign_id == campaign.id)
        .order_by(CampaignDraw.round)
    )
    return list(rows.all())


def replay_draw(record: CampaignDraw) -> bool:
    """Whether a recorded draw's seed and entries give its recorded winners again."""
    again = pick_winners([int(e) for e in record.entries], seed=record.seed, prizes=record.prizes)
    return again == [int(w) for w in record.winners]


async def winners_to_notify(
    session: AsyncSession, *, now: dt.datetime, campaign_id: int | None = None
) -> list[tuple[Campaign, CampaignClaim]]:
    """Drawn winners still to be told: drawn, their claim window still open, someone to tell
    (not erased), and no record yet that they were told (see `record_winner_told`)."""
    query = (
        select(CampaignClaim, Campaign)
        .join(Campaign, Campaign.id == CampaignClaim.campaign_id)
        .where(
            CampaignClaim.status == DRAWN,
            CampaignClaim.member_id.is_not(None),
            CampaignClaim.claim_until > now,
        )
        .order_by(CampaignClaim.id)
    )
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
    found = [(c, claim) for claim, c in await session.execute(query)]
    told = await told_winners(session, campaigns={c.slug for c, _ in found})
    return [(c, claim) for c, claim in found if claim.id not in told]


async def told_winners(session: AsyncSession, *, campaigns: set[str]) -> set[int]:
    """The claim ids of the winners of these campaigns (slugs) that were told they won."""
    if not campaigns:
        return set()
    rows = await session.scalars(
        select(AuditLog.details).where(
            AuditLog.action == WINNER_TOLD,
            AuditLog.subject.in_([f"campaign:{slug}" for slug in sorted(campaigns)]),
        )
    )
    return {int(d["claim_id"]) for d in rows.all() if isinstance(d, dict) and "claim_id" in d}


async def record_winner_told(
    session: AsyncSession, *, campaign: Campaign, claim: CampaignClaim, now: dt.datetime
) -> None:
    """Record that a winner's message was queued, in the same unit of work as the message:
    the record outlives the outbox row (purged after a month), so a later run of the
    notification never tells a winner twice, and an auditor sees when each was told."""
    await record_audit(
        session,
        actor="system",
        action=WINNER_TOLD,
        subject=f"campaign:{campaign.slug}",
        details={"claim_id": claim.id, "round": claim.draw_round},
        now=now,
    )


# -- delete-my-data --------------------------------------------------------------------------------
async def forget_member(session: AsyncSession, *, member_id: int) -> int:
    """Cut the claims' link to a member who erased their data; returns the claims changed.

    A claim stays for the auditors (masked number, keyed hash, code, status), and the number's
    hash still holds "one prize per number" for whoever verifies it again. The member goes
    (member_id NULL), and so does the claimant: a member id kept there would be taken for a
    later member who is given the same id (SQLite hands out a deleted row's id again) and
    refuse them. Each claimant becomes the negative of their first claim's id: no member's
    id, unique, and the same for all of one claimant's claims (so the unique keys and the
    count of people who claimed are as before), like the audit log's one pseudonym."""
    rows = (
        await session.execute(
            select(CampaignClaim.id, CampaignClaim.claimant_id).where(
                or_(CampaignClaim.member_id == member_id, CampaignClaim.claimant_id == member_id)
            )
        )
    ).all()
    by_claimant: dict[int, list[int]] = {}
    for claim_id, claimant in rows:
        by_claimant.setdefault(int(claimant), []).append(int(claim_id))
    for claimant, ids in by_claimant.items():
        pseudonym = claimant if claimant < 0 else -min(ids)
        await session.execute(
            update(CampaignClaim)
            .where(CampaignClaim.id.in_(ids))
            .values(claimant_id=pseudonym, member_id=None)
        )
    return len(rows)


# -- the auditor's side --------------------------------------------------------------------------
async def require_claim(
    session: AsyncSession, *, campaign: Campaign, claim_id: int
) -> CampaignClaim:
    claim = await session.get(CampaignClaim, claim_id)
    if claim is None or claim.campaign_id != campaign.id:
        raise CampaignError(f"claim {claim_id} is not a claim of {campaign.slug!r}")
    return claim


async def revoke(
    session: AsyncSession,
    *,
    campaign: Campaign,
    claim_id: int,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> CampaignClaim:
    """Take a claim back: its code is void for good (never handed out again)."""
    if not reason.strip():
        raise CampaignError("reason: say why the claim is revoked")
    claim = await require_claim(session, campaign=campaign, claim_id=claim_id)
    if claim.status == REVOKED:
        raise CampaignError(f"claim {claim_id} is revoked already")
    before = claim.status
    claim.status, claim.revoked_at, claim.revoke_reason = REVOKED, now, reason.strip()[:500]
    if claim.code_id is not None:
        await session.execute(
            update(VoucherCode).where(VoucherCode.id == claim.code_id).values(status=VOIDED)
        )
    await record_audit(
        session,
        actor=actor,
        action="claim.revoked",
        subject=f"campaign:{campaign.slug}",
        details={"claim_id": claim.id, "before": before, "reason": reason.strip()[:500]},
        now=now,
    )
    await session.flush()
    return claim


async def review(
    session: AsyncSession,
    *,
    campaign: Campaign,
    claim_id: int,
    approve: bool,
    actor: str,
    now: dt.datetime,
) -> tuple[CampaignClaim, str | None]:
    """Decide a flagged claim: approved, it wins a code (or enters the draw); else rejected."""
    claim = await require_claim(session, campaign=campaign, claim_id=claim_id)
    if claim.status != REVIEW:
        raise CampaignError(f"claim {claim_id} is not waiting for review")
    code = None
    if not approve:
        claim.status = REJECTED
    elif campaign.mode == DRAW:
        claim.status = ENTERED
    else:
        code = await _win(session, campaign, claim, now)
        if code is None:
            raise CampaignError("out of stock: no code left for this claim")
    await record_audit(
        session,
        actor=actor,
        action="claim.approved" if approve else "claim.rejected",
        subject=f"campaign:{campaign.slug}",
        details={"claim_id": claim.id, "flag": claim.flag},
        now=now,
    )
    await session.flush()
    return claim, code


async def import_redemptions(
    session: AsyncSession,
    *,
    campaign: Campaign,
    redemptions: Sequence[Redemption],
    actor: str,
    now: dt.datetime,
) -> int:
    """Mark the vendor's redeemed codes; a code the campaign never handed out refuses the file."""
    by_code: dict[str, tuple[int, str]] = {}
    for part in _chunks([r.code for r in redemptions]):
        by_code.update(
            (code, (cid, status))
            for cid, code, status in await session.execute(
                select(VoucherCode.id, VoucherCode.code, VoucherCode.status).where(
                    VoucherCode.campaign_id == campaign.id, VoucherCode.code.in_(part)
                )
            )
        )
    bad = [
        f"line {r.line}, column code: not a code handed out by this campaign"
        for r in redemptions
        if by_code.get(r.code, (None, None))[1] != TAKEN
    ]
    if bad:
        raise CampaignError("redemptions refused, nothing changed: " + "; ".join(bad[:50]))
    table = VoucherCode.__table__.c
    for part in _chunks(list(redemptions)):
        await session.execute(
            update(VoucherCode.__table__)  # type: ignore[arg-type]  # a Table
            .where(table.id == bindparam("code_id"))
            .values(redeemed_at=bindparam("at")),
            [{"code_id": by_code[r.code][0], "at": r.redeemed_at} for r in part],
        )
    await record_audit(
        session,
        actor=actor,
        action="campaign.redemptions_imported",
        subject=f"campaign:{campaign.slug}",
        details={"count": len(redemptions)},
        now=now,
    )
    return len(redemptions)


EXPORT_COLUMNS = ("claim_id", "claimed_at", "channel", "phone", "phone_hash", "code", "status")


async def export_rows(session: AsyncSession, *, campaign: Campaign) -> list[dict[str, str]]:
    """One row per claim for auditors: masked phone and keyed hash, never a whole number."""
    rows = await session.execute(
        select(CampaignClaim, VoucherCode.code, VoucherCode.redeemed_at)
        .outerjoin(VoucherCode, VoucherCode.id == CampaignClaim.code_id)
        .where(CampaignClaim.campaign_id == campaign.id)
        .order_by(CampaignClaim.id)
    )
    out = []
    for claim, code, redeemed_at in rows:
        status = "redeemed" if claim.status == WON and redeemed_at is not None else claim.status
        out.append(
            {
                "claim_id": str(claim.id),
                "claimed_at": claim.claimed_at.isoformat(),
                "channel": claim.channel,
                "phone": claim.phone_masked,
                "phone_hash": claim.phone_hash,
                "code": code or "",
                "status": status,
            }
        )
    return out


def export_csv(rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class Summary:
    campaign: Campaign
    stock: dict[str, int]
    claims: dict[str, int]
    refusals: dict[str, int]
    flagged: list[CampaignClaim]
    draws: list[CampaignDraw]

    def as_json(self) -> dict[str, Any]:
        c = self.campaign
        return {
            "slug": c.slug,
            "title": c.title,
            "title_en": c.title_en,
            "mode": c.mode,
            "starts_at": c.starts_at.isoformat(),
            "ends_at": c.ends_at.isoformat(),
            "per_person": c.per_person,
            "rule": c.rule,
            "prize": c.prize,
            "stock": self.stock["total"],
            "claimed": self.stock[TAKEN],
            "remaining": self.stock[FREE],
            "revoked_codes": self.stock[VOIDED],
            "claims": self.claims,
            "refusals": self.refusals,
            "flags": [
                {
                    "claim_id": f.id,
                    "flag": f.flag,
                    "phone": f.phone_masked,
                    "claimed_at": f.claimed_at.isoformat(),
                }
                for f in self.flagged
            ],
            "draws": [
                {
                    "round": d.round,
                    "seed": d.seed,
                    "entries": len(d.entries),
                    "prizes": d.prizes,
                    "winners": d.winners,
                    "reproduced": replay_draw(d),
                }
                for d in self.draws
            ],
        }


async def summary(session: AsyncSession, *, campaign: Campaign) -> Summary:
    """Stock, claims by status, refusals by reason, flagged claims and draws."""
    claims = {
        status: int(n)
        for status, n in await session.execute(
            select(CampaignClaim.status, func.count())
            .where(CampaignClaim.campaign_id == campaign.id)
            .group_by(CampaignClaim.status)
        )
    }
    refusals = {
        outcome: int(n)
        for outcome, n in await session.execute(
            select(CampaignAttempt.outcome, func.count())
            .where(
                CampaignAttempt.campaign_id == campaign.id,
                CampaignAttempt.outcome.not_in(
                    [Outcome.WON.value, Outcome.ENTERED.value, Outcome.REVIEW.value]
                ),
            )
            .group_by(CampaignAttempt.outcome)
        )
    }
    flagged = list(
        (
            await session.scalars(
                select(CampaignClaim)
                .where(CampaignClaim.campaign_id == campaign.id, CampaignClaim.flag.is_not(None))
                .order_by(CampaignClaim.id)
            )
        ).all()
    )
    return Summary(
        campaign,
        await stock(session, campaign_id=campaign.id),
        claims,
        refusals,
        flagged,
        await draws(session, campaign=campaign),
    )
