"""Broadcasts from file to phone: planning into the outbox (once, resumable, chunked), the
dispatcher sending through the fake LINE API (each recipient once, in the member's language,
tagged with its LINE aggregation unit), schedule, pause, resume, cancel, opt-out after
planning, the frequency cap, a 429/5xx storm, A/B shares with a holdout and a winner, and
refused files naming the field."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app import channel_preview
from bot.channels import Delivery
from bot.i18n import Catalog
from bot.line import LineChannel
from models import broadcasts as bc
from models import outbox, segments
from models.courses import Course
from models.db import create_engine, create_sessionmaker
from models.members import ChannelAccount, Member
from models.outbox import PRIORITY_REMINDER, OutboxMessage
from notifications.broadcasts import broadcasts_job
from notifications.dispatcher import Dispatcher, DispatcherConfig
from notifications.quiet_hours import parse_window
from tests.fakes.line import FakeLine
from tests.outbox_support import LINE_SECRET, LINE_TOKEN, NOON, add_member, queue, text

CATALOG = Catalog()
QUIET = parse_window("21:30-08:00")


@pytest.fixture
def settings(make_settings: Any, fake_line: tuple[FakeLine, str]) -> Any:
    _, url = fake_line
    return make_settings(
        line_channel_secret=LINE_SECRET,
        line_channel_access_token=LINE_TOKEN,
        line_api_base_url=url,
        public_base_url="https://edoor.example.tw",
    )


@pytest.fixture
async def line(settings: Any) -> AsyncIterator[LineChannel]:
    channel = LineChannel(settings)
    yield channel
    await channel.stop()


def job(engine: AsyncEngine, settings: Any, **kw: Any) -> Any:
    return broadcasts_job(
        create_sessionmaker(engine),
        catalog=CATALOG,
        settings=settings,
        channels=["line", "telegram"],
        quiet=QUIET,
        **kw,
    )


async def plan(engine: AsyncEngine, settings: Any, now: dt.datetime, **kw: Any) -> dict[str, int]:
    from bot.broadcasts import plan_due

    return await plan_due(
        create_sessionmaker(engine),
        now=now,
        catalog=CATALOG,
        settings=settings,
        channels=["line", "telegram"],
        not_before=lambda t: QUIET.until(t) or t,
        **kw,
    )


def dispatcher(engine: AsyncEngine, line: LineChannel, **config: Any) -> Dispatcher:
    config.setdefault("line_lanes", 1)
    return Dispatcher(
        create_sessionmaker(engine), {"line": line}, config=DispatcherConfig(**config)
    )


async def people(engine: AsyncEngine, n: int, *, english: int = 0) -> list[Any]:
    async with create_sessionmaker(engine)() as s:
        out = [
            await add_member(
                s,
                channel="line",
                external_id=f"U{i:032x}",
                language="en" if i < english else "zh-TW",
            )
            for i in range(n)
        ]
        await s.commit()
    return out


async def create(engine: AsyncEngine, raw: dict[str, Any], now: dt.datetime = NOON) -> int:
    async with create_sessionmaker(engine)() as s:
        row = await bc.create_broadcast(s, raw, created_by="test", now=now)
        await s.commit()
        return row.id


async def rows_of(engine: AsyncEngine, broadcast_id: int) -> list[OutboxMessage]:
    """The broadcast's rows, one per recipient; a grouped LINE recipient's row shows its group
    row's status (a LINE group row itself, with no member, is not a recipient)."""
    async with create_sessionmaker(engine)() as s:
        result = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.broadcast_id == broadcast_id)
            .order_by(OutboxMessage.member_id)
        )
        rows = list(result.all())
        groups = {r.key: r for r in rows if r.member_id is None}
        for r in rows:
            if r.status == "grouped":
                r.status = groups[str(r.group_key)].status
        s.expunge_all()
        return [r for r in rows if r.member_id is not None]


async def figures(engine: AsyncEngine, broadcast_id: int) -> dict[str, Any]:
    async with create_sessionmaker(engine)() as s:
        return await bc.figures(s, await bc.require_broadcast(s, broadcast_id))


FILE: dict[str, Any] = {
    "name": "長照課程上架",
    "segment": {"all": [{"channel": "line"}]},
    "message": {
        "text": "長期照顧新課程上架了！",
        "text_en": "New long-term care courses!",
        "buttons": [
            {"label": "看更多", "label_en": "More", "url": "https://elearning.taipei/care"},
        ],
    },
    "send_at": "now",
}


