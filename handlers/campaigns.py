"""Campaign prizes in chat: running campaigns, a campaign's card with this member's
eligibility, claiming (a verified phone first, then back to the claim), draw entries, and
`/myprizes`. The rules live in models.campaigns; the reply is sent after the commit (the
inbound unit of work commits the claim before anything goes out)."""

from __future__ import annotations

import datetime as dt

from bot.context import Context
from bot.i18n import taipei_time
from bot.messages import Button, Image, Incoming, Reply, Text
from bot.router import COMMAND_ACTION, Router
from handlers.start import back_buttons
from media.qr import prize_qr_url
from models import identity
from models.campaigns import claims as campaigns
from models.campaigns.claims import ClaimResult, Outcome
from models.campaigns.eligibility import (
    AGENCY,
    COURSES,
    HOURS,
    REQUIREMENT,
    Missing,
    Verdict,
    evaluate,
    rule_of,
)
from models.campaigns.tables import DRAW, DRAWN, REVIEW, Campaign, CampaignClaim
from models.courses import get_course
from models.phones import mask_phone

router = Router("campaigns")
MAX_BUTTONS = 4  # LINE shows at most four buttons on a card


def _title(ctx: Context, campaign: Campaign) -> str:
    return campaign.title_en if ctx.lang == "en" and campaign.title_en else campaign.title


def _prize_name(ctx: Context, campaign: Campaign) -> str:
    prize = campaign.prize
    return str(prize.get("name_en") if ctx.lang == "en" and prize.get("name_en") else prize["name"])


def _redeem(ctx: Context, campaign: Campaign) -> str:
    prize = campaign.prize
    return str(
        prize.get("redeem_en") if ctx.lang == "en" and prize.get("redeem_en") else prize["redeem"]
    )


def _last_day(campaign: Campaign) -> str:
    # ends_at is the first moment after the campaign: its last day is the one before it.
    return taipei_time(campaign.ends_at - dt.timedelta(seconds=1), "%m/%d")


def _period(campaign: Campaign) -> str:
    last = campaign.ends_at - dt.timedelta(seconds=1)
    return f"{taipei_time(campaign.starts_at, '%Y/%m/%d')}–{taipei_time(last, '%Y/%m/%d')}"


def _hours(value: float) -> str:
    return f"{max(0.1, round(value + 1e-9, 1)):g}"


def _prizes_button(ctx: Context) -> Button:
    return Button(label=ctx.t("campaigns.button_prizes"), action=f"{COMMAND_ACTION}:prizes")


def _my_prizes_button(ctx: Context) -> Button:
    return Button(label=ctx.t("campaigns.button_my_prizes"), action=f"{COMMAND_ACTION}:myprizes")


def _fits(action: str) -> bool:
    return len(action.encode("utf-8")) <= 64


async def _missing_lines(
    ctx: Context, campaign: Campaign, verdict: Verdict
) -> tuple[list[str], list[Button]]:
    """One line per unmet rule, and buttons to what would meet it (matching courses)."""
    lines: list[str] = []
    buttons: list[Button] = []
    date = _last_day(campaign)
    for missing in verdict.missing:
        lines.append(await _missing_line(ctx, campaign, missing, date))
        buttons += await _missing_buttons(ctx, missing)
    return lines, buttons


async def _missing_line(ctx: Context, campaign: Campaign, missing: Missing, date: str) -> str:
    key = f"campaigns.missing_{missing.kind}"
    if missing.kind == HOURS:
        topic = (
            ctx.t("campaigns.topic", names="、".join(missing.categories))
            if missing.categories
            else ""
        )
        return ctx.t(key, hours=_hours(missing.hours), topic=topic, date=date)
    if missing.kind == COURSES:
        titles = []
        for course_id in missing.course_ids:
            course = await get_course(ctx.session, course_id=course_id)
            titles.append(course.title if course is not None else course_id)
        return ctx.t(key, titles="、".join(titles), date=date)
    if missing.kind == REQUIREMENT:
        title = missing.requirement.title_in(ctx.lang) if missing.requirement else "-"
        return ctx.t(key, hours=_hours(missing.hours), title=title)
    if missing.kind == AGENCY:
        return ctx.t(key, agencies="、".join(rule_of(campaign).agencies))
    return ctx.t(key)


