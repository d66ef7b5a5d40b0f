"""Phone verification in chat: a typed number or a shared contact, a code by SMS, account links.

Steps: `verify.await_phone` -> `verify.await_code` -> (number held by another account)
`verify.confirm_link`. Step data keeps the challenge id, and a number only encrypted.
The SMS provider is `ctx.services.sms` (bot.ports.SmsProvider; the providers are in sms/).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re

from sqlalchemy import select

from bot.context import Context
from bot.i18n import taipei_time
from bot.messages import AskPhone, Button, Incoming, Reply, Text
from bot.ports import SmsError, SmsMessage, SmsProvider
from bot.router import COMMAND_ACTION, Router, normalise_words
from handlers.courses import civil_servant_courses_button
from handlers.start import back_buttons
from models import identity
from models.identity import Outcome, Refusal, VerificationRefused
from models.otp_limits import OtpLimits
from models.phones import (
    check_phone,
    looks_like_phone,
    mask_phone,
    parse_regions,
    region_fallback_name,
)

log = logging.getLogger("edoor.verification")
router = Router("verification")

AWAIT_PHONE, AWAIT_CODE, CONFIRM_LINK = (
    "verify.await_phone",
    "verify.await_code",
    "verify.confirm_link",
)
_CODE = re.compile(r"^\s*(\d\s*){6}$")
_YES = {"是", "好", "確認", "連結", "yes", "y", "ok", "link"}
_NO = {"否", "不要", "不用", "no", "n"}
CHANNEL_NAMES = {"line": "LINE", "telegram": "Telegram", "simulator": "Simulator"}


def _limits(ctx: Context) -> OtpLimits:
    s = ctx.settings
    return OtpLimits(
        per_phone_hour=s.otp_max_per_phone_hour,
        per_member_hour=s.otp_max_per_member_hour,
        global_hour=s.otp_max_global_hour,
        wrong_codes_hour=s.otp_max_wrong_codes_hour,
        per_newcomer_hour=s.otp_max_per_newcomer_hour,
        per_phone_newcomer_hour=s.otp_max_per_phone_newcomer_hour,
        per_prefix_hour=s.otp_max_per_prefix_hour,
        prefix_digits=s.otp_prefix_digits,
        newcomer_share=s.otp_newcomer_share,
        newcomer_age=dt.timedelta(hours=s.otp_newcomer_hours),
    )


def _sms(ctx: Context) -> SmsProvider:
    return ctx.services.sms


def _cancel_button(ctx: Context) -> Button:
    return Button(label=ctx.t("verification.button_cancel"), action="verify.cancel")


def _ask_phone(ctx: Context, key: str = "verification.ask_phone", **values: object) -> AskPhone:
    return AskPhone(
        text=ctx.t(key, **values),
        share_label=ctx.t("verification.share_phone"),
        cancel=_cancel_button(ctx),
    )


def _regions(ctx: Context) -> str:
    """The accepted countries (PHONE_ALLOWED_REGIONS) by name, in the person's language."""
    names = []
    for region in parse_regions(ctx.settings.phone_allowed_regions):
        try:
            names.append(ctx.t(f"verification.region.{region}"))
        except KeyError:  # a region the catalogs do not name yet: its English name
            names.append(region_fallback_name(region))
    return ctx.t("verification.region_separator").join(names)


def _bad_phone(ctx: Context, problem: str | None) -> AskPhone:
    return _ask_phone(ctx, f"verification.phone_{problem}", regions=_regions(ctx))


def _minutes(wait: dt.timedelta | None) -> int:
    return max(1, math.ceil((wait or dt.timedelta()).total_seconds() / 60))


def _seconds(wait: dt.timedelta | None) -> int:
    return max(1, math.ceil((wait or dt.timedelta()).total_seconds()))


def _until(ctx: Context, wait: dt.timedelta | None) -> str:
    """The Taipei wall-clock minute at which `wait` is over (rounded up), e.g. '10:05'."""
    at = ctx.now + (wait or dt.timedelta())
    if at.second or at.microsecond:
        at = at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    same_day = taipei_time(at, "%Y-%m-%d") == taipei_time(ctx.now, "%Y-%m-%d")
    return taipei_time(at, "%H:%M" if same_day else "%m/%d %H:%M")