async def test_a_broadcast_reaches_each_member_once_in_their_language(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 7, english=2)
    broadcast_id = await create(engine, FILE)

    planned = await job(engine, settings)(NOON)
    again = await job(engine, settings)(NOON + dt.timedelta(minutes=1))
    report = await dispatcher(engine, line).drain(NOON)

    assert planned == {str(broadcast_id): 7}
    assert again == {}  # planned once
    assert report.sent == 7
    assert fake.delivered() == {m.external_id: 1 for m in members}
    calls = fake.sent("/multicast")
    assert len(calls) == 2  # one body per language
    unit = bc.aggregation_unit(broadcast_id, "a")
    assert all(c.body["customAggregationUnits"] == [unit] for c in calls)
    by_text = {c.body["messages"][0]["altText"]: c for c in calls}
    english = by_text["New long-term care courses!"]
    assert sorted(english.body["to"]) == sorted(m.external_id for m in members[:2])
    zh = by_text["長期照顧新課程上架了！"]
    flex = str(zh.body["messages"][0])
    assert "https://edoor.example.tw/r/" in flex  # tracked, not the original URL
    assert "elearning.taipei" not in flex
    quick = zh.body["messages"][-1]["quickReply"]["items"]
    assert [i["action"]["label"] for i in quick] == ["取消訂閱"]
    assert quick[0]["action"]["data"] == "cmd:unsubscribe"
    shown = await figures(engine, broadcast_id)
    assert (shown["recipients"], shown["sent"], shown["queued"], shown["failed"]) == (7, 7, 0, 0)


async def test_a_scheduled_send_fires_once_at_the_taipei_time_with_two_schedulers(
    engine: AsyncEngine, database_url: str, settings: Any
) -> None:
    await people(engine, 25)
    # 14:00 in Taipei is 06:00 UTC.
    broadcast_id = await create(engine, {**FILE, "send_at": "2026-03-02 14:00"})
    at = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)

    assert await job(engine, settings)(at - dt.timedelta(minutes=1)) == {}
    assert await rows_of(engine, broadcast_id) == []
    other = create_engine(database_url)  # a second scheduler, with its own connections
    try:
        first, second = await asyncio.gather(
            job(
                engine,
                settings,
            )(at),
            job(other, settings)(at),
        )
    finally:
        await other.dispose()

    assert sorted([first, second], key=len) == [{}, {str(broadcast_id): 25}]
    rows = await rows_of(engine, broadcast_id)
    assert len(rows) == 25 == len({r.member_id for r in rows})
    assert all(r.not_before == at for r in rows)
    assert await job(engine, settings)(at + dt.timedelta(hours=1)) == {}


async def test_a_send_due_in_quiet_hours_is_deferred_to_the_morning(
    engine: AsyncEngine, settings: Any
) -> None:
    await people(engine, 3)
    evening = NOON + dt.timedelta(hours=10)  # 22:00 in Taipei
    broadcast_id = await create(engine, {**FILE, "send_at": "2026-03-02 22:00"})
    await job(engine, settings)(evening)
    rows = await rows_of(engine, broadcast_id)
    morning = dt.datetime(2026, 3, 3, 0, 0, tzinfo=dt.UTC)  # 08:00 in Taipei
    assert [r.not_before for r in rows] == [morning] * 3


async def test_pause_holds_every_queued_message_and_resume_sends_them(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 12)
    broadcast_id = await create(engine, FILE)
    # Paused mid-planning: the first chunk is queued, the rest is not planned while paused.
    await plan(engine, settings, NOON, chunk=5, stop_after_chunks=1)
    async with create_sessionmaker(engine)() as s:
        assert await bc.pause(s, broadcast_id, now=NOON) == 5
        await s.commit()
    later = NOON + dt.timedelta(minutes=10)
    assert await plan(engine, settings, later, chunk=5) == {}
    report = await dispatcher(engine, line).drain(later)
    assert report.claimed == 0
    assert fake.delivered() == {}
    assert (await figures(engine, broadcast_id))["held"] == 5

    async with create_sessionmaker(engine)() as s:
        assert await bc.resume(s, broadcast_id, now=later) == 5
        await s.commit()
    assert await plan(engine, settings, later, chunk=5) == {str(broadcast_id): 7}
    await dispatcher(engine, line).drain(later)
    assert fake.delivered() == {m.external_id: 1 for m in members}


