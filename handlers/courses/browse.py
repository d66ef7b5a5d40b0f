"""Courses without typing: newest, popular, under an hour, and by category (the buttons and
the typed browse words)."""

from __future__ import annotations

from bot.context import Context
from bot.messages import Button, Cards, Incoming, Reply, Text
from bot.router import Router, normalise_words
from handlers.courses.common import (
    MAX_QUICK,
    PAGE,
    audience_for,
    category_buttons,
    category_name,
    course_card,
    empty_list,
    fits,
    recommend_button,
)
from models.courses import (
    Course,
    courses_in_category,
    list_categories,
    newest_courses,
    popular_courses,
    short_courses,
)

router = Router("courses.browse")


def browse_buttons(ctx: Context) -> list[Button]:
    """Newest, popular, under an hour, all categories: browsing without typing."""
    return [
        *(
            Button(label=ctx.t(f"courses.browse_{kind}_button"), action=f"course.browse:{kind}")
            for kind in BROWSE_KINDS
        ),
        Button(label=ctx.t("courses.categories_button"), action="course.cats"),
    ]


# Words typed (any channel, zh-TW or en) that browse instead of searching; "browse" is no
# command of its own (the Ways-in table keeps its commands), so these are plain-text words.
BROWSE_KINDS = ("new", "popular", "short")
BROWSE_WORDS: dict[str, str] = {
    normalise_words(word): kind
    for kind, words in (
        (
            "new",
            ("最新課程", "最新", "新課程", "newest", "newest courses", "new courses", "latest"),
        ),
        ("popular", ("熱門課程", "熱門", "popular", "popular courses")),
        (
            "short",
            (
                "微課程",
                "短課程",
                "一小時內的課程",
                "short courses",
                "short",
                "micro courses",
                "microcourses",
                "micro-courses",
            ),
        ),
        ("cats", ("課程類別", "課程分類", "類別", "分類", "categories", "course categories")),
    )
    for word in words
}


def browse_word(text: str) -> str | None:
    return BROWSE_WORDS.get(normalise_words(text))


@router.on_text(lambda text: browse_word(text) is not None)
async def browse_words(ctx: Context, msg: Incoming) -> Reply:
    """最新課程 / 熱門課程 / 微課程 / 課程類別 typed: the same lists as the buttons."""
    kind = browse_word(msg.text)
    if kind == "cats":
        return await _categories(ctx)
    return await _browse(ctx, kind or "popular", 0)


@router.on_action("course.cats")
async def categories(ctx: Context, msg: Incoming) -> Reply:
    """Every category with its number of courses, as buttons."""
    return await _categories(ctx)


async def _categories(ctx: Context) -> Reply:
    cats = await list_categories(ctx.session, audience=audience_for(ctx))
    lines = "\n".join(f"・{category_name(ctx, c)}（{n}）" for c, n in cats)
    return Text(
        text=ctx.t("courses.categories", list=lines),
        quick_replies=[
            recommend_button(ctx),
            *category_buttons(ctx, [c for c, _ in cats][: MAX_QUICK - 1]),
        ],
    )


def _course_cards(
    ctx: Context,
    courses: list[Course],
    title: str,
    more: str | None,
    quick: list[Button] | None = None,
) -> Reply:
    if not courses:
        return empty_list(ctx, quick or [])
    return Cards(
        alt_text=title,
        cards=[
            course_card(ctx, cid=c.id, title=c.title, category=c.category, hours=c.hours)
            for c in courses[:PAGE]
        ],
        more=Button(label=ctx.t("courses.more"), action=more)
        if more and len(courses) > PAGE
        else None,
        quick_replies=quick or [],
    )


@router.on_action("course.cat")
async def category(ctx: Context, msg: Incoming) -> Reply:
    """Courses of one category, a page at a time (`course.cat:<name>[|<offset>]`)."""
    name, _, raw = ctx.args.partition("|")
    offset = int(raw) if raw.isdigit() else 0
    found = await courses_in_category(
        ctx.session, category=name, limit=PAGE + 1, offset=offset, audience=audience_for(ctx)
    )
    next_action = f"course.cat:{name}|{offset + PAGE}"
    return _course_cards(
        ctx,
        found,
        ctx.t("courses.in_category", category=category_name(ctx, name)),
        next_action if fits(next_action) else None,
    )


@router.on_action("course.browse")
async def browse(ctx: Context, msg: Incoming) -> Reply:
    """Newest, most popular or short (< 1 h) courses, a page at a time
    (`course.browse:new|popular|short[|<offset>]`)."""
    kind, _, raw = ctx.args.partition("|")
    return await _browse(ctx, kind, int(raw) if raw.isdigit() else 0)


async def _browse(ctx: Context, kind: str, offset: int) -> Reply:
    kind = kind if kind in BROWSE_KINDS else "popular"
    audience = audience_for(ctx)
    lister = {"new": newest_courses, "short": short_courses}.get(kind, popular_courses)
    found = await lister(ctx.session, limit=PAGE + 1, offset=offset, audience=audience)
    # The other lists and the categories, so one can wander without typing.
    quick = [b for b in browse_buttons(ctx) if b.action != f"course.browse:{kind}"] + [
        recommend_button(ctx)
    ]
    return _course_cards(
        ctx, found, ctx.t(f"courses.browse_{kind}"), f"course.browse:{kind}|{offset + PAGE}", quick
    )
