"""Typed and tapped course searches: filters taken from the words or carried on buttons,
paging, the answer when nothing matches, and the civil-servant-courses notice."""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import replace

from bot.context import Context
from bot.messages import Button, Cards, Incoming, Reply, Text
from bot.router import Router
from handlers.courses.browse import browse_buttons, browse_word, browse_words
from handlers.courses.common import (
    MAX_QUICK,
    PAGE,
    audience_for,
    category_buttons,
    category_name,
    course_card,
    fits,
    num,
    recommend_button,
    saved_button,
    search_service,
    verify_button,
)
from handlers.start import back_buttons
from models.courses import list_categories, remember_search
from models.search import Filters, SearchResult, SearchService
from models.search.typed_filters import split_filters

router = Router("courses.search")

# A query too long for an action id rests in the conversation state under this name, and
# buttons refer to it as "~<nonce>" (the nonce tells an older search's buttons apart).
RESULTS_STATE = "courses.results"
# RESULTS_STATE key: the civil-servant-courses notice was shown this conversation session.
TOLD_ALSO = "told_also"
_REF = re.compile(r"~[0-9a-f]{4}")


def civil_servant_courses_button(ctx: Context) -> Button:
    """The courses only civil servants may take, most popular first (no words typed)."""
    action = f"course.f:0{_flags(Filters(audience='civil_servant'))}:"
    return Button(label=ctx.t("courses.civil_servant_courses"), action=action)


# -- filters on buttons ---------------------------------------------------------------------
# A search travels in an action id as `course.<more|f>:<offset>[,<flag>...]:<query>`. Flags:
# `h<n>` at most n hours, `g<n>` at least n hours, `c<6 hex>` a category (by a short hash of
# its name, since names cost 3 bytes a character), `ac` civil-servant courses only.


def _category_key(name: str) -> str:
    return hashlib.blake2s(name.encode("utf-8"), digest_size=3).hexdigest()


def _flags(filters: Filters) -> str:
    out = []
    if filters.max_hours is not None:
        out.append(f"h{num(filters.max_hours)}")
    if filters.min_hours is not None:
        out.append(f"g{num(filters.min_hours)}")
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
        if self.ref is None and not self.query.startswith("~") and fits(head + self.query):
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
            ctx.t("courses.filter_category", category=category_name(ctx, filters.category))
        )
    if filters.max_hours is not None:
        parts.append(ctx.t("courses.filter_max_hours", hours=num(filters.max_hours)))
    if filters.min_hours is not None:
        parts.append(ctx.t("courses.filter_min_hours", hours=num(filters.min_hours)))
    if filters.audience == "civil_servant":
        parts.append(ctx.t("courses.filter_civil_servant"))
    return ctx.t("courses.filter_join").join(parts)


