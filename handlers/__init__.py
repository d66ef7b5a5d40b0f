"""Channel-neutral features. The order of the routers here is the order of precedence."""

from __future__ import annotations

from bot.router import Router
from handlers import campaigns, courses, learning, podcasts, settings, start, verification


def build_router() -> Router:
    """The root router: every feature's routes, first match wins, the fallback last.

    Course search comes last among the features: any plain text is a search.
    """
    root = Router("root")
    for feature in (
        start.router,
        verification.router,
        settings.router,
        learning.router,
        podcasts.router,
        campaigns.router,
        courses.router,
    ):
        root.include(feature)
    return root
