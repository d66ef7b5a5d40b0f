"""Structured (JSON) logs that never carry personal data or secrets.

Every record passes a filter that masks the configured secrets (tokens also appear inside
URLs: Telegram's API URLs contain the bot token, and httpx logs request URLs) and anything
shaped like a phone number or a one-time code.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from bot.redact import mask_text

_STD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class SecretFilter(logging.Filter):
    """Masks secrets and phone-like digit runs in the message, its args and its extras."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))
            if secrets
            else None
        )

    def clean(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub("[secret]", text)
        # Codes are 6 digits and phone numbers longer; shorter runs (line numbers) stay.
        return mask_text(text, min_digits=6)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.clean(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, self.clean(value))
        if record.exc_info and record.exc_info[1] is not None:
            # Exception text can quote user input; keep the type and the traceback's frames.
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "t": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


_base_factory = logging.getLogRecordFactory()


def _install_record_factory(secret_filter: SecretFilter) -> None:
    """Clean every record where it is made, so that any handler (even one added later, such
    as pytest's) sees only the masked message."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = _base_factory(*args, **kwargs)
        try:
            record.msg = secret_filter.clean(record.getMessage())
            record.args = None
        except Exception:  # a broken format string must not lose the record
            record.msg = secret_filter.clean(str(record.msg))
            record.args = None
        return record

    logging.setLogRecordFactory(factory)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record arrives, not to the stream it was at
    set-up (a CLI run inside a test runner replaces and closes its stderr between runs)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock (Handler.handle holds it)
        super().emit(record)


def configure_logging(*, level: str, secrets: list[str], json_output: bool = True) -> None:
    """Mask secrets in every record, and log JSON lines to stderr."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    secret_filter = SecretFilter(secrets)
    _install_record_factory(secret_filter)
    if not any(getattr(h, "_edoor", False) for h in root.handlers):
        handler: logging.Handler = _StderrHandler(sys.stderr)
        handler._edoor = True  # type: ignore[attr-defined]
        handler.setFormatter(JsonFormatter() if json_output else logging.Formatter())
        root.addHandler(handler)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, SecretFilter)]:
            handler.removeFilter(old)
        handler.addFilter(secret_filter)
    # Request URLs carry the Telegram token: keep the HTTP client loggers quiet.
    # Database drivers log statement parameters at DEBUG (typed text, codes): never below INFO.
    for name in (
        "httpx",
        "httpcore",
        "telegram.request",
        "hpack",
        "aiosqlite",
        "asyncpg",
        "sqlalchemy.engine",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The scheduler says "running job ... executed successfully" twice every 10 s at INFO:
    # only its warnings and errors (a job that failed or was skipped) are news.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
