"""Audio lessons in chat, through the real app and the simulator: browse, play (rendered for
LINE and Telegram), next/previous, finish, complete, subscribe, unsubscribe, restricted."""

from __future__ import annotations

import contextlib
import datetime as dt
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from linebot.v3.messaging import PushMessageRequest
from sqlalchemy import select, update

from bot.i18n import Catalog
from bot.line.render import render as line_render
from bot.messages import Audio, load_replies
from bot.telegram.render import render as telegram_render
from handlers import podcasts as podcast_handlers
from media.feeds import podcast_routes
from models.base import TAIPEI, utcnow
from models.catalog_import import parse_csv
from models.courses import apply_catalog
from models.learning import Completion
from models.members import ChannelAccount, Member
from models.podcasts import PodcastCompletion, PodcastSubscription, latest_slot
from notifications.dispatcher import Dispatcher, DispatcherConfig
from notifications.podcast_drops import podcast_drops
from tests.dialog import Chat, buttons, texts
from tests.openapi import line_schema_errors
from tests.podcast_support import Seeded, make_tone, seed_podcast
from tests.telegram_spec import call_errors, load_spec

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
BASE = "https://edoor.example"
COURSES = (
    "id,title,category,hours,audience,password\n"
    "pod-infosec,資安小學堂,資訊安全,1.5,public,\n"
    "pod-ethics,公務倫理,公務知能,1,civil_servant,\n"
)


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone(tmp_path_factory.mktemp("tones") / "tone.mp3", seconds=1.2)


