"""Settings: language, marketing messages, reminder time, linked channels, verification status,
and "刪除我的資料 / Delete my data" after a confirmation."""

from __future__ import annotations

from sqlalchemy import text

from bot.context import Context
from bot.messages import Button, Incoming, Reply, Text
from bot.router import COMMAND_ACTION, Router, normalise_words
from handlers.start import back_buttons
from models import identity
from models.broadcasts import KIND as MARKETING_KIND
from models.members import ChannelAccount
from models.outbox import cancel_pending
from models.phones import mask_phone
from models.podcasts import subscribed_podcasts
from models.privacy import erase_member
from models.times import parse_time_of_day

router = Router("settings")

CHANNEL_NAMES = {"line": "LINE", "telegram": "Telegram", "simulator": "Simulator"}
REMINDER_CHOICES = ("08:00", "12:30", "20:00")
_DELETE_WORDS = {normalise_words(w) for w in ("刪除我的資料", "delete my data")}
_CONFIRM_WORDS = {normalise_words(w) for w in ("確認刪除", "確認", "confirm", "delete")}
AWAIT_REMINDER, CONFIRM_DELETE = "settings.await_reminder", "settings.confirm_delete"


async def _reminder_time(ctx: Context) -> str | None:
    # member.reminder_time is added by migration 0003_identity; read through SQL so this
    # works whether or not the Member model maps the column yet.
    value = await ctx.session.scalar(
        text("SELECT reminder_time FROM member WHERE id = :id"), {"id": ctx.member.id}
    )
    return str(value) if value else None


async def _set_reminder_time(ctx: Context, value: str | None) -> None:
    await ctx.session.execute(
        text("UPDATE member SET reminder_time = :t WHERE id = :id"),
        {"t": value, "id": ctx.member.id},
    )


async def status_lines(ctx: Context) -> list[str]:
    """The phone and civil-servant status lines (exact words fixed by DESIGN.md)."""
    phone = await identity.get_verified_phone(ctx.session, member_id=ctx.member.id)
    if phone is not None:
        masked = mask_phone(ctx.services.vault.decrypt(phone.phone_sealed))
        lines = [ctx.t("settings.phone_verified", phone=masked)]
    else:
        lines = [ctx.t("settings.phone_not_verified")]
    if ctx.member.is_civil_servant:
        lines.append(ctx.t("settings.civil_servant_verified"))
    return lines


async def _overview(ctx: Context, note: str | None = None) -> Reply:
    accounts = await identity.linked_accounts(ctx.session, member_id=ctx.member.id)
    channels = "、".join(CHANNEL_NAMES.get(a.channel, a.channel) for a in accounts)
    reminder = await _reminder_time(ctx)
    lines = [
        ctx.t("settings.title"),
        ctx.t("settings.language_line", language=ctx.t(f"settings.language_name.{ctx.lang}")),
        ctx.t("settings.marketing_on" if ctx.member.marketing_opt_in else "settings.marketing_off"),
        ctx.t("settings.reminder_line", time=reminder or ctx.t("settings.reminder_unset")),
        ctx.t("settings.channels_line", channels=channels or "-"),
    ]
    choosable = _channel_choices(accounts)
    if len(choosable) > 1:
        lines.append(ctx.t("settings.notify_line", channel=_notify_name(ctx)))
    lines.extend(await status_lines(ctx))
    if note:
        lines.insert(0, note + "\n")
    marketing = "off" if ctx.member.marketing_opt_in else "on"
    buttons = [
        Button(label="中文", action="lang:zh-TW"),
        Button(label="English", action="lang:en"),
        Button(
            label=ctx.t(f"settings.button_marketing_{marketing}"),
            action=f"settings.marketing:{marketing}",
        ),
        Button(label=ctx.t("settings.button_reminder"), action="settings.reminder"),
    ]
    if len(choosable) > 1:
        buttons.append(Button(label=ctx.t("settings.button_notify"), action="settings.notify"))
    buttons += [
        Button(label=ctx.t("settings.button_verify"), action=f"{COMMAND_ACTION}:verify"),
        Button(label=ctx.t("settings.button_delete"), action="settings.delete"),
    ]
    return Text(text="\n".join(lines), buttons=buttons)


