"""What LINE and Telegram would show for a reply: the real renderers' own output, as JSON.

The simulator page draws its LINE and Telegram views from these (not from the neutral
Reply), so that whatever a platform's limits take away (LINE's 4 buttons a card, 20-character
labels, no share-phone button) is missing in development too.
"""

from __future__ import annotations

from typing import Any

from bot.line.render import render as line_render
from bot.messages import Reply, load_replies
from bot.telegram.render import render as telegram_render


def line_view(replies: list[Reply]) -> list[dict[str, Any]]:
    """The LINE message objects, as LINE receives them."""
    return [message.to_dict() for message in line_render(replies)]


def telegram_view(replies: list[Reply]) -> list[dict[str, Any]]:
    """The Bot API calls: {'method': 'sendMessage', 'params': {...}} without chat_id."""
    return [
        {"method": call.api_method, "params": call.json_params()}
        for call in telegram_render(replies)
    ]


def views(reply: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Both platforms' rendering of one stored reply."""
    replies = load_replies([reply])
    return {"line": line_view(replies), "telegram": telegram_view(replies)}
