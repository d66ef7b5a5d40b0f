"""Course search, browsing by category, course cards and the course-password step."""

from __future__ import annotations

from bot.context import Context
from bot.messages import MAX_ACTION_BYTES, Button, Card, Cards, Incoming, Reply, Text
from bot.router import Router
from models.courses import (
    Course,
    courses_in_category,
    get_course,
    list_categories,
    newest_courses,
    popular_courses,
    short_courses,
    verify_course_password,
)
from models.search import Filters, SearchResult, SearchService

router = Router("courses")

PAGE = 5  # cards per answer: LINE carousels and Telegram lists both stay readable
PASSWORD_TRIES = 3
PORTAL = "https://elearning.taipei/"
TAIPEI_COURSE = "https://ap1.elearning.taipei/elearn/course/view.php?id={}"


async def _search(ctx: Context) -> SearchService:
    """The shared search service; built from the database on first use if app.py has none."""
    service = ctx.services.extra.get("search")
    if not isinstance(service, SearchService):
        service = SearchService()
        await service.reload(ctx.session)
        ctx.services.extra["search"] = service
    return service


def _audience(ctx: Context) -> str | None:
    # Courses for civil servants are shown to verified civil servants only.
    return None if ctx.member.is_civil_servant else "public"


def _fit(prefix: str, text: str) -> str:
    """`prefix + text`, with text shortened until the action id fits Telegram's 64 bytes."""
    while len((prefix + text).encode("utf-8")) > MAX_ACTION_BYTES:
        text = text[:-1]
    return prefix + text


def course_url(course_id: str, url: str | None) -> str:
    if url:
        return url
    if course_id.startswith("tpe-") and course_id[4:].isdigit():
        return TAIPEI_COURSE.format(course_id[4:])
    return PORTAL


def _hours(ctx: Context, hours: float) -> str:
    return ctx.t("courses.hours", hours=f"{hours:g}")


def _card(ctx: Context, *, cid: str, title: str, category: str, hours: float) -> Card:
    return Card(
        title=title,
        subtitle=f"{category}・{_hours(ctx, hours)}",
        buttons=[Button(label=ctx.t("courses.open"), action=f"course.open:{cid}")],
    )


def _category_buttons(ctx: Context, names: list[str]) -> list[Button]:
    return [
        Button(label=name, action=_fit("course.cat:", name))
        for name in names
        if len(f"course.cat:{name}".encode()) <= MAX_ACTION_BYTES
    ]


def _results(ctx: Context, found: SearchResult, query: str) -> list[Reply]:
    replies: list[Reply] = []
    if found.corrected:
        replies.append(Text(text=ctx.t("courses.corrected", query=found.corrected)))
    if not found.hits:
        suggestions = [
            Button(label=s, action=_fit("course.q:", s)) for s in found.suggestions
        ] + _category_buttons(ctx, found.related_categories)
        key = "courses.none_suggest" if found.suggestions else "courses.none"
        return [Text(text=ctx.t(key, query=query), quick_replies=suggestions[:8])]
    more = None
    if found.has_more:
        more = Button(
            label=ctx.t("courses.more"),
            action=_fit(f"course.more:{found.offset + found.limit}:", query),
        )
    replies.append(
        Cards(
            alt_text=ctx.t("courses.found", total=found.total, query=query),
            cards=[
                _card(ctx, cid=h.id, title=h.title, category=h.category, hours=h.hours)
                for h in found.hits
            ],
            more=more,
            quick_replies=_category_buttons(ctx, found.related_categories),
        )
    )
    return replies


async def run_search(ctx: Context, query: str, *, offset: int = 0) -> list[Reply]:
    """Search, log the query (first page), and answer with cards or alternatives."""
    query = " ".join(query.split())[:100]
    service = await _search(ctx)
    found = await service.search_and_log(
        ctx.session,
        query,
        channel=ctx.channel,
        now=ctx.now,
        filters=Filters(audience=_audience(ctx)),
        offset=offset,
        limit=PAGE,
    )
    return _results(ctx, found, query)