def _channel_choices(accounts: list[ChannelAccount]) -> list[str]:
    """Channels a member can get proactive messages on, in a stable order."""
    return sorted({a.channel for a in accounts if a.following and not a.unreachable})


def _notify_name(ctx: Context) -> str:
    chosen = ctx.member.preferred_channel
    if chosen is None:
        return ctx.t("settings.notify_auto")
    return CHANNEL_NAMES.get(chosen, chosen)


@router.on_command("settings", words=("設定", "settings"))
async def settings(ctx: Context, msg: Incoming) -> Reply:
    """The settings overview with status lines and buttons to change each setting."""
    return await _overview(ctx)


MAX_PODCAST_CHOICES = 3


@router.on_command("unsubscribe", words=("取消訂閱", "unsubscribe"))
async def unsubscribe(ctx: Context, msg: Incoming) -> Reply:
    """Stops marketing messages at once (reminders for mandatory courses continue). Typed
    words are ambiguous for someone who subscribed to a podcast: then it asks which one."""
    podcasts = await subscribed_podcasts(ctx.session, member_id=ctx.member.id)
    if podcasts and msg.command is None:
        buttons = [
            Button(label=ctx.t("settings.button_marketing_off"), action="settings.marketing:off"),
            *(
                Button(
                    label=ctx.t("settings.button_unsubscribe_podcast", podcast=p.title[:12]),
                    action=f"pod.unsub:{p.id}",
                )
                for p in podcasts[:MAX_PODCAST_CHOICES]
            ),
        ]
        return Text(text=ctx.t("settings.unsubscribe_which"), buttons=buttons)
    await _stop_marketing(ctx)
    return Text(
        text=ctx.t("settings.unsubscribed"),
        buttons=[
            Button(label=ctx.t("settings.button_marketing_on"), action="settings.marketing:on")
        ],
    )


async def _stop_marketing(ctx: Context) -> None:
    """Marketing off, and broadcast rows already queued for this member withdrawn (the
    dispatcher also skips them at send time, for rows a worker holds right now)."""
    ctx.member.marketing_opt_in = False
    await cancel_pending(ctx.session, member_ids=[ctx.member.id], kind=MARKETING_KIND, now=ctx.now)


@router.on_action("settings.marketing")
async def marketing(ctx: Context, msg: Incoming) -> Reply:
    """Turns marketing messages on or off."""
    if ctx.args == "on":
        ctx.member.marketing_opt_in = True
    else:
        await _stop_marketing(ctx)
    note = ctx.t("settings.marketing_now_on" if ctx.args == "on" else "settings.unsubscribed")
    return await _overview(ctx, note)


@router.on_action("settings.notify")
async def choose_notify(ctx: Context, msg: Incoming) -> Reply:
    """Where reminders and episodes go when the member has several linked channels; with
    an argument, sets it ("auto": the channel used most recently)."""
    accounts = await identity.linked_accounts(ctx.session, member_id=ctx.member.id)
    choosable = _channel_choices(accounts)
    if ctx.args == "auto" or (ctx.args and ctx.args in choosable):
        ctx.member.preferred_channel = None if ctx.args == "auto" else ctx.args
        return await _overview(ctx, ctx.t("settings.notify_set", channel=_notify_name(ctx)))
    buttons = [
        Button(label=CHANNEL_NAMES.get(c, c), action=f"settings.notify:{c}") for c in choosable
    ]
    buttons.append(
        Button(label=ctx.t("settings.button_notify_auto"), action="settings.notify:auto")
    )
    return Text(text=ctx.t("settings.notify_prompt"), buttons=buttons)


@router.on_action("settings.reminder")
async def ask_reminder(ctx: Context, msg: Incoming) -> Reply:
    """Offers reminder times (or typing one, HH:MM, Taipei time)."""
    await ctx.enter(AWAIT_REMINDER)
    return Text(text=ctx.t("settings.reminder_prompt"), buttons=_reminder_buttons(ctx))


