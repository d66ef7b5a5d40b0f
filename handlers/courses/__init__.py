"""Course search with filters, browsing by category, course cards (save, similar), saved
courses, recommendations and the course-password step: one router for the feature.

The order of the parts is their precedence among typed words: the browse words (最新課程,
熱門課程, ...) come before the search, which takes any other plain text.
"""

from __future__ import annotations

from bot.router import Router
from handlers.courses import browse, card, password, recommendations, search
from handlers.courses.common import course_url, go_button
from handlers.courses.search import civil_servant_courses_button, run_search

__all__ = ["civil_servant_courses_button", "course_url", "go_button", "router", "run_search"]

router = Router("courses")
for part in (browse.router, search.router, card.router, recommendations.router, password.router):
    router.include(part)
