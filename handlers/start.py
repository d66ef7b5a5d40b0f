"""Welcome, main menu, help, language switch and the friendly fallback."""

from __future__ import annotations

import unicodedata

from bot.context import Context
from bot.i18n import LANGUAGES
from bot.messages import Button, Incoming, Reply, Text
from bot.router import CANCEL_ACTION, COMMAND_ACTION, Router, normalise_words
from models.identity import close_challenges

router = Router("start")

# Main actions in menu order; each appears only when its feature's command is registered.
MAIN_MENU = ("search", "podcasts", "learning", "prizes", "verify", "settings", "help")
_LANGUAGE_CHOICES = {"1": "zh-TW", "中文": "zh-TW", "2": "en", "english": "en", "英文": "en"}

# Small talk is not a course search: what people type to greet, thank or acknowledge.
_SMALL_TALK = {
    "hello": (
        "你好",
        "您好",
        "哈囉",
        "哈嘍",
        "嗨",
        "安安",
        "早安",
        "午安",
        "晚安",
        "早",
        "在嗎",
        "hi",
        "hello",
        "hey",
        "hiya",
        "yo",
        "good morning",
        "good afternoon",
        "good evening",
    ),
    "thanks": (
        "謝謝",
        "謝謝你",
        "謝謝您",
        "謝啦",
        "感謝",
        "感恩",
        "多謝",
        "3q",
        "thanks",
        "thank you",
        "thanks a lot",
        "thx",
        "ty",
        "cheers",
    ),
    "ok": ("好", "好的", "好喔", "嗯", "嗯嗯", "了解", "收到", "沒事", "ok", "okay", "k", "got it"),
}
_SMALL_TALK_WORDS = {normalise_words(w): kind for kind, words in _SMALL_TALK.items() for w in words}
_CANCEL_WORDS = {"取消", "cancel"}
_TRAILING = "!！~～。.,，…?？ "


def _small_talk_kind(typed: str) -> str | None:
    """'你好！' -> 'hello'; '👍' or '?' -> 'other' (no letter or digit at all); else None."""
    words = normalise_words(typed)
    kind = _SMALL_TALK_WORDS.get(words.rstrip(_TRAILING))
    if kind is not None:
        return kind
    if words and not any(unicodedata.category(ch)[0] in "LN" for ch in words):
        return "other"
    return None


def menu_buttons(ctx: Context) -> list[Button]:
    """Buttons for the main actions this deployment serves, in the person's language."""
    return [
        Button(label=ctx.t(f"start.menu_item.{name}"), action=f"{COMMAND_ACTION}:{name}")
        for name in MAIN_MENU
        if name in ctx.commands
    ]


def back_buttons(ctx: Context) -> list[Button]:
    """The way back beside an answer's own next steps: the main menu and the help."""
    return [
        Button(label=ctx.t("common.button_menu"), action=f"{COMMAND_ACTION}:menu"),
        Button(label=ctx.t("common.button_help"), action=f"{COMMAND_ACTION}:help"),
    ]


def cancel_button(ctx: Context) -> Button:
    """Leaves the current step (the same as typing 取消 / cancel)."""
    return Button(label=ctx.t("common.button_cancel"), action=CANCEL_ACTION)


@router.on_next_steps
def next_steps(ctx: Context) -> list[Button]:
    """Under an answer that offers nothing to tap: the main menu."""
    return menu_buttons(ctx)


def language_buttons() -> list[Button]:
    return [Button(label="中文", action="lang:zh-TW"), Button(label="English", action="lang:en")]


@router.on_event("follow")
async def on_follow(ctx: Context, msg: Incoming) -> Reply:
    """A new friend (or one who unblocked us) sees the welcome and the main menu."""
    return Text(text=ctx.t("start.welcome"), quick_replies=menu_buttons(ctx))


@router.on_command("start")
async def start(ctx: Context, msg: Incoming) -> Reply:
    """Welcome. A Telegram deep-link payload (/start <payload>) arrives as `ctx.args`; no
    link carries one yet, so it does not change the welcome."""
    key = "start.welcome" if ctx.new_member else "start.welcome_back"
    return Text(text=ctx.t(key), quick_replies=menu_buttons(ctx))


@router.on_command("menu", words=("選單", "主選單", "menu"))
async def menu(ctx: Context, msg: Incoming) -> Reply:
    """The main menu as buttons."""
    return Text(text=ctx.t("start.menu"), quick_replies=menu_buttons(ctx))


@router.on_command("help", words=("說明", "幫助", "help"))
async def help_(ctx: Context, msg: Incoming) -> Reply:
    """What the bot can do and the words that reach each action."""
    return Text(text=ctx.t("start.help"), quick_replies=menu_buttons(ctx))


@router.on_command("language", words=("語言", "language"))
async def ask_language(ctx: Context, msg: Incoming) -> Reply:
    """Asks which language to use; the answer may be typed or tapped."""
    await ctx.enter("start.await_language")
    return Text(text=ctx.t("start.language_prompt"), buttons=language_buttons())


@router.on_state("start.await_language")
async def typed_language(ctx: Context, msg: Incoming) -> Reply:
    """Takes '1', '2', '中文' or 'English' as the language choice."""
    choice = _LANGUAGE_CHOICES.get(msg.text.strip().casefold())
    if choice is None:
        return Text(text=ctx.t("start.language_invalid"), buttons=language_buttons())
    await ctx.leave()
    return await _set_language(ctx, choice)


@router.on_action("lang")
async def tapped_language(ctx: Context, msg: Incoming) -> Reply:
    """A language button: switches at once."""
    if ctx.args not in LANGUAGES:
        return Text(text=ctx.t("start.language_invalid"), buttons=language_buttons())
    await ctx.leave()
    return await _set_language(ctx, ctx.args)


async def _set_language(ctx: Context, language: str) -> Reply:
    ctx.member.language = language
    return Text(text=ctx.t("start.language_set"), quick_replies=menu_buttons(ctx))


@router.on_cancel
async def cancelled(ctx: Context, msg: Incoming) -> Reply:
    """Leaving a step with 取消 / cancel (a code already sent stops working, too)."""
    await close_challenges(ctx.session, member_id=ctx.member.id)
    return Text(text=ctx.t("common.cancelled"), quick_replies=menu_buttons(ctx))


@router.on_text(lambda typed: normalise_words(typed) in _CANCEL_WORDS)
async def nothing_to_cancel(ctx: Context, msg: Incoming) -> Reply:
    """取消 / cancel outside any step: nothing is going on; the menu (never a course search)."""
    return Text(text=ctx.t("start.nothing_to_cancel"), quick_replies=menu_buttons(ctx))


@router.on_text(lambda typed: _small_talk_kind(typed) is not None)
async def small_talk(ctx: Context, msg: Incoming) -> Reply:
    """A greeting, thanks, an emoji or a bare '?': a short friendly answer and the menu."""
    kind = _small_talk_kind(msg.text) or "other"
    return Text(text=ctx.t(f"start.small_talk_{kind}"), quick_replies=menu_buttons(ctx))


@router.on_fallback
async def fallback(ctx: Context, msg: Incoming) -> Reply:
    """Anything not understood: a friendly note and the main actions."""
    return Text(text=ctx.t("common.not_understood"), quick_replies=menu_buttons(ctx))