def _reminder_buttons(ctx: Context) -> list[Button]:
    buttons = [Button(label=t, action=f"settings.remind:{t}") for t in REMINDER_CHOICES]
    buttons.append(Button(label=ctx.t("settings.reminder_clear"), action="settings.remind:none"))
    return buttons


async def _apply_reminder(ctx: Context, raw: str) -> Reply:
    if raw == "none":
        await ctx.leave()
        await _set_reminder_time(ctx, None)
        return await _overview(ctx, ctx.t("settings.reminder_cleared"))
    value = parse_time_of_day(raw)
    if value is None:
        return Text(text=ctx.t("settings.reminder_invalid"), buttons=_reminder_buttons(ctx))
    await ctx.leave()
    await _set_reminder_time(ctx, value)
    return await _overview(ctx, ctx.t("settings.reminder_set", time=value))


@router.on_action("settings.remind")
async def tapped_reminder(ctx: Context, msg: Incoming) -> Reply:
    """A reminder-time button."""
    return await _apply_reminder(ctx, ctx.args)


@router.on_state(AWAIT_REMINDER)
async def typed_reminder(ctx: Context, msg: Incoming) -> Reply:
    """A typed reminder time such as 20:00."""
    return await _apply_reminder(ctx, msg.text if msg.kind == "text" else "")


async def _ask_delete(ctx: Context) -> Reply:
    await ctx.enter(CONFIRM_DELETE)
    return Text(
        text=ctx.t("settings.delete_confirm"),
        buttons=[
            Button(label=ctx.t("settings.button_delete_yes"), action="settings.delete_yes"),
            Button(label=ctx.t("settings.button_delete_no"), action="settings.delete_no"),
        ],
    )


@router.on_action("settings.delete")
async def ask_delete(ctx: Context, msg: Incoming) -> Reply:
    """Explains what deleting means and asks for a confirmation."""
    return await _ask_delete(ctx)


@router.on_text(lambda typed: normalise_words(typed) in _DELETE_WORDS)
async def typed_delete(ctx: Context, msg: Incoming) -> Reply:
    """'刪除我的資料 / delete my data' typed anywhere: the same confirmation."""
    return await _ask_delete(ctx)


async def _delete(ctx: Context, msg: Incoming) -> Reply:
    if ctx.state_name != CONFIRM_DELETE:
        return await _ask_delete(ctx)
    lang = ctx.lang
    # Built before the erasure, in the language the person used: what they may do next.
    back = back_buttons(ctx)
    await ctx.leave()
    await erase_member(
        ctx.session,
        vault=ctx.services.vault,
        member_id=ctx.member.id,
        now=ctx.now,
        keep_event=(msg.channel, msg.event_id) if msg.event_id else None,
    )
    return Text(text=ctx.services.catalog.t(lang, "settings.deleted"), quick_replies=back)


def _kept(ctx: Context) -> Reply:
    """Nothing deleted: back to the settings, or the menu."""
    again = Button(label=ctx.t("start.menu_item.settings"), action=f"{COMMAND_ACTION}:settings")
    return Text(
        text=ctx.t("settings.delete_kept"), buttons=[again], quick_replies=back_buttons(ctx)
    )


@router.on_action("settings.delete_yes")
async def delete_yes(ctx: Context, msg: Incoming) -> Reply:
    """Erases the member's personal data (only from the confirmation step)."""
    return await _delete(ctx, msg)


@router.on_action("settings.delete_no")
async def delete_no(ctx: Context, msg: Incoming) -> Reply:
    """Keeps everything."""
    await ctx.leave()
    return _kept(ctx)


@router.on_state(CONFIRM_DELETE)
async def confirm_delete(ctx: Context, msg: Incoming) -> Reply:
    """Typed confirmation: 確認刪除 / confirm; anything else keeps the data."""
    if msg.kind == "text" and normalise_words(msg.text) in _CONFIRM_WORDS:
        return await _delete(ctx, msg)
    await ctx.leave()
    return _kept(ctx)
