"""Similar courses and 為你推薦 (recommendations with the reason for each)."""

from __future__ import annotations

from bot.context import Context
from bot.messages import Button, Cards, Incoming, Reply, Text
from bot.router import Router
from handlers.courses.common import (
    PAGE,
    audience_for,
    category_buttons,
    course_card,
    empty_list,
    num,
    open_or_refuse,
    recommend_button,
    saved_button,
    search_service,
)
from handlers.start import back_buttons
from models.courses import Course, active_course_ids
from models.search import Filters
from models.search.recommend import Recommendation, recommend

router = Router("courses.recommendations")


@router.on_action("course.sim")
async def similar(ctx: Context, msg: Incoming) -> Reply:
    """Courses like this one (same category, shared title words or tags) the person may see."""
    course = await open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    service = await search_service(ctx)
    hits = service.index.similar(
        course.id, filters=Filters(audience=audience_for(ctx)), limit=PAGE + 3
    )
    live = await active_course_ids(ctx.session, course_ids=[h.id for h in hits])
    hits = [h for h in hits if h.id in live][:PAGE]
    if not hits:
        return Text(
            text=ctx.t("courses.similar_none", title=course.title),
            quick_replies=[
                *category_buttons(ctx, [course.category]),
                recommend_button(ctx),
                *back_buttons(ctx),
            ],
        )
    return Cards(
        alt_text=ctx.t("courses.similar_title", title=course.title),
        cards=[
            course_card(ctx, cid=h.id, title=h.title, category=h.category, hours=h.hours)
            for h in hits
        ],
        quick_replies=[recommend_button(ctx), saved_button(ctx)],
    )


def _reason(ctx: Context, rec: Recommendation) -> str:
    if rec.reason == "gap" and rec.requirement is not None:
        return ctx.t(
            "courses.why_gap",
            topic=rec.requirement.title_in(ctx.lang),
            hours=num(rec.missing_hours),
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
    service = await search_service(ctx)
    recs = await recommend(
        ctx.session,
        service.index,
        member_id=ctx.member.id,
        civil_servant=ctx.member.is_civil_servant,
        now=ctx.now,
        limit=PAGE,
    )
    if not recs:
        return empty_list(ctx, [])
    return Cards(
        alt_text=ctx.t("courses.recommend_title"),
        cards=[
            course_card(
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
            saved_button(ctx),
            Button(label=ctx.t("courses.browse_popular"), action="course.browse:popular"),
            Button(label=ctx.t("courses.browse_short"), action="course.browse:short"),
            Button(label=ctx.t("courses.categories_button"), action="course.cats"),
        ],
    )