@pytest.fixture
async def world(served, tone: Path) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The real app with podcasts wired in (as app.py will), a public podcast of three
    episodes and a restricted one, and a citizen chatting through the simulator."""
    async with contextlib.AsyncExitStack() as stack:
        url, api = await stack.enter_async_context(served(public_base_url=BASE))
        runtime = api.state.runtime
        if "pod.open" not in runtime.router.actions:
            runtime.router.include(podcast_handlers.router)
        if not any(getattr(r, "path", "") == "/feeds/" for r in api.routes):
            api.include_router(
                podcast_routes(sessionmaker=runtime.sessionmaker, settings=runtime.settings)
            )
        sm, settings = runtime.sessionmaker, runtime.settings
        async with sm() as session:
            await apply_catalog(session, parsed=parse_csv(COURSES.encode()), now=NOW)
            await session.commit()
        public = await seed_podcast(sm, settings, tone, course_id="pod-infosec", now=NOW)
        # Public itself, but its course is for civil servants: the course's audience rules.
        private = await seed_podcast(
            sm, settings, tone, slug="ethics", title="公務倫理", course_id="pod-ethics", now=NOW
        )
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        yield {
            "chat": Chat(http, "sim-listener"),
            "http": http,
            "runtime": runtime,
            "public": public,
            "private": private,
        }


async def _member_id(runtime: Any, user: str) -> int:
    async with runtime.sessionmaker() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == user)
        )
        assert account is not None
        return account.member_id


def _audio(replies: list[dict[str, Any]]) -> dict[str, Any]:
    (audio,) = [r for r in replies if r["kind"] == "audio"]
    return audio


async def test_browse_play_next_previous_and_both_renderers(
    world: dict[str, Any], shared_dir: Path | None
) -> None:
    chat: Chat = world["chat"]
    public: Seeded = world["public"]
    first, second, third = public.episodes
    listing = await chat.say("聽課")
    assert "資安小學堂" in texts(listing)
    assert "公務倫理" in texts(listing)
    assert "公務人員限定" in texts(listing)
    assert buttons(listing)["收聽"].startswith("pod.open:")
    # /podcasts and the English word reach the same answer.
    assert "資安小學堂" in texts(await chat.say("/podcasts"))
    assert "資安小學堂" in texts(await chat.say("podcasts"))

    podcast = await chat.tap(f"pod.open:{public.podcast.id}")
    assert "進度：已聽完 0 / 3 集" in texts(podcast)
    offered = buttons(podcast)
    assert offered["▶ 繼續：第1集"] == f"pod.ep:{first.id}"
    assert offered["RSS 訂閱網址"] == f"{BASE}/feeds/infosec.xml"
    assert next(r["cards"] for r in podcast if r["kind"] == "cards")[2]["title"] == "第3集｜第3課"

    played = await chat.tap(f"pod.ep:{second.id}")
    audio = _audio(played)
    # The member's own signed link: its hours count, so its bytes are the evidence.
    assert audio["url"].startswith(f"{BASE}/media/{second.media_path}?exp=")
    assert "&m=" in audio["url"]
    assert audio["duration_ms"] == second.duration_ms
    assert audio["file_size"] == second.size_bytes
    assert audio["title"] == "第2集｜第2課"
    assert buttons(played)["⏮ 上一集"] == f"pod.ep:{first.id}"
    assert buttons(played)["⏭ 下一集"] == f"pod.ep:{third.id}"
    assert "⏭ 下一集" not in buttons(await chat.tap(f"pod.ep:{third.id}"))
    assert "⏮ 上一集" not in buttons(await chat.tap(f"pod.ep:{first.id}"))

    # LINE: an audio message (https, duration in ms) the SDK and the OpenAPI spec accept.
    replies = load_replies(played)
    messages = line_render(replies)
    body = PushMessageRequest(to="U" + "0" * 32, messages=messages).to_dict()
    PushMessageRequest.from_dict(body)
    if shared_dir is not None:
        assert line_schema_errors(shared_dir, "PushMessageRequest", body) == []
    line_audio = body["messages"][0]
    assert line_audio == {
        "type": "audio",
        "originalContentUrl": audio["url"],
        "duration": second.duration_ms,
    }
    assert line_audio["originalContentUrl"].startswith("https://")
    # Telegram: sendAudio by URL, remembered by media key; again by file_id.
    spec = load_spec()
    (call,) = telegram_render(replies)
    params = {"chat_id": 42, **call.api_params()}
    assert call_errors(spec, call.api_method, params) == []
    assert call.method == "send_audio"
    assert params["audio"] == audio["url"]
    assert params["duration"] == 2
    assert call.media_key == audio["media_key"]
    assert isinstance(replies[0], Audio)
    (again,) = telegram_render(replies, file_ids={audio["media_key"]: "CQACAgUAAxkD-known"})
    assert again.params["audio"] == "CQACAgUAAxkD-known"
    labels = [b["text"] for row in params["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["⏮ 上一集", "⏭ 下一集", "✅ 我聽完了", "📋 全部集數"]


async def _listen(world: dict[str, Any], played: list[dict[str, Any]]) -> None:
    """Fetch the whole episode through the link the chat gave (as a player would)."""
    url = urllib.parse.urlsplit(_audio(played)["url"])
    response = await world["http"].get(f"{url.path}?{url.query}")
    assert response.status_code == 200


async def test_finishing_every_episode_records_a_completion(world: dict[str, Any]) -> None:
    chat: Chat = world["chat"]
    runtime = world["runtime"]
    public: Seeded = world["public"]
    first, second, third = public.episodes
    await chat.say("聽課")
    # Hours count here: each episode is played through the member's own link first.
    for episode in public.episodes:
        await _listen(world, await chat.tap(f"pod.ep:{episode.id}"))
    done = await chat.tap(f"pod.done:{second.id}")
    assert "進度：已聽完 1 / 3 集" in texts(done)
    assert buttons(done)["▶ 繼續：第3集"] == f"pod.ep:{third.id}"
    await chat.tap(f"pod.done:{second.id}")  # twice is still one
    assert "已聽完 1 / 3" in texts(await chat.tap(f"pod.open:{public.podcast.id}"))
    await chat.tap(f"pod.done:{third.id}")
    member_id = await _member_id(runtime, chat.user)
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(PodcastCompletion)) is None
    last = await chat.tap(f"pod.done:{first.id}")
    assert "已聽完 3 / 3 集" in texts(last)
    assert "恭喜" in texts(last)
    assert "1.5 小時" in texts(last)
    async with runtime.sessionmaker() as session:
        (completion,) = (await session.scalars(select(PodcastCompletion))).all()
    assert completion.member_id == member_id
    assert completion.podcast_id == public.podcast.id
    assert completion.hours == 1.5  # what the course says
    # The course counts as completed: learning hours and mandatory reminders see it.
    async with runtime.sessionmaker() as session:
        (learned,) = (await session.scalars(select(Completion))).all()
    assert (learned.member_id, learned.course_id, learned.hours) == (member_id, "pod-infosec", 1.5)
    assert learned.person == f"member:{member_id}"
    again = await chat.tap(f"pod.done:{first.id}")
    assert "恭喜" not in texts(again)
    assert "全部 3 集" in texts(again)


async def test_restricted_podcast_is_refused_to_a_citizen(world: dict[str, Any]) -> None:
    chat: Chat = world["chat"]
    runtime = world["runtime"]
    private: Seeded = world["private"]
    await chat.say("聽課")
    for action in (
        f"pod.open:{private.podcast.id}",
        f"pod.ep:{private.episodes[0].id}",
        f"pod.sub:{private.podcast.id}",
        f"pod.feed:{private.podcast.id}",
    ):
        refused = await chat.tap(action)
        assert "公務人員限定" in texts(refused), action
        assert "驗證手機" in texts(refused)
        assert buttons(refused)["驗證手機"] == "cmd:verify"
        assert not [r for r in refused if r["kind"] == "audio"]
    # Once verified as a civil servant, the same episode plays from a signed, expiring link.
    member_id = await _member_id(runtime, chat.user)
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Member).where(Member.id == member_id).values(is_civil_servant=True)
        )
        await session.commit()
    played = await chat.tap(f"pod.ep:{private.episodes[0].id}")
    audio = _audio(played)
    assert "?exp=" in audio["url"]
    assert "&sig=" in audio["url"]
    http: httpx.AsyncClient = world["http"]
    local = audio["url"].removeprefix(BASE)
    assert (await http.get(local, headers={"Range": "bytes=0-3"})).status_code == 206
    assert (await http.get(local.split("?")[0])).status_code == 403
    feed = await chat.tap(f"pod.feed:{private.podcast.id}")
    assert f"{BASE}/feeds/private/" in texts(feed)
    assert buttons(feed)["停用這個網址"] == f"pod.revoke:{private.podcast.id}"


async def test_subscribe_with_a_typed_time_weekdays_only_then_unsubscribe(
    world: dict[str, Any],
) -> None:
    chat: Chat = world["chat"]
    runtime = world["runtime"]
    public: Seeded = world["public"]
    await chat.say("聽課")
    ask = await chat.tap(f"pod.sub:{public.podcast.id}")
    assert "幾點" in texts(ask)
    assert buttons(ask)["08:00"] == f"pod.time:{public.podcast.id}:0800"
    assert "看不懂" in texts(await chat.say("明天吧"))
    days = await chat.say("7:30")
    assert "07:30" in texts(days)
    ok = await chat.tap(buttons(days)["週一至週五"])
    assert "已訂閱「資安小學堂」：週一至週五 07:30 送新的一集" in texts(ok)
    assert "下一集：第1集" in texts(ok)
    async with runtime.sessionmaker() as session:
        (sub,) = (await session.scalars(select(PodcastSubscription))).all()
    assert (sub.delivery_time, sub.weekdays_only, sub.next_number, sub.active) == (
        "07:30",
        True,
        1,
        True,
    )
    shown = await chat.tap(f"pod.open:{public.podcast.id}")
    assert "已訂閱：週一至週五 07:30 送新的一集" in texts(shown)
    assert buttons(shown)["🔕 取消訂閱"] == f"pod.unsub:{public.podcast.id}"
    # A main-menu word leaves the time step; 取消 leaves it too.
    await chat.tap(f"pod.sub:{public.podcast.id}")
    left = await chat.say("取消")
    assert "已取消" in texts(left)
    assert "週一至週五" not in buttons(await chat.say("07:30"))  # no longer in the time step
    bye = await chat.tap(f"pod.unsub:{public.podcast.id}")
    assert "已取消訂閱「資安小學堂」" in texts(bye)
    async with runtime.sessionmaker() as session:
        assert (await session.scalar(select(PodcastSubscription.active))) is False
    assert "沒有訂閱" in texts(await chat.tap(f"pod.unsub:{public.podcast.id}"))


async def test_english_speaker_gets_english(world: dict[str, Any]) -> None:
    http: httpx.AsyncClient = world["http"]
    public: Seeded = world["public"]
    chat = Chat(http, "sim-english", language="en")
    listing = await chat.say("podcasts")
    assert "Audio lessons" in texts(listing)
    played = await chat.tap(f"pod.ep:{public.episodes[0].id}")
    assert _audio(played)["title"] == "Ep. 1 | 第1課"
    assert "✅ I finished this" in buttons(played)


async def test_a_subscription_delivers_through_the_outbox_at_the_chosen_time(
    world: dict[str, Any],
) -> None:
    """Subscribe in chat, then the podcast-drops job and the dispatcher (as the scheduler runs
    them) bring the next episode to the simulator at the chosen Taipei time, not before, and
    hold a slot inside quiet hours until they end."""
    chat: Chat = world["chat"]
    runtime = world["runtime"]
    public: Seeded = world["public"]
    await chat.say("聽課")
    days = await chat.tap(f"pod.time:{public.podcast.id}:0830")
    await chat.tap(buttons(days)["週一至週五"])
    # The chat ran on the real clock: the first weekday 08:30 after it.
    real = utcnow()
    candidates = (
        latest_slot(real + dt.timedelta(days=k), delivery_time="08:30", weekdays_only=True)
        for k in range(1, 5)
    )
    slot = next(s for s in candidates if s > real)
    dispatcher = Dispatcher(
        runtime.sessionmaker, runtime.channels, config=DispatcherConfig(limits_on=False)
    )

    async def tick(now: dt.datetime) -> list[dict[str, Any]]:
        await podcast_drops(
            runtime.sessionmaker,
            now=now,
            settings=runtime.settings,
            catalog=Catalog(),
            signer=runtime.services.media_signer,
        )
        await dispatcher.drain(now)
        return await chat.pending()

    assert await tick(slot - dt.timedelta(minutes=1)) == []
    arrived = await tick(slot)
    assert "新的一集" in texts(arrived)
    assert _audio(arrived)["url"].startswith(f"{BASE}/media/{public.episodes[0].media_path}?")
    assert await tick(slot + dt.timedelta(minutes=5)) == []  # once per slot
    # 07:30 is inside the default quiet hours (21:30-08:00): it waits until 08:00.
    await chat.tap(f"pod.subok:{public.podcast.id}:0730:d")
    early = latest_slot(slot + dt.timedelta(days=1), delivery_time="07:30", weekdays_only=False)
    assert await tick(early) == []
    later = await tick(early.astimezone(TAIPEI).replace(hour=8, minute=0))
    assert _audio(later)["title"] == "第2集｜第2課"
