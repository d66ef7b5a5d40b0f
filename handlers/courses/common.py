"""What every part of the courses feature shares: course cards, the buttons between the
parts, category names, and who may see which course."""

from __future__ import annotations

from bot.context import Context
from bot.messages import MAX_ACTION_BYTES, Button, Card, Reply, Text
from bot.router import COMMAND_ACTION
from handlers.start import back_buttons
from models.courses import Course, get_course
from models.search import SearchService

PAGE = 5  # cards per answer: LINE carousels and Telegram lists both stay readable
PORTAL = "https://elearning.taipei/"
TAIPEI_COURSE = "https://ap1.elearning.taipei/elearn/course/view.php?id={}"
MAX_QUICK = 13  # LINE's quick-reply limit; Telegram shows them all anyway


async def search_service(ctx: Context) -> SearchService:
    """The process's search service (app.py builds it and loads it at start)."""
    return ctx.services.search


def audience_for(ctx: Context) -> str | None:
    # Courses for civil servants are shown to verified civil servants only.
    return None if ctx.member.is_civil_servant else "public"


def fits(action: str) -> bool:
    return len(action.encode("utf-8")) <= MAX_ACTION_BYTES


def course_url(course_id: str, url: str | None) -> str:
    if url:
        return url
    if course_id.startswith("tpe-") and course_id[4:].isdigit():
        return TAIPEI_COURSE.format(course_id[4:])
    return PORTAL


def go_button(ctx: Context, course: Course) -> Button:
    """The course's own page; where the catalog gives none, the portal, and the label says
    so (前往臺北e大) instead of promising the course."""
    url = course_url(course.id, course.url)
    label = "courses.go_portal" if url == PORTAL else "courses.go"
    return Button(label=ctx.t(label), url=url)


def hours_text(ctx: Context, hours: float) -> str:
    return ctx.t("courses.hours", hours=f"{hours:g}")


def course_card(
    ctx: Context, *, cid: str, title: str, category: str, hours: float, body: str = ""
) -> Card:
    return Card(
        title=title,
        subtitle=f"{category_name(ctx, category)}・{hours_text(ctx, hours)}",
        body=body,
        buttons=[Button(label=ctx.t("courses.open"), action=f"course.open:{cid}")],
    )


def category_name(ctx: Context, name: str) -> str:
    """A category in the member's language (bot/locales/*/categories.toml), else as named."""
    try:
        return ctx.t(f"categories.{name}")
    except KeyError:
        return name


def category_buttons(ctx: Context, names: list[str]) -> list[Button]:
    return [
        Button(label=category_name(ctx, name), action=f"course.cat:{name}")
        for name in names
        if fits(f"course.cat:{name}")
    ]


def recommend_button(ctx: Context) -> Button:
    return Button(label=ctx.t("courses.recommend_button"), action="course.rec")


def saved_button(ctx: Context) -> Button:
    return Button(label=ctx.t("courses.saved_button"), action="course.saved")


def verify_button(ctx: Context) -> Button:
    # Civil-servant status comes from phone verification (the roster lists staff mobiles).
    return Button(label=ctx.t("courses.verify"), action=f"{COMMAND_ACTION}:verify")


def num(value: float) -> str:
    return f"{value:g}"


def empty_list(ctx: Context, quick: list[Button]) -> Reply:
    """Nothing to list: the answer's own next steps (or a search), then the menu and help."""
    first = quick or [search_button(ctx)]
    back = back_buttons(ctx)
    return Text(text=ctx.t("courses.empty_list"), quick_replies=first[: MAX_QUICK - 2] + back)


def search_button(ctx: Context) -> Button:
    return Button(label=ctx.t("courses.search_button"), action=f"{COMMAND_ACTION}:search")


def may_see(ctx: Context, course: Course | None) -> bool:
    if course is None or course.retired:
        return False
    return course.audience != "civil_servant" or ctx.member.is_civil_servant


async def visible_course(ctx: Context, course_id: str) -> Course | None:
    course = await get_course(ctx.session, course_id=course_id)
    return course if course is not None and may_see(ctx, course) else None


async def open_or_refuse(ctx: Context, course_id: str) -> Course | Reply:
    """The course when the person may see it; otherwise why not (and how to verify).

    A civil-servant course is named to nobody else (not even its title), but the person
    learns that verified civil servants can open it and gets the verify button.
    """
    course = await get_course(ctx.session, course_id=course_id)
    if course is not None and may_see(ctx, course):
        return course
    if course is not None and not course.retired and course.audience == "civil_servant":
        return Text(text=ctx.t("courses.civil_servant_course"), buttons=[verify_button(ctx)])
    return Text(text=ctx.t("courses.gone"))
