"""The `edoor` command: clear messages and non-zero exits on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def edoor(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **env},
        timeout=120,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"


def test_migrate_seed_twice_and_run_a_job(db: str) -> None:
    assert edoor("migrate", database_url=db).returncode == 0
    first = edoor("seed-demo", database_url=db)
    assert first.returncode == 0, first.stderr
    again = edoor("seed-demo", database_url=db)
    assert "created 0" in again.stdout  # idempotent
    job = edoor("run-job", "recover-inbound", "--now", "2026-11-26T09:00", database_url=db)
    assert job.returncode == 0, job.stderr
    assert "recover-inbound: done" in job.stdout


def test_bad_input_is_refused_clearly(db: str, tmp_path: Path) -> None:
    edoor("migrate", database_url=db)
    unknown = edoor("run-job", "no-such-job", database_url=db)
    assert unknown.returncode == 2
    assert "unknown job 'no-such-job'" in unknown.stderr
    bad_time = edoor("run-job", "recover-inbound", "--now", "yesterday", database_url=db)
    assert bad_time.returncode == 2
    assert "ISO 8601" in bad_time.stderr
    missing = edoor("import-courses", str(tmp_path / "nope.csv"), database_url=db)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    broken = tmp_path / "broken.csv"
    broken.write_text("id,title,category,hours\nx-1,,資訊安全,abc\n", encoding="utf-8")
    refused = edoor("import-courses", str(broken), database_url=db)
    assert refused.returncode == 1
    assert "line 2" in refused.stderr
    assert "nothing changed" in refused.stderr


def test_configuration_errors_exit_2_with_the_reason(db: str) -> None:
    result = edoor("migrate", database_url=db, LINE_CHANNEL_SECRET="s" * 32)
    assert result.returncode == 2
    assert "LINE is half-configured" in result.stderr


def test_seed_demo_without_the_audio_tools_loads_the_catalog_and_says_what_it_skipped(
    db: str, tmp_path: Path
) -> None:
    # A machine where apt could not install espeak-ng and ffmpeg: `make run` must still start.
    bare = tmp_path / "bin"
    bare.mkdir()
    seeded = edoor("seed-demo", database_url=db, PATH=str(bare))
    assert seeded.returncode == 0, seeded.stderr
    assert "demo catalog: created" in seeded.stdout
    assert "demo podcasts skipped: espeak-ng, ffmpeg not installed" in seeded.stderr
    assert "demo podcasts: created" not in seeded.stdout
