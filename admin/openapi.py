"""The admin API's own OpenAPI document at /admin/api/openapi.json (a token of any role).

Only the /admin/api routes are in it: the console pages, webhooks, feeds and the simulator
are not part of the API contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from admin.auth import Caller, any_role
from bot.settings import Settings

PREFIX = "/admin/api"


def admin_openapi(api: FastAPI) -> dict[str, Any]:
    routes = [r for r in iter_route_contexts(api.routes) if (r.path or "").startswith(PREFIX)]
    spec = get_openapi(
        title="edoor admin API",
        version="1",
        description=(
            "Bearer token from `edoor admin token EMAIL` (or the console's session cookie "
            "with the X-CSRF-Token header). 401: no or bad token; 403: the role may not."
        ),
        routes=routes,
    )
    spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
    }
    spec["security"] = [{"bearer": []}]
    return spec


def openapi_routes(*, settings: Settings, api: FastAPI) -> APIRouter:
    routes = APIRouter(prefix=PREFIX, include_in_schema=False)
    anyone = Depends(any_role(settings))
    cached: dict[str, Any] = {}

    @routes.get("/openapi.json")
    async def openapi(caller: Caller = anyone) -> dict[str, Any]:
        """This API's OpenAPI document."""
        if not cached:
            cached.update(admin_openapi(api))
        return cached

    return routes
