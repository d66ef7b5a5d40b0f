"""The course-password step, with the per-member limit on wrong tries and its cool-down."""

from __future__ import annotations

import datetime as dt

from bot.context import Context
from bot.i18n import taipei_time
from bot.messages import Incoming, Reply, Text
from bot.router import Router
from handlers.courses.common import go_button, open_or_refuse, search_button, visible_course
from handlers.start import back_buttons, cancel_button
from models.courses import (
    PASSWORD_TRIES_PER_HOUR,
    PASSWORD_WINDOW,
    Course,
    course_password_paused,
    lock_password_for_check,
    note_wrong_course_password,
    password_retry_at,
    password_tries_left,
    record_password_attempt,
    verify_course_password,
)
from models.inbound import forget_typed_text

router = Router("courses.password")


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
        buttons=[search_button(ctx)],
        quick_replies=back_buttons(ctx),
    )


def _password_paused(ctx: Context, until: dt.datetime) -> Reply:
    return Text(
        text=ctx.t("courses.password_paused", time=_until(ctx, until)),
        buttons=[search_button(ctx)],
        quick_replies=back_buttons(ctx),
    )


@router.on_action("course.pw")
async def ask_password(ctx: Context, msg: Incoming) -> Reply:
    """Asks for the course password (a step: 取消 leaves it), unless tries are used up."""
    course = await open_or_refuse(ctx, ctx.args)
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
    course = await visible_course(ctx, str(data.get("course_id", "")))
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
            buttons=[search_button(ctx)],
            quick_replies=back_buttons(ctx),
        )
    return Text(text=ctx.t("courses.password_wrong", left=left), buttons=[cancel_button(ctx)])
