"""Audio lessons in chat: podcasts as buttons, episodes, playing, next/previous, "I finished
this", progress, subscriptions with a Taipei delivery time, and feed links."""

from __future__ import annotations

from bot.context import Context
from bot.messages import Button, Card, Cards, Incoming, Reply, Text
from bot.ports import LinkSigner
from bot.router import COMMAND_ACTION, Router
from handlers.start import back_buttons
from media.episodes import episode_audio, episode_title
from media.feeds import duration_text, feed_url, private_feed_url
from models.podcasts import (
    Access,
    Episode,
    NeedsEvidence,
    Podcast,
    PodcastSubscription,
    answer_check,
    check_of,
    ensure_feed_token,
    episodes_of,
    finished_episode_ids,
    get_episode,
    get_podcast,
    get_subscription,
    list_podcasts,
    listen_access,
    mark_finished,
    mark_played,
    parse_delivery_time,
    revoke_feed_tokens,
    subscribe,
    unsubscribe,
)

router = Router("podcasts")

PAGE = 10  # episode cards per answer (LINE carousels hold 12 bubbles, one is "more")
# Suggested delivery times (Taipei), outside the default quiet hours (21:30-08:00); any
# other time can be typed, and one inside quiet hours waits until they end.
TIMES = ("08:00", "12:30", "18:00", "20:00")


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 12 else None


def _signer(ctx: Context) -> LinkSigner:
    return ctx.services.media_signer


def _refusal(ctx: Context, podcast: Podcast, access: Access) -> Reply:
    """A podcast the member may not listen to yet, with the way to open it."""
    course = podcast.password_course
    if access is Access.COURSE_PASSWORD and course is not None:
        # The course's own password step (course.pw) unlocks it; its record opens the podcast.
        return Text(
            text=ctx.t("podcasts.needs_course_password", title=podcast.title, course=course.title),
            buttons=[
                Button(
                    label=ctx.t("podcasts.enter_course_password"), action=f"course.pw:{course.id}"
                ),
                Button(label=ctx.t("podcasts.about_course"), action=f"course.open:{course.id}"),
            ],
        )
    buttons = []
    if "verify" in ctx.commands:
        buttons.append(Button(label=ctx.t("podcasts.verify"), action=f"{COMMAND_ACTION}:verify"))
    return Text(text=ctx.t("podcasts.restricted", title=podcast.title), buttons=buttons)


async def _podcast(ctx: Context, raw: str) -> Podcast | Reply:
    """The podcast named by an action argument, or the reply that refuses it."""
    pid = _id(raw)
    podcast = await get_podcast(ctx.session, podcast_id=pid) if pid is not None else None
    if podcast is None:
        return Text(text=ctx.t("podcasts.gone"))
    access = await listen_access(ctx.session, member=ctx.member, podcast=podcast)
    if access is not Access.OPEN:
        return _refusal(ctx, podcast, access)
    return podcast


def _when(ctx: Context, sub: PodcastSubscription) -> str:
    key = "podcasts.weekdays" if sub.weekdays_only else "podcasts.daily"
    return ctx.t(key, time=sub.delivery_time)


@router.on_command("podcasts", words=("聽課", "語音課", "podcasts", "podcast", "audio lessons"))
async def podcasts(ctx: Context, msg: Incoming) -> Reply:
    """Every podcast as a card with a Listen button; restricted ones marked for civil servants."""
    found = await list_podcasts(ctx.session)
    if not found:
        search = Button(label=ctx.t("start.menu_item.search"), action=f"{COMMAND_ACTION}:search")
        return Text(text=ctx.t("podcasts.none"), buttons=[search], quick_replies=back_buttons(ctx))
    cards = []
    for p in found[:12]:
        count = len(await episodes_of(ctx.session, podcast_id=p.id, now=ctx.now))
        subtitle = ctx.tn("podcasts.episodes_count", count, count=count)
        if p.civil_servant_only:
            subtitle += "・" + ctx.t("podcasts.locked")
        elif p.password_course is not None:
            access = await listen_access(ctx.session, member=ctx.member, podcast=p)
            if access is Access.COURSE_PASSWORD:
                subtitle += "・" + ctx.t("podcasts.locked_password")
        cards.append(
            Card(
                title=p.title,
                subtitle=subtitle,
                body=p.description[:200],
                buttons=[Button(label=ctx.t("podcasts.listen"), action=f"pod.open:{p.id}")],
            )
        )
    return Cards(alt_text=ctx.t("podcasts.list"), cards=cards)