def _refusal(ctx: Context, refused: VerificationRefused) -> Reply:
    """The message for an expected refusal, with the way forward as buttons."""
    reason = refused.reason
    values: dict[str, object] = {
        "minutes": _minutes(refused.wait),
        "seconds": _seconds(refused.wait),
        "remaining": refused.remaining or 0,
        "time": _until(ctx, refused.wait),
        "limit": _limits(ctx).wrong_codes_hour,
    }
    buttons: list[Button] = []
    if reason in _RESENDABLE:
        buttons = [
            Button(label=ctx.t("verification.button_resend"), action="verify.resend"),
            _cancel_button(ctx),
        ]
    elif reason in _STAY_LOCKED:
        buttons = [_cancel_button(ctx)]
    return Text(text=ctx.t(f"verification.refused.{reason.value}", **values), buttons=buttons)


# Refusals after which "Resend" makes sense (the step keeps the number for it).
_RESENDABLE = (Refusal.WRONG_CODE, Refusal.EXPIRED, Refusal.COOLDOWN, Refusal.COOLDOWN_OTHER)
# Refusals that hold for a while: the step stays, answering "locked" until they are over,
# so a further code typed meanwhile is not taken for a course search.
_STAY_LOCKED = (Refusal.LOCKED, Refusal.TOO_MANY_WRONG)


async def _hold(ctx: Context, refused: VerificationRefused, data: dict[str, object]) -> None:
    """Stay in the code step until a lock is over (its answer repeats the time)."""
    wait = refused.wait or dt.timedelta()
    until = ctx.now + wait
    held = {**data, "locked": refused.reason.value, "locked_until": until.isoformat()}
    await ctx.enter(AWAIT_CODE, held, ttl=wait + dt.timedelta(seconds=1))


def _still_locked(ctx: Context) -> VerificationRefused | None:
    """The lock this step is waiting out, when it has no verification of its own to ask."""
    data = ctx.state_data
    reason, until = data.get("locked"), data.get("locked_until")
    if not isinstance(reason, str) or not isinstance(until, str):
        return None
    wait = dt.datetime.fromisoformat(until) - ctx.now
    if wait <= dt.timedelta():
        return None
    return VerificationRefused(Refusal(reason), wait=wait)


async def _pending(ctx: Context) -> identity.OtpChallenge | None:
    """The verification this account is in the middle of (state first, then the database)."""
    challenge_id = ctx.state_data.get("challenge_id")
    if isinstance(challenge_id, int):
        found = await identity.get_challenge(
            ctx.session,
            challenge_id=challenge_id,
            member_id=ctx.member.id,
            account_id=ctx.account.id,
        )
        if found is not None and found.status == identity.PENDING:
            return found
    return await ctx.session.scalar(
        select(identity.OtpChallenge)
        .where(
            identity.OtpChallenge.member_id == ctx.member.id,
            identity.OtpChallenge.account_id == ctx.account.id,
            identity.OtpChallenge.status == identity.PENDING,
            identity.OtpChallenge.created_at > ctx.now - identity.HOUR,
        )
        .order_by(identity.OtpChallenge.id.desc())
        .limit(1)
    )


