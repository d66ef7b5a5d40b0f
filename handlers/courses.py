"""Course search with filters, browsing by category, course cards (save, similar), saved
courses, recommendations and the course-password step."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import secrets
from dataclasses import replace

from bot.context import Context
from bot.i18n import taipei_time
from bot.messages import MAX_ACTION_BYTES, Button, Card, Cards, Incoming, Reply, Text
from bot.router import COMMAND_ACTION, Router, normalise_words
from handlers.start import back_buttons, cancel_button
from models.courses import (
    MAX_SAVED,
    PASSWORD_TRIES_PER_HOUR,
    PASSWORD_WINDOW,
    Course,
    SavedCoursesFull,
    active_course_ids,
    count_saved,
    course_password_paused,
    courses_in_category,
    get_course,
    is_saved,
    list_categories,
    lock_password_for_check,
    newest_courses,
    note_wrong_course_password,
    password_retry_at,
    password_tries_left,
    popular_courses,
    record_password_attempt,
    remember_search,
    save_course,
    saved_courses,
    short_courses,
    unsave_course,
    verify_course_password,
)
from models.inbound import forget_typed_text
from models.search import Filters, SearchResult, SearchService
from models.search.recommend import Recommendation, recommend
from models.search.typed_filters import split_filters

router = Router("courses")

PAGE = 5  # cards per answer: LINE carousels and Telegram lists both stay readable
PORTAL = "https://elearning.taipei/"
TAIPEI_COURSE = "https://ap1.elearning.taipei/elearn/course/view.php?id={}"
MAX_QUICK = 13  # LINE's quick-reply limit; Telegram shows them all anyway
# A query too long for an action id rests in the conversation state under this name, and
# buttons refer to it as "~<nonce>" (the nonce tells an older search's buttons apart).
RESULTS_STATE = "courses.results"
# RESULTS_STATE key: the civil-servant-courses notice was shown this conversation session.
TOLD_ALSO = "told_also"
_REF = re.compile(r"~[0-9a-f]{4}")


async def _search(ctx: Context) -> SearchService:
    """The process's search service (app.py builds it and loads it at start)."""
    return ctx.services.search


def _audience(ctx: Context) -> str | None:
    # Courses for civil servants are shown to verified civil servants only.
    return None if ctx.member.is_civil_servant else "public"


def _fits(action: str) -> bool:
    return len(action.encode("utf-8")) <= MAX_ACTION_BYTES


def course_url(course_id: str, url: str | None) -> str:
    if url:
        return url
    if course_id.startswith("tpe-") and course_id[4:].isdigit():
        return TAIPEI_COURSE.format(course_id[4:])
    return PORTAL


def civil_servant_courses_button(ctx: Context) -> Button:
    """The courses only civil servants may take, most popular first (no words typed)."""
    action = f"course.f:0{_flags(Filters(audience='civil_servant'))}:"
    return Button(label=ctx.t("courses.civil_servant_courses"), action=action)


def go_button(ctx: Context, course: Course) -> Button:
    """The course's own page; where the catalog gives none, the portal, and the label says
    so (前往臺北e大) instead of promising the course."""
    url = course_url(course.id, course.url)
    label = "courses.go_portal" if url == PORTAL else "courses.go"
    return Button(label=ctx.t(label), url=url)


def _hours(ctx: Context, hours: float) -> str:
    return ctx.t("courses.hours", hours=f"{hours:g}")


def _card(
    ctx: Context, *, cid: str, title: str, category: str, hours: float, body: str = ""
) -> Card:
    return Card(
        title=title,
        subtitle=f"{_category_name(ctx, category)}・{_hours(ctx, hours)}",
        body=body,
        buttons=[Button(label=ctx.t("courses.open"), action=f"course.open:{cid}")],
    )


def _category_name(ctx: Context, name: str) -> str:
    """A category in the member's language (bot/locales/*/categories.toml), else as named."""
    try:
        return ctx.t(f"categories.{name}")
    except KeyError:
        return name


def _category_buttons(ctx: Context, names: list[str]) -> list[Button]:
    return [
        Button(label=_category_name(ctx, name), action=f"course.cat:{name}")
        for name in names
        if _fits(f"course.cat:{name}")
    ]


def _recommend_button(ctx: Context) -> Button:
    return Button(label=ctx.t("courses.recommend_button"), action="course.rec")


def _saved_button(ctx: Context) -> Button:
    return Button(label=ctx.t("courses.saved_button"), action="course.saved")


