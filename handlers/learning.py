"""我的學習 / My learning: this year's hours against the 20-hour goal and each mandatory
requirement, and "remind me next week" for the reminder digests."""

from __future__ import annotations

import datetime as dt

from bot.context import Context
from bot.i18n import taipei_time
from bot.messages import Button, Incoming, Reply, Text
from bot.router import COMMAND_ACTION, Router
from models.learning import YEARLY_GOAL_CODE, member_progress, snooze, taipei_day

router = Router("learning")

SNOOZE = dt.timedelta(days=7)
DEFAULT_GOAL = 20.0


def _h(value: float) -> str:
    return f"{round(value, 1):g}"


@router.on_command("learning", words=("我的學習", "my learning"))
async def my_learning(ctx: Context, msg: Incoming) -> Reply:
    """The year's hours against the goal, each requirement done or still open."""
    today = taipei_day(ctx.now)
    progress = await member_progress(ctx.session, member_id=ctx.member.id, now=ctx.now)
    total = next((p for p in progress if p.requirement.code == YEARLY_GOAL_CODE), None)
    done_total = total.done if total is not None else 0.0
    goal = total.needed if total is not None else DEFAULT_GOAL
    lines = [
        ctx.t("learning.title", year=today.year),
        ctx.t("learning.total", done=_h(done_total), goal=_h(goal)),
    ]
    if not ctx.member.is_civil_servant:
        lines.append(ctx.t("learning.not_civil_servant"))
        return Text(
            text="\n".join(lines),
            buttons=[Button(label=ctx.t("learning.verify"), action=f"{COMMAND_ACTION}:verify")],
        )
    for p in progress:
        values = {
            "title": p.requirement.title_in(ctx.lang),
            "done": _h(p.done),
            "needed": _h(p.needed),
            "missing": _h(max(0.0, p.needed - p.done)),
            "date": f"{p.deadline:%m/%d}",
        }
        lines.append(ctx.t("learning.line_open" if p.open else "learning.line_done", **values))
    open_any = any(p.open for p in progress)
    if not open_any:
        lines.append(ctx.t("learning.all_done"))
    lines.append(ctx.t("learning.records_note"))
    buttons = [Button(label=ctx.t("learning.search"), action=f"{COMMAND_ACTION}:search")]
    if open_any:
        buttons.insert(0, Button(label=ctx.t("learning.snooze"), action="learning.snooze"))
    return Text(text="\n".join(lines), buttons=buttons)


@router.on_action("learning.snooze")
async def snooze_week(ctx: Context, msg: Incoming) -> Reply:
    """'Remind me next week': no reminder digest for seven days."""
    until = ctx.now + SNOOZE
    await snooze(ctx.session, member_id=ctx.member.id, until=until, now=ctx.now)
    return Text(text=ctx.t("learning.snoozed", date=taipei_time(until, "%m/%d")))