async def _send_code(ctx: Context, phone: str) -> Reply:
    """Issue a code and text it; a provider failure rolls everything back (nothing used up)."""
    try:
        async with ctx.session.begin_nested():
            issued = await identity.issue_code(
                ctx.session,
                vault=ctx.services.vault,
                member_id=ctx.member.id,
                account_id=ctx.account.id,
                phone=phone,
                limits=_limits(ctx),
                now=ctx.now,
            )
            body = ctx.t("verification.sms_body", code=issued.code)
            await _sms(ctx).send(
                SmsMessage(
                    to=phone,
                    body=body,
                    reference=issued.reference,
                    requester=f"{ctx.channel}:{ctx.account.external_id}",
                ),
                session=ctx.session,
                now=ctx.now,
            )
    except VerificationRefused as refused:
        if refused.reason is Refusal.ALREADY_VERIFIED:
            await ctx.leave()
        elif refused.reason in _STAY_LOCKED:
            await _hold(ctx, refused, {})
        elif refused.challenge_id is not None:
            await ctx.enter(AWAIT_CODE, {"challenge_id": refused.challenge_id})
        elif refused.reason in _RESENDABLE:
            # Someone else's code is in flight for this number: keep the number, so that
            # "Resend" sends this person's own code once the cool-down is over.
            await ctx.enter(AWAIT_CODE, {"phone_sealed": ctx.services.vault.encrypt(phone)})
        return _refusal(ctx, refused)
    except SmsError as exc:
        # exc.reason names the provider and status only; never the number or the text.
        if exc.recipient:
            # Not "try later": this number will not get the message, so ask for another. The
            # refusal still counts toward the caps (the savepoint above took the send back).
            log.info("SMS refused for the number: %s", exc.reason)
            await identity.record_refused_send(
                ctx.session,
                vault=ctx.services.vault,
                member_id=ctx.member.id,
                phone=phone,
                now=ctx.now,
                limits=_limits(ctx),
            )
            await ctx.enter(AWAIT_PHONE)
            return _ask_phone(ctx, "verification.sms_number_refused", phone=mask_phone(phone))
        if exc.temporary:
            log.warning("SMS not sent: %s", exc.reason)
        else:
            log.error("SMS provider refuses our requests (check its settings): %s", exc.reason)
        return Text(
            text=ctx.t("verification.sms_failed"),
            buttons=[
                Button(label=ctx.t("verification.button_resend"), action="verify.resend"),
                _cancel_button(ctx),
            ],
        )
    # The step outlives the code, so a late code gets "expired" rather than a course search.
    await ctx.enter(AWAIT_CODE, {"challenge_id": issued.challenge.id}, ttl=2 * identity.CODE_TTL)
    return Text(
        text=ctx.t("verification.code_sent", phone=mask_phone(phone)),
        buttons=[
            Button(label=ctx.t("verification.button_resend"), action="verify.resend"),
            _cancel_button(ctx),
        ],
    )


async def _verified(ctx: Context, phone: str, *, method: str) -> list[Reply]:
    """Record the verified number and say what it means (or offer to link accounts)."""
    result = await identity.record_verified_phone(
        ctx.session,
        vault=ctx.services.vault,
        member_id=ctx.member.id,
        phone=phone,
        method=method,
        channel=ctx.channel,
        now=ctx.now,
    )
    masked = mask_phone(phone)
    if result.outcome is Outcome.OWNED_BY_OTHER:
        assert result.owner_member_id is not None
        others = await identity.linked_accounts(ctx.session, member_id=result.owner_member_id)
        names = "、".join(sorted({CHANNEL_NAMES.get(a.channel, a.channel) for a in others}))
        await ctx.enter(
            CONFIRM_LINK,
            {"owner": result.owner_member_id, "phone_sealed": ctx.services.vault.encrypt(phone)},
        )
        return [
            Text(
                text=ctx.t("verification.link_offer", phone=masked, channels=names or "-"),
                buttons=[
                    Button(label=ctx.t("verification.button_link"), action="verify.link"),
                    Button(label=ctx.t("verification.button_no_link"), action="verify.nolink"),
                ],
            )
        ]
    await ctx.finish()  # back to a claim that asked for the verification, if one did
    if result.outcome is Outcome.ALREADY_VERIFIED:
        return [Text(text=ctx.t("verification.refused.already_verified"))]
    text = ctx.t("verification.verified", phone=masked)
    if not result.civil_servant:
        text += "\n" + ctx.t("verification.verified_not_roster")
    replies: list[Reply] = [Text(text=text)]
    if result.civil_servant:
        replies.append(Text(text=ctx.t("verification.civil_servant")))
    return _with_unlocked(ctx, replies, civil_servant=result.civil_servant)


def _with_unlocked(ctx: Context, replies: list[Reply], *, civil_servant: bool) -> list[Reply]:
    """What a verified phone unlocks, as buttons on the last reply: prizes for everyone; the
    civil servants' courses and My learning (their mandatory hours) when the roster matched.
    Not when a claim waits for this verification: the claim's own answer follows."""
    last = replies[-1]
    if ctx.follow_up is not None or not isinstance(last, Text):
        return replies
    prizes = Button(label=ctx.t("start.menu_item.prizes"), action=f"{COMMAND_ACTION}:prizes")
    if civil_servant:
        learning = Button(
            label=ctx.t("start.menu_item.learning"), action=f"{COMMAND_ACTION}:learning"
        )
        buttons = [civil_servant_courses_button(ctx), learning, prizes]
    else:
        search = Button(label=ctx.t("start.menu_item.search"), action=f"{COMMAND_ACTION}:search")
        buttons = [prizes, search]
    unlocked = last.model_copy(update={"buttons": buttons, "quick_replies": back_buttons(ctx)})
    return [*replies[:-1], unlocked]