async def _missing_buttons(ctx: Context, missing: Missing) -> list[Button]:
    out: list[Button] = []
    if missing.kind == HOURS:
        for name in missing.categories or ():
            action = f"course.cat:{name}"
            if _fits(action):
                out.append(Button(label=name[:20], action=action))
        if not missing.categories:
            out.append(
                Button(label=ctx.t("campaigns.button_courses"), action=f"{COMMAND_ACTION}:search")
            )
    elif missing.kind == COURSES:
        for course_id in missing.course_ids:
            course = await get_course(ctx.session, course_id=course_id)
            action = f"course.open:{course_id}"
            if course is not None and _fits(action):
                out.append(Button(label=course.title[:20], action=action))
    elif missing.kind == REQUIREMENT:
        out.append(
            Button(label=ctx.t("campaigns.button_learning"), action=f"{COMMAND_ACTION}:learning")
        )
    return out


async def _campaign(ctx: Context) -> Campaign | None:
    if not ctx.args.isdigit():
        return None
    return await ctx.session.get(Campaign, int(ctx.args))


def _unknown(ctx: Context) -> Reply:
    return Text(text=ctx.t("campaigns.unknown"), buttons=[_prizes_button(ctx)])


@router.on_command("prizes", words=("活動領獎", "領獎", "prizes", "prize"))
async def prizes(ctx: Context, msg: Incoming) -> Reply:
    """The campaigns running now as buttons (or: none is running, verify your phone first)."""
    running = await campaigns.running_campaigns(ctx.session, now=ctx.now)
    phone = await identity.get_verified_phone(ctx.session, member_id=ctx.member.id)
    drawn = [
        p
        for p in await campaigns.member_prizes(ctx.session, member_id=ctx.member.id)
        if p.claim.status == DRAWN and p.campaign not in running
    ]
    shown = running + [p.campaign for p in drawn]
    if not shown:
        # Nothing running: what may come next (the prizes already won, courses), the menu;
        # without a verified phone, verifying it (so that a later claim is one tap).
        if phone is not None:
            search = Button(
                label=ctx.t("start.menu_item.search"), action=f"{COMMAND_ACTION}:search"
            )
            return Text(
                text=ctx.t("campaigns.none_running"),
                buttons=[_my_prizes_button(ctx), search],
                quick_replies=back_buttons(ctx),
            )
        return Text(
            text=ctx.t("campaigns.none_running_verify_first"),
            buttons=[
                Button(label=ctx.t("start.menu_item.verify"), action=f"{COMMAND_ACTION}:verify")
            ],
            quick_replies=back_buttons(ctx),
        )
    buttons = [
        Button(label=_title(ctx, c)[:20], action=f"prize.show:{c.id}")
        for c in shown[: MAX_BUTTONS - 1]
    ]
    buttons.append(_my_prizes_button(ctx))
    lines = "\n".join(f"・{_title(ctx, c)}（{_period(c)}）" for c in shown)
    return Text(text=f"{ctx.t('campaigns.running')}\n{lines}", buttons=buttons)


