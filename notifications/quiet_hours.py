"""Quiet hours: proactive messages wait while a person is likely asleep (Asia/Taipei).

Default 21:30-08:00; a member may choose their own window (member.quiet_hours). A message is
deferred to the end of the window, never dropped; replies and codes someone just asked for
are not proactive and are never held back.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from models.base import TAIPEI

_WINDOW = re.compile(
    r"^\s*([01]?\d|2[0-3])[:：]([0-5]\d)\s*[-–~]\s*([01]?\d|2[0-3])[:：]([0-5]\d)\s*$"
)
DEFAULT_QUIET_HOURS = "21:30-08:00"


@dataclass(frozen=True)
class QuietWindow:
    """A daily window in Taipei time; it may wrap midnight (21:30-08:00)."""

    start: dt.time
    end: dt.time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def until(self, now: dt.datetime) -> dt.datetime | None:
        """The end of the window if `now` is inside it (as UTC), else None."""
        local = now.astimezone(TAIPEI)
        t = local.time()
        if self.start == self.end:
            return None  # an empty window: never quiet
        if self.start < self.end:
            inside = self.start <= t < self.end
            end_day = local.date()
        else:
            inside = t >= self.start or t < self.end
            end_day = local.date() + dt.timedelta(days=1) if t >= self.start else local.date()
        if not inside:
            return None
        return dt.datetime.combine(end_day, self.end, tzinfo=TAIPEI).astimezone(dt.UTC)

    def next_allowed(self, moment: dt.datetime) -> dt.datetime:
        """`moment`, or the end of the window when `moment` falls inside it."""
        return self.until(moment) or moment


@functools.lru_cache(maxsize=256)  # a sweep asks once per person; few distinct windows
def parse_window(value: str) -> QuietWindow:
    """'21:30-08:00' -> QuietWindow; ValueError for anything else."""
    match = _WINDOW.match(value)
    if match is None:
        raise ValueError(f"quiet hours are HH:MM-HH:MM (Taipei time), not {value!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return QuietWindow(dt.time(h1, m1), dt.time(h2, m2))


DEFAULT_WINDOW = parse_window(DEFAULT_QUIET_HOURS)


def window_for(member_value: str | None, default: QuietWindow = DEFAULT_WINDOW) -> QuietWindow:
    """The member's own window when set and valid, else the default."""
    if member_value:
        try:
            return parse_window(member_value)
        except ValueError:
            return default
    return default
