"""Console accounts: named people with one role each, their sessions and their API tokens.

Passwords are argon2 hashes; session ids and API tokens are random and kept only as
SHA-256 hashes (they carry 256 bits, so a fast hash is enough), so a copy of the database
opens nothing. Five wrong passwords in a row lock an account for 15 minutes. Rules over a
session, keyword-only, never committing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ForeignKey, String, Text, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

ROLES = ("admin", "marketer", "analyst", "auditor")
MIN_PASSWORD = 12
MAX_FAILED_LOGINS = 5
LOCK_TIME = dt.timedelta(minutes=15)
SESSION_TTL = dt.timedelta(hours=12)
SESSION_IDLE = dt.timedelta(hours=2)
TOKEN_PREFIX = "edr_"  # noqa: S105 (a prefix that says what a string is)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,}$")
_hasher = PasswordHasher()
# Verified against when the email is unknown, so that a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AdminAccount(Base):
    """A person who may use the console: one role of the contract."""

    __tablename__ = "admin_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    @property
    def actor(self) -> str:
        """How the audit log names this person."""
        return f"admin:{self.email}"[:64]


class AdminSession(Base):
    """A signed-in browser: the cookie holds the id, the table only its hash."""

    __tablename__ = "admin_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("admin_account.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AdminToken(Base):
    """A bearer token for scripts, with its owner's role; only the hash is kept."""

    __tablename__ = "admin_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("admin_account.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AccountError(ValueError):
    """A refused account change; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class LoginRefused(Exception):
    reason: str  # "bad_credentials", "locked", "disabled"
    retry_at: dt.datetime | None = None


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value) or len(value) > 254:
        raise AccountError(f"not an email address: {email.strip()[:80]!r}")
    return value


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password has at most 1024 characters")


# -- accounts -------------------------------------------------------------------------------------
async def get_account_by_email(session: AsyncSession, *, email: str) -> AdminAccount | None:
    try:
        value = normalise_email(email)
    except AccountError:
        return None
    return await session.scalar(select(AdminAccount).where(AdminAccount.email == value))


async def require_account(session: AsyncSession, *, email: str) -> AdminAccount:
    account = await get_account_by_email(session, email=email)
    if account is None:
        raise AccountError(f"no account {email.strip()[:80]!r}")
    return account


async def list_accounts(session: AsyncSession) -> list[AdminAccount]:
    return list((await session.scalars(select(AdminAccount).order_by(AdminAccount.email))).all())


async def active_admin_exists(session: AsyncSession) -> bool:
    """Whether the bootstrap is over (ADMIN_TOKEN then opens nothing)."""
    found = await session.scalar(
        select(func.count())
        .select_from(AdminAccount)
        .where(AdminAccount.role == "admin", AdminAccount.disabled_at.is_(None))
    )
    return bool(found)


async def create_account(
    session: AsyncSession,
    *,
    email: str,
    role: str,
    password: str,
    created_by: str,
    now: dt.datetime,
) -> AdminAccount:
    """A new account (AccountError: bad email, unknown role, weak password, email taken)."""
    value = normalise_email(email)
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    check_password_strength(password)
    if await get_account_by_email(session, email=value) is not None:
        raise AccountError(f"an account {value!r} exists already")
    account = AdminAccount(
        email=value,
        role=role,
        password_hash=await asyncio.to_thread(_hasher.hash, password),
        created_at=now,
        created_by=created_by[:64],
    )
    session.add(account)
    await session.flush()
    return account


async def set_password(
    session: AsyncSession, *, account: AdminAccount, password: str, now: dt.datetime
) -> None:
    """A new password; every session of the account ends (its tokens stay)."""
    check_password_strength(password)
    account.password_hash = await asyncio.to_thread(_hasher.hash, password)
    account.failed_logins, account.locked_until = 0, None
    await revoke_sessions(session, account_id=account.id, now=now)


async def set_disabled(
    session: AsyncSession, *, account: AdminAccount, disabled: bool, now: dt.datetime
) -> None:
    """Disable (every session and token ends) or enable an account."""
    if disabled:
        account.disabled_at = now
        await revoke_sessions(session, account_id=account.id, now=now)
        await revoke_tokens(session, account_id=account.id, now=now)
    else:
        account.disabled_at = None
        account.failed_logins, account.locked_until = 0, None


# -- signing in -----------------------------------------------------------------------------------
async def authenticate(
    session: AsyncSession, *, email: str, password: str, now: dt.datetime
) -> AdminAccount:
    """The account whose password this is, else LoginRefused (counting the failure).
    argon2 runs in a worker thread: a sign-in never stalls the other requests."""
    account = await get_account_by_email(session, email=email)
    if account is None:
        await asyncio.to_thread(_verify, _DUMMY_HASH, password)
        raise LoginRefused("bad_credentials")
    if account.locked_until is not None and account.locked_until > now:
        raise LoginRefused("locked", account.locked_until)
    if not await asyncio.to_thread(_verify, account.password_hash, password):
        account.failed_logins += 1
        if account.failed_logins >= MAX_FAILED_LOGINS:
            account.locked_until, account.failed_logins = now + LOCK_TIME, 0
            raise LoginRefused("locked", account.locked_until)
        raise LoginRefused("bad_credentials")
    if account.disabled_at is not None:
        raise LoginRefused("disabled")
    account.failed_logins, account.locked_until, account.last_login_at = 0, None, now
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return account


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Signed:
    """A resolved session or token: who, and for sessions the page's CSRF token."""

    account: AdminAccount
    csrf_token: str | None = None
    session_id: int | None = None