@router.on_action("prize.show")
async def show(ctx: Context, msg: Incoming) -> Reply:
    """A campaign's card: period, prize, what is left, and whether this member qualifies."""
    campaign = await _campaign(ctx)
    if campaign is None:
        return _unknown(ctx)
    left = (await campaigns.stock(ctx.session, campaign_id=campaign.id))["free"]
    key = "campaigns.card_draw" if campaign.mode == DRAW else "campaigns.card"
    text = ctx.t(
        key,
        title=_title(ctx, campaign),
        period=_period(campaign),
        prize=_prize_name(ctx, campaign),
        remaining=left,
    )
    claim_label = ctx.t(
        "campaigns.button_enter" if campaign.mode == DRAW else "campaigns.button_claim"
    )
    claim = Button(label=claim_label, action=f"prize.claim:{campaign.id}")
    mine = await campaigns.claim_of(ctx.session, campaign=campaign, member_id=ctx.member.id)
    if mine is not None and mine.status == DRAWN:
        return Text(
            text=text,
            buttons=[
                claim.model_copy(update={"label": ctx.t("campaigns.button_claim")}),
                _my_prizes_button(ctx),
            ],
        )
    entering = campaign.mode == DRAW and ctx.now < campaign.ends_at
    if (campaign.mode != DRAW or entering) and not await campaigns.claims_left(
        ctx.session, campaign=campaign, member_id=ctx.member.id
    ):
        # Everything this person may have is taken (per person, or by their number): no Claim.
        done = (
            "campaigns.refused_already_entered"
            if campaign.mode == DRAW
            else ("campaigns.refused_already_claimed")
        )
        return Text(
            text=f"{text}\n{ctx.t(done, title=_title(ctx, campaign), limit=campaign.per_person)}",
            buttons=[_my_prizes_button(ctx), _prizes_button(ctx)],
            quick_replies=back_buttons(ctx),
        )
    verdict = await evaluate(ctx.session, campaign=campaign, member_id=ctx.member.id, now=ctx.now)
    if verdict.eligible:
        ok = "campaigns.eligible_draw" if campaign.mode == DRAW else "campaigns.eligible"
        return Text(text=f"{text}\n{ctx.t(ok)}", buttons=[claim, _prizes_button(ctx)])
    if verdict.reasons == ["phone"]:
        return Text(
            text=f"{text}\n{ctx.t('campaigns.needs_phone')}", buttons=[claim, _prizes_button(ctx)]
        )
    lines, buttons = await _missing_lines(ctx, campaign, verdict)
    body = "\n".join([text, ctx.t("campaigns.not_eligible"), *lines])
    return Text(text=body, buttons=[*buttons[: MAX_BUTTONS - 1], _prizes_button(ctx)])


def _won(ctx: Context, campaign: Campaign, claim: CampaignClaim, code: str) -> list[Reply]:
    """The code as text, its QR image (a signed link for LINE, the bytes for Telegram), and
    how and until when to redeem it."""
    text = ctx.t(
        "campaigns.won", prize=_prize_name(ctx, campaign), code=code, redeem=_redeem(ctx, campaign)
    )
    until = campaign.prize.get("redeem_until")
    if until:
        date = taipei_time(dt.datetime.fromisoformat(str(until)), "%Y/%m/%d %H:%M")
        text += "\n" + ctx.t("campaigns.won_until", date=date)
    url = prize_qr_url(ctx.settings, ctx.services.media_signer, claim_id=claim.id, now=ctx.now)
    return [
        Text(text=text, quick_replies=[_my_prizes_button(ctx), _prizes_button(ctx)]),
        Image(
            url=url,
            preview_url=url,
            alt_text=ctx.t("campaigns.qr_alt", code=code),
            qr=code,
        ),
    ]


async def _answer(ctx: Context, campaign: Campaign, result: ClaimResult) -> list[Reply]:
    title = _title(ctx, campaign)
    outcome = result.outcome
    if outcome is Outcome.WON and result.claim is not None and result.code is not None:
        return _won(ctx, campaign, result.claim, result.code)
    if outcome is Outcome.ENTERED:
        text = ctx.t("campaigns.entered", title=title, date=_last_day(campaign))
        return [Text(text=text, buttons=[_my_prizes_button(ctx), _prizes_button(ctx)])]
    if outcome is Outcome.REVIEW:
        return [Text(text=ctx.t("campaigns.review"), buttons=[_my_prizes_button(ctx)])]
    if outcome is Outcome.NOT_ELIGIBLE and result.verdict is not None:
        lines, buttons = await _missing_lines(ctx, campaign, result.verdict)
        body = "\n".join([ctx.t("campaigns.refused_not_eligible", title=title), *lines])
        return [Text(text=body, buttons=[*buttons[: MAX_BUTTONS - 1], _prizes_button(ctx)])]
    values: dict[str, object] = {"title": title, "limit": campaign.per_person}
    if outcome is Outcome.NOT_STARTED:
        values["date"] = taipei_time(campaign.starts_at, "%m/%d %H:%M")
    buttons = [_prizes_button(ctx)]
    if outcome in (Outcome.ALREADY_CLAIMED, Outcome.ALREADY_ENTERED):
        buttons.insert(0, _my_prizes_button(ctx))
    return [Text(text=ctx.t(f"campaigns.refused_{outcome.value}", **values), buttons=buttons)]