async def test_cancel_withdraws_unsent_rows_and_plans_nothing_more(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    await people(engine, 8)
    broadcast_id = await create(engine, FILE)
    await plan(engine, settings, NOON, chunk=4, stop_after_chunks=1)
    async with create_sessionmaker(engine)() as s:
        assert await bc.cancel(s, broadcast_id, now=NOON) == 4
        await s.commit()
    later = NOON + dt.timedelta(minutes=10)
    assert await plan(engine, settings, later) == {}
    assert (await dispatcher(engine, line).drain(later)).claimed == 0
    assert fake.delivered() == {}
    shown = await figures(engine, broadcast_id)
    assert (shown["withdrawn"], shown["sent"], shown["queued"]) == (4, 0, 0)


async def test_a_crash_mid_planning_and_mid_sending_loses_and_repeats_nobody(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 30)
    broadcast_id = await create(engine, FILE)
    # Planning "crashes" after two chunks of 7 member ids (the lease stays on the broadcast).
    await plan(engine, settings, NOON, chunk=7, stop_after_chunks=2)
    assert len(await rows_of(engine, broadcast_id)) == 14
    # Within the lease nobody takes it over; after it, the next run resumes at the cursor.
    assert await plan(engine, settings, NOON + dt.timedelta(minutes=1), chunk=7) == {}
    # Replaying a chunk (a crash after the insert, before the cursor moved) adds nothing.
    async with create_sessionmaker(engine)() as s:
        await s.execute(update(bc.Broadcast).values(cursor=7))
        await s.commit()
    resumed = await plan(engine, settings, NOON + dt.timedelta(minutes=6), chunk=7)
    assert resumed == {str(broadcast_id): 16}
    rows = await rows_of(engine, broadcast_id)
    assert len(rows) == 30 == len({r.member_id for r in rows})

    # Sending "crashes" while its first multicast is in flight.
    await crash_mid_call(dispatcher(engine, line, batch_size=10), fake)
    # Another worker takes over once the lease has run out.
    await dispatcher(engine, line).drain(NOON + dt.timedelta(minutes=10))
    assert fake.delivered() == {m.external_id: 1 for m in members}
    assert (await figures(engine, broadcast_id))["sent"] == 30


async def crash_mid_call(worker: Dispatcher, fake: FakeLine) -> None:
    """The worker "crashes" (is cancelled) while its first LINE call is in flight."""
    fake.delay = 0.5
    crashed = asyncio.create_task(worker.drain(NOON))
    await _wait_for(lambda: len(fake.requests) > 0)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    fake.delay = 0


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_a_member_who_unsubscribes_after_planning_gets_nothing(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 5)
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    async with create_sessionmaker(engine)() as s:
        await s.execute(
            update(Member).where(Member.id == members[0].member_id).values(marketing_opt_in=False)
        )
        await s.commit()
    report = await dispatcher(engine, line).drain(NOON)
    assert report.withdrawn == 1
    assert fake.delivered() == {m.external_id: 1 for m in members[1:]}
    shown = await figures(engine, broadcast_id)
    assert (shown["sent"], shown["unsubscribed"]) == (4, 1)
    # And a later broadcast does not include them at all.
    second = await create(engine, {**FILE, "name": "second"})
    await job(engine, settings)(NOON + dt.timedelta(minutes=1))
    assert {r.member_id for r in await rows_of(engine, second)} == {
        m.member_id for m in members[1:]
    }


async def test_the_frequency_cap_skips_members_with_two_marketing_messages_this_week(
    engine: AsyncEngine, settings: Any
) -> None:
    members = await people(engine, 4)
    async with create_sessionmaker(engine)() as s:
        # members[0]: two this week; [1]: one this week; [2]: two, but 8 days ago;
        # [3]: two reminders (not marketing).
        await queue(s, members[:2], text("一"), key="w1", now=NOON - dt.timedelta(days=1))
        await queue(s, members[:1], text("二"), key="w2", now=NOON - dt.timedelta(days=6))
        await queue(s, members[2:3], text("三"), key="o1", now=NOON - dt.timedelta(days=8))
        await queue(s, members[2:3], text("四"), key="o2", now=NOON - dt.timedelta(days=8))
        for k in ("r1", "r2"):
            await queue(s, members[3:], text("提醒"), key=k, priority=PRIORITY_REMINDER)
        await s.execute(
            update(OutboxMessage).where(OutboxMessage.key.like("r%")).values(kind="reminder")
        )
        await s.commit()
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    got = {r.member_id for r in await rows_of(engine, broadcast_id)}
    assert got == {m.member_id for m in members[1:]}
    # With a cap of 3 (a setting), members[0] is in again.
    other = await create(engine, {**FILE, "name": "cap 3"})
    roomy = settings.model_copy(update={"marketing_cap_per_week": 3})
    await job(engine, roomy)(NOON + dt.timedelta(minutes=1))
    # This week: [0] has 2, [1] has 1 + 1 (the first broadcast), [2] and [3] 1.
    assert {r.member_id for r in await rows_of(engine, other)} == {m.member_id for m in members}


async def test_a_storm_of_429_and_5xx_slows_the_send_and_loses_nothing(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 1200, english=600)
    await create(engine, FILE)
    await job(engine, settings)(NOON)
    storm = [(429, {"message": "Too many requests"}), (500, {"message": "oops"})] * 3
    storm += [(503, {"message": "busy"})]
    fake.scripted.extend(storm)
    now, rounds, retried = NOON, 0, 0
    worker = dispatcher(engine, line, backoff_base=1.0, batch_size=2000)
    while rounds < 30:
        report = await worker.drain(now)
        retried += report.retried
        async with create_sessionmaker(engine)() as s:
            left = await s.scalar(
                select(func.count()).where(OutboxMessage.status.in_(["pending", "sending"]))
            )
        if not left:
            break
        now += dt.timedelta(seconds=30)
        rounds += 1
    assert retried >= len(storm)  # every refused call was put back, not dropped
    assert rounds >= 1  # and it took later rounds: the storm slowed the send down
    assert fake.delivered() == {m.external_id: 1 for m in members}


async def test_ab_shares_are_reproducible_the_holdout_gets_nothing_and_the_winner_the_rest(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 400)
    ab = {
        "name": "A/B",
        "segment": {},
        "variants": [
            {"name": "a", "share": 30, "message": {**FILE["message"], "text": "版本 A"}},
            {"name": "b", "share": 30, "message": {**FILE["message"], "text": "版本 B"}},
        ],
        "holdout": 15,
        "winner": {"after": 2, "by": "clicks"},
        "send_at": "now",
    }
    broadcast_id = await create(engine, ab)
    await job(engine, settings)(NOON)
    async with create_sessionmaker(engine)() as s:
        row = await bc.require_broadcast(s, broadcast_id)
        seed, spec = row.seed, row.spec

    def expected(member_id: int) -> str:
        b = segments.bucket(member_id, seed)
        return "a" if b < 300 else "b" if b < 600 else "holdout" if b < 750 else "rest"

    want = {m.member_id: expected(m.member_id) for m in members}
    assert spec["holdout"] == {"start": 600, "end": 750}
    rows = await rows_of(engine, broadcast_id)
    got = {r.member_id: r.aggregation_unit for r in rows}
    assert got == {
        m: bc.aggregation_unit(broadcast_id, v) for m, v in want.items() if v in ("a", "b")
    }
    shares = {v: list(want.values()).count(v) for v in ("a", "b", "holdout", "rest")}
    assert all(40 <= shares[v] <= 180 for v in shares), shares  # ~30/30/15/25 % of 400
    await dispatcher(engine, line).drain(NOON)
    # Variant b's link is clicked more.
    async with create_sessionmaker(engine)() as s:
        links = await bc.links_of(s, broadcast_id)
        for _ in range(5):
            assert await bc.record_click(s, token=links[("b", 0)]) is not None
        await bc.record_click(s, token=links[("a", 0)])
        await s.commit()
    # Before the winner's time nothing more is planned; at it, the rest gets b.
    assert await job(engine, settings)(NOON + dt.timedelta(hours=1)) == {}
    done = await job(engine, settings)(NOON + dt.timedelta(hours=2))
    assert done == {str(broadcast_id): shares["rest"]}
    rows = await rows_of(engine, broadcast_id)
    rest = {r.member_id for r in rows if r.aggregation_unit == f"edoor_bc{broadcast_id}_b_w"}
    assert rest == {m for m, v in want.items() if v == "rest"}
    await dispatcher(engine, line).drain(NOON + dt.timedelta(hours=2))
    holdout = {m.external_id for m in members if want[m.member_id] == "holdout"}
    delivered = fake.delivered()
    assert holdout
    assert not holdout & set(delivered)
    assert all(n == 1 for n in delivered.values())
    assert len(delivered) == 400 - len(holdout)
    shown = await figures(engine, broadcast_id)
    assert shown["variants"]["b"]["clicks"] == 5
    assert shown["variants"]["a"]["clicks"] == 1
    async with create_sessionmaker(engine)() as s:
        assert (await bc.require_broadcast(s, broadcast_id)).status == bc.PLANNED


async def test_a_marketer_may_pick_the_winner(engine: AsyncEngine, settings: Any) -> None:
    members = await people(engine, 100)
    broadcast_id = await create(
        engine,
        {
            "name": "pick",
            "segment": {},
            "message": FILE["message"],
            "variants": [{"name": "x", "share": 20}, {"name": "y", "share": 20}],
            "send_at": "now",
        },
    )
    await job(engine, settings)(NOON)
    first = len(await rows_of(engine, broadcast_id))
    async with create_sessionmaker(engine)() as s:
        assert (await bc.require_broadcast(s, broadcast_id)).status == bc.WAITING
        with pytest.raises(bc.BroadcastError) as refused:
            await bc.pick_winner(s, broadcast_id, variant="z", now=NOON)
        assert refused.value.field == "variant"
    async with create_sessionmaker(engine)() as s:
        await bc.pick_winner(s, broadcast_id, variant="y", now=NOON)
        await s.commit()
    await job(engine, settings)(NOON + dt.timedelta(minutes=1))
    rows = await rows_of(engine, broadcast_id)
    assert len(rows) == 100 == len(members)
    assert len(rows) - first == sum(
        1 for r in rows if r.aggregation_unit == f"edoor_bc{broadcast_id}_y_w"
    )


BAD: list[tuple[dict[str, Any], str]] = [
    ({k: v for k, v in FILE.items() if k != "name"}, "name"),
    ({**FILE, "colour": "red"}, "colour"),
    ({**FILE, "send_at": "tomorrow"}, "send_at"),
    ({**FILE, "segment": {"all": [{"channel": "fax"}]}}, "segment.all[0].channel"),
    (
        {**FILE, "segment": {"all": [{"campaign_eligible": "x"}]}},
        "segment.all[0].campaign_eligible",
    ),
    ({**FILE, "message": {"text_en": "only English"}}, "message.text"),
    ({**FILE, "message": {"text": "hi", "image": "ftp://x"}}, "message.image"),
    ({**FILE, "message": {"text": "hi", "courses": ["NOPE"]}}, "message.courses"),
    (
        {**FILE, "message": {"text": "hi", "buttons": [{"label": "x" * 21, "url": "https://a.b"}]}},
        "message.buttons[0].label",
    ),
    (
        {
            **FILE,
            "message": {
                "text": "hi",
                "buttons": [{"label": "x", "url": "https://a.b", "course": "C"}],
            },
        },
        "message.buttons[0]",
    ),
    (
        {**FILE, "message": {"text": "hi", "buttons": [{"label": "x", "url": "https://a"}] * 4}},
        "message.buttons",
    ),
    ({**FILE, "variants": [{"name": "A", "share": 10}]}, "variants[0].name"),
    ({**FILE, "variants": [{"name": "a", "share": 70}, {"name": "b", "share": 40}]}, "variants"),
    ({**FILE, "variants": [{"name": f"v{i}", "share": 10} for i in range(4)]}, "variants"),
    ({**FILE, "holdout": 101}, "holdout"),
    (
        {**FILE, "variants": [{"name": "a", "share": 10}], "winner": {"by": "likes", "after": 1}},
        "winner.by",
    ),
]


@pytest.mark.parametrize(("raw", "field"), BAD)
async def test_bad_broadcast_files_are_refused_with_the_field_named(
    engine: AsyncEngine, raw: dict[str, Any], field: str
) -> None:
    async with create_sessionmaker(engine)() as s:
        with pytest.raises(bc.BroadcastError) as refused:
            await bc.create_broadcast(s, raw, created_by="test", now=NOON)
        await s.rollback()
        assert refused.value.field == field
        assert await s.scalar(select(func.count()).select_from(bc.Broadcast)) == 0


async def test_course_cards_and_buttons_render_through_line_and_telegram(
    engine: AsyncEngine, settings: Any
) -> None:
    from bot.broadcasts import preview

    async with create_sessionmaker(engine)() as s:
        s.add(Course(id="CARE1", title="長照入門", category="長期照顧", hours=3))
        await s.commit()
    broadcast_id = await create(
        engine,
        {
            **FILE,
            "message": {
                "text": "推薦課程",
                "text_en": "Courses for you",
                "image": "https://edoor.example.tw/media/care.jpg",
                "courses": ["CARE1"],
                "buttons": [
                    {"label": "看課程", "course": "CARE1"},
                    {"label": "領獎", "label_en": "Claim", "campaign": "spring-prize"},
                ],
            },
        },
    )
    async with create_sessionmaker(engine)() as s:
        shown = await preview(
            s,
            await bc.require_broadcast(s, broadcast_id),
            catalog=CATALOG,
            settings=settings,
            render=channel_preview,  # the real renderers, as app.py lends them
        )
    zh, en = shown["a:zh-TW"], shown["a:en"]
    assert [m["type"] for m in zh["line"]] == ["image", "flex", "flex"]
    assert "長照入門" in str(zh["line"][2])
    assert "campaign.open:spring-prize" in str(zh["line"][1])
    assert zh["line"][-1]["quickReply"]["items"][0]["action"]["label"] == "取消訂閱"
    assert "Claim" in str(en["line"][1])
    assert "Unsubscribe" in str(en["line"][-1])
    methods = [c["method"] for c in zh["telegram"]]
    assert methods[0] == "send_photo"
    assert "send_message" in methods
    assert "cmd:unsubscribe" in str(zh["telegram"])


async def test_a_test_send_goes_to_that_member_only_marked_as_a_test(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    from bot.broadcasts import test_send

    fake, _ = fake_line
    members = await people(engine, 3)
    broadcast_id = await create(engine, FILE)
    async with create_sessionmaker(engine)() as s:
        queued = await test_send(
            s,
            await bc.require_broadcast(s, broadcast_id),
            member_id=members[1].member_id,
            catalog=CATALOG,
            settings=settings,
            channels=["line"],
            now=NOON,
        )
        await s.commit()
    assert queued == 1
    await dispatcher(engine, line).drain(NOON)
    assert fake.delivered() == {members[1].external_id: 1}
    assert "【測試】" in str(fake.sent("/push")[0].body)
    assert (await figures(engine, broadcast_id))["recipients"] == 0  # not the broadcast


@pytest.mark.parametrize("paid", [False, True])
async def test_telegram_broadcasts_go_one_chat_at_a_time_paid_only_when_opted_in(
    engine: AsyncEngine, make_settings: Any, paid: bool
) -> None:
    from bot.telegram import TelegramChannel
    from notifications.dispatcher import build_dispatcher
    from tests.fakes.telegram import TOKEN, FakeTelegram

    async with create_sessionmaker(engine)() as s:
        chats = [
            await add_member(s, channel="telegram", external_id=str(5000 + i)) for i in range(4)
        ]
        await s.commit()
    async with FakeTelegram() as fake:
        settings = make_settings(
            telegram_bot_token=TOKEN,
            telegram_mode="polling",
            telegram_api_base_url=fake.api_base_url,
            telegram_allow_paid_broadcast=paid,
        )
        channel = TelegramChannel(settings)
        await channel.start()
        try:
            broadcast_id = await create(
                engine, {**FILE, "segment": {"all": [{"channel": "telegram"}]}}
            )
            await job(engine, settings)(NOON)
            worker = build_dispatcher(settings, create_sessionmaker(engine), {"telegram": channel})
            report = await worker.drain(NOON)
        finally:
            await channel.stop()
        sent = fake.calls("sendMessage")
    assert report.sent == 4
    assert sorted(str(c.params["chat_id"]) for c in sent) == sorted(t.external_id for t in chats)
    assert all(bool(c.params.get("allow_paid_broadcast")) is paid for c in sent)
    assert "取消訂閱" in str(sent[0].params["reply_markup"])
    assert (await figures(engine, broadcast_id))["sent"] == 4


# -- LINE groups: one outbox row per multicast of up to 500 --------------------------------------
async def many(engine: AsyncEngine, n: int, *, english: int = 0) -> list[Member]:
    """`n` LINE members in one flush (the groups need hundreds)."""
    async with create_sessionmaker(engine)() as s:
        members = [
            Member(language="en" if i < english else "zh-TW", created_at=NOON) for i in range(n)
        ]
        s.add_all(
            ChannelAccount(
                member=m,
                channel="line",
                external_id=f"U{i:032x}",
                created_at=NOON,
                last_seen_at=NOON,
            )
            for i, m in enumerate(members)
        )
        await s.commit()
        return members


async def group_rows(engine: AsyncEngine, broadcast_id: int) -> list[OutboxMessage]:
    async with create_sessionmaker(engine)() as s:
        result = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.broadcast_id == broadcast_id, OutboxMessage.member_id.is_(None))
            .order_by(OutboxMessage.id)
        )
        return list(result.all())