@router.on_command("search", words=("找課程", "搜尋課程", "搜尋", "search"))
async def search(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """`找課程 資安` searches at once; `找課程` alone asks for words and shows categories."""
    if ctx.args.strip():
        return await run_search(ctx, ctx.args)
    await ctx.enter("courses.await_query")
    cats = [c for c, _ in await list_categories(ctx.session, audience=_audience(ctx))]
    return Text(text=ctx.t("courses.ask_query"), quick_replies=_category_buttons(ctx, cats[:8]))


@router.on_state("courses.await_query")
async def typed_query(ctx: Context, msg: Incoming) -> list[Reply]:
    """The words typed after 找課程."""
    await ctx.leave()
    return await run_search(ctx, msg.text)


@router.on_text(lambda text: bool(text.strip()) and not text.lstrip().startswith("/"))
async def plain_text(ctx: Context, msg: Incoming) -> list[Reply]:
    """Plain text that is nothing else is a course search."""
    return await run_search(ctx, msg.text)


@router.on_action("course.q")
async def suggested(ctx: Context, msg: Incoming) -> list[Reply]:
    """A did-you-mean button: search for the suggested words."""
    return await run_search(ctx, ctx.args)


@router.on_action("course.more")
async def more(ctx: Context, msg: Incoming) -> list[Reply]:
    """The next page of a search (`course.more:<offset>:<query>`)."""
    offset, _, query = ctx.args.partition(":")
    return await run_search(ctx, query, offset=int(offset) if offset.isdigit() else 0)


@router.on_action("course.cats")
async def categories(ctx: Context, msg: Incoming) -> Reply:
    """Every category with its number of courses, as buttons."""
    cats = await list_categories(ctx.session, audience=_audience(ctx))
    lines = "\n".join(f"・{c}（{n}）" for c, n in cats)
    return Text(
        text=ctx.t("courses.categories", list=lines),
        quick_replies=_category_buttons(ctx, [c for c, _ in cats][:13]),
    )


def _course_cards(ctx: Context, courses: list[Course], title: str, more: str | None) -> Reply:
    if not courses:
        return Text(text=ctx.t("courses.empty_list"))
    return Cards(
        alt_text=title,
        cards=[
            _card(ctx, cid=c.id, title=c.title, category=c.category, hours=c.hours)
            for c in courses[:PAGE]
        ],
        more=Button(label=ctx.t("courses.more"), action=more)
        if more and len(courses) > PAGE
        else None,
    )


@router.on_action("course.cat")
async def category(ctx: Context, msg: Incoming) -> Reply:
    """Courses of one category, a page at a time (`course.cat:<name>[|<offset>]`)."""
    name, _, raw = ctx.args.partition("|")
    offset = int(raw) if raw.isdigit() else 0
    found = await courses_in_category(
        ctx.session, category=name, limit=PAGE + 1, offset=offset, audience=_audience(ctx)
    )
    next_action = f"course.cat:{name}|{offset + PAGE}"
    fits = len(next_action.encode()) <= MAX_ACTION_BYTES
    return _course_cards(
        ctx, found, ctx.t("courses.in_category", category=name), next_action if fits else None
    )


@router.on_action("course.browse")
async def browse(ctx: Context, msg: Incoming) -> Reply:
    """Newest, most popular or short (< 1 h) courses (`course.browse:new|popular|short`)."""
    kind = ctx.args if ctx.args in ("new", "popular", "short") else "popular"
    audience = _audience(ctx)
    if kind == "new":
        found = await newest_courses(ctx.session, limit=PAGE, audience=audience)
    elif kind == "short":
        found = await short_courses(ctx.session, limit=PAGE, audience=audience)
    else:
        found = await popular_courses(ctx.session, limit=PAGE, audience=audience)
    return _course_cards(ctx, found, ctx.t(f"courses.browse_{kind}"), None)


async def _visible(ctx: Context, course_id: str) -> Course | None:
    course = await get_course(ctx.session, course_id=course_id)
    if course is None or course.retired:
        return None
    if course.audience == "civil_servant" and not ctx.member.is_civil_servant:
        return None
    return course


@router.on_action("course.open")
async def open_course(ctx: Context, msg: Incoming) -> Reply:
    """One course: details, and either the link or a button to enter its password."""
    course = await _visible(ctx, ctx.args)
    if course is None:
        return Text(text=ctx.t("courses.gone"))
    course.popularity += 1
    lines = [f"{course.category}・{_hours(ctx, course.hours)}"]
    if course.hours_estimated:
        lines.append(ctx.t("courses.hours_estimated"))
    if course.audience == "civil_servant":
        lines.append(ctx.t("courses.civil_servant_only"))
    if course.description:
        lines.append(course.description[:300])
    if course.password_protected:
        lines.append(ctx.t("courses.needs_password"))
        button = Button(label=ctx.t("courses.enter_password"), action=f"course.pw:{course.id}")
    else:
        button = Button(label=ctx.t("courses.go"), url=course_url(course.id, course.url))
    return Cards(
        alt_text=course.title,
        cards=[Card(title=course.title, body="\n".join(lines), buttons=[button])],
    )


@router.on_action("course.pw")
async def ask_password(ctx: Context, msg: Incoming) -> Reply:
    """Asks for the course password (a step: 取消 leaves it)."""
    course = await _visible(ctx, ctx.args)
    if course is None:
        return Text(text=ctx.t("courses.gone"))
    await ctx.enter("courses.await_password", {"course_id": course.id, "tries": 0})
    return Text(text=ctx.t("courses.password_prompt", title=course.title))


@router.on_state("courses.await_password")
async def typed_password(ctx: Context, msg: Incoming) -> Reply:
    """Checks the typed password; three wrong tries end the step."""
    data = ctx.state_data
    course = await _visible(ctx, str(data.get("course_id", "")))
    if course is None:
        await ctx.leave()
        return Text(text=ctx.t("courses.gone"))
    if verify_course_password(course, msg.text):
        await ctx.leave()
        return Text(
            text=ctx.t("courses.password_ok", title=course.title),
            buttons=[Button(label=ctx.t("courses.go"), url=course_url(course.id, course.url))],
        )
    tries = int(data.get("tries", 0)) + 1
    if tries >= PASSWORD_TRIES:
        await ctx.leave()
        return Text(text=ctx.t("courses.password_locked"))
    await ctx.enter("courses.await_password", {"course_id": course.id, "tries": tries})
    return Text(text=ctx.t("courses.password_wrong", left=PASSWORD_TRIES - tries))
