"""The ordered, first-match router from an Incoming to a handler.

Order of precedence (the same for every feature): platform events (follow, unfollow); button
actions; commands and main-menu words, which always work and leave any conversation step;
`取消 / cancel` inside a step; the step's own handler; typed-text matchers; the fallback.
Within each group, the first registered match wins; `handlers/__init__.py` fixes the order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.messages import AskPhone, Audio, Button, Cards, Incoming, Progress, Reply, Text

if TYPE_CHECKING:
    from bot.context import Context

# A button whose action is "cmd:<name>" runs that command, so menus need no own handlers.
COMMAND_ACTION = "cmd"
# Follow-up actions one event may chain (a claim -> verification; verified -> the claim).
MAX_FOLLOW_UPS = 2
# A "cancel" button leaves the current step, exactly like typing 取消 / cancel.
CANCEL_ACTION = "cancel"

HandlerResult = Reply | list[Reply]
Handler = Callable[["Context", Incoming], Awaitable[HandlerResult]]
TextMatcher = Callable[[str], bool]
NextSteps = Callable[["Context"], list[Button]]


def offers_next_step(replies: list[Reply]) -> bool:
    """Whether any of these replies lets the person tap something."""
    for reply in replies:
        if getattr(reply, "buttons", None) or getattr(reply, "quick_replies", None):
            return True
        if isinstance(reply, Cards) and (reply.more or any(c.buttons for c in reply.cards)):
            return True
        if isinstance(reply, AskPhone):
            return True  # the answer is typed (or shared); the step has its own way out
    return False


def with_next_steps(replies: list[Reply], buttons: list[Button]) -> list[Reply]:
    """The replies with `buttons` as quick replies on the last one that can carry them, or
    on a short extra message when none can (an image, an audio without buttons)."""
    for i in range(len(replies) - 1, -1, -1):
        reply = replies[i]
        if isinstance(reply, Text | Cards | Progress):
            return [
                *replies[:i],
                reply.model_copy(update={"quick_replies": buttons}),
                *replies[i + 1 :],
            ]
        if isinstance(reply, Audio):
            return [*replies[:i], reply.model_copy(update={"buttons": buttons}), *replies[i + 1 :]]
    return replies


def normalise_words(text: str) -> str:
    """Fold width and case so that typed words compare equal: 'ＨＥＬＰ ' == 'help'."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass
class Command:
    name: str  # Telegram command, without the slash
    words: tuple[str, ...]  # typed words in any language; "word args" passes args
    handler: Handler


