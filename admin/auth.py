"""Who is calling the console or the admin API, and may they.

Every page and endpoint declares the roles it accepts with `require_role(settings, *roles)`
(admin may do everything). A caller is a named account, known by

- a bearer token from `edoor admin token EMAIL` (kept hashed; revocable), or
- the console's session cookie (the cookie holds only a random id; the session lives in
  the database and can be revoked). Every POST, PUT or DELETE made with the cookie must
  carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`), else 403.

ADMIN_TOKEN only bootstraps: it acts as admin while no enabled admin account exists (to
create the first one), and opens nothing afterwards. Tokens are compared in constant time
and never logged. No credentials or bad ones: 401; a role without the right: 403.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import HTTPException, Path, Request, status
from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from models.accounts import Signed, active_admin_exists, resolve_session, resolve_token
from models.base import utcnow
from models.db import begin_write

Role = Literal["admin", "marketer", "analyst", "auditor"]
MAX_ID = 2_147_483_647  # the largest row id on every backend (bigger ones are 422, not 500)
# A row id in a path: positive and within the database's integer.
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
ROLES: tuple[Role, ...] = ("admin", "marketer", "analyst", "auditor")
SESSION_COOKIE = "edoor_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BOOTSTRAP_ACTOR = "admin:bootstrap-token"
# Failed sign-ins from one address before it must wait (accounts lock on their own, see
# models.accounts): a guesser spreading tries over many accounts is slowed down too.
LOGIN_FAILURES_PER_IP = "20/15 minutes"


@dataclass(frozen=True)
class Caller:
    """The person behind a request: `name` is how the audit log names them."""

    name: str
    roles: frozenset[str]
    account_id: int | None = None
    email: str | None = None
    csrf_token: str | None = None  # set when signed in with the session cookie

    @property
    def role(self) -> str:
        return sorted(self.roles)[0] if self.roles else ""


def _caller(signed: Signed) -> Caller:
    account = signed.account
    return Caller(
        name=account.actor,
        roles=frozenset({account.role}),
        account_id=account.id,
        email=account.email,
        csrf_token=signed.csrf_token,
    )


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorised("bearer token required")
    return value.strip()


class AdminAuth:
    """Built once in app.py (it holds the sessionmaker and the sign-in limiter); pages and
    endpoints reach it through `require_role`."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        storage: Storage
        if settings.redis_url:
            uri = settings.redis_url.replace("redis://", "async+redis://", 1)
            storage = RedisStorage(uri, implementation="redispy")
        else:
            storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(storage)
        self.ip_failures = parse(LOGIN_FAILURES_PER_IP)
        self.bad_tokens = parse(f"{settings.admin_bad_tokens_per_ip_minute}/minute")

    @property
    def secure_cookies(self) -> bool:
        return self.settings.edoor_env == "production"

    async def ip_may_try(self, ip: str) -> bool:
        return await self.limiter.test(self.ip_failures, "edoor-login", ip)

    async def ip_failed(self, ip: str) -> None:
        await self.limiter.hit(self.ip_failures, "edoor-login", ip)

    async def identify(self, request: Request) -> Caller:
        """The caller, from the bearer token or the session cookie (401 otherwise); a
        cookie-authenticated change without the CSRF token is refused with 403."""
        if "authorization" in request.headers:
            ip = request.client.host if request.client else "unknown"
            if not await self.limiter.test(self.bad_tokens, "edoor-bearer", ip):
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    "too many wrong tokens from this address: wait a minute",
                    headers={"Retry-After": "60"},
                )
            try:
                return await self._bearer(_token(request))
            except HTTPException as refused:
                if refused.status_code == status.HTTP_401_UNAUTHORIZED:
                    await self.limiter.hit(self.bad_tokens, "edoor-bearer", ip)
                raise
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise _unauthorised("sign in at /admin/login or send a bearer token")
        async with self.sessionmaker() as session:
            await begin_write(session)  # resolving notes the use: a write follows the read
            signed = await resolve_session(session, cookie=cookie, now=self.clock())
            await session.commit()
        if signed is None:
            raise _unauthorised("the session has ended: sign in again")
        caller = _caller(signed)
        if request.method not in SAFE_METHODS:
            await self._check_csrf(request, caller)
        return caller

    async def _bearer(self, token: str) -> Caller:
        bootstrap = self.settings.admin_token
        if bootstrap is not None and hmac.compare_digest(
            token.encode(), bootstrap.get_secret_value().encode()
        ):
            async with self.sessionmaker() as session:
                if await active_admin_exists(session):
                    raise _unauthorised(
                        "ADMIN_TOKEN only bootstraps the first admin: use your own token "
                        "(edoor admin token EMAIL)"
                    )
            return Caller(name=BOOTSTRAP_ACTOR, roles=frozenset({"admin"}))
        async with self.sessionmaker() as session:
            await begin_write(session)  # resolving notes the use: a write follows the read
            signed = await resolve_token(session, token=token, now=self.clock())
            await session.commit()
        if signed is None:
            raise _unauthorised("unknown or revoked token")
        return _caller(signed)

    async def _check_csrf(self, request: Request, caller: Caller) -> None:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        expected = caller.csrf_token or ""
        if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or wrong")


def admin_auth(request: Request) -> AdminAuth:
    auth = getattr(request.app.state, "admin_auth", None)
    if not isinstance(auth, AdminAuth):
        raise RuntimeError("app.py builds AdminAuth before mounting admin routes")
    return auth


RoleDependency = Callable[[Request], Awaitable[Caller]]


def require_role(settings: Settings, *roles: Role, page: bool = False) -> RoleDependency:
    """A FastAPI dependency: 401 without valid credentials, 403 without one of `roles`
    (admin always passes). `page=True` (console pages) sends a browser to the sign-in page
    instead of answering 401. The accepted roles are kept on the dependency (`edoor_roles`)
    so a test can check that every route declares some."""
    accepted = frozenset(roles)
    unknown = accepted - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    async def dependency(request: Request) -> Caller:
        try:
            caller = await admin_auth(request).identify(request)
        except HTTPException as exc:
            if page and exc.status_code == status.HTTP_401_UNAUTHORIZED:
                raise HTTPException(
                    status.HTTP_303_SEE_OTHER,
                    "sign in first",
                    headers={"Location": "/admin/login"},
                ) from None
            raise
        if "admin" not in caller.roles and not caller.roles & accepted:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "role not allowed")
        return caller

    dependency.edoor_roles = accepted  # type: ignore[attr-defined]
    return dependency


def any_role(settings: Settings, *, page: bool = False) -> RoleDependency:
    """Every signed-in person, whatever their role."""
    return require_role(settings, *ROLES, page=page)
