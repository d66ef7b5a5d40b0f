"""Named periodic jobs: the scheduler triggers them, `edoor run-job NAME` runs one once.

A job is an async function of `now`; its effect is idempotent (the truth is in the database),
so a trigger that fires twice, on two nodes or after a restart, does no harm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

JobFn = Callable[[dt.datetime], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFn
    every_seconds: int | None = None  # interval trigger
    cron: dict[str, str] | None = None  # cron trigger fields, Asia/Taipei


class JobRegistry:
    """The jobs this process knows, by name."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        if job.name in self.jobs:
            raise ValueError(f"job {job.name!r} registered twice")
        self.jobs[job.name] = job

    def require(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise KeyError(f"unknown job {name!r} (known: {known})") from None
