"""The dashboards through the real admin API, against numbers worked out by hand; the
`rollups` job absorbing new rows once (re-runs and concurrent runs change nothing, a row
committed late below the watermark is still counted); roles; CSV equals JSON; bad input."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.i18n import TAIPEI
from models.courses import Course, SearchLog
from models.db import create_sessionmaker
from models.identity import CivilServant
from models.inbound import InboundEvent
from models.learning import Completion, ReminderDigest, import_requirements, parse_requirements
from models.members import Member
from models.rollups import ChannelActivity, RollupWatermark

TOKEN = "test-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
NOW = dt.datetime(2026, 3, 20, 10, 0, tzinfo=TAIPEI)
NAMES = ("topics", "compliance", "reminders", "search", "campaigns", "channels")


def taipei(day: str, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute), tzinfo=TAIPEI)


def completion(cid: int, who: str, course: str, day: str, hours: float) -> dict[str, Any]:
    kind, _, value = who.partition(":")
    return {
        "id": cid,
        "person": who,
        "employee_id": value if kind == "employee" else None,
        "member_id": int(value) if kind == "member" else None,
        "course_id": course,
        "completed_at": taipei(day),
        "day": day,
        "hours": hours,
        "imported_at": NOW,
    }


async def seed(engine: AsyncEngine) -> None:
    """Three civil servants (E1, E2 in agency A, linked to members 1 and 2; E3 in agency B,
    not linked), one citizen (member 3), and their completions, searches, chats, reminders."""
    now = NOW.astimezone(dt.UTC)
    async with create_sessionmaker(engine)() as session:
        await import_requirements(
            session,
            parse_requirements(
                {
                    "requirements": [
                        {
                            "code": "sec",
                            "title": "資通安全",
                            "hours": 3,
                            "categories": ["資訊安全"],
                            "deadline": "03-10",
                        },
                        {"code": "total", "title": "全年時數", "hours": 2, "scope": "any"},
                    ]
                }
            ),
            now=now,
        )
        await session.commit()
    async with engine.begin() as conn:
        await conn.execute(
            insert(Course),
            [
                {"id": "c-sec", "title": "資安", "category": "資訊安全", "hours": 2, "tags": []},
                {"id": "c-care", "title": "長照", "category": "長期照顧", "hours": 2, "tags": []},
                {"id": "c-ai", "title": "AI", "category": "人工智慧", "hours": 1, "tags": []},
            ],
        )
        await conn.execute(
            insert(Member),
            [
                {"id": 1, "is_civil_servant": True, "created_at": now},
                {"id": 2, "is_civil_servant": True, "created_at": now},
                {"id": 3, "is_civil_servant": False, "created_at": now},
            ],
        )
        await conn.execute(
            insert(CivilServant),
            [
                {
                    "employee_id": emp,
                    "name_sealed": "x",
                    "agency": agency,
                    "phone_hash": f"h{emp}",
                    "phone_sealed": "x",
                    "active": True,
                    "member_id": member,
                    "imported_at": now,
                    "updated_at": now,
                }
                for emp, agency, member in (("E1", "A", 1), ("E2", "A", 2), ("E3", "B", None))
            ],
        )
        await conn.execute(
            insert(Completion),
            [
                completion(1, "employee:E1", "c-sec", "2026-01-15", 2.0),
                completion(2, "employee:E1", "c-sec", "2026-03-12", 1.5),
                completion(3, "member:2", "c-care", "2026-02-03", 2.0),
                completion(4, "employee:E3", "c-ai", "2026-03-01", 1.0),
                completion(5, "member:3", "c-sec", "2026-02-01", 5.0),  # a citizen
            ],
        )
        searches = [("長照", 5)] * 3 + [("量子運算", 0)] * 2 + [("量子運算 入門", 0), ("區塊鏈", 0)]
        await conn.execute(
            insert(SearchLog),
            [
                {
                    "query": q,
                    "normalised": q,
                    "result_count": n,
                    "channel": "line",
                    "created_at": taipei("2026-02-10"),
                }
                for q, n in searches
            ]
            + [
                {
                    "query": "去年",
                    "normalised": "去年",
                    "result_count": 0,
                    "channel": "line",
                    "created_at": taipei("2025-01-10"),
                }
            ],
        )
        events = [
            ("line", "U1", "message", taipei("2026-03-02", 10)),
            ("line", "U1", "message", taipei("2026-03-04", 10)),
            ("telegram", "T1", "message", taipei("2026-03-02", 0, 30)),  # Sunday in UTC
            ("line", "U2", "message", taipei("2026-03-09", 9)),
            ("line", "U1", "unfollow", taipei("2026-03-10", 9)),
        ]
        await conn.execute(
            insert(InboundEvent),
            [
                {
                    "channel": ch,
                    "event_id": f"ev{i}",
                    "kind": kind,
                    "sender": sender,
                    "status": "done",
                    "received_at": at,
                    "payload": {},
                }
                for i, (ch, sender, kind, at) in enumerate(events)
            ],
        )
        await conn.execute(
            insert(ReminderDigest),
            [
                {
                    "member_id": member,
                    "day": day,
                    "outbox_key": f"reminder:{member}:{day}",
                    "open_requirements": 1,
                    "created_at": taipei(day, 9),
                }
                for member, day in ((1, "2026-03-06"), (2, "2026-03-15"))
            ],
        )


@pytest.fixture
async def admin(served, engine) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:  # type: ignore[no-untyped-def]
    await seed(engine)
    async with (
        served(admin_token=TOKEN) as (url, api),
        httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH) as http,
    ):
        yield http, api


async def rollups(api: Any, now: dt.datetime = NOW) -> Any:
    return await api.state.runtime.jobs.require("rollups").run(now.astimezone(dt.UTC))


async def board(http: httpx.AsyncClient, name: str, **params: Any) -> dict[str, Any]:
    response = await http.get(f"/admin/api/dashboards/{name}", params={"year": 2026, **params})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def table(body: dict[str, Any], *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in columns) for row in body["rows"]]


async def test_dashboards_show_the_hand_computed_numbers(admin) -> None:  # type: ignore[no-untyped-def]
    http, api = admin
    assert (await board(http, "topics"))["rows"] == []  # nothing before the job has run
    await rollups(api)

    topics = await board(http, "topics")
    assert table(topics, "month", "agency", "category", "hours", "completions") == [
        (1, "A", "資訊安全", 2.0, 1),
        (2, "A", "長期照顧", 2.0, 1),  # E2 named by member id
        (3, "A", "資訊安全", 1.5, 1),
        (3, "B", "人工智慧", 1.0, 1),
    ]  # the citizen's five hours are not a civil servant's
    march_b = await board(http, "topics", month_from=3, month_to=3, agency="B")
    assert table(march_b, "month", "agency", "hours") == [(3, "B", 1.0)]

    compliance = await board(http, "compliance", month_to=3)
    assert table(
        compliance, "requirement", "agency", "people", "met", "share_met", "met_by_deadline"
    ) == [
        ("sec", "A", 2, 1, 0.5, 0),  # E1: 2 h by 03-10, 3.5 h by March's end
        ("sec", "B", 1, 0, 0.0, 0),
        ("total", "A", 2, 2, 1.0, 2),
        ("total", "B", 1, 0, 0.0, 0),
    ]
    assert compliance["rows"][0]["deadline"] == "2026-03-10"
    january = await board(http, "compliance", month_to=1, agency="A")
    assert table(january, "requirement", "met") == [("sec", 0), ("total", 1)]

    reminders = await board(http, "reminders")
    # 03-06: member 1 reminded, completed 03-12 (within 7 days); member 2 not yet reminded,
    # completed nothing then. 03-15 is not measured before 03-23.
    assert table(
        reminders,
        "month",
        "agency",
        "reminder_days",
        "reminded",
        "reminded_completed",
        "not_reminded",
        "not_reminded_completed",
    ) == [(3, "A", 1, 1, 1, 1, 0)]
    assert reminders["rows"][0]["reminded_rate"] == 1.0

    search = await board(http, "search")
    assert table(search, "kind", "query", "searches", "zero_results") == [
        ("top", "長照", 3, 0),
        ("top", "量子運算", 2, 2),
        ("top", "區塊鏈", 1, 1),
        ("top", "量子運算 入門", 1, 1),
        ("zero_result", "量子運算", 2, 2),
        ("zero_result", "區塊鏈", 1, 1),
        ("zero_result", "量子運算 入門", 1, 1),
        ("to_produce", "量子運算", 3, 3),
        ("to_produce", "區塊鏈", 1, 1),
    ]
    assert search["rows"][7]["related"] == "量子運算 / 量子運算 入門"

    channels = await board(http, "channels", month_from=3, month_to=3)
    assert table(channels, "week", "channel", "active_members") == [
        ("2026-03-02", "line", 1),  # U1 twice
        ("2026-03-02", "telegram", 1),  # 00:30 Monday in Taipei, Sunday in UTC
        ("2026-03-09", "line", 1),  # U2; U1's unfollow is not activity
    ]

    campaigns = await board(http, "campaigns")
    assert campaigns["columns"][3:] == ["eligible", "opened", "verified", "claimed"]
    assert campaigns["rows"] == []  # no campaign here: the funnel is in tests/test_campaigns.py

    # A week later 03-15's window has closed: member 2 reminded, nothing completed; member 1
    # was reminded before, so there is nobody left to compare with.
    await rollups(api, NOW + dt.timedelta(days=5))
    reminders = await board(http, "reminders")
    assert table(reminders, "reminder_days", "reminded", "reminded_completed", "not_reminded") == [
        (2, 2, 1, 1)
    ]


async def test_new_rows_after_the_watermark_are_absorbed_once(admin, engine) -> None:  # type: ignore[no-untyped-def]
    http, api = admin
    await rollups(api)
    before = {name: await board(http, name) for name in NAMES}
    await rollups(api)
    assert {name: await board(http, name) for name in NAMES} == before  # a re-run: no change

    async with engine.begin() as conn:
        await conn.execute(
            insert(Completion), [completion(6, "employee:E2", "c-sec", "2026-03-18", 3.0)]
        )
        await conn.execute(
            insert(SearchLog),
            [
                {
                    "query": "長照",
                    "normalised": "長照",
                    "result_count": 2,
                    "channel": "telegram",
                    "created_at": taipei("2026-03-01"),
                }
            ],
        )
    # Two runs at once: one absorbs the new rows, the other finds nothing left.
    await asyncio.gather(rollups(api), rollups(api))
    topics = await board(http, "topics", month_from=3, month_to=3, agency="A")
    assert table(topics, "category", "hours", "completions") == [("資訊安全", 4.5, 2)]
    compliance = await board(http, "compliance", month_to=3, agency="A")
    assert table(compliance, "requirement", "met", "met_by_deadline") == [
        ("sec", 2, 0),
        ("total", 2, 2),
    ]
    search = await board(http, "search")
    assert search["rows"][0] == {
        "kind": "top",
        "query": "長照",
        "searches": 4,
        "zero_results": 0,
        "related": "",
    }
    after = {name: await board(http, name) for name in NAMES}
    await rollups(api)
    assert {name: await board(http, name) for name in NAMES} == after

    # A row committed late with an id below the watermark (PostgreSQL hands out ids before
    # commit): the run saw the gap and looks for it again.
    async with engine.begin() as conn:
        await conn.execute(
            insert(Completion), [completion(9, "employee:E3", "c-ai", "2026-03-19", 1.0)]
        )
    await rollups(api)
    async with engine.connect() as conn:
        mark = (
            await conn.execute(
                select(RollupWatermark.last_id, RollupWatermark.gaps).where(
                    RollupWatermark.source == "completion"
                )
            )
        ).one()
    assert mark.last_id == 9
    assert [g[:2] for g in mark.gaps] == [[7, 8]]
    async with engine.begin() as conn:
        await conn.execute(
            insert(Completion), [completion(7, "employee:E3", "c-ai", "2026-03-17", 1.0)]
        )
    await rollups(api)
    await rollups(api)
    topics = await board(http, "topics", month_from=3, month_to=3, agency="B")
    assert table(topics, "category", "hours", "completions") == [("人工智慧", 3.0, 3)]


async def test_compliance_counted_run_by_run_equals_a_rebuild_from_the_raw_rows(
    admin,  # type: ignore[no-untyped-def]
    engine: AsyncEngine,
) -> None:
    """Compliance is updated by who newly crosses a requirement's hours; after several runs
    (someone crossing, someone already over, someone inactive, a month with no hours) it is
    exactly what a rebuild from every raw row gives."""
    http, api = admin
    await rollups(api)
    batches = [
        [completion(20, "employee:E2", "c-sec", "2026-02-05", 1.0)],  # E2: 1 of 3 (sec)
        [
            completion(21, "employee:E2", "c-sec", "2026-04-02", 2.5),  # crosses in April
            completion(22, "employee:E1", "c-sec", "2026-05-01", 1.0),  # already over
            completion(23, "employee:E3", "c-care", "2026-03-05", 4.0),  # B: total only
        ],
        [completion(24, "member:2", "c-ai", "2026-06-30", 0.5)],
    ]
    for batch in batches:
        async with engine.begin() as conn:
            await conn.execute(insert(Completion), batch)
        await rollups(api)

    async def every_month() -> list[list[dict[str, Any]]]:
        return [(await board(http, "compliance", month_to=m))["rows"] for m in range(1, 13)]

    counted = await every_month()
    async with engine.begin() as conn:  # forget the rules: the next run rebuilds
        await conn.execute(
            RollupWatermark.__table__.update()
            .where(RollupWatermark.source == "completion")
            .values(fingerprint="")
        )
    await rollups(api)
    rebuilt = await every_month()
    assert counted == rebuilt
    # sec in agency A: E1 reached 3 h in March (2 + 1.5), E2 in April (1 + 2.5); by the
    # 03-10 deadline E1 had 2 h and E2 1 h, so nobody met it in time.
    sec_a = [
        next(
            (r["met"], r["met_by_deadline"])
            for r in month
            if r["requirement"] == "sec" and r["agency"] == "A"
        )
        for month in rebuilt[:6]
    ]
    assert sec_a == [(0, 0), (0, 0), (1, 0), (2, 0), (2, 0), (2, 0)]


async def test_a_requirement_matched_by_title_keywords_counts_in_compliance(
    admin,  # type: ignore[no-untyped-def]
    engine: AsyncEngine,
) -> None:
    """A requirement that finds its courses by title words (the catalog has no category
    for it) counts them on the dashboard too, as it does in chat."""
    http, api = admin
    async with create_sessionmaker(engine)() as session:
        await import_requirements(
            session,
            parse_requirements(
                {
                    "requirements": [
                        {
                            "code": "care",
                            "title": "長照政策",
                            "hours": 2,
                            "title_keywords": ["長照"],
                            "deadline": "12-31",
                        }
                    ]
                }
            ),
            now=NOW,
        )
        await session.commit()
    await rollups(api)
    compliance = await board(http, "compliance", month_to=3, agency="A")
    # E2 completed 長照 (c-care, category 長期照顧) for 2 h in February.
    assert table(compliance, "requirement", "met", "met_by_deadline") == [("care", 1, 1)]


async def test_a_changed_requirement_rebuilds_compliance(admin, engine) -> None:  # type: ignore[no-untyped-def]
    http, api = admin
    await rollups(api)
    async with create_sessionmaker(engine)() as session:
        await import_requirements(
            session,
            parse_requirements(
                {
                    "requirements": [
                        {
                            "code": "sec",
                            "title": "資通安全",
                            "hours": 1.5,
                            "categories": ["資訊安全"],
                            "deadline": "03-10",
                        }
                    ]
                }
            ),
            now=NOW,
        )
        await session.commit()
    await rollups(api)
    compliance = await board(http, "compliance", month_to=3)
    assert table(compliance, "requirement", "agency", "met", "met_by_deadline") == [
        ("sec", "A", 1, 1),
        ("sec", "B", 0, 0),
    ]
    topics = await board(http, "topics")
    assert sum(r["completions"] for r in topics["rows"]) == 4  # topics were not counted twice


def csv_rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


async def test_csv_holds_the_same_numbers_as_json(admin) -> None:  # type: ignore[no-untyped-def]
    http, api = admin
    await rollups(api)
    for name in NAMES:
        body = await board(http, name)
        response = await http.get(
            f"/admin/api/dashboards/{name}", params={"year": 2026, "format": "csv"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert f"{name}-2026-01-12.csv" in response.headers["content-disposition"]
        header, *rows = csv_rows(response.text)
        assert header == body["columns"]
        expected = [["" if r[c] is None else str(r[c]) for c in header] for r in body["rows"]]
        assert rows == expected
        assert len(rows) == len(body["rows"])
        if name != "campaigns":
            assert rows, name


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("year=abc", 422),
        ("year=1999", 422),
        ("month_from=13", 422),
        ("month_from=5&month_to=2", 400),
        ("format=xml", 422),
        ("agency=", 422),
        (f"agency={'x' * 201}", 422),
    ],
)
async def test_bad_filters_are_refused_with_4xx(admin, query, status) -> None:  # type: ignore[no-untyped-def]
    http, _ = admin
    for name in NAMES:
        response = await http.get(f"/admin/api/dashboards/{name}?{query}")
        assert response.status_code == status, (name, query, response.text)


async def test_agency_is_refused_where_the_source_has_none(admin) -> None:  # type: ignore[no-untyped-def]
    http, _ = admin
    for name in ("search", "channels", "campaigns"):
        response = await http.get(f"/admin/api/dashboards/{name}?agency=A")
        assert response.status_code == 400
        assert "agency" in response.json()["detail"]
    assert (await http.get("/admin/api/dashboards/topics?agency=A")).status_code == 200
    assert (await http.get("/admin/api/dashboards/nonsense")).status_code == 404


async def test_the_admin_token_is_needed(admin) -> None:  # type: ignore[no-untyped-def]
    http, _ = admin
    for name in NAMES:
        for headers in ({"authorization": ""}, {"authorization": "Bearer wrong"}):
            response = await http.get(f"/admin/api/dashboards/{name}", headers=headers)
            assert response.status_code == 401
        assert (await http.get(f"/admin/api/dashboards/{name}")).status_code == 200


# The contract ("Who may do what"): analyst and auditor see every dashboard, marketer only
# campaigns and channels; checked with a named account and its own token per role.
ALLOWED = {
    "admin": set(NAMES),
    "analyst": set(NAMES),
    "auditor": set(NAMES),
    "marketer": {"campaigns", "channels"},
}


async def test_each_role_sees_exactly_its_dashboards(served) -> None:  # type: ignore[no-untyped-def]
    from models.accounts import create_account, issue_token
    from models.base import utcnow

    async with served() as (url, api), httpx.AsyncClient(base_url=url, timeout=30) as http:
        tokens = {}
        async with api.state.runtime.sessionmaker() as session:
            for role in ALLOWED:
                account = await create_account(
                    session,
                    email=f"{role}@example.org",
                    role=role,
                    password="correct horse battery staple " + role,
                    created_by="test",
                    now=utcnow(),
                )
                tokens[role] = await issue_token(session, account=account, label="t", now=utcnow())
            await session.commit()
        for role, allowed in ALLOWED.items():
            for name in NAMES:
                for fmt in ("json", "csv"):
                    response = await http.get(
                        f"/admin/api/dashboards/{name}?format={fmt}",
                        headers={"authorization": f"Bearer {tokens[role]}"},
                    )
                    assert response.status_code == (200 if name in allowed else 403), (
                        role,
                        name,
                    )
        assert (await http.get("/admin/api/dashboards/topics")).status_code == 401


async def test_senders_are_kept_only_while_their_week_can_change(admin, engine) -> None:  # type: ignore[no-untyped-def]
    http, api = admin
    await rollups(api)  # 20 March: this week is 16 March's, the last 9 March's
    async with engine.connect() as conn:
        weeks = (await conn.execute(select(ChannelActivity.week).distinct())).scalars().all()
    assert sorted(weeks) == ["2026-03-09"]  # 2 March's senders are gone, its count stays
    async with engine.begin() as conn:
        await conn.execute(
            insert(InboundEvent),
            [
                {
                    "channel": "line",
                    "event_id": f"late{i}",
                    "kind": "message",
                    "sender": sender,
                    "status": "done",
                    "received_at": at,
                    "payload": {},
                }
                for i, (sender, at) in enumerate(
                    [("U9", taipei("2026-03-03")), ("U3", taipei("2026-03-11"))]
                )
            ],
        )
    await rollups(api)
    channels = await board(http, "channels", month_from=3, month_to=3)
    assert table(channels, "week", "channel", "active_members") == [
        ("2026-03-02", "line", 1),  # a closed week: the late row is left out
        ("2026-03-02", "telegram", 1),
        ("2026-03-09", "line", 2),  # U2 and U3
    ]


async def test_the_page_has_a_label_for_every_dashboard_and_column(admin) -> None:  # type: ignore[no-untyped-def]
    from admin.dashboards import boards_for, page_labels
    from bot.i18n import Catalog

    http, api = admin
    await rollups(api)
    catalog = Catalog()
    for lang in ("zh-TW", "en"):
        labels = page_labels(catalog, lang)
        for name in NAMES:
            assert labels[f"name.{name}"]
            assert labels[f"note.{name}"]  # what the numbers mean, in this language
            for column in (await board(http, name))["columns"]:
                assert labels[f"column.{column}"], (lang, name, column)
    assert boards_for(frozenset({"marketer"})) == ["campaigns", "channels"]
    assert boards_for(frozenset({"analyst"})) == list(NAMES)
    assert boards_for(frozenset({"admin"})) == list(NAMES)


async def test_a_roster_arriving_after_the_completions_counts_them(admin, engine) -> None:  # type: ignore[no-untyped-def]
    http, api = admin
    async with engine.begin() as conn:
        await conn.execute(
            insert(Completion), [completion(6, "employee:E4", "c-care", "2026-02-20", 2.0)]
        )
    await rollups(api)
    topics = await board(http, "topics", month_from=2, month_to=2, agency="C")
    assert topics["rows"] == []  # E4 is not on the roster yet
    async with engine.begin() as conn:
        await conn.execute(
            insert(CivilServant),
            [
                {
                    "employee_id": "E4",
                    "name_sealed": "x",
                    "agency": "C",
                    "phone_hash": "hE4",
                    "phone_sealed": "x",
                    "active": True,
                    "imported_at": NOW,
                    "updated_at": NOW + dt.timedelta(hours=1),
                }
            ],
        )
    await rollups(api)
    topics = await board(http, "topics", month_from=2, month_to=2, agency="C")
    assert table(topics, "category", "hours") == [("長期照顧", 2.0)]
    compliance = await board(http, "compliance", month_to=2, agency="C")
    assert table(compliance, "requirement", "people", "met") == [("sec", 1, 0), ("total", 1, 1)]
    everyone = await board(http, "topics")
    assert sum(r["completions"] for r in everyone["rows"]) == 5  # nothing counted twice


async def test_a_repeated_view_is_answered_from_the_last_run_until_the_next(
    admin,  # type: ignore[no-untyped-def]
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The figures change only when the rollups job runs, so the same view is computed once
    per run; the next run (with new rows) is read again."""
    from models import dashboards

    http, api = admin
    await rollups(api)
    calls: list[str] = []
    real = dashboards.READERS["topics"]

    async def counted(session: Any, filters: Any) -> Any:
        calls.append(filters.agency or "")
        return await real(session, filters)

    monkeypatch.setitem(dashboards.READERS, "topics", counted)
    first = await board(http, "topics")
    assert await board(http, "topics") == first
    assert (await http.get("/admin/api/dashboards/topics?year=2026&format=csv")).status_code == 200
    assert calls == ["", ""]  # the JSON once, the CSV once
    await board(http, "topics", agency="A")
    assert calls == ["", "", "A"]  # another view is its own answer
    async with engine.begin() as conn:
        await conn.execute(
            insert(Completion), [completion(30, "employee:E1", "c-ai", "2026-03-19", 1.0)]
        )
    await rollups(api)  # the same `now` as before: the run still moves the watermark
    after = await board(http, "topics")
    assert len(calls) == 4
    assert sum(r["hours"] for r in after["rows"]) == sum(r["hours"] for r in first["rows"]) + 1


def test_the_answer_cache_keeps_to_its_memory_budget_and_its_versions() -> None:
    from admin.dashboards import Answer, AnswerCache

    cache = AnswerCache(budget_bytes=10)
    for key in ("a", "b", "c"):
        cache.put((key,), 1, Answer("text/plain", "x" * 4, {}))
    assert cache.get(("a",), 1) is None  # the least recent went to keep within 10 bytes
    assert cache.get(("b",), 1) is not None
    assert cache.get(("c",), 2) is None  # another version of the figures: computed again
    assert cache.used == 8
    cache.put(("b",), 1, Answer("text/plain", "y" * 6, {}))  # replaced, not added
    assert cache.used == 10
    cache.put(("huge",), 1, Answer("text/plain", "z" * 11, {}))  # over the budget: not kept
    assert cache.get(("huge",), 1) is None
    assert cache.used == 10