def _effective(ctx: Context, chosen: Filters) -> Filters:
    """The filters the person chose, with the audience rule on top."""
    audience = audience_for(ctx)
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
                    label=ctx.t("courses.only_category", category=category_name(ctx, name), n=n),
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
    service = await search_service(ctx)
    replies: list[Reply] = []
    told = False
    if chosen.audience == "civil_servant" and not ctx.member.is_civil_servant:
        # Citizens are told such courses exist and how to see them, then get the rest.
        replies.append(
            Text(text=ctx.t("courses.civil_servant_filter"), buttons=[verify_button(ctx)])
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
    found = await _find(ctx, service, query, filters, offset=offset, also=also, typed=typed)
    hidden = found.also_total
    q = _Query(ctx, query)
    if found.corrected:
        replies.append(Text(text=ctx.t("courses.corrected", query=found.corrected)))
    if not found.hits:
        if hidden:
            replies.append(_hidden_only(ctx, found))
        else:
            replies.append(await _nothing(ctx, q, found, chosen, service))
        return replies
    replies.append(await _results(ctx, q, found, chosen))
    if hidden and not already_told:
        # After the cards, without quick replies: LINE keeps the cards' ones on the last.
        replies.append(
            Text(text=ctx.t("courses.hidden_also", n=hidden), buttons=[verify_button(ctx)])
        )
        await _remember_told_also(ctx)
    return replies


async def _find(
    ctx: Context,
    service: SearchService,
    query: str,
    filters: Filters,
    *,
    offset: int,
    also: Filters | None,
    typed: str | None,
) -> SearchResult:
    """One page of results; a typed search is logged and, when it finds some, remembered."""
    if typed is None:
        return service.search(
            query, filters=filters, offset=offset, limit=PAGE, facets=True, also=also
        )
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
    return found


def _hidden_only(ctx: Context, found: SearchResult) -> Reply:
    """Not "nothing found": there is something, behind civil-servant verification."""
    return Text(
        text=ctx.t("courses.hidden_only", n=found.also_total),
        buttons=[verify_button(ctx)],
        quick_replies=[
            recommend_button(ctx),
            *category_buttons(ctx, found.related_categories),
        ][: MAX_QUICK - 2]
        + back_buttons(ctx),
    )


async def _results(ctx: Context, q: _Query, found: SearchResult, chosen: Filters) -> Reply:
    """The page of results as cards: what was understood, the filters, more and narrowing."""
    more = None
    if found.has_more:
        more = Button(
            label=ctx.t("courses.more"),
            action=await q.action("more", found.offset + found.limit, chosen),
        )
    described = _describe(ctx, chosen)
    if q.query:
        # The query as understood (Traditional, corrected, filler dropped), not as typed.
        title = ctx.tn(
            "courses.found", found.total, total=found.total, query=found.understood or q.query
        )
    else:
        title = ctx.tn("courses.found_filtered", found.total, total=found.total)
    if described:
        title += ctx.t("courses.with_filters", filters=described)
    quick = [
        *await _filter_buttons(ctx, q, found, chosen),
        recommend_button(ctx),
        *category_buttons(ctx, found.related_categories),
    ]
    return Cards(
        alt_text=title,
        cards=[
            course_card(ctx, cid=h.id, title=h.title, category=h.category, hours=h.hours)
            for h in found.hits
        ],
        more=more,
        quick_replies=quick[:MAX_QUICK],
    )


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
            related = category_buttons(ctx, wide.related_categories)
            return Text(
                text=ctx.t(key, query=q.query, filters=_describe(ctx, chosen)),
                quick_replies=[*buttons, *related][: MAX_QUICK - len(back)] + back,
            )
    suggestions = []
    for s in found.suggestions:
        action = f"course.f:0{_flags(chosen)}:{s}"
        if fits(action):
            suggestions.append(Button(label=s, action=action))
    if chosen.empty():
        related = category_buttons(ctx, found.related_categories)
    else:
        related = [
            Button(label=category_name(ctx, name), action=action)
            for name in found.related_categories
            if fits(action := f"course.f:0{_flags(replace(chosen, category=name))}:")
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
    service = await search_service(ctx)
    query, chosen = split_filters(text, categories=service.index.category_counts)
    return await _answer(ctx, query, chosen, offset=offset, typed=text)


async def _ask_query(ctx: Context) -> Reply:
    await ctx.enter("courses.await_query")
    cats = [c for c, _ in await list_categories(ctx.session, audience=audience_for(ctx))]
    browse = browse_buttons(ctx)
    return Text(
        text=ctx.t("courses.ask_query"),
        quick_replies=[
            *browse,
            *category_buttons(ctx, cats[: MAX_QUICK - len(browse) - 3]),
            recommend_button(ctx),
            saved_button(ctx),
        ],
    )


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
    if browse_word(msg.text) is not None:
        return await browse_words(ctx, msg)
    return await run_search(ctx, msg.text)


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
    service = await search_service(ctx)
    offset, chosen = _parse_spec(spec, service)
    if _REF.fullmatch(query):
        data = ctx.state_data
        if ctx.state_name != RESULTS_STATE or data.get("n") != query[1:]:
            return [Text(text=ctx.t("courses.expired"), quick_replies=[recommend_button(ctx)])]
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
