"""One course's card (details, the link or password, save, similar) and the saved list."""

from __future__ import annotations

from bot.context import Context
from bot.messages import Button, Card, Cards, Incoming, Reply, Text
from bot.router import Router
from handlers.courses.common import (
    PAGE,
    category_name,
    course_card,
    go_button,
    hours_text,
    may_see,
    open_or_refuse,
    recommend_button,
    saved_button,
    search_button,
)
from handlers.start import back_buttons
from models.courses import (
    MAX_SAVED,
    Course,
    SavedCoursesFull,
    count_saved,
    get_course,
    is_saved,
    save_course,
    saved_courses,
    unsave_course,
)

router = Router("courses.card")


@router.on_action("course.open")
async def open_course(ctx: Context, msg: Incoming) -> Reply:
    """One course: details, the link (or password), save for later and similar courses."""
    course = await open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    course.popularity += 1
    lines = [f"{category_name(ctx, course.category)}・{hours_text(ctx, course.hours)}"]
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
    course = await open_or_refuse(ctx, ctx.args)
    if not isinstance(course, Course):
        return course
    try:
        added = await save_course(
            ctx.session, member_id=ctx.member.id, course_id=course.id, now=ctx.now
        )
    except SavedCoursesFull:
        return Text(
            text=ctx.t("courses.saved_full", n=MAX_SAVED), quick_replies=[saved_button(ctx)]
        )
    key = "courses.saved_ok" if added else "courses.saved_already"
    return Text(
        text=ctx.t(key, title=course.title),
        quick_replies=[
            saved_button(ctx),
            Button(label=ctx.t("courses.similar"), action=f"course.sim:{course.id}"),
            recommend_button(ctx),
        ],
    )


@router.on_action("course.unsave")
async def unsave(ctx: Context, msg: Incoming) -> Reply:
    """Remove a course from the saved list (also one that is no longer available)."""
    course = await get_course(ctx.session, course_id=ctx.args)
    removed = await unsave_course(ctx.session, member_id=ctx.member.id, course_id=ctx.args)
    title = course.title if course is not None else ctx.args
    key = "courses.unsaved_ok" if removed else "courses.unsaved_missing"
    return Text(text=ctx.t(key, title=title), quick_replies=[saved_button(ctx)])


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
        quick_replies=[recommend_button(ctx), search_button(ctx), *back_buttons(ctx)],
    )


async def _saved_page(ctx: Context, offset: int) -> Reply:
    total = await count_saved(ctx.session, member_id=ctx.member.id)
    if not total:
        return _saved_empty(ctx)
    courses = await saved_courses(ctx.session, member_id=ctx.member.id, limit=PAGE, offset=offset)
    cards = []
    for c in courses:
        remove = Button(label=ctx.t("courses.remove"), action=f"course.unsave:{c.id}")
        if may_see(ctx, c):
            card = course_card(ctx, cid=c.id, title=c.title, category=c.category, hours=c.hours)
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
        quick_replies=[recommend_button(ctx)],
    )
