"""Broadcasts on the bot side: the message a member sees (composed from the file, in their
language, with tracked links and a 取消訂閱 button), its preview through the real LINE and
Telegram renderers, a test send to one member's own chats, the planning run that the
`broadcasts` job calls, the `/r/<token>` redirect that counts clicks, and LINE's per-unit
statistics (insight API) for the figures.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import TAIPEI, Catalog
from bot.messages import Button, Card, Cards, Image, Reply, Text, dump_replies
from bot.ports import ChannelPreview, LinkSigner
from bot.router import COMMAND_ACTION
from bot.settings import Settings
from models import broadcasts as bc
from models.base import utcnow
from models.courses import Course
from models.db import begin_write
from models.members import ChannelAccount
from models.outbox import PRIORITY_REPLY, NewMessage, Target, enqueue_many

log = logging.getLogger("edoor.broadcasts")
# The campaign's button in chat (the campaigns feature handles it; see its handler).
CAMPAIGN_ACTION = "campaign.open"
SMALL = "< 20"  # LINE leaves per-unit values under 20 people empty


# -- composing ---------------------------------------------------------------------------------
def compose(
    message: Mapping[str, Any],
    *,
    language: str,
    catalog: Catalog,
    base_url: str,
    links: Mapping[int, str],
    courses: Mapping[str, Course],
    test: bool = False,
) -> list[Reply]:
    """One variant's message in `language`: an optional image, the text with its buttons,
    course cards, and 取消訂閱 / Unsubscribe as a quick reply after the last message."""
    en = language == "en"
    words = (message.get("text_en") or message["text"]) if en else message["text"]
    if test:
        words = catalog.t(language, "broadcasts.test_prefix") + words
    buttons: list[Button] = []
    for position, b in enumerate(message.get("buttons") or []):
        label = (b.get("label_en") or b["label"]) if en else b["label"]
        if "url" in b:
            token = links.get(position)
            url = f"{base_url}/r/{token}" if token else b["url"]
            buttons.append(Button(label=label, url=url))
        elif "course" in b:
            buttons.append(Button(label=label, action=f"course.open:{b['course']}"))
        else:
            buttons.append(Button(label=label, action=f"{CAMPAIGN_ACTION}:{b['campaign']}"))
    out: list[Reply] = []
    if message.get("image"):
        out.append(Image(url=message["image"], alt_text=words[:100]))
    stop = Button(
        label=catalog.t(language, "broadcasts.unsubscribe"), action=f"{COMMAND_ACTION}:unsubscribe"
    )
    cards = [
        Card(
            title=course.title,
            subtitle=catalog.t(
                language,
                "broadcasts.course_line",
                category=course.category,
                hours=f"{course.hours:g}",
            ),
            buttons=[
                Button(
                    label=catalog.t(language, "broadcasts.course_open"), action=f"course.open:{cid}"
                )
            ],
        )
        for cid in message.get("courses") or []
        if (course := courses.get(cid)) is not None
    ]
    if cards:
        out.append(Text(text=words, buttons=buttons))
        out.append(Cards(alt_text=words[:400], cards=cards, quick_replies=[stop]))
    else:
        out.append(Text(text=words, buttons=buttons, quick_replies=[stop]))
    return out


async def _courses_of(session: AsyncSession, spec: Mapping[str, Any]) -> dict[str, Course]:
    wanted = {c for v in spec["variants"] for c in v["message"]["courses"]}
    if not wanted:
        return {}
    rows = await session.scalars(select(Course).where(Course.id.in_(sorted(wanted))))
    return {c.id: c for c in rows}


async def bodies(
    session: AsyncSession, broadcast: bc.Broadcast, *, catalog: Catalog, settings: Settings
) -> dict[str, bc.Body]:
    """Every variant's replies in both languages, ready for the outbox."""
    links = await bc.links_of(session, broadcast.id)
    courses = await _courses_of(session, broadcast.spec)
    base = settings.public_base_url.rstrip("/")
    out: dict[str, bc.Body] = {}
    for v in broadcast.spec["variants"]:
        mine = {p: t for (name, p), t in links.items() if name == v["name"]}
        made = {
            lang: dump_replies(
                compose(
                    v["message"],
                    language=lang,
                    catalog=catalog,
                    base_url=base,
                    links=mine,
                    courses=courses,
                )
            )
            for lang in ("zh-TW", "en")
        }
        out[v["name"]] = bc.Body(zh=made["zh-TW"], en=made["en"])
    return out


