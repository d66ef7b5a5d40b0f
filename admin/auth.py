"""Who is calling the admin API, and may they.

Every endpoint declares the roles it accepts. ADMIN_TOKEN is the first admin's token (role
`admin`, which may do everything); tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, status

from bot.settings import Settings

Role = Literal["admin", "marketer", "analyst", "auditor"]


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[str]


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "bearer token required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return value.strip()


def require_role(settings: Settings, *roles: Role) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency: 401 without a valid token, 403 without one of `roles`."""
    accepted = frozenset(roles)

    async def dependency(request: Request) -> Caller:
        given = _token(request).encode()
        admin = settings.admin_token.get_secret_value().encode() if settings.admin_token else b""
        if admin and hmac.compare_digest(given, admin):
            caller = Caller(name="admin", roles=frozenset({"admin"}))
        else:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if "admin" not in caller.roles and not caller.roles & accepted:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "role not allowed")
        return caller

    return dependency
