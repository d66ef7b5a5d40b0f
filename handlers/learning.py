"""我的學習 / My learning: this year's hours against the 20-hour goal and each mandatory
requirement, and "remind me next week" for the reminder digests."""

from __future__ import annotations

import datetime as dt

from bot.context import Context
from bot.i18n import taipei_time
from bot.messages import Bar, Button, Incoming, Progress, Reply, Text
from bot.router import COMMAND_ACTION, Router
from models.learning import YEARLY_GOAL_CODE, member_progress, snooze, taipei_day
from models.learning import Progress as ProgressRow
from models.suggestions import first_courses

router = Router("learning")

SNOOZE = dt.timedelta(days=7)


def _h(value: float) -> str:
    return f"{round(value, 1):g}"


def _bar(ctx: Context, p: ProgressRow) -> Bar:
    values = {
        "done": _h(p.done),
        "needed": _h(p.needed),
        "missing": _h(max(0.0, p.needed - p.done)),
        "date": f"{p.deadline:%m/%d}",
    }
    return Bar(
        label=p.requirement.title_in(ctx.lang),
        done=p.done,
        needed=p.needed,
        value=ctx.t("learning.bar_value", **values),
        note=ctx.t("learning.bar_open" if p.open else "learning.bar_done", **values),
    )


def _take_buttons(
    ctx: Context, progress: list[ProgressRow], picks: dict[int, str | None]
) -> list[Button]:
    """One "take a course" button per open requirement that has a course to take."""
    out: list[Button] = []
    for p in progress:
        course_id = picks.get(p.requirement.id)
        if p.open and course_id is not None:
            label = ctx.t("learning.take", topic=p.requirement.title_in(ctx.lang))
            out.append(Button(label=label, action=f"course.open:{course_id}"))
    return out


@router.on_command("learning", words=("我的學習", "my learning"))
async def my_learning(ctx: Context, msg: Incoming) -> Reply:
    """A picture of the year: a bar per requirement (civil servants), the hours so far
    (citizens, without the civil servants' goal), a button per open requirement."""
    today = taipei_day(ctx.now)
    progress = await member_progress(ctx.session, member_id=ctx.member.id, now=ctx.now)
    total = next((p for p in progress if p.requirement.code == YEARLY_GOAL_CODE), None)
    done_total = total.done if total is not None else 0.0
    title = ctx.t("learning.title", year=today.year)
    search = Button(label=ctx.t("learning.search"), action=f"{COMMAND_ACTION}:search")
    menu = Button(label=ctx.t("learning.menu"), action=f"{COMMAND_ACTION}:menu")
    if not ctx.member.is_civil_servant:
        return Progress(
            title=title,
            summary=ctx.tn("learning.total_citizen", done_total, done=_h(done_total)),
            footer=ctx.t("learning.not_civil_servant"),
            buttons=[
                search,
                Button(label=ctx.t("learning.verify"), action=f"{COMMAND_ACTION}:verify"),
            ],
            quick_replies=[menu],
        )
    open_any = any(p.open for p in progress)
    picks = await first_courses(ctx.session, requirements=[p.requirement for p in progress])
    buttons = _take_buttons(ctx, progress, picks)
    if open_any:
        buttons.append(Button(label=ctx.t("learning.snooze"), action="learning.snooze"))
    buttons.append(search)
    # The yearly goal is one of the bars: the total shows once, as that bar.
    summary = "" if total is not None else ctx.t("learning.total_only", done=_h(done_total))
    footer = ctx.t("learning.records_note")
    if not open_any:
        footer = ctx.t("learning.all_done") + "\n" + footer
    return Progress(
        title=title,
        summary=summary,
        bars=[_bar(ctx, p) for p in progress],
        footer=footer,
        buttons=buttons,
        quick_replies=[menu],
    )


@router.on_action("learning.snooze")
async def snooze_week(ctx: Context, msg: Incoming) -> Reply:
    """'Remind me next week': no reminder digest for seven days."""
    until = ctx.now + SNOOZE
    await snooze(ctx.session, member_id=ctx.member.id, until=until, now=ctx.now)
    return Text(
        text=ctx.t("learning.snoozed", date=taipei_time(until, "%m/%d")),
        quick_replies=[
            Button(label=ctx.t("learning.my_learning"), action=f"{COMMAND_ACTION}:learning"),
            Button(label=ctx.t("learning.menu"), action=f"{COMMAND_ACTION}:menu"),
        ],
    )
