"""Admin API for console accounts (admin only): create, list, disable, tokens, sign-outs.

The CLI (`edoor admin ...`) does the same through the same rules in models.accounts.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin.auth import ROLES, Caller, Role, RowId, any_role, require_role
from bot.i18n import taipei_time
from bot.settings import Settings
from models.accounts import (
    AccountError,
    AdminAccount,
    create_account,
    generate_password,
    issue_token,
    list_accounts,
    list_tokens,
    revoke_sessions,
    revoke_tokens,
    set_disabled,
)
from models.audit import record_audit
from models.base import utcnow


class NewAccount(BaseModel):
    email: str = Field(min_length=3, max_length=254)
    role: Role
    # Omitted: one is generated and shown once in the answer.
    password: str | None = Field(default=None, min_length=12, max_length=1024)


class NewToken(BaseModel):
    label: str = Field(default="api", min_length=1, max_length=64)


def account_view(account: AdminAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "role": account.role,
        "disabled": account.disabled_at is not None,
        "created_at": account.created_at.isoformat(),
        "created_by": account.created_by,
        "last_login_at": account.last_login_at.isoformat() if account.last_login_at else None,
        "last_login_taipei": taipei_time(account.last_login_at) if account.last_login_at else "",
        "locked": account.locked_until is not None and account.locked_until > utcnow(),
    }


async def add_account(
    session: AsyncSession, *, body: NewAccount, caller: Caller
) -> tuple[AdminAccount, str | None]:
    """Create the account and audit it; returns the generated password, if one was made."""
    generated = None if body.password else generate_password()
    account = await create_account(
        session,
        email=body.email,
        role=body.role,
        password=body.password or generated or "",
        created_by=caller.name,
        now=utcnow(),
    )
    await record_audit(
        session,
        actor=caller.name,
        action="accounts.create",
        subject=f"account:{account.id}",
        details={"role": account.role},
        now=utcnow(),
    )
    return account, generated


async def set_account_disabled(
    session: AsyncSession, *, account_id: int, disabled: bool, caller: Caller
) -> AdminAccount:
    account = await session.get(AdminAccount, account_id)
    if account is None:
        raise HTTPException(404, "no such account")
    if disabled and account.id == caller.account_id:
        raise HTTPException(409, "you cannot disable your own account")
    await set_disabled(session, account=account, disabled=disabled, now=utcnow())
    await record_audit(
        session,
        actor=caller.name,
        action="accounts.disable" if disabled else "accounts.enable",
        subject=f"account:{account.id}",
        now=utcnow(),
    )
    return account


def account_admin_routes(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> APIRouter:
    routes = APIRouter(prefix="/admin/api")
    admin_only = Depends(require_role(settings, "admin"))
    anyone = Depends(any_role(settings))

    @routes.get("/me")
    async def me(caller: Caller = anyone) -> dict[str, Any]:
        """Who the token or session belongs to, and their role."""
        return {"name": caller.name, "email": caller.email, "roles": sorted(caller.roles)}

    @routes.get("/accounts")
    async def index(caller: Caller = admin_only) -> dict[str, Any]:
        """Every console account (never a password or token)."""
        async with sessionmaker() as session:
            return {"accounts": [account_view(a) for a in await list_accounts(session)]}

    @routes.post("/accounts", status_code=201)
    async def create(body: NewAccount, caller: Caller = admin_only) -> dict[str, Any]:
        """A new account; without `password` one is generated and returned once."""
        try:
            async with sessionmaker() as session:
                account, generated = await add_account(session, body=body, caller=caller)
                await session.commit()
        except AccountError as exc:
            raise HTTPException(422, str(exc)) from None
        return {**account_view(account), "password": generated}

    @routes.post("/accounts/{account_id}/disable")
    async def disable(account_id: RowId, caller: Caller = admin_only) -> dict[str, Any]:
        """Disable an account: its sessions and tokens stop working at once."""
        async with sessionmaker() as session:
            account = await set_account_disabled(
                session, account_id=account_id, disabled=True, caller=caller
            )
            await session.commit()
            return account_view(account)

    @routes.post("/accounts/{account_id}/enable")
    async def enable(account_id: RowId, caller: Caller = admin_only) -> dict[str, Any]:
        """Enable a disabled account (it needs a new token; its old ones stay revoked)."""
        async with sessionmaker() as session:
            account = await set_account_disabled(
                session, account_id=account_id, disabled=False, caller=caller
            )
            await session.commit()
            return account_view(account)

    @routes.post("/accounts/{account_id}/sign-out")
    async def sign_out(account_id: RowId, caller: Caller = admin_only) -> dict[str, Any]:
        """End every console session of the account."""
        async with sessionmaker() as session:
            if await session.get(AdminAccount, account_id) is None:
                raise HTTPException(404, "no such account")
            ended = await revoke_sessions(session, account_id=account_id, now=utcnow())
            await record_audit(
                session,
                actor=caller.name,
                action="accounts.sign_out",
                subject=f"account:{account_id}",
                details={"sessions": ended},
                now=utcnow(),
            )
            await session.commit()
        return {"sessions_ended": ended}

    @routes.get("/accounts/{account_id}/tokens")
    async def tokens(account_id: RowId, caller: Caller = admin_only) -> dict[str, Any]:
        """The account's API tokens (labels and dates; the tokens themselves are not kept)."""
        async with sessionmaker() as session:
            if await session.get(AdminAccount, account_id) is None:
                raise HTTPException(404, "no such account")
            rows = await list_tokens(session, account_id=account_id)
        return {
            "tokens": [
                {
                    "id": t.id,
                    "label": t.label,
                    "created_at": t.created_at.isoformat(),
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                    "revoked": t.revoked_at is not None,
                }
                for t in rows
            ]
        }

    @routes.post("/accounts/{account_id}/tokens", status_code=201)
    async def new_token(
        account_id: RowId, body: NewToken, caller: Caller = admin_only
    ) -> dict[str, Any]:
        """A new bearer token for the account, shown once."""
        async with sessionmaker() as session:
            account = await session.get(AdminAccount, account_id)
            if account is None:
                raise HTTPException(404, "no such account")
            try:
                token = await issue_token(session, account=account, label=body.label, now=utcnow())
            except AccountError as exc:
                raise HTTPException(409, str(exc)) from None
            await record_audit(
                session,
                actor=caller.name,
                action="accounts.token",
                subject=f"account:{account_id}",
                details={"label": body.label},
                now=utcnow(),
            )
            await session.commit()
        return {"token": token, "role": account.role}

    @routes.delete("/accounts/{account_id}/tokens/{token_id}")
    async def revoke_token(
        account_id: RowId, token_id: RowId, caller: Caller = admin_only
    ) -> dict[str, Any]:
        """Revoke one token; it stops working at once."""
        async with sessionmaker() as session:
            revoked = await revoke_tokens(
                session, account_id=account_id, token_id=token_id, now=utcnow()
            )
            if not revoked:
                raise HTTPException(404, "no such live token")
            await record_audit(
                session,
                actor=caller.name,
                action="accounts.token_revoked",
                subject=f"account:{account_id}",
                details={"token_id": token_id},
                now=utcnow(),
            )
            await session.commit()
        return {"revoked": token_id}

    return routes


__all__ = ["ROLES", "account_admin_routes", "account_view", "add_account"]
