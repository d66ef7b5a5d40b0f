"""A private PostgreSQL server for one test, so it can be stopped and started for real
without touching the shared server other tests use. Built from the same Debian binaries
(`initdb`, `pg_ctl`); run as the `postgres` user when the tests run as root, as initdb
refuses root."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bindir() -> Path:
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parents[1].name  # /usr/lib/postgresql/<version>/bin/pg_ctl
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    found = shutil.which("pg_ctl") or max(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version, default=None
    )
    if found is None:
        raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    return Path(found).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """initdb into a fresh directory, then start and stop a server on a free loopback port."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and the server runs
        # as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="edoor-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.bin = _bindir()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, user="postgres", group="postgres")
            self.root.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    async def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off"
        )
        await asyncio.to_thread(
            self._run,
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            str(self.root / "server.log"),
            "start",
        )

    async def stop(self) -> None:
        # "fast": sessions are cut at once, as in a restart by an operator or a failover.
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"
        )

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