async def preview(
    session: AsyncSession,
    broadcast: bc.Broadcast,
    *,
    catalog: Catalog,
    settings: Settings,
    render: ChannelPreview,
) -> dict[str, Any]:
    """Each variant and language as LINE messages and Telegram calls, from the real renderers
    (passed in by the composition root: features never import an adapter)."""
    from bot.messages import load_replies

    out: dict[str, Any] = {}
    for name, body in (
        await bodies(session, broadcast, catalog=catalog, settings=settings)
    ).items():
        for lang, replies in (("zh-TW", body.zh), ("en", body.en)):
            loaded = load_replies(replies)
            out[f"{name}:{lang}"] = {"replies": replies, **render(loaded)}
    return out


# -- a test send -------------------------------------------------------------------------------
async def test_send(
    session: AsyncSession,
    broadcast: bc.Broadcast,
    *,
    member_id: int,
    catalog: Catalog,
    settings: Settings,
    channels: Sequence[str],
    now: dt.datetime,
) -> int:
    """Queue every variant, marked as a test, to each reachable chat of one member (the
    sender's own); not marketing, so no opt-out, cap or quiet hours. Returns rows queued."""
    accounts = list(
        (
            await session.scalars(
                select(ChannelAccount).where(
                    ChannelAccount.member_id == member_id,
                    ChannelAccount.following.is_(True),
                    ChannelAccount.unreachable.is_(False),
                    ChannelAccount.channel.in_(list(channels)),
                )
            )
        ).all()
    )
    if not accounts:
        raise bc.BroadcastError("member", f"member {member_id} has no reachable chat")
    links = await bc.links_of(session, broadcast.id)
    courses = await _courses_of(session, broadcast.spec)
    base = settings.public_base_url.rstrip("/")
    run = uuid.uuid4().hex[:12]
    messages: list[NewMessage] = []
    for account in accounts:
        language = account.member.language
        for v in broadcast.spec["variants"]:
            mine = {p: t for (name, p), t in links.items() if name == v["name"]}
            replies = dump_replies(
                compose(
                    v["message"],
                    language=language,
                    catalog=catalog,
                    base_url=base,
                    links=mine,
                    courses=courses,
                    test=True,
                )
            )
            messages.append(
                NewMessage(
                    key=f"bctest:{broadcast.id}:{v['name']}:{account.id}:{run}",
                    target=Target(member_id, account.id, account.channel, account.external_id),
                    replies=replies,
                    kind=bc.TEST_KIND,
                    priority=PRIORITY_REPLY,
                    not_before=now,
                    proactive=False,
                )
            )
    return len(await enqueue_many(session, messages, now=now))


# -- planning (the `broadcasts` job) ----------------------------------------------------------
async def plan_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: dt.datetime,
    catalog: Catalog,
    settings: Settings,
    channels: Sequence[str],
    not_before: Any,
    claims: Any = None,
    stop_after_chunks: int | None = None,
    chunk: int = bc.CHUNK,
) -> dict[str, int]:
    """Plan every due broadcast into the outbox, chunk by chunk (each chunk one commit with
    its cursor), choosing A/B winners whose time has come. `not_before(now)` is the send
    time after quiet hours. Returns rows queued by broadcast id (as text).

    `stop_after_chunks` stops early, as a crash would (tests and benchmarks)."""
    # Each transaction here reads, then writes: on SQLite it takes the write lock first
    # (begin_write), or a second scheduler's commit in between makes its write fail.
    async with sessionmaker() as session:
        await begin_write(session)
        taken = await bc.claim_due(session, now=now)
        await session.commit()
        ids = [b.id for b in taken]
    done: dict[str, int] = {}
    chunks = 0
    for broadcast_id in ids:
        async with sessionmaker() as session:
            await begin_write(session)
            row = await bc.require_broadcast(session, broadcast_id)
            if row.phase == 0 and row.cursor >= row.last_member > 0:
                # The shares went out earlier: now the winner's turn (or, after a crash just
                # before the phase was closed, close it first).
                if row.winner_at is None or row.winner_at > now:
                    bc.finish_phase(row, now=now)
                    await session.commit()
                    done[str(row.id)] = 0
                    continue
                by_variant = await claims(session, row) if claims is not None else {}
                bc.begin_winner_phase(
                    row,
                    await bc.choose_winner(session, row, now=now, claims=by_variant),
                    now=now,
                )
            await bc.start_phase(session, row)
            await session.commit()
            await begin_write(session)
            plan = bc.PlanSettings(
                channels=channels,
                not_before=not_before(now),
                cap=settings.marketing_cap_per_week,
                chunk=chunk,
            )
            body = await bodies(session, row, catalog=catalog, settings=settings)
            before = row.queued
            while True:
                more = await bc.plan_chunk(session, row, bodies=body, settings=plan, now=now)
                await session.commit()
                await begin_write(session)
                chunks += 1
                if not more:
                    break
                if stop_after_chunks is not None and chunks >= stop_after_chunks:
                    return done | {str(row.id): row.queued - before}
                # Paused or cancelled meanwhile (another process): stop at this chunk.
                await session.refresh(row)
                if row.paused or row.status != bc.PLANNING:
                    break
            if row.status == bc.PLANNING and not row.paused:
                bc.finish_phase(row, now=now)
                await session.commit()
            done[str(row.id)] = row.queued - before
    return done


