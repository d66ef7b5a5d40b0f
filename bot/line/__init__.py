"""LINE: signature check, event parsing, Reply -> Messaging API rendering (render), sending
via the async SDK client (channel), the webhook route (routes), and the rich menu (richmenu)."""

from bot.line.channel import LineChannel
from bot.line.routes import line_routes, verify_signature

__all__ = ["LineChannel", "line_routes", "verify_signature"]
