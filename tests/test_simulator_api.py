"""The simulator's JSON API through the real app: validation, proactive messages, personas,
the dev SMS phone inbox, and the page's own files."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from bot.messages import Audio, Button, Text
from models.base import utcnow
from models.members import get_account
from sms.providers import DevSmsProvider, SmsMessage
from tests.dialog import Chat, texts

PHONE = "0912-345-678"


async def test_inputs_that_say_nothing_are_refused_with_400_and_not_processed(
    chat: Chat,
) -> None:
    for body in (
        {"kind": "text", "text": ""},
        {"kind": "text", "text": "  \n "},
        {"kind": "action", "action": ""},
        {"kind": "contact"},
        {"kind": "contact", "phone": "   "},
    ):
        response = await chat.http.post("/simulator/api/send", json={"user": chat.user, **body})
        assert response.status_code == 400, body
        assert "empty" in response.json()["detail"]
    assert await chat.pending() == []  # nothing reached the router


async def test_bad_user_keys_personas_and_cursors_are_refused_with_422(chat: Chat) -> None:
    for user in ("", "has space", "<script>", "名字", "x" * 65):
        sent = await chat.http.post("/simulator/api/send", json={"user": user, "text": "help"})
        assert sent.status_code == 422, user
        polled = await chat.http.get("/simulator/api/messages", params={"user": user})
        assert polled.status_code == 422, user
    for body in (
        {"user": "citizen-1", "text": "help", "persona": "admin"},
        {"user": "citizen-1", "text": "help", "kind": "sticker"},
        {"user": "citizen-1", "text": "help", "after": -1},
    ):
        assert (await chat.http.post("/simulator/api/send", json=body)).status_code == 422, body
    assert (await chat.http.get("/simulator/api/messages")).status_code == 422  # no user
    polled = await chat.http.get("/simulator/api/messages", params={"user": "a", "after": "x"})
    assert polled.status_code == 422


async def test_polling_returns_proactive_messages_once_in_order_and_only_ones_own(
    served,  # type: ignore[no-untyped-def]
) -> None:
    async with served() as (url, api), httpx.AsyncClient(base_url=url) as http:
        chat = Chat(http, "citizen-1")
        assert "可以這樣跟我說" in texts(await chat.say("help"))
        assert await chat.pending() == []
        simulator = api.state.runtime.simulator
        # What the outbox dispatcher does for a reminder or an episode drop.
        await simulator.deliver(
            "citizen-1",
            [
                Text(
                    text="提醒：資安課程 12/31 截止", buttons=[Button(label="去上課", action="c:1")]
                ),
                Audio(url="/media/ep1.mp3", duration_ms=185_000, title="第 1 集"),
            ],
        )
        await simulator.deliver("someone-else", [Text(text="不是你的")])
        pending = await chat.pending()
        assert [r["kind"] for r in pending] == ["text", "audio"]
        assert pending[0]["buttons"] == [{"label": "去上課", "action": "c:1"}]
        assert pending[1]["duration_ms"] == 185_000
        assert await chat.pending() == []  # the cursor moved past them

        # A reply includes proactive rows that arrived since the client's cursor.
        await simulator.deliver("citizen-1", [Text(text="新的一集上架了")])
        replies = await chat.say("說明")
        assert [r["text"][:7] for r in replies] == ["新的一集上架了", "可以這樣跟我說"]
        response = await http.get("/simulator/api/messages", params={"user": "citizen-1"})
        rows = response.json()["messages"]
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        assert all(r["at"].endswith("+00:00") for r in rows)  # aware UTC, shown as Taipei time


async def test_civil_servant_persona_is_marked_on_first_use_and_others_are_not(
    served,  # type: ignore[no-untyped-def]
) -> None:
    async with served() as (url, api), httpx.AsyncClient(base_url=url) as http:
        listed = (await http.get("/simulator/api/personas")).json()["personas"]
        assert {p["id"]: p["user"] for p in listed} == {
            "new": None,
            "citizen": "citizen-1",
            "civil_servant": "civil-servant-1",
        }
        for persona, user in (("civil_servant", "civil-servant-1"), ("citizen", "citizen-1")):
            response = await http.post(
                "/simulator/api/send", json={"user": user, "persona": persona, "kind": "follow"}
            )
            assert "歡迎來到臺北e大" in texts([m["reply"] for m in response.json()["messages"]])
        # A second message as the civil servant keeps one member (no duplicate account).
        await http.post(
            "/simulator/api/send",
            json={"user": "civil-servant-1", "persona": "civil_servant", "text": "help"},
        )
        async with api.state.runtime.sessionmaker() as session:
            servant = await get_account(session, channel="simulator", external_id="civil-servant-1")
            citizen = await get_account(session, channel="simulator", external_id="citizen-1")
        assert servant is not None
        assert servant.member.is_civil_servant
        assert citizen is not None
        assert not citizen.member.is_civil_servant


async def test_phone_inbox_shows_dev_sms_for_the_number_however_typed_and_logs_nothing(
    served,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served() as (url, api), httpx.AsyncClient(base_url=url) as http:
        runtime = api.state.runtime
        provider = DevSmsProvider(runtime.services.vault)
        async with runtime.sessionmaker() as session:
            for to, body, user in (
                ("+886912345678", "驗證碼 482913", "citizen-1"),
                ("+886987654321", "別人的 771100", "citizen-1"),
                ("+886912345678", "另一位 550011", "someone-else"),
            ):
                message = SmsMessage(
                    to=to, body=body, reference=f"ref-{to[-4:]}", requester=f"simulator:{user}"
                )
                await provider.send(message, session=session, now=utcnow())
            await session.commit()

        async def inbox(phone: str, after: int = 0, user: str = "citizen-1") -> dict[str, object]:
            response = await http.get(
                "/simulator/api/sms", params={"phone": phone, "after": after, "user": user}
            )
            assert response.status_code == 200
            return response.json()  # type: ignore[no-any-return]

        for typed in ("0912-345-678", "+886 912 345 678", "886912345678", "０９１２３４５６７８"):
            data = await inbox(typed)
            assert data["valid"] is True, typed
            assert data["phone"] == "+886 912 345 678", typed
            assert [m["reply"]["text"] for m in data["messages"]] == ["驗證碼 482913"], typed
        assert (await inbox("0912345678", after=data["last"]))["messages"] == []
        assert [m["reply"]["text"] for m in (await inbox("0987654321"))["messages"]] == [
            "別人的 771100"
        ]
        assert (await inbox("0911111111"))["messages"] == []  # valid number, empty inbox
        # Each simulated person sees only the codes they asked for; no one sees them all.
        assert [
            m["reply"]["text"] for m in (await inbox(PHONE, user="someone-else"))["messages"]
        ] == ["另一位 550011"]
        assert (await inbox(PHONE, user="nobody"))["messages"] == []
        assert (await http.get("/simulator/api/sms", params={"phone": PHONE})).status_code == 422
        # Tolerant: half-typed or nonsense numbers give an empty, invalid inbox, not an error.
        for typed in ("", "09", "hello"):
            assert await inbox(typed) == {"valid": False, "phone": None, "messages": [], "last": 0}
        # The inbox is not the chat: a chat poll never shows SMS rows.
        chat = Chat(http, "citizen-1")
        assert await chat.pending() == []
    assert "482913" not in caplog.text
    assert "912345678" not in caplog.text
    assert "912 345 678" not in caplog.text


async def test_page_and_its_files_are_served_and_nothing_else(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url) as http:
        page = await http.get("/simulator")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert '<script src="/simulator/static/simulator.js"' in page.text
        assert "https://" not in page.text  # no CDN: the page must work offline
        for name, kind in (("simulator.js", "javascript"), ("simulator.css", "text/css")):
            response = await http.get(f"/simulator/static/{name}")
            assert response.status_code == 200
            assert kind in response.headers["content-type"]
            assert "https://" not in response.text
        js = (await http.get("/simulator/static/simulator.js")).text
        # Message text only ever reaches the page through textContent.
        for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in js, sink
        for name in ("simulator.html", "..%2Fsimulator.py", "nope.js", "%2E%2E%2F%2E%2E%2Fapp.py"):
            assert (await http.get(f"/simulator/static/{name}")).status_code == 404, name


async def test_simulator_is_absent_when_switched_off(served) -> None:  # type: ignore[no-untyped-def]
    async with served(simulator_enabled=False) as (url, _), httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/simulator")).status_code == 404
        assert (
            await http.get("/simulator/api/sms", params={"phone": "0912345678", "user": "a"})
        ).status_code == 404
        sent = await http.post("/simulator/api/send", json={"user": "a", "text": "help"})
        assert sent.status_code == 404


async def test_people_typing_at_once_each_get_their_answer_from_shared_batches(
    served,  # type: ignore[no-untyped-def]
) -> None:
    """The simulator's input joins the worker's batches, as a webhook's events do: 30 people
    at once are answered in fewer claim transactions than there are people, and each request
    returns with that person's own answer."""
    from sqlalchemy import event

    claims: list[str] = []

    def seen(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE inbound_event SET") and "claimed_at" in statement:
            claims.append(statement)

    async with served() as (url, api), httpx.AsyncClient(base_url=url, timeout=120) as http:
        engine = api.state.runtime.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            people = [Chat(http, f"rush-{i}", language="en") for i in range(30)]
            answers = await asyncio.gather(*(p.say("help") for p in people))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert all("You can tell me" in texts(a) for a in answers), answers
    assert 1 <= len(claims) < len(people), len(claims)