# -- tracked links -----------------------------------------------------------------------------
def redirect_routes(
    *, sessionmaker: async_sessionmaker[AsyncSession], signer: LinkSigner
) -> APIRouter:
    """`GET /r/{token}`: count the click, redirect (302) to the original URL; 404 unknown.
    `?p=<tag>` (links sent to one person at a time) also counts that person, when the tag
    is the one made for them; a wrong tag is a click like any other."""
    router = APIRouter()

    @router.get("/r/{token}", include_in_schema=False)
    async def follow(token: str, p: str | None = None) -> RedirectResponse:
        if len(token) > 24:
            raise HTTPException(404, "unknown link")
        member = signer.click_member(token, p[:40]) if p else None
        async with sessionmaker() as session:
            url = await bc.record_click(session, token=token, member_id=member, now=utcnow())
            await session.commit()
        if url is None:
            raise HTTPException(404, "unknown link")
        return RedirectResponse(url, status_code=302)

    return router


# -- LINE's per-unit statistics ----------------------------------------------------------------
async def line_insight(
    settings: Settings, broadcast: bc.Broadcast, *, now: dt.datetime
) -> dict[str, dict[str, Any]]:
    """Impressions and clicks per aggregation unit from LINE's insight API, where LINE gives
    them; values LINE leaves empty (fewer than 20 people) show as "< 20". Empty without LINE."""
    if not settings.line_enabled or settings.line_channel_access_token is None:
        return {}
    # LINE's dates are UTC+9 calendar days, at most 30 days from `from`.
    tokyo = dt.timezone(dt.timedelta(hours=9))
    start = broadcast.send_at.astimezone(tokyo).date()
    end = min(now.astimezone(tokyo).date(), start + dt.timedelta(days=30))
    token = settings.line_channel_access_token.get_secret_value()
    out: dict[str, dict[str, Any]] = {}
    units = [
        bc.aggregation_unit(broadcast.id, v["name"], phase=p)
        for p in (0, 1)
        for v in broadcast.spec["variants"]
    ]
    async with httpx.AsyncClient(
        base_url=settings.line_api_base_url,
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        for unit in units:
            try:
                answer = await client.get(
                    "/v2/bot/insight/message/event/aggregation",
                    params={
                        "customAggregationUnit": unit,
                        "from": start.strftime("%Y%m%d"),
                        "to": end.strftime("%Y%m%d"),
                    },
                )
            except httpx.HTTPError:
                log.warning("LINE insight unreachable")
                return out
            if answer.status_code != 200:
                continue
            overview = answer.json().get("overview") or {}
            out[unit] = {
                key: SMALL if overview.get(key) is None else overview[key]
                for key in ("uniqueImpression", "uniqueClick", "uniqueMediaPlayed")
            }
    return out


def taipei(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(TAIPEI).isoformat() if moment else None


async def describe(session: AsyncSession, broadcast: bc.Broadcast) -> dict[str, Any]:
    """What `edoor broadcast show` and `GET /admin/api/broadcasts/{id}` print."""
    figures = await bc.figures(session, broadcast)
    return {
        "id": broadcast.id,
        "name": broadcast.name,
        "status": "paused" if broadcast.paused else broadcast.status,
        "send_at": taipei(broadcast.send_at),
        "holdout": (broadcast.spec["holdout"]["end"] - broadcast.spec["holdout"]["start"]) / 10,
        "winner": broadcast.winner,
        "winner_at": taipei(broadcast.winner_at),
        "planned": broadcast.queued,
        **figures,
        # Per variant: its share of the segment (%) beside its sent, queued and clicks.
        "variants": {
            v["name"]: {"share": v["share"] / 10, **figures["variants"].get(v["name"], {})}
            for v in broadcast.spec["variants"]
        },
        # Prize claims per variant within 7 days after receiving it (claims_attributed).
        "claims": await bc.claims_attributed(session, broadcast),
        "created_by": broadcast.created_by,
        "created_at": taipei(broadcast.created_at),
    }