@router.on_action("pod.open")
async def open_podcast(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """One podcast: progress, subscription, feed, and its episodes as buttons
    (`pod.open:<podcast>[:<offset>]`)."""
    raw, _, raw_offset = ctx.args.partition(":")
    podcast = await _podcast(ctx, raw)
    if not isinstance(podcast, Podcast):
        return podcast
    offset = int(raw_offset) if raw_offset.isdigit() else 0
    episodes = await episodes_of(ctx.session, podcast_id=podcast.id, now=ctx.now)
    done = await finished_episode_ids(ctx.session, member_id=ctx.member.id, podcast_id=podcast.id)
    sub = await get_subscription(ctx.session, member_id=ctx.member.id, podcast_id=podcast.id)
    subscribed = sub is not None and sub.active
    lines = [ctx.t("podcasts.header", title=podcast.title, description=podcast.description)]
    finished = sum(1 for e in episodes if e.id in done)
    lines.append(ctx.t("podcasts.progress", finished=finished, total=len(episodes)))
    if subscribed and sub is not None:
        lines.append(ctx.t("podcasts.subscribed", when=_when(ctx, sub)))
    buttons: list[Button] = []
    upcoming = next((e for e in episodes if e.id not in done), None)
    if upcoming is not None:
        buttons.append(
            Button(
                label=ctx.t("podcasts.continue", number=upcoming.number),
                action=f"pod.ep:{upcoming.id}",
            )
        )
    if subscribed:
        buttons.append(
            Button(label=ctx.t("podcasts.unsubscribe"), action=f"pod.unsub:{podcast.id}")
        )
    else:
        buttons.append(Button(label=ctx.t("podcasts.subscribe"), action=f"pod.sub:{podcast.id}"))
    if podcast.restricted:
        buttons.append(
            Button(label=ctx.t("podcasts.private_feed"), action=f"pod.feed:{podcast.id}")
        )
    else:
        buttons.append(
            Button(label=ctx.t("podcasts.feed"), url=feed_url(ctx.settings, podcast.slug))
        )
    replies: list[Reply] = [Text(text="\n".join(lines), buttons=buttons)]
    page = episodes[offset : offset + PAGE]
    if page:
        more = None
        if offset + PAGE < len(episodes):
            more = Button(
                label=ctx.t("podcasts.more"), action=f"pod.open:{podcast.id}:{offset + PAGE}"
            )
        replies.append(
            Cards(
                alt_text=podcast.title,
                cards=[_episode_card(ctx, e, finished=e.id in done) for e in page],
                more=more,
            )
        )
    return replies


def _episode_card(ctx: Context, episode: Episode, *, finished: bool) -> Card:
    subtitle = ctx.t("podcasts.episode_subtitle", duration=duration_text(episode.duration_ms))
    if finished:
        subtitle += "・" + ctx.t("podcasts.episode_done")
    return Card(
        title=episode_title(ctx.t, episode),
        subtitle=subtitle,
        body=episode.description[:200],
        buttons=[Button(label=ctx.t("podcasts.play"), action=f"pod.ep:{episode.id}")],
    )


async def _episode(ctx: Context) -> Episode | Reply:
    eid = _id(ctx.args)
    episode = await get_episode(ctx.session, episode_id=eid) if eid is not None else None
    if episode is None or episode.published_at > ctx.now:
        return Text(text=ctx.t("podcasts.gone"))
    access = await listen_access(ctx.session, member=ctx.member, podcast=episode.podcast)
    if access is not Access.OPEN:
        return _refusal(ctx, episode.podcast, access)
    return episode


@router.on_action("pod.ep")
async def play(ctx: Context, msg: Incoming) -> Reply:
    """Plays one episode (LINE audio, Telegram sendAudio) with previous/next/finished buttons."""
    episode = await _episode(ctx)
    if not isinstance(episode, Episode):
        return episode
    await mark_played(ctx.session, member_id=ctx.member.id, episode_id=episode.id, now=ctx.now)
    episodes = await episodes_of(ctx.session, podcast_id=episode.podcast_id, now=ctx.now)
    return episode_audio(
        ctx.t,
        ctx.settings,
        episode,
        episodes=episodes,
        now=ctx.now,
        signer=_signer(ctx),
        member_id=ctx.member.id,
    )


@router.on_action("pod.done")
async def finished(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """'I finished this episode': progress, the next episode, and a completion after the last."""
    episode = await _episode(ctx)
    if not isinstance(episode, Episode):
        return episode
    return await _finish(ctx, episode)


def _no_evidence(ctx: Context, episode: Episode) -> Reply:
    """Hours that count need evidence: the check question when the episode has one, else
    listening to it through the member's own link."""
    check = check_of(episode)
    again = Button(label=ctx.t("podcasts.listen_again"), action=f"pod.ep:{episode.id}")
    if check is None:
        return Text(text=ctx.t("podcasts.listen_first"), buttons=[again])
    choices = [
        Button(label=f"{n + 1}. {choice}"[:20], action=f"pod.ans:{episode.id}:{n}")
        for n, choice in enumerate(check["choices"])
    ]
    listed = "\n".join(f"{n + 1}. {choice}" for n, choice in enumerate(check["choices"]))
    return Text(
        text=ctx.t("podcasts.check_question", question=check["question"], choices=listed),
        buttons=choices,
        quick_replies=[again],
    )


@router.on_action("pod.ans")
async def answered(ctx: Context, msg: Incoming) -> Reply | list[Reply]:
    """An answer to an episode's check question (`pod.ans:<episode>:<choice>`): a right one
    counts as evidence and finishes the episode; a wrong one offers to listen again."""
    raw, _, choice = ctx.args.partition(":")
    eid = _id(raw)
    episode = await get_episode(ctx.session, episode_id=eid) if eid is not None else None
    if episode is None or not choice.isdigit():
        return Text(text=ctx.t("podcasts.gone"))
    right = await answer_check(
        ctx.session, member_id=ctx.member.id, episode=episode, choice=int(choice), now=ctx.now
    )
    if not right:
        return Text(
            text=ctx.t("podcasts.check_wrong"),
            buttons=[
                Button(label=ctx.t("podcasts.listen_again"), action=f"pod.ep:{episode.id}"),
                Button(label=ctx.t("podcasts.check_retry"), action=f"pod.done:{episode.id}"),
            ],
        )
    return [Text(text=ctx.t("podcasts.check_right")), *_as_list(await _finish(ctx, episode))]


def _as_list(result: Reply | list[Reply]) -> list[Reply]:
    return result if isinstance(result, list) else [result]


async def _finish(ctx: Context, episode: Episode) -> Reply | list[Reply]:
    podcast = episode.podcast
    try:
        done, completion = await mark_finished(
            ctx.session, member_id=ctx.member.id, episode=episode, now=ctx.now
        )
    except NeedsEvidence:
        return _no_evidence(ctx, episode)
    episodes = await episodes_of(ctx.session, podcast_id=podcast.id, now=ctx.now)
    finished_ids = await finished_episode_ids(
        ctx.session, member_id=ctx.member.id, podcast_id=podcast.id
    )
    replies: list[Reply] = []
    upcoming = next(
        (e for e in episodes if e.number > episode.number and e.id not in finished_ids),
        next((e for e in episodes if e.id not in finished_ids), None),
    )
    buttons = []
    if upcoming is not None:
        buttons.append(
            Button(
                label=ctx.t("podcasts.continue", number=upcoming.number),
                action=f"pod.ep:{upcoming.id}",
            )
        )
    buttons.append(Button(label=ctx.t("podcasts.all_episodes"), action=f"pod.open:{podcast.id}"))
    text = ctx.t(
        "podcasts.finished_one",
        title=episode_title(ctx.t, episode),
        finished=done.finished,
        total=done.total,
    )
    replies.append(Text(text=text, buttons=buttons))
    if completion is not None:
        if completion.hours > 0:
            note = ctx.t(
                "podcasts.completed_hours",
                podcast=podcast.title,
                total=done.total,
                hours=f"{completion.hours:g}",
            )
        else:
            note = ctx.t("podcasts.completed", podcast=podcast.title, total=done.total)
        replies.append(Text(text=note, quick_replies=_after_podcast(ctx, completion.hours)))
    elif done.complete:
        replies.append(
            Text(
                text=ctx.t("podcasts.already_complete", podcast=podcast.title, total=done.total),
                quick_replies=_after_podcast(ctx, 0),
            )
        )
    return replies


def _after_podcast(ctx: Context, hours: float) -> list[Button]:
    """After the whole podcast: the hours it earned (My learning), other podcasts, the menu."""
    out = []
    if hours > 0:
        out.append(
            Button(label=ctx.t("start.menu_item.learning"), action=f"{COMMAND_ACTION}:learning")
        )
    out.append(Button(label=ctx.t("podcasts.other_podcasts"), action=f"{COMMAND_ACTION}:podcasts"))
    out.append(Button(label=ctx.t("common.button_menu"), action=f"{COMMAND_ACTION}:menu"))
    return out


# -- subscriptions ----------------------------------------------------------------------------
def _time_buttons(podcast_id: int) -> list[Button]:
    return [Button(label=t, action=f"pod.time:{podcast_id}:{t.replace(':', '')}") for t in TIMES]


@router.on_action("pod.sub")
async def ask_time(ctx: Context, msg: Incoming) -> Reply:
    """Subscribe: asks for a delivery time (buttons, or typed, e.g. 07:30)."""
    podcast = await _podcast(ctx, ctx.args)
    if not isinstance(podcast, Podcast):
        return podcast
    await ctx.enter("podcasts.await_time", {"podcast_id": podcast.id})
    return Text(text=ctx.t("podcasts.ask_time"), quick_replies=_time_buttons(podcast.id))


def _ask_days(ctx: Context, podcast_id: int, time: str) -> Reply:
    compact = time.replace(":", "")
    return Text(
        text=ctx.t("podcasts.ask_days", time=time),
        buttons=[
            Button(label=ctx.t("podcasts.every_day"), action=f"pod.subok:{podcast_id}:{compact}:d"),
            Button(
                label=ctx.t("podcasts.weekdays_only"), action=f"pod.subok:{podcast_id}:{compact}:w"
            ),
        ],
    )


@router.on_state("podcasts.await_time")
async def typed_time(ctx: Context, msg: Incoming) -> Reply:
    """A typed delivery time such as 07:30 or 1830."""
    podcast_id = int(ctx.state_data.get("podcast_id", 0))
    time = parse_delivery_time(msg.text)
    if time is None:
        return Text(text=ctx.t("podcasts.bad_time"), quick_replies=_time_buttons(podcast_id))
    await ctx.leave()
    return _ask_days(ctx, podcast_id, time)


@router.on_action("pod.time")
async def tapped_time(ctx: Context, msg: Incoming) -> Reply:
    """A suggested time (`pod.time:<podcast>:<HHMM>`): asks every day or weekdays only."""
    raw, _, compact = ctx.args.partition(":")
    podcast = await _podcast(ctx, raw)
    if not isinstance(podcast, Podcast):
        return podcast
    time = parse_delivery_time(compact)
    if time is None:
        return Text(text=ctx.t("podcasts.bad_time"), quick_replies=_time_buttons(podcast.id))
    await ctx.leave()
    return _ask_days(ctx, podcast.id, time)


@router.on_action("pod.subok")
async def subscribed(ctx: Context, msg: Incoming) -> Reply:
    """Saves the subscription (`pod.subok:<podcast>:<HHMM>:<d|w>`)."""
    raw, _, rest = ctx.args.partition(":")
    compact, _, days = rest.partition(":")
    podcast = await _podcast(ctx, raw)
    if not isinstance(podcast, Podcast):
        return podcast
    time = parse_delivery_time(compact)
    if time is None:
        return Text(text=ctx.t("podcasts.bad_time"), quick_replies=_time_buttons(podcast.id))
    sub = await subscribe(
        ctx.session,
        member=ctx.member,
        podcast=podcast,
        delivery_time=time,
        weekdays_only=days == "w",
        now=ctx.now,
    )
    total = len(await episodes_of(ctx.session, podcast_id=podcast.id, now=ctx.now))
    key = "podcasts.subscribe_ok" if sub.next_number <= total else "podcasts.subscribe_ok_caught_up"
    return Text(
        text=ctx.t(key, podcast=podcast.title, when=_when(ctx, sub), number=sub.next_number),
        buttons=[
            Button(label=ctx.t("podcasts.unsubscribe"), action=f"pod.unsub:{podcast.id}"),
            Button(label=ctx.t("podcasts.all_episodes"), action=f"pod.open:{podcast.id}"),
        ],
    )


@router.on_action("pod.unsub")
async def unsubscribed(ctx: Context, msg: Incoming) -> Reply:
    """Stops the deliveries of one podcast."""
    pid = _id(ctx.args)
    podcast = await get_podcast(ctx.session, podcast_id=pid) if pid is not None else None
    if podcast is None:
        return Text(text=ctx.t("podcasts.gone"))
    stopped = await unsubscribe(ctx.session, member_id=ctx.member.id, podcast_id=podcast.id)
    key = "podcasts.unsubscribed" if stopped else "podcasts.not_subscribed"
    return Text(
        text=ctx.t(key, podcast=podcast.title),
        buttons=[Button(label=ctx.t("podcasts.subscribe"), action=f"pod.sub:{podcast.id}")],
    )


# -- feeds ----------------------------------------------------------------------------------------
@router.on_action("pod.feed")
async def feed(ctx: Context, msg: Incoming) -> Reply:
    """The podcast's RSS address: public, or a personal one for a restricted podcast."""
    podcast = await _podcast(ctx, ctx.args)
    if not isinstance(podcast, Podcast):
        return podcast
    if not podcast.restricted:
        url = feed_url(ctx.settings, podcast.slug)
        return Text(
            text=ctx.t("podcasts.feed_public", podcast=podcast.title, url=url),
            buttons=[Button(label=ctx.t("podcasts.feed"), url=url)],
        )
    token = await ensure_feed_token(
        ctx.session, member_id=ctx.member.id, podcast_id=podcast.id, now=ctx.now
    )
    url = private_feed_url(ctx.settings, _signer(ctx), token)
    return Text(
        text=ctx.t("podcasts.feed_private", podcast=podcast.title, url=url),
        buttons=[Button(label=ctx.t("podcasts.revoke"), action=f"pod.revoke:{podcast.id}")],
    )


@router.on_action("pod.revoke")
async def revoke(ctx: Context, msg: Incoming) -> Reply:
    """Revokes the member's private feed address of a podcast."""
    pid = _id(ctx.args)
    podcast = await get_podcast(ctx.session, podcast_id=pid) if pid is not None else None
    if podcast is None:
        return Text(text=ctx.t("podcasts.gone"))
    await revoke_feed_tokens(
        ctx.session, member_id=ctx.member.id, podcast_id=podcast.id, now=ctx.now
    )
    return Text(
        text=ctx.t("podcasts.revoked", podcast=podcast.title),
        buttons=[Button(label=ctx.t("podcasts.private_feed"), action=f"pod.feed:{podcast.id}")],
    )
