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

    async def leave(self) -> None:
        """End the current conversation step, if any."""
        if self.state is not None:
            await clear_state(self.session, account_id=self.account.id)
            self.state = None