def _verify_button(ctx: Context) -> Button:
    # Civil-servant status comes from phone verification (the roster lists staff mobiles).
    return Button(label=ctx.t("courses.verify"), action=f"{COMMAND_ACTION}:verify")


# -- filters on buttons ---------------------------------------------------------------------
# A search travels in an action id as `course.<more|f>:<offset>[,<flag>...]:<query>`. Flags:
# `h<n>` at most n hours, `g<n>` at least n hours, `c<6 hex>` a category (by a short hash of
# its name, since names cost 3 bytes a character), `ac` civil-servant courses only.


def _category_key(name: str) -> str:
    return hashlib.blake2s(name.encode("utf-8"), digest_size=3).hexdigest()


def _num(value: float) -> str:
    return f"{value:g}"


def _flags(filters: Filters) -> str:
    out = []
    if filters.max_hours is not None:
        out.append(f"h{_num(filters.max_hours)}")
    if filters.min_hours is not None:
        out.append(f"g{_num(filters.min_hours)}")
    if filters.category is not None:
        out.append(f"c{_category_key(filters.category)}")
    if filters.audience == "civil_servant":
        out.append("ac")
    return "".join("," + f for f in out)


def _parse_spec(spec: str, service: SearchService) -> tuple[int, Filters]:
    """`<offset>[,<flag>...]` -> (offset, filters); unknown or stale flags are dropped."""
    head, *flags = spec.split(",")
    offset = int(head) if head.isdigit() else 0
    filters = Filters()
    for flag in flags:
        kind, value = flag[:1], flag[1:]
        if kind in ("h", "g"):
            try:
                hours = float(value)
            except ValueError:
                continue
            if math.isfinite(hours) and 0 < hours < 1000:
                if kind == "h":
                    filters = replace(filters, max_hours=hours)
                else:
                    filters = replace(filters, min_hours=hours)
        elif kind == "c":
            name = next(
                (c for c in service.index.category_counts if _category_key(c) == value), None
            )
            filters = replace(filters, category=name)
        elif flag == "ac":
            filters = replace(filters, audience="civil_servant")
    return offset, filters


class _Query:
    """Turns (offset, filters) into action ids for one query, storing a long query once."""

    def __init__(self, ctx: Context, query: str) -> None:
        self.ctx = ctx
        self.query = query
        self.ref: str | None = None

    async def action(self, name: str, offset: int, filters: Filters) -> str:
        head = f"course.{name}:{offset}{_flags(filters)}:"
        if self.ref is None and not self.query.startswith("~") and _fits(head + self.query):
            return head + self.query
        if self.ref is None:
            data = self.ctx.state_data
            if self.ctx.state_name == RESULTS_STATE and data.get("q") == self.query:
                nonce = str(data.get("n"))  # the same search again: older buttons stay good
            else:
                nonce = secrets.token_hex(2)
            told = _told_also(self.ctx)
            await self.ctx.enter(
                RESULTS_STATE, {"q": self.query, "n": nonce, **({TOLD_ALSO: True} if told else {})}
            )
            self.ref = f"~{nonce}"
        return head + self.ref


def _describe(ctx: Context, filters: Filters) -> str:
    parts = []
    if filters.category is not None:
        parts.append(
            ctx.t("courses.filter_category", category=_category_name(ctx, filters.category))
        )
    if filters.max_hours is not None:
        parts.append(ctx.t("courses.filter_max_hours", hours=_num(filters.max_hours)))
    if filters.min_hours is not None:
        parts.append(ctx.t("courses.filter_min_hours", hours=_num(filters.min_hours)))
    if filters.audience == "civil_servant":
        parts.append(ctx.t("courses.filter_civil_servant"))
    return ctx.t("courses.filter_join").join(parts)


def _effective(ctx: Context, chosen: Filters) -> Filters:
    """The filters the person chose, with the audience rule on top."""
    audience = _audience(ctx)
    return chosen if audience is None else replace(chosen, audience=audience)


