"""LINE: signature check, event parsing, Reply -> Messaging API rendering, sending via the
async SDK client (channel), the webhook route, and the rich menu."""
