"""The per-event context a handler receives: session, member, language, time, translation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Catalog
from bot.ports import LinkSigner, SmsProvider
from bot.settings import Settings
from models.conversation import ConversationState, clear_state, set_state
from models.members import ChannelAccount, Member
from models.pii import PiiVault
from models.search.service import SearchService

# Step data key: the action to run when the steps of a detour (verification) are done.
RETURN_TO = "return_to"


@dataclass
class Services:
    """Long-lived helpers built once by app.py and shared by every event."""

    settings: Settings
    catalog: Catalog
    vault: PiiVault
    search: SearchService
    sms: SmsProvider
    media_signer: LinkSigner


@dataclass
class Context:
    """Everything a handler may use; it owns no transaction (the caller commits once)."""

    session: AsyncSession
    services: Services
    account: ChannelAccount
    now: dt.datetime
    state: ConversationState | None = None
    args: str = ""
    new_member: bool = False
    # Names of the commands the router serves (menus offer only what exists).
    commands: frozenset[str] = frozenset()
    # An action the router runs after this handler, in the same event (see detour/finish).
    follow_up: str | None = None
    _detour: str | None = None

    @property
    def member(self) -> Member:
        return self.account.member

    @property
    def channel(self) -> str:
        return self.account.channel

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def lang(self) -> str:
        return self.member.language

    @property
    def state_name(self) -> str | None:
        return self.state.name if self.state is not None else None

    @property
    def state_data(self) -> dict[str, Any]:
        return dict(self.state.data) if self.state is not None else {}

    def t(self, key: str, /, **values: object) -> str:
        return self.services.catalog.t(self.lang, key, **values)

    def tn(self, key: str, count: float, /, **values: object) -> str:
        """`t` for `count` things: the singular form where the language has one."""
        return self.services.catalog.tn(self.lang, key, count, **values)

    async def enter(
        self, name: str, data: dict[str, Any] | None = None, *, ttl: dt.timedelta | None = None
    ) -> None:
        """Start (or move to) the conversation step `name`, kept in the database with a TTL."""
        ttl = ttl or dt.timedelta(seconds=self.settings.conversation_ttl_seconds)
        data = dict(data or {})
        carried = self._detour or self.return_to
        if carried and RETURN_TO not in data:
            data[RETURN_TO] = carried  # the detour's steps keep where to come back to
        await set_state(
            self.session,
            account_id=self.account.id,
            name=name,
            data=data or {},
            expires_at=self.now + ttl,
        )
        self.state = ConversationState(
            account_id=self.account.id, name=name, data=data or {}, expires_at=self.now + ttl
        )

    @property
    def return_to(self) -> str | None:
        """Where the current step's detour comes back to, if it is one."""
        value = self.state_data.get(RETURN_TO)
        return value if isinstance(value, str) else None

    def detour(self, action: str, *, then: str) -> None:
        """Run `action` next (e.g. "cmd:verify"); when its steps finish (ctx.finish), the
        router runs `then` (e.g. the claim that needed a verified phone)."""
        self.follow_up, self._detour = action, then

    async def finish(self) -> None:
        """End the current step; a detour's steps go back to where they were asked from."""
        then = self.return_to
        await self.leave()
        if then:
            self.follow_up = then

    async def leave(self) -> None:
        """End the current conversation step, if any."""
        if self.state is not None:
            await clear_state(self.session, account_id=self.account.id)
            self.state = None