async def _filter_buttons(
    ctx: Context, q: _Query, found: SearchResult, chosen: Filters
) -> list[Button]:
    """Buttons that narrow these results (only those that keep some and drop some)."""
    out: list[Button] = []
    total = found.total
    if chosen.max_hours is None and 0 < found.within_hour < total:
        out.append(
            Button(
                label=ctx.t("courses.only_within_hour", n=found.within_hour),
                action=await q.action("f", 0, replace(chosen, max_hours=1.0)),
            )
        )
    if chosen.category is None and len(found.categories) > 1:
        for name, n in list(found.categories.items())[:3]:
            out.append(
                Button(
                    label=ctx.t("courses.only_category", category=_category_name(ctx, name), n=n),
                    action=await q.action("f", 0, replace(chosen, category=name)),
                )
            )
    if ctx.member.is_civil_servant and chosen.audience is None and 0 < found.civil_servant < total:
        out.append(
            Button(
                label=ctx.t("courses.only_civil_servant", n=found.civil_servant),
                action=await q.action("f", 0, replace(chosen, audience="civil_servant")),
            )
        )
    if not chosen.empty():
        out.append(
            Button(label=ctx.t("courses.clear_filters"), action=await q.action("f", 0, Filters()))
        )
    return out


async def _answer(
    ctx: Context,
    query: str,
    chosen: Filters,
    *,
    offset: int = 0,
    typed: str | None = None,
) -> list[Reply]:
    """Search `query` with the filters the person chose; `typed` logs a new search."""
    service = await _search(ctx)
    replies: list[Reply] = []
    told = False
    if chosen.audience == "civil_servant" and not ctx.member.is_civil_servant:
        # Citizens are told such courses exist and how to see them, then get the rest.
        replies.append(
            Text(text=ctx.t("courses.civil_servant_filter"), buttons=[_verify_button(ctx)])
        )
        chosen = replace(chosen, audience=None)
        told = True
    if not query and chosen.empty():
        return [*replies, await _ask_query(ctx)]
    filters = _effective(ctx, chosen)
    # Matches the person may not see yet are counted in the same pass, so they can be told
    # these exist and how to verify (once per search, not on every page).
    # Beside results, once per session: later searches omit it (the TTL of the conversation
    # step). Instead of "nothing found" it is said every time: it is the answer then.
    also = None
    already_told = _told_also(ctx)
    if not told and offset == 0 and not ctx.member.is_civil_servant:
        also = replace(filters, audience="civil_servant")
    if typed is not None:
        found = await service.search_and_log(
            ctx.session,
            query,
            channel=ctx.channel,
            now=ctx.now,
            filters=filters,
            offset=offset,
            limit=PAGE,
            facets=True,
            also=also,
            logged_as=typed,
        )
        if found.total and offset == 0:
            # The member's own side of the search (for 為你推薦); search_log stays anonymous.
            await remember_search(
                ctx.session, member_id=ctx.member.id, normalised=found.normalised, now=ctx.now
            )
    else:
        found = service.search(
            query, filters=filters, offset=offset, limit=PAGE, facets=True, also=also
        )
    hidden = found.also_total
    q = _Query(ctx, query)
    if found.corrected:
        replies.append(Text(text=ctx.t("courses.corrected", query=found.corrected)))
    if not found.hits:
        if hidden:
            # Not "nothing found": there is something, behind civil-servant verification.
            replies.append(
                Text(
                    text=ctx.t("courses.hidden_only", n=hidden),
                    buttons=[_verify_button(ctx)],
                    quick_replies=[
                        _recommend_button(ctx),
                        *_category_buttons(ctx, found.related_categories),
                    ][: MAX_QUICK - 2]
                    + back_buttons(ctx),
                )
            )
        else:
            replies.append(await _nothing(ctx, q, found, chosen, service))
        return replies
    more = None
    if found.has_more:
        more = Button(
            label=ctx.t("courses.more"),
            action=await q.action("more", found.offset + found.limit, chosen),
        )
    described = _describe(ctx, chosen)
    if query:
        # The query as understood (Traditional, corrected, filler dropped), not as typed.
        title = ctx.tn(
            "courses.found", found.total, total=found.total, query=found.understood or query
        )
    else:
        title = ctx.tn("courses.found_filtered", found.total, total=found.total)
    if described:
        title += ctx.t("courses.with_filters", filters=described)
    quick = [
        *await _filter_buttons(ctx, q, found, chosen),
        _recommend_button(ctx),
        *_category_buttons(ctx, found.related_categories),
    ]
    replies.append(
        Cards(
            alt_text=title,
            cards=[
                _card(ctx, cid=h.id, title=h.title, category=h.category, hours=h.hours)
                for h in found.hits
            ],
            more=more,
            quick_replies=quick[:MAX_QUICK],
        )
    )
    if hidden and not already_told:
        # After the cards, without quick replies: LINE keeps the cards' ones on the last.
        replies.append(
            Text(text=ctx.t("courses.hidden_also", n=hidden), buttons=[_verify_button(ctx)])
        )
        await _remember_told_also(ctx)
    return replies


