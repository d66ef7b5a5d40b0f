"""Every /admin page and /admin/api endpoint declares its roles, and each role gets exactly
what it is allowed: 401 (API) or the sign-in page (console) without credentials, 403 for a
role without the right, anything but 401/403 for a role with it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from admin.console import PUBLIC_ROUTES
from tests.admin_support import ROLES, bearer, make_account

ALL = frozenset(ROLES)
ADMIN = frozenset({"admin"})
PEOPLE = frozenset({"admin", "auditor"})
OFFICE = frozenset({"admin", "marketer", "auditor"})
EDITORS = frozenset({"admin", "marketer"})
ANALYSTS = frozenset({"admin", "analyst", "auditor"})  # the learning dashboards
# The contract ("Who may do what") for the console and API built here. A route missing from
# this table must still declare roles (require_role): it is checked against its declaration.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/admin"): ALL,
    ("POST", "/admin/logout"): ALL,
    ("GET", "/admin/courses"): ALL,
    ("GET", "/admin/courses/search"): ALL,
    ("GET", "/admin/requirements"): ALL,
    ("GET", "/admin/podcasts"): ALL,
    ("GET", "/admin/members"): PEOPLE,
    ("POST", "/admin/members/lookup"): PEOPLE,
    ("GET", "/admin/imports"): ADMIN,
    ("GET", "/admin/audit"): PEOPLE,
    ("GET", "/admin/audit/rows"): PEOPLE,
    ("GET", "/admin/accounts"): ADMIN,
    ("GET", "/admin/campaigns"): OFFICE,
    ("GET", "/admin/broadcasts"): OFFICE,
    ("GET", "/admin/campaigns/{slug}"): OFFICE,
    ("GET", "/admin/broadcasts/{broadcast_id}"): OFFICE,
    ("GET", "/admin/broadcasts/{broadcast_id}/figures"): OFFICE,
    ("GET", "/admin/dashboards"): ALL,
    ("GET", "/admin/dashboards/topics"): ANALYSTS,
    ("GET", "/admin/dashboards/compliance"): ANALYSTS,
    ("GET", "/admin/dashboards/reminders"): ANALYSTS,
    ("GET", "/admin/dashboards/search"): ANALYSTS,
    ("GET", "/admin/dashboards/campaigns"): ALL,
    ("GET", "/admin/dashboards/channels"): ALL,
    ("GET", "/admin/api/dashboards/topics"): ANALYSTS,
    ("GET", "/admin/api/dashboards/compliance"): ANALYSTS,
    ("GET", "/admin/api/dashboards/reminders"): ANALYSTS,
    ("GET", "/admin/api/dashboards/search"): ANALYSTS,
    ("GET", "/admin/api/dashboards/campaigns"): ALL,
    ("GET", "/admin/api/dashboards/channels"): ALL,
    ("GET", "/admin/api/campaigns"): OFFICE,
    ("POST", "/admin/api/campaigns"): EDITORS,
    ("GET", "/admin/api/campaigns/{slug}"): OFFICE,
    ("PUT", "/admin/api/campaigns/{slug}"): EDITORS,
    ("POST", "/admin/api/campaigns/{slug}/codes"): EDITORS,
    ("GET", "/admin/api/campaigns/{slug}/export"): PEOPLE,
    ("POST", "/admin/api/campaigns/{slug}/claims/{claim_id}/revoke"): OFFICE,
    ("POST", "/admin/api/campaigns/{slug}/claims/{claim_id}/review"): EDITORS,
    ("POST", "/admin/api/campaigns/{slug}/redemptions"): EDITORS,
    ("POST", "/admin/api/campaigns/{slug}/draw"): EDITORS,
    ("POST", "/admin/api/campaigns/{slug}/notify"): EDITORS,
    ("GET", "/admin/api/broadcasts"): OFFICE,
    ("POST", "/admin/api/broadcasts"): EDITORS,
    ("POST", "/admin/api/broadcasts/count"): EDITORS,
    ("POST", "/admin/api/broadcasts/images"): EDITORS,
    ("GET", "/admin/api/broadcasts/{broadcast_id}"): OFFICE,
    ("GET", "/admin/api/broadcasts/{broadcast_id}/count"): OFFICE,
    ("GET", "/admin/api/broadcasts/{broadcast_id}/preview"): OFFICE,
    ("POST", "/admin/api/broadcasts/{broadcast_id}/test"): EDITORS,
    ("POST", "/admin/api/broadcasts/{broadcast_id}/pause"): EDITORS,
    ("POST", "/admin/api/broadcasts/{broadcast_id}/resume"): EDITORS,
    ("POST", "/admin/api/broadcasts/{broadcast_id}/cancel"): EDITORS,
    ("POST", "/admin/api/broadcasts/{broadcast_id}/pick"): EDITORS,
    ("GET", "/admin/api/openapi.json"): ALL,
    ("GET", "/admin/api/me"): ALL,
    ("GET", "/admin/api/accounts"): ADMIN,
    ("POST", "/admin/api/accounts"): ADMIN,
    ("POST", "/admin/api/accounts/{account_id}/disable"): ADMIN,
    ("POST", "/admin/api/accounts/{account_id}/enable"): ADMIN,
    ("POST", "/admin/api/accounts/{account_id}/sign-out"): ADMIN,
    ("GET", "/admin/api/accounts/{account_id}/tokens"): ADMIN,
    ("POST", "/admin/api/accounts/{account_id}/tokens"): ADMIN,
    ("DELETE", "/admin/api/accounts/{account_id}/tokens/{token_id}"): ADMIN,
    ("GET", "/admin/api/audit"): PEOPLE,
    ("GET", "/admin/api/audit/verify"): PEOPLE,
    ("GET", "/admin/api/members/{member_id}"): PEOPLE,
    ("POST", "/admin/api/members/lookup"): PEOPLE,
    ("POST", "/admin/api/members/lookup-phone"): PEOPLE,
    ("POST", "/admin/api/imports/roster"): ADMIN,
    ("POST", "/admin/api/imports/completions"): ADMIN,
    ("GET", "/admin/api/requirements"): ALL,
    ("POST", "/admin/api/requirements"): ADMIN,
    ("GET", "/admin/api/courses"): ALL,
    ("GET", "/admin/api/courses/search"): ALL,
    ("POST", "/admin/api/courses/import"): ADMIN,
    ("PUT", "/admin/api/courses/{course_id}/password"): ADMIN,
    ("GET", "/admin/api/podcasts"): ALL,
    ("POST", "/admin/api/podcasts"): ADMIN,
    ("POST", "/admin/api/podcasts/{slug}/episodes"): ADMIN,
    ("POST", "/admin/api/podcasts/{slug}/tts"): ADMIN,
}
PARAM = re.compile(r"\{(\w+)\}")


def declared_roles(route: Any) -> frozenset[str] | None:
    """The roles of the route's require_role dependency, wherever it sits."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "edoor_roles", None)
        if roles is not None:
            return frozenset(roles) | ADMIN
        stack.extend(dep.dependencies)
    return None


