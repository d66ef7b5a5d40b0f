"""Channel-neutral features. The order of the routers here is the order of precedence."""

from __future__ import annotations

from bot.router import Router
from handlers import start


def build_router() -> Router:
    """The root router: every feature's routes, first match wins, the fallback last."""
    root = Router("root")
    for feature in (start.router,):
        root.include(feature)
    return root