def _told_also(ctx: Context) -> bool:
    return ctx.state_name == RESULTS_STATE and bool(ctx.state_data.get(TOLD_ALSO))


async def _remember_told_also(ctx: Context) -> None:
    """Kept in the results step, which no text handler claims; another step ends the session."""
    if ctx.state_name in (None, RESULTS_STATE):
        await ctx.enter(RESULTS_STATE, {**ctx.state_data, TOLD_ALSO: True})


async def _nothing(
    ctx: Context, q: _Query, found: SearchResult, chosen: Filters, service: SearchService
) -> Reply:
    """Never an empty answer: relax the filters, did-you-mean, related categories."""
    if not chosen.empty():
        wide = service.search(q.query, filters=_effective(ctx, Filters()), limit=1, facets=True)
        if wide.total:
            # The words find courses; the filters are what is too narrow.
            buttons = [
                Button(
                    label=ctx.t("courses.all_results", n=wide.total),
                    action=await q.action("f", 0, Filters()),
                )
            ]
            if chosen.max_hours is not None and chosen.category is not None:
                buttons.append(
                    Button(
                        label=ctx.t("courses.drop_hours"),
                        action=await q.action("f", 0, replace(chosen, max_hours=None)),
                    )
                )
            key = "courses.too_narrow" if q.query else "courses.too_narrow_only"
            back = back_buttons(ctx)
            related = _category_buttons(ctx, wide.related_categories)
            return Text(
                text=ctx.t(key, query=q.query, filters=_describe(ctx, chosen)),
                quick_replies=[*buttons, *related][: MAX_QUICK - len(back)] + back,
            )
    suggestions = []
    for s in found.suggestions:
        action = f"course.f:0{_flags(chosen)}:{s}"
        if _fits(action):
            suggestions.append(Button(label=s, action=action))
    if chosen.empty():
        related = _category_buttons(ctx, found.related_categories)
    else:
        related = [
            Button(label=_category_name(ctx, name), action=action)
            for name in found.related_categories
            if _fits(action := f"course.f:0{_flags(replace(chosen, category=name))}:")
        ]
    key = "courses.none_suggest" if found.suggestions else "courses.none"
    if not suggestions and not related:
        key = "courses.none_plain"  # no category to point below: other words, or the help
    shown = found.understood or q.query
    text = ctx.t(key, query=shown)
    if not chosen.empty():
        text = ctx.t(f"{key}_filtered", query=shown, filters=_describe(ctx, chosen))
    # Beside the suggestions and categories, always a way back: the menu and the help.
    back = back_buttons(ctx)
    return Text(text=text, quick_replies=[*suggestions, *related][: MAX_QUICK - len(back)] + back)


async def run_search(ctx: Context, text: str, *, offset: int = 0) -> list[Reply]:
    """A typed search: filters taken out of the words, the query logged, cards or help."""
    text = " ".join(text.split())[:100]
    service = await _search(ctx)
    query, chosen = split_filters(text, categories=service.index.category_counts)
    return await _answer(ctx, query, chosen, offset=offset, typed=text)


def _browse_buttons(ctx: Context) -> list[Button]:
    """Newest, popular, under an hour, all categories: browsing without typing."""
    return [
        *(
            Button(label=ctx.t(f"courses.browse_{kind}_button"), action=f"course.browse:{kind}")
            for kind in BROWSE_KINDS
        ),
        Button(label=ctx.t("courses.categories_button"), action="course.cats"),
    ]


async def _ask_query(ctx: Context) -> Reply:
    await ctx.enter("courses.await_query")
    cats = [c for c, _ in await list_categories(ctx.session, audience=_audience(ctx))]
    browse = _browse_buttons(ctx)
    return Text(
        text=ctx.t("courses.ask_query"),
        quick_replies=[
            *browse,
            *_category_buttons(ctx, cats[: MAX_QUICK - len(browse) - 3]),
            _recommend_button(ctx),
            _saved_button(ctx),
        ],
    )


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


def _browse_word(text: str) -> str | None:
    return BROWSE_WORDS.get(normalise_words(text))