async def _phone_given(ctx: Context, raw: str) -> Reply | list[Reply]:
    checked = check_phone(raw, regions=ctx.settings.phone_allowed_regions)
    if checked.e164 is None:
        await ctx.enter(AWAIT_PHONE)
        return _bad_phone(ctx, checked.problem)
    return await _send_code(ctx, checked.e164)


async def _contact(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """A shared contact counts only when it is the sender's own and not forwarded."""
    if not msg.contact_is_own or msg.contact_phone is None:
        await ctx.enter(AWAIT_PHONE)
        return _ask_phone(ctx, "verification.contact_not_own")
    checked = check_phone(
        msg.contact_phone.get_secret_value(), regions=ctx.settings.phone_allowed_regions
    )
    if checked.e164 is None:
        await ctx.enter(AWAIT_PHONE)
        return _bad_phone(ctx, checked.problem)
    if ctx.settings.phone_trust_telegram_contact and ctx.channel == "telegram":
        mine = await identity.get_verified_phone(ctx.session, member_id=ctx.member.id)
        if mine is not None and mine.phone_hash == ctx.services.vault.lookup_hash(checked.e164):
            await ctx.leave()
            return Text(text=ctx.t("verification.refused.already_verified"))
        return await _verified(ctx, checked.e164, method="telegram_contact")
    return await _send_code(ctx, checked.e164)


@router.on_command("verify", words=("驗證手機", "verify", "verify my phone"))
async def verify(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """Asks for a number (or takes `/verify 0912...`); again while a code is out, resends."""
    if ctx.args:
        return await _phone_given(ctx, ctx.args)
    pending = await _pending(ctx)
    if pending is not None:
        return await _send_code(ctx, ctx.services.vault.decrypt(pending.phone_sealed))
    waiting = _waiting_phone(ctx)
    if waiting is not None:
        return await _send_code(ctx, waiting)
    await ctx.enter(AWAIT_PHONE)
    mine = await identity.get_verified_phone(ctx.session, member_id=ctx.member.id)
    if mine is not None:
        phone = mask_phone(ctx.services.vault.decrypt(mine.phone_sealed))
        return _ask_phone(ctx, "verification.ask_phone_again", phone=phone)
    return _ask_phone(ctx)


@router.on_event("contact")
async def contact(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """A contact shared outside the verification step starts (or finishes) verification."""
    return await _contact(ctx, msg)


@router.on_state(AWAIT_PHONE)
async def await_phone(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """Takes a typed number or a shared contact."""
    if msg.kind == "contact":
        return await _contact(ctx, msg)
    if msg.kind != "text" or not msg.text.strip():
        return _ask_phone(ctx)
    return await _phone_given(ctx, msg.text)


@router.on_state(AWAIT_CODE)
async def await_code(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """Takes the six-digit code (or a different number, or a contact)."""
    if msg.kind == "contact":
        return await _contact(ctx, msg)
    text = msg.text if msg.kind == "text" else ""
    challenge_id = ctx.state_data.get("challenge_id")
    held = _still_locked(ctx)
    if _CODE.match(text) and held is not None and not isinstance(challenge_id, int):
        return _refusal(ctx, held)
    if _CODE.match(text) and isinstance(challenge_id, int):
        try:
            challenge = await identity.check_code(
                ctx.session,
                vault=ctx.services.vault,
                challenge_id=challenge_id,
                member_id=ctx.member.id,
                account_id=ctx.account.id,
                code=text,
                now=ctx.now,
                limits=_limits(ctx),
            )
        except VerificationRefused as refused:
            if refused.reason in _STAY_LOCKED:
                await _hold(ctx, refused, {"challenge_id": challenge_id})
            elif refused.reason in (Refusal.NO_CHALLENGE, Refusal.USED):
                await ctx.leave()
            return _refusal(ctx, refused)
        return await _verified(
            ctx, ctx.services.vault.decrypt(challenge.phone_sealed), method="sms"
        )
    if looks_like_phone(text):
        return await _phone_given(ctx, text)
    return Text(
        text=ctx.t("verification.code_format"),
        buttons=[
            Button(label=ctx.t("verification.button_resend"), action="verify.resend"),
            _cancel_button(ctx),
        ],
    )


def _waiting_phone(ctx: Context) -> str | None:
    """The number this step waits to send a first code to (it was cooling down for someone
    else's verification), if any."""
    sealed = ctx.state_data.get("phone_sealed") if ctx.state_name == AWAIT_CODE else None
    return ctx.services.vault.decrypt(sealed) if isinstance(sealed, str) else None


@router.on_action("verify.resend")
async def resend(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """The Resend button: a new code to the same number, after the cool-down."""
    pending = await _pending(ctx)
    if pending is not None:
        return await _send_code(ctx, ctx.services.vault.decrypt(pending.phone_sealed))
    waiting = _waiting_phone(ctx)
    if waiting is not None:
        return await _send_code(ctx, waiting)
    await ctx.enter(AWAIT_PHONE)
    return _ask_phone(ctx, "verification.refused.no_challenge")


@router.on_action("verify.cancel")
async def cancel(ctx: Context, msg: Incoming) -> Reply:
    """The Cancel button: the code out stops working."""
    await identity.close_challenges(ctx.session, member_id=ctx.member.id)
    await ctx.leave()
    return Text(text=ctx.t("verification.cancelled"))


async def _link(ctx: Context) -> Reply:
    data = ctx.state_data
    owner, sealed = data.get("owner"), data.get("phone_sealed")
    if ctx.state_name != CONFIRM_LINK or not isinstance(owner, int) or not isinstance(sealed, str):
        return Text(text=ctx.t("verification.link_expired"))
    holder = await identity.find_phone_owner(
        ctx.session, vault=ctx.services.vault, phone=ctx.services.vault.decrypt(sealed)
    )
    then = ctx.return_to
    await ctx.leave()
    if holder is None or holder.member_id != owner:
        return Text(text=ctx.t("verification.link_expired"))
    await identity.merge_members(ctx.session, keep_id=owner, absorb_id=ctx.member.id, now=ctx.now)
    await ctx.session.refresh(ctx.account)
    accounts = await identity.linked_accounts(ctx.session, member_id=owner)
    names = "、".join(CHANNEL_NAMES.get(a.channel, a.channel) for a in accounts)
    ctx.follow_up = then  # the linked person's claim goes on, as that one person
    text = ctx.t("verification.linked", channels=names)
    if ctx.member.is_civil_servant:
        text += "\n" + ctx.t("verification.civil_servant")
    (reply,) = _with_unlocked(ctx, [Text(text=text)], civil_servant=ctx.member.is_civil_servant)
    return reply


@router.on_action("verify.link")
async def link(ctx: Context, msg: Incoming) -> Reply:
    """Confirms linking this account to the member who verified the number first."""
    return await _link(ctx)


def _not_linked(ctx: Context) -> Reply:
    """This account stays separate and unverified: another number may verify it."""
    return Text(
        text=ctx.t("verification.not_linked"),
        buttons=[
            Button(
                label=ctx.t("verification.button_other_number"), action=f"{COMMAND_ACTION}:verify"
            ),
        ],
        quick_replies=back_buttons(ctx),
    )


@router.on_action("verify.nolink")
async def no_link(ctx: Context, msg: Incoming) -> Reply:
    """Declines the link: this account stays separate and unverified; another number, the
    menu or the help next."""
    await ctx.leave()
    return _not_linked(ctx)


@router.on_state(CONFIRM_LINK)
async def confirm_link(ctx: Context, msg: Incoming) -> Reply:
    """Typed yes / no to the link offer."""
    answer = normalise_words(msg.text) if msg.kind == "text" else ""
    if answer in _YES:
        return await _link(ctx)
    if answer in _NO:
        await ctx.leave()
        return _not_linked(ctx)
    return Text(
        text=ctx.t("verification.link_question"),
        buttons=[
            Button(label=ctx.t("verification.button_link"), action="verify.link"),
            Button(label=ctx.t("verification.button_no_link"), action="verify.nolink"),
        ],
    )
