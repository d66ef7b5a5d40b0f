"""TELEGRAM_MODE=polling through the real app: the lifespan long-polls the (fake) Bot API,
and each update goes through the same record-then-process pipeline as the webhook."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from models.inbound import DONE, InboundEvent
from tests.dialog import eventually
from tests.fakes.telegram import CHAT, TOKEN, FakeTelegram


def _text_update(update_id: int, text: str) -> dict[str, Any]:
    user = {"id": CHAT, "is_bot": False, "first_name": "Mei", "language_code": "zh-hant"}
    chat = {"id": CHAT, "first_name": "Mei", "type": "private"}
    message = {"message_id": update_id, "from": user, "chat": chat, "date": 1767600000}
    return {"update_id": update_id, "message": {**message, "text": text}}


async def test_polling_answers_each_update_and_confirms_the_offset(served: Any) -> None:
    async with FakeTelegram() as fake:
        fake.webhook = {"url": "https://old.example/hook"}  # polling must clear it first
        fake.push_update(_text_update(700001, "說明"))
        async with served(
            telegram_bot_token=TOKEN,
            telegram_mode="polling",
            telegram_api_base_url=fake.api_base_url,
        ) as (_, api):
            first = await fake.wait_call("sendMessage", timeout=10)
            assert first.params["chat_id"] == CHAT
            assert "找課程" in first.params["text"]
            fake.push_update(_text_update(700002, "資安"))
            await eventually(lambda: len(fake.calls("sendMessage")) >= 2, within=10)
            runtime = api.state.runtime

            async def handled() -> int:
                async with runtime.sessionmaker() as session:
                    return int(
                        await session.scalar(
                            select(func.count())
                            .select_from(InboundEvent)
                            .where(InboundEvent.channel == "telegram", InboundEvent.status == DONE)
                        )
                        or 0
                    )

            async def both_handled() -> bool:  # and nothing else
                return await handled() == 2

            await eventually(both_handled, within=10)

        assert fake.calls("deleteWebhook")  # the old webhook was removed before polling
        assert len(fake.calls("sendMessage")) == 2  # one answer per update
        assert "資安" in fake.calls("sendMessage")[1].params["text"]
        # The offset past the last update was confirmed, so a restart does not fetch them again.
        assert max(c.params.get("offset", 0) for c in fake.calls("getUpdates")) == 700003