def admin_routes(api: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, route) of every endpoint under /admin (included routers flattened)."""
    out = []
    for route in iter_route_contexts(api.routes):
        path, methods = route.path or "", route.methods
        if path.startswith("/admin") and methods and hasattr(route, "dependant"):
            for method in sorted(set(methods) - {"HEAD"}):
                out.append((method, path, route))
    return out


def concrete(path: str) -> str:
    """Path parameters that match nothing (no side effects on the accounts under test)."""
    return PARAM.sub(lambda m: "en" if m.group(1) == "lang" else "999999", path)


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"POST", "PUT"}:
        kwargs["json"] = {}
    response = await http.request(method, concrete(path), **kwargs)
    return response.status_code


async def test_every_admin_route_declares_roles_and_enforces_them(served, engine) -> None:  # type: ignore[no-untyped-def]
    tokens = {role: await make_account(engine, f"{role}@example.org", role) for role in ROLES}
    async with (
        # One wrong token per route, faster than the per-address limit allows (tested below).
        served(admin_token="bootstrap-token-0123456789", admin_bad_tokens_per_ip_minute=10_000) as (
            url,
            api,
        ),
        httpx.AsyncClient(base_url=url, timeout=30, follow_redirects=False) as http,
    ):
        routes = admin_routes(api)
        assert len(routes) >= len(EXPECTED)
        undeclared = [
            (m, p)
            for m, p, r in routes
            if declared_roles(r) is None and (m, p) not in PUBLIC_ROUTES
        ]
        assert undeclared == [], f"routes without require_role: {undeclared}"
        mismatched = [
            (m, p)
            for m, p, r in routes
            if (m, p) in EXPECTED and declared_roles(r) != EXPECTED[(m, p)]
        ]
        assert mismatched == [], f"roles differ from the contract table: {mismatched}"
        missing = set(EXPECTED) - {(m, p) for m, p, _ in routes}
        assert missing == set(), f"routes of the table that the app lacks: {missing}"

        failures = []
        for method, path, route in routes:
            if (method, path) in PUBLIC_ROUTES:
                continue
            allowed = EXPECTED.get((method, path)) or declared_roles(route) or ADMIN
            refused = 401 if path.startswith("/admin/api") else 303  # pages: to the sign-in
            anonymous = await call(http, method, path, {})
            if anonymous != refused:
                failures.append((method, path, "anonymous", anonymous))
            bad = await call(http, method, path, bearer("edr_not-a-real-token"))
            if bad != refused:
                failures.append((method, path, "bad token", bad))
            for role in ROLES:
                status = await call(http, method, path, bearer(tokens[role]))
                if role in allowed and status in (401, 403):
                    failures.append((method, path, role, status))
                if role not in allowed and status != 403:
                    failures.append((method, path, role, status))
                if status >= 500:
                    failures.append((method, path, role, status))
        assert failures == [], "\n".join(map(str, failures))


async def test_public_routes_are_only_the_sign_in_and_language_switch(served) -> None:  # type: ignore[no-untyped-def]
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30, follow_redirects=False) as http,
    ):
        assert (await http.get("/admin/login")).status_code == 200
        switched = await http.get("/admin/lang/en", params={"next": "https://evil.example/"})
        assert switched.status_code == 303
        assert switched.headers["location"] == "/admin"  # no open redirect
        assert (await http.get("/admin/lang/fr")).status_code == 404
        assert (await http.get("/admin/static/vendor/htmx.min.js")).status_code == 200


@pytest.mark.parametrize("auth", [None, "Bearer", "Basic abc", "Bearer edr_forged"])
async def test_the_openapi_document_needs_a_token(served, engine, auth) -> None:  # type: ignore[no-untyped-def]
    token = await make_account(engine, "ana@example.org", "analyst")
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        refused = await http.get(
            "/admin/api/openapi.json", headers={"authorization": auth} if auth else {}
        )
        assert refused.status_code == 401
        spec = (await http.get("/admin/api/openapi.json", headers=bearer(token))).json()
        assert "/admin/api/audit" in spec["paths"]
        assert all(p.startswith("/admin/api") for p in spec["paths"])
        # The whole app's document is served in dev only (EDOOR_ENV=production turns it off).
        whole = await http.get("/openapi.json")
        assert whole.status_code == 200
        assert "/simulator/api/send" in whole.json()["paths"]


async def test_wrong_bearer_tokens_from_one_address_are_limited(served, engine) -> None:  # type: ignore[no-untyped-def]
    """Past the limit every bearer request from that address is a 429 (a right token too:
    answering it would tell a guesser which guess was right); anonymous requests and the
    counting of right tokens are untouched."""
    good = await make_account(engine, "lim@example.org", "analyst")
    async with (
        served(admin_bad_tokens_per_ip_minute=3) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        assert (await http.get("/admin/api/me", headers=bearer(good))).status_code == 200
        wrong = [
            (await http.get("/admin/api/me", headers=bearer(f"edr_guess-{i}"))).status_code
            for i in range(4)
        ]
        assert wrong == [401, 401, 401, 429]
        limited = await http.get("/admin/api/me", headers=bearer(good))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "60"
        assert "wait" in limited.json()["detail"]
        assert (await http.get("/admin/api/me")).status_code == 401  # no token: not counted
