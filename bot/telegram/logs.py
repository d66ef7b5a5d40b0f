"""Keep the bot token out of every log line.

Telegram puts the token in the URL path (`.../bot<TOKEN>/sendMessage`); httpx logs each
request URL at INFO and PTB logs its base URL at DEBUG. A logging filter only sees records of
the logger it is attached to (not of its children), so it is attached to every existing
`httpx`, `httpcore` and `telegram` logger.
"""

from __future__ import annotations

import logging

MASK = "***"
PROTECTED_PREFIXES = ("httpx", "httpcore", "telegram", "edoor.telegram")


class SecretMaskFilter(logging.Filter):
    """Replaces known secret values in a record's message and traceback with ***."""

    def __init__(self) -> None:
        super().__init__("edoor.secrets")
        self.secrets: set[str] = set()

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the masked traceback is what prints.
            record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True


_FILTER = SecretMaskFilter()


def protect_logs(*secrets: str) -> SecretMaskFilter:
    """Mask these values in every httpx/httpcore/telegram log record, from now on."""
    _FILTER.secrets.update(s for s in secrets if s)
    names = set(PROTECTED_PREFIXES)
    names.update(
        name
        for name in logging.root.manager.loggerDict
        if name.startswith(tuple(f"{p}." for p in PROTECTED_PREFIXES))
    )
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER
