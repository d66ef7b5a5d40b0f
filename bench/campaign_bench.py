"""Prize claims on PostgreSQL: 1,000 people tap 領取 at once for 100 codes, through the real
claim path (the simulator's path: record the event, route it, claim, commit, hand the reply
to the channel), against a bare SQL baseline in the same run that does only the unique claim
insert and the atomic code update, one transaction per claimant, over the same pool. Then the
latency from the tap to the reply handed to the channel, with 50 claimants at a time.

Run: python -m bench.campaign_bench [--people 1000] [--codes 100] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select, text

from bench.webhook_bench import drop_pg_database, fresh_pg_database
from models.campaigns.tables import CampaignClaim
from models.identity import VerifiedPhone
from models.members import ChannelAccount, Member
from models.pii import PiiVault

PII_KEY = "bench-pii-key-0123456789abcdef-0123456789"
# Taps in flight at once (both paths): as many as the pool has connections (10 + 20), so
# that claims contend for codes; all 1,000 at once would only time out in the pool's
# queue (30 s) on this shared machine, on either path.
IN_FLIGHT = 30
PG_BASE = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")

BARE_CLAIM = text(
    "INSERT INTO campaign_claim (campaign_id, member_id, claimant_id, seq, phone_hash, "
    "block_hash, phone_masked, channel, status, claimed_at) VALUES (:c, :m, :m, 1, :h, :h, "
    "'-', 'simulator', 'won', now()) ON CONFLICT DO NOTHING RETURNING id"
)
BARE_TAKE = text(
    "UPDATE voucher_code SET status = 'taken' WHERE id = (SELECT id FROM voucher_code "
    "WHERE campaign_id = :c AND status = 'free' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING id, code"
)


def campaign_doc(slug: str, codes: int) -> dict[str, object]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return {
        "slug": slug,
        "title": "性平課程領好禮",
        "starts_at": start.isoformat(),
        "ends_at": (start + dt.timedelta(days=30)).isoformat(),
        "prize": {"name": "NT$200 禮券", "redeem": "到服務台出示兌換碼", "generate": codes},
    }


async def seed(runtime: object, people: int) -> list[int]:
    vault = PiiVault(PII_KEY)
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    async with runtime.sessionmaker() as session:  # type: ignore[attr-defined]
        members = [Member(language="zh-TW", created_at=when) for _ in range(people)]
        session.add_all(members)
        await session.flush()
        ids = [m.id for m in members]
        await session.execute(
            insert(ChannelAccount),
            [
                {
                    "member_id": m,
                    "channel": "simulator",
                    "external_id": f"bench-{i}",
                    "following": True,
                    "unreachable": False,
                    "created_at": when,
                    "last_seen_at": when,
                }
                for i, m in enumerate(ids)
            ],
        )
        phones = [f"+8869{i:05d}{(i * 7) % 1000:03d}"[:13] for i in range(people)]
        await session.execute(
            insert(VerifiedPhone),
            [
                {
                    "member_id": m,
                    "phone_hash": vault.lookup_hash(p),
                    "phone_sealed": vault.encrypt(p),
                    "method": "sms",
                    "channel": "simulator",
                    "verified_at": when,
                }
                for m, p in zip(ids, phones, strict=True)
            ],
        )
        await session.commit()
    return ids


async def create(runtime: object, slug: str, codes: int) -> int:
    from models.campaigns.claims import create_campaign
    from models.campaigns.spec import parse_campaign

    async with runtime.sessionmaker() as session:  # type: ignore[attr-defined]
        campaign = await create_campaign(
            session,
            spec=parse_campaign(campaign_doc(slug, codes)),
            actor="bench",
            now=dt.datetime.now(dt.UTC),
        )
        await session.commit()
        return campaign.id


async def real_claims(
    runtime: object, campaign_id: int, people: int, limit: int | None
) -> list[float]:
    """Each claimant's tap through the simulator's path; returns seconds per claim."""
    from bot.simulator.web import SimulatorInput, simulate

    gate = asyncio.Semaphore(limit or people)
    times: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            await simulate(
                runtime.processor,  # type: ignore[attr-defined]
                SimulatorInput(
                    user=f"bench-{i}", kind="action", action=f"prize.claim:{campaign_id}"
                ),
            )
            times.append(time.perf_counter() - started)

    await asyncio.gather(*(one(i) for i in range(people)))
    return times


async def bare_claims(runtime: object, campaign_id: int, members: list[int], limit: int) -> int:
    """The same unique insert plus atomic code update, nothing else, one transaction each."""
    won = 0
    gate = asyncio.Semaphore(limit)

    async def one(m: int) -> None:
        nonlocal won
        async with gate, runtime.sessionmaker() as session:  # type: ignore[attr-defined]
            claim = (
                await session.execute(BARE_CLAIM, {"c": campaign_id, "m": m, "h": f"h{m}"})
            ).first()
            if claim is None:
                await session.rollback()
                return
            taken = (await session.execute(BARE_TAKE, {"c": campaign_id})).first()
            if taken is None:
                await session.rollback()  # out of stock: the claim goes with it
                return
            await session.commit()
            won += 1

    await asyncio.gather(*(one(m) for m in members))
    return won


async def winners(runtime: object, campaign_id: int) -> int:
    async with runtime.sessionmaker() as session:  # type: ignore[attr-defined]
        return int(
            await session.scalar(
                select(func.count()).where(
                    CampaignClaim.campaign_id == campaign_id, CampaignClaim.status == "won"
                )
            )
            or 0
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(people: int, codes: int, concurrency: int, steady_claims: int) -> None:
    from app import build_runtime
    from bot.settings import Settings
    from models.migrate import upgrade

    name = await fresh_pg_database()
    media = Path(tempfile.mkdtemp(prefix="edoor-bench-"))
    try:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=f"{PG_BASE}/{name}",
            edoor_background="off",
            pii_key=PII_KEY,
            media_dir=media,
            public_base_url="https://edoor.example",
            log_level="WARNING",
        )
        runtime = build_runtime(settings)
        await upgrade(runtime.engine)
        await runtime.start()
        try:
            members = await seed(runtime, people)
            warm = await create(runtime, "warm-up", 20)
            await real_claims(runtime, warm, 40, 10)

            rush = await create(runtime, "rush", codes)
            started = time.perf_counter()
            await real_claims(runtime, rush, people, IN_FLIGHT)
            real_total = time.perf_counter() - started
            real_won = await winners(runtime, rush)

            bare = await create(runtime, "bare", codes)
            started = time.perf_counter()
            bare_won = await bare_claims(runtime, bare, members, IN_FLIGHT)
            bare_total = time.perf_counter() - started

            steady = await create(runtime, "steady", steady_claims)
            latencies = await real_claims(runtime, steady, steady_claims, concurrency)
            steady_won = await winners(runtime, steady)
        finally:
            await runtime.close()
    finally:
        await drop_pg_database(name)

    print(f"{people} claimants ({IN_FLIGHT} in flight), {codes} codes, PostgreSQL, pool 10+20")
    print(f"{'path':<34}{'total s':>9}{'claims/s':>10}{'winners':>9}")
    for label, total, won in (
        ("real claim path (simulator)", real_total, real_won),
        ("bare SQL (insert + update)", bare_total, bare_won),
    ):
        print(f"{label:<34}{total:>9.2f}{people / total:>10.0f}{won:>9}")
    print(f"ratio real / bare: {real_total / bare_total:.2f}x")
    print(
        f"\n{steady_claims} claims, {concurrency} at a time, every one a winner (QR made): "
        f"tap -> reply handed to the channel: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {pct(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
        f"({steady_won} winners)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--codes", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--steady", type=int, default=500, help="claims in the latency round")
    args = parser.parse_args()
    asyncio.run(main(args.people, args.codes, args.concurrency, args.steady))