@dataclass
class Router:
    """Routes for one feature, or the root router that includes them in order."""

    name: str = "root"
    events: dict[str, Handler] = field(default_factory=dict)
    actions: dict[str, Handler] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    states: dict[str, Handler] = field(default_factory=dict)
    texts: list[tuple[TextMatcher, Handler]] = field(default_factory=list)
    fallback: Handler | None = None
    cancel_words: tuple[str, ...] = ("取消", "cancel")
    cancel_handler: Handler | None = None
    # What to offer when a handler's answer has no button at all (every reply offers a next
    # step: the main menu, as quick replies).
    next_steps: NextSteps | None = None

    # -- registration -------------------------------------------------------------------
    def on_event(self, kind: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.events.setdefault(kind, fn)
            return fn

        return deco

    def on_action(self, name: str) -> Callable[[Handler], Handler]:
        """A button whose action id is `name` or starts with `name:` (the rest is ctx.args)."""

        def deco(fn: Handler) -> Handler:
            if name in self.actions:
                raise ValueError(f"action {name!r} registered twice")
            self.actions[name] = fn
            return fn

        return deco

    def on_command(self, name: str, *, words: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.commands.append(
                Command(name=name, words=tuple(normalise_words(w) for w in words), handler=fn)
            )
            return fn

        return deco

    def on_state(self, name: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.states[name] = fn
            return fn

        return deco

    def on_text(self, matcher: TextMatcher) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.texts.append((matcher, fn))
            return fn

        return deco

    def on_fallback(self, fn: Handler) -> Handler:
        self.fallback = fn
        return fn

    def on_cancel(self, fn: Handler) -> Handler:
        self.cancel_handler = fn
        return fn

    def on_next_steps(self, fn: NextSteps) -> NextSteps:
        self.next_steps = fn
        return fn

    def include(self, other: Router) -> None:
        """Add another feature's routes after the ones already here."""
        for kind, fn in other.events.items():
            self.events.setdefault(kind, fn)
        for name, fn in other.actions.items():
            if name in self.actions:
                raise ValueError(f"action {name!r} registered by two features")
            self.actions[name] = fn
        self.commands.extend(other.commands)
        for name, fn in other.states.items():
            if name in self.states:
                raise ValueError(f"state {name!r} registered by two features")
            self.states[name] = fn
        self.texts.extend(other.texts)
        self.fallback = self.fallback or other.fallback
        self.cancel_handler = self.cancel_handler or other.cancel_handler
        self.next_steps = self.next_steps or other.next_steps

    # -- dispatch -------------------------------------------------------------------------
    def command(self, name: str) -> Command | None:
        return next((c for c in self.commands if c.name == name), None)

    def command_names(self) -> list[str]:
        return [c.name for c in self.commands]

    def match_command(self, msg: Incoming) -> tuple[Command, str] | None:
        """The command a message invokes (slash or typed words), with its arguments."""
        if msg.kind != "text":
            return None
        if msg.command is not None:
            for cmd in self.commands:
                if cmd.name == msg.command:
                    return cmd, msg.command_args
            return None
        typed = normalise_words(msg.text)
        for cmd in self.commands:
            for word in cmd.words:
                if typed == word:
                    return cmd, ""
                if typed.startswith(word + " "):
                    return cmd, typed[len(word) + 1 :].strip()
        return None

    async def dispatch(self, ctx: Context, msg: Incoming) -> list[Reply]:
        ctx.commands = frozenset(c.name for c in self.commands)
        handler, args = await self._select(ctx, msg)
        ctx.args = args
        if handler is None:
            return []
        result = await handler(ctx, msg)
        replies = result if isinstance(result, list) else [result]
        # A handler may hand on to another action (a detour, or coming back from one).
        for _ in range(MAX_FOLLOW_UPS):
            action, ctx.follow_up = ctx.follow_up, None
            if action is None:
                break
            step = msg.model_copy(update={"kind": "action", "action": action, "text": ""})
            handler, ctx.args = await self._select(ctx, step)
            if handler is not None:
                more = await handler(ctx, step)
                replies += more if isinstance(more, list) else [more]
        if replies and self.next_steps is not None and not offers_next_step(replies):
            replies = with_next_steps(replies, self.next_steps(ctx))
        return replies

    async def _select(self, ctx: Context, msg: Incoming) -> tuple[Handler | None, str]:
        if msg.kind in ("follow", "unfollow"):
            return self.events.get(msg.kind), ""
        if msg.kind == "action":
            name, _, arg = msg.action.partition(":")
            if name == COMMAND_ACTION:
                # A menu button that runs a command: it escapes any step, like the command.
                cmd = self.command(arg)
                if cmd is not None:
                    await ctx.leave()
                    return cmd.handler, ""
            if name == CANCEL_ACTION and self.cancel_handler is not None:
                await ctx.leave()
                return self.cancel_handler, ""
            if name in self.actions:
                return self.actions[name], arg
            return self.fallback, ""
        found = self.match_command(msg)
        if found is not None:
            await ctx.leave()
            return found[0].handler, found[1]
        state = ctx.state_name
        if state is not None:
            if msg.kind == "text" and normalise_words(msg.text) in self.cancel_words:
                await ctx.leave()
                return self.cancel_handler, ""
            if state in self.states:
                return self.states[state], ""
        if msg.kind == "contact" and "contact" in self.events:
            return self.events["contact"], ""
        if msg.kind == "text":
            for matcher, fn in self.texts:
                if matcher(msg.text):
                    return fn, ""
        return self.fallback, ""
