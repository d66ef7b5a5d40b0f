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


def test_migrate_seed_twice_and_run_a_job(db: str, tmp_path: Path) -> None:
    media = str(tmp_path / "media")  # not the checkout's ./var/media
    assert edoor("migrate", database_url=db).returncode == 0
    first = edoor("seed-demo", database_url=db, MEDIA_DIR=media)
    assert first.returncode == 0, first.stderr
    again = edoor("seed-demo", database_url=db, MEDIA_DIR=media)
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
    seeded = edoor("seed-demo", database_url=db, PATH=str(bare), MEDIA_DIR=str(tmp_path / "m"))
    assert seeded.returncode == 0, seeded.stderr
    assert "demo catalog: created" in seeded.stdout
    assert "demo podcasts skipped: espeak-ng, ffmpeg not installed" in seeded.stderr
    assert "demo podcasts: created" not in seeded.stdout


def test_import_roster_applies_a_good_file_and_refuses_a_bad_one_whole(
    db: str, tmp_path: Path
) -> None:
    edoor("migrate", database_url=db)
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "employee_id,name,agency,mobile,email,active\n"
        "E001,王小明,臺北市政府資訊局,0912345678,ming@gov.taipei,是\n"
        "E002,李小華,臺北市政府衛生局,0922333444,hua@gov.taipei,否\n",
        encoding="utf-8",
    )
    applied = edoor("import-roster", str(roster), database_url=db)
    assert applied.returncode == 0, applied.stderr
    assert "rows 2: added 2" in applied.stdout
    again = edoor("import-roster", str(roster), database_url=db)
    assert "added 0" in again.stdout  # idempotent

    broken = tmp_path / "broken.csv"
    broken.write_text(
        "employee_id,name,agency,mobile,email,active\n"
        "E003,陳大同,臺北市政府工務局,0912-34,tung@gov.taipei,是\n",
        encoding="utf-8",
    )
    refused = edoor("import-roster", str(broken), database_url=db)
    assert refused.returncode == 1
    assert "refused, nothing changed" in refused.stderr
    assert "line 2, column mobile" in refused.stderr
    # Nothing personal is echoed back: the bad value is named by its column, not printed.
    assert "0912-34" not in refused.stderr
    assert "0912345678" not in applied.stdout
    after = edoor("import-roster", str(roster), database_url=db)
    assert "rows 2: added 0" in after.stdout  # the refused file changed nothing


def test_rotate_pii_key_needs_the_previous_key_and_reports_counts_only(db: str) -> None:
    old, new = "o" * 40, "n" * 40
    edoor("migrate", database_url=db, PII_KEY=old)
    missing = edoor("rotate-pii-key", database_url=db, PII_KEY=new)
    assert missing.returncode == 2
    assert "PII_KEY_PREVIOUS" in missing.stderr
    rotated = edoor("rotate-pii-key", database_url=db, PII_KEY=new, PII_KEY_PREVIOUS=old)
    assert rotated.returncode == 0, rotated.stderr
    assert '"reencrypted"' in rotated.stdout
    assert old not in rotated.stdout + rotated.stderr
    assert new not in rotated.stdout + rotated.stderr


def test_podcast_create_tts_and_upload_from_the_command_line(db: str, tmp_path: Path) -> None:
    media = {"MEDIA_DIR": str(tmp_path / "media")}
    created = edoor("podcast", "create", "cli-demo", "--title", "指令列測試", database_url=db)
    assert created.returncode == 0, created.stderr
    assert "podcast cli-demo: created" in created.stdout
    script = tmp_path / "lesson.txt"
    script.write_text("大家好，這是一堂示範課。", encoding="utf-8")
    spoken = edoor(
        "podcast", "tts", "cli-demo", str(script), "--title", "第一集", database_url=db, **media
    )
    assert spoken.returncode == 0, spoken.stderr
    assert "cli-demo episode 1:" in spoken.stdout
    assert list((tmp_path / "media").rglob("*.m4a"))

    not_audio = tmp_path / "lesson.mp3"
    not_audio.write_bytes(b"this is not audio")
    refused = edoor("podcast", "upload", "cli-demo", str(not_audio), database_url=db, **media)
    assert refused.returncode == 2
    assert "refused, nothing imported" in refused.stderr
    assert len(list((tmp_path / "media").rglob("*.m4a"))) == 1  # nothing half-imported
    unknown = edoor("podcast", "tts", "no-such", str(script), "--title", "x", database_url=db)
    assert unknown.returncode == 2