@router.on_action("prize.claim")
async def claim(ctx: Context, msg: Incoming) -> list[Reply]:
    """Claim (or enter the draw): the code, or the precise reason why not. Without a verified
    phone it goes through verification first and comes back here."""
    campaign = await _campaign(ctx)
    if campaign is None:
        return [_unknown(ctx)]
    result = await campaigns.claim_prize(
        ctx.session,
        vault=ctx.services.vault,
        campaign=campaign,
        member_id=ctx.member.id,
        channel=ctx.channel,
        mask=mask_phone,
        now=ctx.now,
    )
    if result.outcome is Outcome.NEEDS_PHONE:
        ctx.detour(f"{COMMAND_ACTION}:verify", then=f"prize.claim:{campaign.id}")
        return [Text(text=ctx.t("campaigns.refused_needs_phone"))]
    return await _answer(ctx, campaign, result)


@router.on_command("myprizes", words=("我的獎品", "my prizes", "myprizes"))
async def my_prizes(ctx: Context, msg: Incoming) -> Reply:
    """The prizes this member won (codes again), drawn prizes to claim, claims in review."""
    found = await campaigns.member_prizes(ctx.session, member_id=ctx.member.id)
    if not found:
        return Text(
            text=ctx.t("campaigns.my_prizes_none"),
            buttons=[_prizes_button(ctx)],
            quick_replies=back_buttons(ctx),
        )
    lines = [ctx.t("campaigns.my_prizes_title")]
    buttons: list[Button] = []
    for prize in found:
        values = {"prize": _prize_name(ctx, prize.campaign), "title": _title(ctx, prize.campaign)}
        if prize.claim.status == DRAWN and prize.claim.claim_until is not None:
            date = taipei_time(prize.claim.claim_until, "%m/%d %H:%M")
            lines.append(ctx.t("campaigns.my_prize_drawn", date=date, **values))
            buttons.append(
                Button(
                    label=ctx.t("campaigns.button_claim"), action=f"prize.claim:{prize.campaign.id}"
                )
            )
        elif prize.claim.status == REVIEW:
            lines.append(ctx.t("campaigns.my_prize_review", **values))
        else:
            redeem = _redeem(ctx, prize.campaign)
            lines.append(
                ctx.t("campaigns.my_prize", code=prize.code or "-", redeem=redeem, **values)
            )
            buttons.append(
                Button(label=ctx.t("campaigns.button_show_qr"), action=f"prize.qr:{prize.claim.id}")
            )
    return Text(text="\n\n".join(lines), buttons=[*buttons[: MAX_BUTTONS - 1], _prizes_button(ctx)])


@router.on_action("prize.qr")
async def show_qr(ctx: Context, msg: Incoming) -> list[Reply]:
    """A won prize's code and QR image again."""
    if not ctx.args.isdigit():
        return [_unknown(ctx)]
    mine = {
        p.claim.id: p
        for p in await campaigns.member_prizes(ctx.session, member_id=ctx.member.id)
        if p.code is not None
    }
    prize = mine.get(int(ctx.args))
    if prize is None:
        return [_unknown(ctx)]
    assert prize.code is not None
    return _won(ctx, prize.campaign, prize.claim, prize.code)