async def start_session(
    session: AsyncSession, *, account: AdminAccount, now: dt.datetime
) -> tuple[str, AdminSession]:
    """A new session: (the cookie value, shown once; the row)."""
    cookie = secrets.token_urlsafe(32)
    row = AdminSession(
        id_hash=_sha(cookie),
        account_id=account.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_TTL,
    )
    session.add(row)
    await session.flush()
    return cookie, row


async def resolve_session(session: AsyncSession, *, cookie: str, now: dt.datetime) -> Signed | None:
    """The live session behind a cookie (None when unknown, revoked, expired or idle)."""
    if not cookie or len(cookie) > 128:
        return None
    row = await session.scalar(select(AdminSession).where(AdminSession.id_hash == _sha(cookie)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.last_seen_at + SESSION_IDLE <= now:
        return None
    account = await session.get(AdminAccount, row.account_id)
    if account is None or account.disabled_at is not None:
        return None
    if now - row.last_seen_at > dt.timedelta(minutes=1):
        row.last_seen_at = now
    return Signed(account=account, csrf_token=row.csrf_token, session_id=row.id)


async def end_session(session: AsyncSession, *, cookie: str, now: dt.datetime) -> bool:
    result = await session.execute(
        update(AdminSession)
        .where(AdminSession.id_hash == _sha(cookie), AdminSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_sessions(session: AsyncSession, *, account_id: int, now: dt.datetime) -> int:
    result = await session.execute(
        update(AdminSession)
        .where(AdminSession.account_id == account_id, AdminSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- API tokens -----------------------------------------------------------------------------------
async def issue_token(
    session: AsyncSession, *, account: AdminAccount, label: str, now: dt.datetime
) -> str:
    """A new bearer token for the account (returned once; only its hash is kept)."""
    if account.disabled_at is not None:
        raise AccountError("the account is disabled")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        AdminToken(
            token_hash=_sha(token), account_id=account.id, label=label[:64] or "cli", created_at=now
        )
    )
    await session.flush()
    return token


async def resolve_token(session: AsyncSession, *, token: str, now: dt.datetime) -> Signed | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = await session.scalar(select(AdminToken).where(AdminToken.token_hash == _sha(token)))
    if row is None or row.revoked_at is not None:
        return None
    account = await session.get(AdminAccount, row.account_id)
    if account is None or account.disabled_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
        row.last_used_at = now
    return Signed(account=account)


async def list_tokens(session: AsyncSession, *, account_id: int) -> list[AdminToken]:
    return list(
        (
            await session.scalars(
                select(AdminToken)
                .where(AdminToken.account_id == account_id)
                .order_by(AdminToken.id)
            )
        ).all()
    )


async def revoke_tokens(
    session: AsyncSession, *, account_id: int, now: dt.datetime, token_id: int | None = None
) -> int:
    """Revoke one token (by id) or every token of the account."""
    query = update(AdminToken).where(
        AdminToken.account_id == account_id, AdminToken.revoked_at.is_(None)
    )
    if token_id is not None:
        query = query.where(AdminToken.id == token_id)
    result = await session.execute(query.values(revoked_at=now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
