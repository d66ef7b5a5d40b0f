"""Console accounts for tests: made through the real rules, signed in over real HTTP."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import create_account, issue_token
from models.base import utcnow
from models.db import create_sessionmaker

PASSWORD = "correct horse battery staple"
ROLES = ("admin", "marketer", "analyst", "auditor")
_CSRF = re.compile(r'data-csrf="([^"]+)"')


async def make_account(
    engine: AsyncEngine, email: str, role: str, *, password: str = PASSWORD
) -> str:
    """Create the account and return a bearer token for it."""
    async with create_sessionmaker(engine)() as session:
        account = await create_account(
            session, email=email, role=role, password=password, created_by="test", now=utcnow()
        )
        token = await issue_token(session, account=account, label="test", now=utcnow())
        await session.commit()
    return token


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in with the login form; returns the page's CSRF token (the cookie stays in http)."""
    response = await http.post("/admin/login", data={"email": email, "password": password})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin"
    home = await http.get("/admin")
    assert home.status_code == 200
    found = _CSRF.search(home.text)
    assert found
    assert found.group(1)
    return found.group(1)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
