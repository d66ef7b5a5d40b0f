"""What each platform lets a person do with a reply: the actions a Reply offers, and the
actions the LINE messages and Telegram calls built from it still offer. Read from the JSON
the platforms receive, independently of the renderers' own code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

LINE_MAX_BUTTONS = 4
LINE_MAX_LABEL = 20
LINE_MAX_QUICK = 13


def reply_actions(reply: dict[str, Any]) -> set[str]:
    """Every action id or link a neutral Reply (as JSON) offers."""
    found: set[str] = set()

    def add(items: list[dict[str, Any]]) -> None:
        for b in items:
            found.add(b.get("action") or b["url"])

    add(reply.get("buttons", []))
    add(reply.get("quick_replies", []))
    for card in reply.get("cards", []):
        add(card.get("buttons", []))
    if reply.get("more"):
        add([reply["more"]])
    if reply.get("cancel"):
        add([reply["cancel"]])
    return found


def reply_labels(reply: dict[str, Any]) -> dict[str, str]:
    """action or url -> label, for the cancel button that Telegram sends as typed words."""
    labels = {}
    for b in [
        *reply.get("buttons", []),
        *reply.get("quick_replies", []),
        *(b for c in reply.get("cards", []) for b in c.get("buttons", [])),
        *([reply["more"]] if reply.get("more") else []),
        *([reply["cancel"]] if reply.get("cancel") else []),
    ]:
        labels[b.get("action") or b["url"]] = b["label"]
    return labels


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def line_actions(messages: list[dict[str, Any]]) -> set[str]:
    """Postback data and links of every LINE action in these messages (buttons and quick
    replies)."""
    found: set[str] = set()
    for node in _walk(messages):
        if node.get("type") == "postback" and "data" in node:
            found.add(node["data"])
        elif node.get("type") == "uri" and "uri" in node:
            found.add(node["uri"])
    return found


def line_limit_errors(messages: list[dict[str, Any]]) -> list[str]:
    """What LINE would hide or cut: over 4 buttons on a bubble, labels over 20 characters,
    over 13 quick replies."""
    errors = []
    for node in _walk(messages):
        if node.get("type") == "bubble":
            count = sum(1 for n in _walk(node) if n.get("type") == "button")
            if count > LINE_MAX_BUTTONS:
                errors.append(f"{count} buttons on one bubble")
        if node.get("type") in ("postback", "uri") and len(node.get("label", "")) > LINE_MAX_LABEL:
            errors.append(f"label over 20 characters: {node['label']!r}")
        if "quickReply" in node and len(node["quickReply"]["items"]) > LINE_MAX_QUICK:
            errors.append("over 13 quick replies")
    return errors


def telegram_actions(calls: list[dict[str, Any]]) -> set[str]:
    """callback_data and links of inline keyboards; a reply keyboard's words as typed text."""
    found: set[str] = set()
    for node in _walk([c["params"] for c in calls]):
        if "callback_data" in node:
            found.add(node["callback_data"])
        elif "url" in node and "text" in node:
            found.add(node["url"])
        elif (
            "text" in node
            and set(node) <= {"text", "request_contact"}
            and not node.get("request_contact")
        ):
            found.add("typed:" + node["text"])
    return found


def dropped(
    reply: dict[str, Any], line: list[dict[str, Any]], telegram: list[dict[str, Any]]
) -> list[str]:
    """The actions of `reply` that the LINE or Telegram rendering lost (empty: none)."""
    wanted = reply_actions(reply)
    labels = reply_labels(reply)
    lost = [f"LINE lost {a!r}" for a in sorted(wanted - line_actions(line))]
    on_telegram = telegram_actions(telegram)
    # Telegram's AskPhone cancel is a reply-keyboard button: its label is sent as text.
    lost += [
        f"Telegram lost {a!r}"
        for a in sorted(wanted)
        if a not in on_telegram and f"typed:{labels[a]}" not in on_telegram
    ]
    return lost
