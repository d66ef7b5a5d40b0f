"""Console accounts through the real app: the bootstrap token, sessions and CSRF, the lock-out,
revocation, and the CLI."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from admin.auth import AdminAuth
from admin.console import _set_session_cookie
from bot.settings import Settings
from models.accounts import MAX_FAILED_LOGINS
from models.audit import AuditLog
from models.db import create_sessionmaker
from tests.admin_support import PASSWORD, bearer, make_account, sign_in
from tests.test_cli import edoor

BOOT = "bootstrap-token-0123456789"


async def _actions(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(AuditLog.actor, AuditLog.action).order_by(AuditLog.id))
        return [(r.actor, r.action) for r in rows]


@pytest.fixture
async def http(served):  # type: ignore[no-untyped-def]
    async with (
        served(admin_token=BOOT) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30, follow_redirects=False) as client,
    ):
        yield client


async def test_admin_token_only_bootstraps_the_first_admin(http, engine) -> None:  # type: ignore[no-untyped-def]
    created = await http.post(
        "/admin/api/accounts",
        json={"email": "Alice@Example.org", "role": "admin"},
        headers=bearer(BOOT),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == "alice@example.org"
    assert len(body["password"]) >= 12  # generated, shown once
    # From now on ADMIN_TOKEN opens nothing; the new admin signs in with the password.
    again = await http.get("/admin/api/accounts", headers=bearer(BOOT))
    assert again.status_code == 401
    assert "bootstraps" in again.json()["detail"]
    csrf = await sign_in(http, "alice@example.org", body["password"])
    listed = await http.get("/admin/api/accounts")
    assert [a["email"] for a in listed.json()["accounts"]] == ["alice@example.org"]
    # A change made with the session names the person in the audit log.
    made = await http.post(
        "/admin/api/accounts",
        json={"email": "bob@example.org", "role": "auditor", "password": "a-very-long-secret"},
        headers={"x-csrf-token": csrf},
    )
    assert made.status_code == 201
    assert made.json()["password"] is None  # given, so never echoed
    actions = await _actions(engine)
    assert ("admin:bootstrap-token", "accounts.create") in actions
    assert ("admin:alice@example.org", "accounts.login") in actions
    assert ("admin:alice@example.org", "accounts.create") in actions


async def test_cookie_changes_need_the_csrf_token(http, engine) -> None:  # type: ignore[no-untyped-def]
    await make_account(engine, "alice@example.org", "admin")
    csrf = await sign_in(http, "alice@example.org")
    cookie = http.cookies.get("edoor_session")
    assert cookie
    new = {"email": "carol@example.org", "role": "analyst"}
    assert (await http.post("/admin/api/accounts", json=new)).status_code == 403
    wrong = await http.post("/admin/api/accounts", json=new, headers={"x-csrf-token": "x" * 43})
    assert wrong.status_code == 403
    assert (await http.post("/admin/logout")).status_code == 403  # a form without csrf_token
    # Reads need no token; the form field works as well as the header.
    assert (await http.get("/admin/api/me")).json()["roles"] == ["admin"]
    ok = await http.post("/admin/api/accounts", json=new, headers={"x-csrf-token": csrf})
    assert ok.status_code == 201
    # A plain form post (no htmx) carries the token as a field, next to the form's own.
    lookup = {"channel": "simulator", "external_id": "nobody-here"}
    assert (await http.post("/admin/members/lookup", data=lookup)).status_code == 403
    found = await http.post("/admin/members/lookup", data={**lookup, "csrf_token": csrf})
    assert found.status_code == 200
    assert "查無此會員" in found.text
    out = await http.post("/admin/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    # The session is over on the server, whatever the browser still holds.
    http.cookies.set("edoor_session", cookie, path="/admin")
    assert (await http.get("/admin/api/me")).status_code == 401
    page = await http.get("/admin/courses")
    assert page.status_code == 303
    assert page.headers["location"] == "/admin/login"


async def test_session_cookie_is_http_only_and_secure_in_production(
    http, engine, make_settings
) -> None:  # type: ignore[no-untyped-def]
    await make_account(engine, "alice@example.org", "admin")
    response = await http.post(
        "/admin/login", data={"email": "alice@example.org", "password": PASSWORD}
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/admin" in cookie
    assert "Secure" not in cookie  # dev serves plain http on loopback
    production = AdminAuth(make_settings(edoor_env="production"), create_sessionmaker(engine))
    from fastapi import Response

    out = Response()
    _set_session_cookie(out, production, "cookie-id")
    assert "Secure" in out.headers["set-cookie"]
    assert "HttpOnly" in out.headers["set-cookie"]
    assert isinstance(production.settings, Settings)


async def test_wrong_passwords_lock_the_account(http, engine) -> None:  # type: ignore[no-untyped-def]
    await make_account(engine, "alice@example.org", "admin")
    for attempt in range(1, MAX_FAILED_LOGINS + 1):
        wrong = await http.post(
            "/admin/login", data={"email": "alice@example.org", "password": f"guess-{attempt}"}
        )
        assert wrong.status_code == (429 if attempt == MAX_FAILED_LOGINS else 401)
        assert "edoor_session" not in wrong.headers.get("set-cookie", "")
    # Locked: even the right password is refused, with the reason on the page.
    locked = await http.post(
        "/admin/login", data={"email": "alice@example.org", "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert "15" in locked.text
    assert "edoor_session" not in locked.headers.get("set-cookie", "")
    assert ("system", "accounts.login_locked") in await _actions(engine)
    # Another account is not locked by this one's failures.
    await make_account(engine, "bob@example.org", "auditor")
    await sign_in(http, "bob@example.org")


async def test_one_address_guessing_many_accounts_is_slowed_down(http, engine) -> None:  # type: ignore[no-untyped-def]
    await make_account(engine, "alice@example.org", "admin")
    statuses = [
        (
            await http.post(
                "/admin/login", data={"email": f"nobody{i}@example.org", "password": "guess-guess"}
            )
        ).status_code
        for i in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429
    blocked = await http.post(
        "/admin/login", data={"email": "alice@example.org", "password": PASSWORD}
    )
    assert blocked.status_code == 429


async def test_revoked_tokens_sessions_and_disabled_accounts_stop_working(http, engine) -> None:  # type: ignore[no-untyped-def]
    admin = await make_account(engine, "alice@example.org", "admin")
    auditor = await make_account(engine, "bob@example.org", "auditor")
    assert (await http.get("/admin/api/audit", headers=bearer(auditor))).status_code == 200
    bob = next(
        a
        for a in (await http.get("/admin/api/accounts", headers=bearer(admin))).json()["accounts"]
        if a["email"] == "bob@example.org"
    )
    tokens = (
        await http.get(f"/admin/api/accounts/{bob['id']}/tokens", headers=bearer(admin))
    ).json()
    token_id = tokens["tokens"][0]["id"]
    revoked = await http.delete(
        f"/admin/api/accounts/{bob['id']}/tokens/{token_id}", headers=bearer(admin)
    )
    assert revoked.status_code == 200
    assert (await http.get("/admin/api/audit", headers=bearer(auditor))).status_code == 401
    # Sessions: signed out everywhere by an admin.
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as browser:
        await sign_in(browser, "bob@example.org")
        assert (await browser.get("/admin/api/me")).status_code == 200
        ended = await http.post(f"/admin/api/accounts/{bob['id']}/sign-out", headers=bearer(admin))
        assert ended.json() == {"sessions_ended": 1}
        assert (await browser.get("/admin/api/me")).status_code == 401
        # Disabled: new tokens and sessions stop too, and signing in is refused.
        fresh = (
            await http.post(
                f"/admin/api/accounts/{bob['id']}/tokens", json={}, headers=bearer(admin)
            )
        ).json()["token"]
        await sign_in(browser, "bob@example.org")
        disabled = await http.post(
            f"/admin/api/accounts/{bob['id']}/disable", headers=bearer(admin)
        )
        assert disabled.json()["disabled"] is True
        assert (await http.get("/admin/api/me", headers=bearer(fresh))).status_code == 401
        assert (await browser.get("/admin/api/me")).status_code == 401
        refused = await browser.post(
            "/admin/login", data={"email": "bob@example.org", "password": PASSWORD}
        )
        assert refused.status_code == 401
    actions = [a for _, a in await _actions(engine)]
    for action in ("accounts.token_revoked", "accounts.sign_out", "accounts.disable"):
        assert action in actions


async def test_bad_account_input_is_a_clear_4xx(http, engine) -> None:  # type: ignore[no-untyped-def]
    admin = await make_account(engine, "alice@example.org", "admin")
    cases = [
        {"email": "not-an-email", "role": "admin"},
        {"email": "x@example.org", "role": "boss"},
        {"email": "x@example.org", "role": "admin", "password": "short"},
        {"email": "alice@example.org", "role": "admin"},
    ]
    for case in cases:
        response = await http.post("/admin/api/accounts", json=case, headers=bearer(admin))
        assert response.status_code == 422, case
    me = (await http.get("/admin/api/me", headers=bearer(admin))).json()
    accounts = (await http.get("/admin/api/accounts", headers=bearer(admin))).json()["accounts"]
    own = next(a for a in accounts if a["email"] == me["email"])
    assert (
        await http.post(f"/admin/api/accounts/{own['id']}/disable", headers=bearer(admin))
    ).status_code == 409
    assert (
        await http.post("/admin/api/accounts/999/disable", headers=bearer(admin))
    ).status_code == 404


async def test_the_cli_makes_accounts_and_tokens_the_api_accepts(http, database_url) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests.test_cli import ROOT

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        import os

        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"},
            timeout=120,
            check=False,
        )

    made = run(
        "admin",
        "create-user",
        "dana@example.org",
        "--role",
        "marketer",
        stdin="a-long-password-1\n",
    )
    assert made.returncode == 0, made.stderr
    assert "password (shown once)" not in made.stdout  # it was given on stdin
    generated = run("admin", "create-user", "erin@example.org", "--role", "auditor")
    assert "password (shown once):" in generated.stdout
    token = run("admin", "token", "dana@example.org").stdout.strip()
    assert token.startswith("edr_")
    me = await http.get("/admin/api/me", headers=bearer(token))
    assert me.json() == {
        "name": "admin:dana@example.org",
        "email": "dana@example.org",
        "roles": ["marketer"],
    }
    assert (await http.get("/admin/api/audit", headers=bearer(token))).status_code == 403
    await sign_in(http, "dana@example.org", "a-long-password-1")
    listed = run("admin", "list")
    assert "dana@example.org\tmarketer\tactive" in listed.stdout
    revoked = run("admin", "revoke", "dana@example.org")
    assert "1 token(s) revoked, 1 session(s) ended" in revoked.stdout
    assert (await http.get("/admin/api/me", headers=bearer(token))).status_code == 401
    assert (await http.get("/admin/api/me")).status_code == 401
    for bad in (
        ("admin", "create-user", "dana@example.org", "--role", "marketer"),  # exists
        ("admin", "create-user", "x@example.org", "--role", "boss"),
        ("admin", "token", "nobody@example.org"),
    ):
        failed = run(*bad, stdin="another-long-password\n")
        assert failed.returncode != 0, bad
        assert failed.stderr.strip(), bad
    assert edoor("audit", "verify", database_url=database_url).returncode == 0