async def test_line_recipients_go_as_one_row_and_one_multicast_per_500(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    await many(engine, 1203, english=3)
    async with create_sessionmaker(engine)() as s:
        # Someone inside quiet hours of their own leaves their group and waits for them.
        own = await add_member(s, channel="line", external_id="U-own-quiet-hours")
        await s.execute(
            update(Member).where(Member.id == own.member_id).values(quiet_hours="00:00-23:59")
        )
        await s.commit()
    broadcast_id = await create(engine, FILE)

    assert await job(engine, settings)(NOON) == {str(broadcast_id): 1204}
    groups = await group_rows(engine, broadcast_id)
    report = await dispatcher(engine, line, line_lanes=2).drain(NOON)

    # 1,201 in Chinese (500 + 500 + 201), 3 in English: four rows, four calls; the one in
    # quiet hours went back to a row of their own, claimed and deferred.
    assert len(groups) == 4
    assert all(g.external_id == "" and g.status == "pending" for g in groups)
    assert report.claimed == 5
    assert (report.sent, report.deferred) == (1203, 1)
    calls = fake.sent("/multicast")
    assert sorted(len(c.body["to"]) for c in calls) == [3, 200, 500, 500]
    assert {c.headers["x-line-retry-key"] for c in calls} == {outbox.row_key(g.id) for g in groups}
    assert fake.sent("/push") == []
    delivered = fake.delivered()
    assert len(delivered) == 1203
    assert set(delivered.values()) == {1}
    assert "U-own-quiet-hours" not in delivered
    shown = await figures(engine, broadcast_id)
    assert (shown["recipients"], shown["sent"], shown["queued"]) == (1204, 1203, 1)
    assert {r.status for r in await rows_of(engine, broadcast_id)} == {"sent", "pending"}


async def test_who_leaves_a_group_before_its_call_is_screened_as_one_row_would_be(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 6)
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    gone, quiet, erased = members[1], members[2], members[3]
    async with create_sessionmaker(engine)() as s:
        await s.execute(
            update(Member).where(Member.id == members[0].member_id).values(marketing_opt_in=False)
        )
        await s.execute(
            update(ChannelAccount)
            .where(ChannelAccount.id == gone.account_id)
            .values(unreachable=True)
        )
        await s.execute(
            update(Member).where(Member.id == quiet.member_id).values(quiet_hours="00:00-23:59")
        )
        await s.execute(delete(Member).where(Member.id == erased.member_id))  # delete-my-data
        await s.commit()

    report = await dispatcher(engine, line).drain(NOON)

    [call] = fake.sent("/multicast")
    assert sorted(call.body["to"]) == sorted(m.external_id for m in members[4:])
    assert fake.sent("/push") == []
    assert (report.sent, report.withdrawn, report.failed, report.deferred) == (2, 1, 1, 1)
    shown = await figures(engine, broadcast_id)
    assert (shown["recipients"], shown["sent"], shown["unsubscribed"]) == (5, 2, 1)
    assert (shown["failed"], shown["unreachable"], shown["queued"]) == (1, 1, 1)


async def test_a_group_retried_after_a_crash_goes_to_the_same_people_under_its_key(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 4)
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    await crash_mid_call(dispatcher(engine, line), fake)
    # The call was in flight (LINE may have taken it); one of its people turns marketing off.
    async with create_sessionmaker(engine)() as s:
        await s.execute(
            update(Member).where(Member.id == members[0].member_id).values(marketing_opt_in=False)
        )
        await s.commit()

    await dispatcher(engine, line).drain(NOON + dt.timedelta(minutes=10))

    first, retry = fake.sent("/multicast")
    # The same call again, as it went: the same people under the same key (had LINE taken
    # the first, it would answer 409 to this one).
    assert retry.headers["x-line-retry-key"] == first.headers["x-line-retry-key"]
    assert (
        sorted(retry.body["to"])
        == sorted(first.body["to"])
        == sorted(m.external_id for m in members)
    )
    assert fake.delivered() == {m.external_id: 1 for m in members}
    assert (await figures(engine, broadcast_id))["sent"] == 4


async def test_pause_and_cancel_move_grouped_recipients_with_their_group(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 5)
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    async with create_sessionmaker(engine)() as s:
        assert await bc.pause(s, broadcast_id, now=NOON) == 5
        await s.commit()
    await dispatcher(engine, line).drain(NOON)
    assert fake.requests == []
    assert (await figures(engine, broadcast_id))["held"] == 5
    async with create_sessionmaker(engine)() as s:
        assert await bc.cancel(s, broadcast_id, now=NOON) == 5
        await s.commit()
    shown = await figures(engine, broadcast_id)
    assert (shown["withdrawn"], shown["held"], shown["queued"]) == (5, 0, 0)
    async with create_sessionmaker(engine)() as s:
        own = await s.scalars(
            select(OutboxMessage.status).where(
                OutboxMessage.broadcast_id == broadcast_id, OutboxMessage.member_id.is_not(None)
            )
        )
        assert set(own.all()) == {"cancelled"}  # so the frequency cap does not count them
    # A cancelled broadcast does not count toward the weekly cap of two.
    for name in ("second", "third"):
        await create(engine, {**FILE, "name": name})
    planned = await job(engine, settings)(NOON + dt.timedelta(minutes=1))
    assert sorted(planned.values()) == [5, 5]
    assert len(members) == 5


async def test_finished_groups_and_their_people_are_purged_with_the_rest(
    engine: AsyncEngine, settings: Any, line: LineChannel
) -> None:
    await people(engine, 3)
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    await dispatcher(engine, line).drain(NOON)
    async with create_sessionmaker(engine)() as s:
        assert await outbox.purge_finished(s, now=NOON + dt.timedelta(days=29)) == 0
        assert await outbox.purge_finished(s, now=NOON + dt.timedelta(days=31)) == 4
        await s.commit()
    assert await rows_of(engine, broadcast_id) == []


class _PushOnlyLine:
    """A LINE channel without multicast (only `deliver`, as chats have): each message is a
    push of its own."""

    name = "line"

    def __init__(self, inner: LineChannel) -> None:
        self.inner = inner

    async def deliver(self, external_id: str, replies: Any, **_: Any) -> Delivery:
        await self.inner.push(external_id, replies, retry_key=str(uuid.uuid4()))
        return Delivery(method="push", requests=1)


async def test_groups_are_sent_one_by_one_where_line_cannot_multicast(
    engine: AsyncEngine, settings: Any, line: LineChannel, fake_line: tuple[FakeLine, str]
) -> None:
    fake, _ = fake_line
    members = await people(engine, 3)
    broadcast_id = await create(engine, FILE)
    await job(engine, settings)(NOON)
    worker = Dispatcher(
        create_sessionmaker(engine),
        {"line": _PushOnlyLine(line)},  # type: ignore[dict-item]
        config=DispatcherConfig(line_lanes=1),
    )

    await worker.drain(NOON)

    assert fake.sent("/multicast") == []
    pushes = fake.sent("/push")
    assert sorted(c.body["to"] for c in pushes) == sorted(m.external_id for m in members)
    # Each row on its own got its group's body back (grouped rows keep none).
    assert {c.body["messages"][0]["altText"] for c in pushes} == {"長期照顧新課程上架了！"}
    shown = await figures(engine, broadcast_id)
    assert (shown["recipients"], shown["sent"], shown["withdrawn"]) == (3, 3, 0)