@router.on_command("search", words=("找課程", "搜尋課程", "搜尋", "search"))
async def search(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """`找課程 資安` searches at once; `找課程` alone asks for words and shows categories."""
    if ctx.args.strip():
        return await run_search(ctx, ctx.args)
    return await _ask_query(ctx)


@router.on_state("courses.await_query")
async def typed_query(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """The words typed after 找課程 (the browse words browse, as the buttons do)."""
    await ctx.leave()
    if _browse_word(msg.text) is not None:
        return await browse_words(ctx, msg)
    return await run_search(ctx, msg.text)


@router.on_text(lambda text: _browse_word(text) is not None)
async def browse_words(ctx: Context, msg: Incoming) -> Reply:
    """最新課程 / 熱門課程 / 微課程 / 課程類別 typed: the same lists as the buttons."""
    kind = _browse_word(msg.text)
    if kind == "cats":
        return await _categories(ctx)
    return await _browse(ctx, kind or "popular", 0)


@router.on_text(lambda text: bool(text.strip()) and not text.lstrip().startswith("/"))
async def plain_text(ctx: Context, msg: Incoming) -> list[Reply]:
    """Plain text that is nothing else is a course search."""
    return await run_search(ctx, msg.text)


@router.on_action("course.q")
async def suggested(ctx: Context, msg: Incoming) -> list[Reply]:
    """A did-you-mean button: search for the suggested words."""
    return await run_search(ctx, ctx.args)


async def _tapped_search(ctx: Context) -> list[Reply]:
    """Paging and filter buttons: the same search seen differently, so it is not logged."""
    spec, _, query = ctx.args.partition(":")
    service = await _search(ctx)
    offset, chosen = _parse_spec(spec, service)
    if _REF.fullmatch(query):
        data = ctx.state_data
        if ctx.state_name != RESULTS_STATE or data.get("n") != query[1:]:
            return [Text(text=ctx.t("courses.expired"), quick_replies=[_recommend_button(ctx)])]
        query = str(data.get("q", ""))
    return await _answer(ctx, query, chosen, offset=offset)


@router.on_action("course.more")
async def more(ctx: Context, msg: Incoming) -> list[Reply]:
    """The next page of a search, filters kept (`course.more:<offset>[,flags]:<query>`)."""
    return await _tapped_search(ctx)


@router.on_action("course.f")
async def filtered(ctx: Context, msg: Incoming) -> list[Reply]:
    """A filter button on results, or a did-you-mean that keeps the filters."""
    return await _tapped_search(ctx)


@router.on_action("course.cats")
async def categories(ctx: Context, msg: Incoming) -> Reply:
    """Every category with its number of courses, as buttons."""
    return await _categories(ctx)


async def _categories(ctx: Context) -> Reply:
    cats = await list_categories(ctx.session, audience=_audience(ctx))
    lines = "\n".join(f"・{_category_name(ctx, c)}（{n}）" for c, n in cats)
    return Text(
        text=ctx.t("courses.categories", list=lines),
        quick_replies=[
            _recommend_button(ctx),
            *_category_buttons(ctx, [c for c, _ in cats][: MAX_QUICK - 1]),
        ],
    )


def _empty_list(ctx: Context, quick: list[Button]) -> Reply:
    """Nothing to list: the answer's own next steps (or a search), then the menu and help."""
    first = quick or [_search_button(ctx)]
    back = back_buttons(ctx)
    return Text(text=ctx.t("courses.empty_list"), quick_replies=first[: MAX_QUICK - 2] + back)


def _search_button(ctx: Context) -> Button:
    return Button(label=ctx.t("courses.search_button"), action=f"{COMMAND_ACTION}:search")


def _course_cards(
    ctx: Context,
    courses: list[Course],
    title: str,
    more: str | None,
    quick: list[Button] | None = None,
) -> Reply:
    if not courses:
        return _empty_list(ctx, quick or [])
    return Cards(
        alt_text=title,
        cards=[
            _card(ctx, cid=c.id, title=c.title, category=c.category, hours=c.hours)
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
        ctx.session, category=name, limit=PAGE + 1, offset=offset, audience=_audience(ctx)
    )
    next_action = f"course.cat:{name}|{offset + PAGE}"
    return _course_cards(
        ctx,
        found,
        ctx.t("courses.in_category", category=_category_name(ctx, name)),
        next_action if _fits(next_action) else None,
    )


@router.on_action("course.browse")
async def browse(ctx: Context, msg: Incoming) -> Reply:
    """Newest, most popular or short (< 1 h) courses, a page at a time
    (`course.browse:new|popular|short[|<offset>]`)."""
    kind, _, raw = ctx.args.partition("|")
    return await _browse(ctx, kind, int(raw) if raw.isdigit() else 0)


async def _browse(ctx: Context, kind: str, offset: int) -> Reply:
    kind = kind if kind in BROWSE_KINDS else "popular"
    audience = _audience(ctx)
    lister = {"new": newest_courses, "short": short_courses}.get(kind, popular_courses)
    found = await lister(ctx.session, limit=PAGE + 1, offset=offset, audience=audience)
    # The other lists and the categories, so one can wander without typing.
    quick = [b for b in _browse_buttons(ctx) if b.action != f"course.browse:{kind}"] + [
        _recommend_button(ctx)
    ]
    return _course_cards(
        ctx, found, ctx.t(f"courses.browse_{kind}"), f"course.browse:{kind}|{offset + PAGE}", quick
    )


def _may_see(ctx: Context, course: Course | None) -> bool:
    if course is None or course.retired:
        return False
    return course.audience != "civil_servant" or ctx.member.is_civil_servant


async def _visible(ctx: Context, course_id: str) -> Course | None:
    course = await get_course(ctx.session, course_id=course_id)
    return course if course is not None and _may_see(ctx, course) else None


async def _open_or_refuse(ctx: Context, course_id: str) -> Course | Reply:
    """The course when the person may see it; otherwise why not (and how to verify).

    A civil-servant course is named to nobody else (not even its title), but the person
    learns that verified civil servants can open it and gets the verify button.
    """
    course = await get_course(ctx.session, course_id=course_id)
    if course is not None and _may_see(ctx, course):
        return course
    if course is not None and not course.retired and course.audience == "civil_servant":
        return Text(text=ctx.t("courses.civil_servant_course"), buttons=[_verify_button(ctx)])
    return Text(text=ctx.t("courses.gone"))


@router.on_action("course.open")
async def open_course(ctx: Context, msg: Incoming) -> Reply:
    """One course: details, the link (or password), save for later and similar courses."""
    course = await _open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    course.popularity += 1
    lines = [f"{_category_name(ctx, course.category)}・{_hours(ctx, course.hours)}"]
    if course.hours_estimated:
        lines.append(ctx.t("courses.hours_estimated"))
    if course.audience == "civil_servant":
        lines.append(ctx.t("courses.civil_servant_only"))
    if course.description:
        lines.append(course.description[:300])
    if course.password_protected:
        lines.append(ctx.t("courses.needs_password"))
        go = Button(label=ctx.t("courses.enter_password"), action=f"course.pw:{course.id}")
    else:
        go = go_button(ctx, course)
    if await is_saved(ctx.session, member_id=ctx.member.id, course_id=course.id):
        keep = Button(label=ctx.t("courses.unsave"), action=f"course.unsave:{course.id}")
    else:
        keep = Button(label=ctx.t("courses.save"), action=f"course.save:{course.id}")
    similar = Button(label=ctx.t("courses.similar"), action=f"course.sim:{course.id}")
    return Cards(
        alt_text=course.title,
        cards=[Card(title=course.title, body="\n".join(lines), buttons=[go, keep, similar])],
    )


# -- saved courses --------------------------------------------------------------------------


@router.on_action("course.save")
async def save(ctx: Context, msg: Incoming) -> Reply:
    """Save a course for later."""
    course = await _open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    try:
        added = await save_course(
            ctx.session, member_id=ctx.member.id, course_id=course.id, now=ctx.now
        )
    except SavedCoursesFull:
        return Text(
            text=ctx.t("courses.saved_full", n=MAX_SAVED), quick_replies=[_saved_button(ctx)]
        )
    key = "courses.saved_ok" if added else "courses.saved_already"
    return Text(
        text=ctx.t(key, title=course.title),
        quick_replies=[
            _saved_button(ctx),
            Button(label=ctx.t("courses.similar"), action=f"course.sim:{course.id}"),
            _recommend_button(ctx),
        ],
    )


@router.on_action("course.unsave")
async def unsave(ctx: Context, msg: Incoming) -> Reply:
    """Remove a course from the saved list (also one that is no longer available)."""
    course = await get_course(ctx.session, course_id=ctx.args)
    removed = await unsave_course(ctx.session, member_id=ctx.member.id, course_id=ctx.args)
    title = course.title if course is not None else ctx.args
    key = "courses.unsaved_ok" if removed else "courses.unsaved_missing"
    return Text(text=ctx.t(key, title=title), quick_replies=[_saved_button(ctx)])


@router.on_command("saved", words=("我的收藏", "收藏清單", "收藏", "saved", "saved courses"))
async def saved(ctx: Context, msg: Incoming) -> Reply:
    """The saved courses, newest first, each with a remove button."""
    return await _saved_page(ctx, 0)


@router.on_action("course.saved")
async def saved_page(ctx: Context, msg: Incoming) -> Reply:
    """A page of the saved courses (`course.saved[:<offset>]`)."""
    return await _saved_page(ctx, int(ctx.args) if ctx.args.isdigit() else 0)


def _saved_empty(ctx: Context) -> Reply:
    return Text(
        text=ctx.t("courses.saved_empty"),
        quick_replies=[_recommend_button(ctx), _search_button(ctx), *back_buttons(ctx)],
    )


async def _saved_page(ctx: Context, offset: int) -> Reply:
    total = await count_saved(ctx.session, member_id=ctx.member.id)
    if not total:
        return _saved_empty(ctx)
    courses = await saved_courses(ctx.session, member_id=ctx.member.id, limit=PAGE, offset=offset)
    cards = []
    for c in courses:
        remove = Button(label=ctx.t("courses.remove"), action=f"course.unsave:{c.id}")
        if _may_see(ctx, c):
            card = _card(ctx, cid=c.id, title=c.title, category=c.category, hours=c.hours)
            card.buttons.append(remove)
        else:
            card = Card(title=c.title, body=ctx.t("courses.gone"), buttons=[remove])
        cards.append(card)
    if not cards:
        return await _saved_page(ctx, 0) if offset else _saved_empty(ctx)
    more = None
    if offset + PAGE < total:
        more = Button(label=ctx.t("courses.more"), action=f"course.saved:{offset + PAGE}")
    return Cards(
        alt_text=ctx.t("courses.saved_title", n=total),
        cards=cards,
        more=more,
        quick_replies=[_recommend_button(ctx)],
    )


# -- similar and recommended ----------------------------------------------------------------


@router.on_action("course.sim")
async def similar(ctx: Context, msg: Incoming) -> Reply:
    """Courses like this one (same category, shared title words or tags) the person may see."""
    course = await _open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    service = await _search(ctx)
    hits = service.index.similar(
        course.id, filters=Filters(audience=_audience(ctx)), limit=PAGE + 3
    )
    live = await active_course_ids(ctx.session, course_ids=[h.id for h in hits])
    hits = [h for h in hits if h.id in live][:PAGE]
    if not hits:
        return Text(
            text=ctx.t("courses.similar_none", title=course.title),
            quick_replies=[
                *_category_buttons(ctx, [course.category]),
                _recommend_button(ctx),
                *back_buttons(ctx),
            ],
        )
    return Cards(
        alt_text=ctx.t("courses.similar_title", title=course.title),
        cards=[
            _card(ctx, cid=h.id, title=h.title, category=h.category, hours=h.hours) for h in hits
        ],
        quick_replies=[_recommend_button(ctx), _saved_button(ctx)],
    )


def _reason(ctx: Context, rec: Recommendation) -> str:
    if rec.reason == "gap" and rec.requirement is not None:
        return ctx.t(
            "courses.why_gap",
            topic=rec.requirement.title_in(ctx.lang),
            hours=_num(rec.missing_hours),
        )
    if rec.reason in ("saved", "completed", "searched"):
        return ctx.t(f"courses.why_{rec.reason}", title=rec.because)
    return ctx.t(f"courses.why_{rec.reason}")


@router.on_command(
    "recommend", words=("推薦", "為你推薦", "為您推薦", "推薦課程", "recommend", "recommended")
)
async def recommended(ctx: Context, msg: Incoming) -> Reply:
    """為你推薦: courses from missing mandatory hours, saved, completed and searched; else
    popular/short."""
    return await _recommended(ctx)


@router.on_action("course.rec")
async def recommended_button(ctx: Context, msg: Incoming) -> Reply:
    """The 為你推薦 button."""
    return await _recommended(ctx)


async def _recommended(ctx: Context) -> Reply:
    service = await _search(ctx)
    recs = await recommend(
        ctx.session,
        service.index,
        member_id=ctx.member.id,
        civil_servant=ctx.member.is_civil_servant,
        now=ctx.now,
        limit=PAGE,
    )
    if not recs:
        return _empty_list(ctx, [])
    return Cards(
        alt_text=ctx.t("courses.recommend_title"),
        cards=[
            _card(
                ctx,
                cid=r.id,
                title=r.title,
                category=r.category,
                hours=r.hours,
                body=_reason(ctx, r),
            )
            for r in recs
        ],
        quick_replies=[
            _saved_button(ctx),
            Button(label=ctx.t("courses.browse_popular"), action="course.browse:popular"),
            Button(label=ctx.t("courses.browse_short"), action="course.browse:short"),
            Button(label=ctx.t("courses.categories_button"), action="course.cats"),
        ],
    )


# -- password step --------------------------------------------------------------------------
# Wrong passwords are counted per member in the database (course_password_attempt), over all
# courses and steps, so starting the step again or trying another course resets nothing.


def _until(ctx: Context, retry_at: dt.datetime) -> str:
    """The moment the person may try again, in Taipei time, rounded up to the minute."""
    if retry_at.second or retry_at.microsecond:
        retry_at = retry_at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    same_day = taipei_time(retry_at, "%Y-%m-%d") == taipei_time(ctx.now, "%Y-%m-%d")
    return taipei_time(retry_at, "%H:%M" if same_day else "%Y-%m-%d %H:%M")


def _cooling_down(ctx: Context, retry_at: dt.datetime) -> Reply:
    return Text(
        text=ctx.t(
            "courses.password_cooldown",
            tries=PASSWORD_TRIES_PER_HOUR,
            time=_until(ctx, retry_at),
        ),
        buttons=[_search_button(ctx)],
        quick_replies=back_buttons(ctx),
    )


def _password_paused(ctx: Context, until: dt.datetime) -> Reply:
    return Text(
        text=ctx.t("courses.password_paused", time=_until(ctx, until)),
        buttons=[_search_button(ctx)],
        quick_replies=back_buttons(ctx),
    )


@router.on_action("course.pw")
async def ask_password(ctx: Context, msg: Incoming) -> Reply:
    """Asks for the course password (a step: 取消 leaves it), unless tries are used up."""
    course = await _open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    retry_at = await password_retry_at(ctx.session, member_id=ctx.member.id, now=ctx.now)
    if retry_at is not None:
        await ctx.leave()
        return _cooling_down(ctx, retry_at)
    paused = course_password_paused(course, now=ctx.now)
    if paused is not None:
        await ctx.leave()
        return _password_paused(ctx, paused)
    await ctx.enter("courses.await_password", {"course_id": course.id})
    return Text(
        text=ctx.t("courses.password_prompt", title=course.title), buttons=[cancel_button(ctx)]
    )


@router.on_state("courses.await_password")
async def typed_password(ctx: Context, msg: Incoming) -> Reply:
    """Checks the typed password (never echoed, logged or stored); 5 wrong an hour, then a
    cool-down that says when to try again."""
    # What was typed must not rest in the stored copy of the event, right or wrong.
    await forget_typed_text(ctx.session, channel=msg.channel, event_id=msg.event_id)
    data = ctx.state_data
    course = await _visible(ctx, str(data.get("course_id", "")))
    if course is None:
        await ctx.leave()
        return Text(text=ctx.t("courses.gone"))
    member_id = ctx.member.id
    retry_at = await password_retry_at(ctx.session, member_id=member_id, now=ctx.now)
    if retry_at is not None:
        # Not even checked: a right guess after the fifth wrong one would defeat the limit.
        await ctx.leave()
        return _cooling_down(ctx, retry_at)
    await lock_password_for_check(ctx.session, course)
    paused = course_password_paused(course, now=ctx.now)
    if paused is not None:
        await ctx.leave()
        return _password_paused(ctx, paused)
    ok = verify_course_password(course, msg.text)
    await record_password_attempt(
        ctx.session, member_id=member_id, course_id=course.id, success=ok, now=ctx.now
    )
    if ok:
        await ctx.leave()
        return Text(
            text=ctx.t("courses.password_ok", title=course.title),
            buttons=[go_button(ctx, course)],
        )
    paused = await note_wrong_course_password(ctx.session, course=course, now=ctx.now)
    if paused is not None:
        await ctx.leave()
        return _password_paused(ctx, paused)
    left = await password_tries_left(ctx.session, member_id=member_id, now=ctx.now)
    if left == 0:
        await ctx.leave()
        retry_at = await password_retry_at(ctx.session, member_id=member_id, now=ctx.now)
        return Text(
            text=ctx.t(
                "courses.password_locked",
                tries=PASSWORD_TRIES_PER_HOUR,
                time=_until(ctx, retry_at or ctx.now + PASSWORD_WINDOW),
            ),
            buttons=[_search_button(ctx)],
            quick_replies=back_buttons(ctx),
        )
    return Text(text=ctx.t("courses.password_wrong", left=left), buttons=[cancel_button(ctx)])
