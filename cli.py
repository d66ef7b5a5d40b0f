"""The `edoor` command line: serve, worker, migrate, imports, jobs, chat and platform set-up.

Every command prints a clear message and exits non-zero on bad input.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.settings import ConfigError, Settings
from models.base import TAIPEI

cli = typer.Typer(
    help="edoor: the chat front door of Taipei e-University.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

if TYPE_CHECKING:
    from app import Runtime


def _settings() -> Settings:
    try:
        return Settings().ensure_valid()
    except (ConfigError, ValueError) as exc:
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _run(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Build the runtime, run `fn(runtime)` on it, and close it."""
    from app import build_runtime

    async def main() -> Any:
        runtime = build_runtime(_settings())
        try:
            return await fn(runtime)
        finally:
            await runtime.close()

    return asyncio.run(main())


class _Database:
    """What the account and audit commands need: a sessionmaker (not the whole runtime,
    which loads the platform SDKs)."""

    def __init__(self, settings: Settings) -> None:
        from models.db import create_engine, create_sessionmaker

        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.sessionmaker = create_sessionmaker(self.engine)


def _run_db(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `fn(db)` with a sessionmaker on the configured database."""

    async def main() -> Any:
        db = _Database(_settings())
        try:
            return await fn(db)
        finally:
            await db.engine.dispose()

    return asyncio.run(main())


def parse_now(value: str | None) -> dt.datetime:
    """ISO 8601; without an offset it is Asia/Taipei (DESIGN.md)."""
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TAIPEI)
    return moment.astimezone(dt.UTC)


@cli.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from models.migrate import upgrade

    async def run(runtime: Any) -> None:
        await upgrade(runtime.engine)

    _run(run)
    typer.echo("database is up to date")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="web processes")] = 1,
) -> None:
    """Apply pending migrations, then serve the webhooks, simulator and admin API."""
    import uvicorn

    from bot.http_limits import GuardedHttpToolsProtocol

    settings = _settings()
    migrate()
    base = f"http://{host}:{port}"
    if settings.simulator_on:
        typer.echo(f"simulator:    {base}/simulator")
    typer.echo(f"health check: {base}/healthz")
    for name, on in (("LINE", settings.line_enabled), ("Telegram", settings.telegram_enabled)):
        typer.echo(f"{name}: {'on' if on else 'off (no credentials)'}")
    uvicorn.run(
        "app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # uvicorn's own loggers go through ours, so its error reports are masked like the rest.
        log_config=None,
        # Header timeout (slow clients); the body limits and timeout are the app's middleware.
        http=GuardedHttpToolsProtocol,
        h11_max_incomplete_event_size=16 * 1024,
    )


@cli.command("run-job")
def run_job(
    name: Annotated[str, typer.Argument(help="job name, e.g. recover-inbound")],
    now: Annotated[str | None, typer.Option(help="ISO 8601 time; no offset = Asia/Taipei")] = None,
) -> None:
    """Run one periodic job once (with an explicit `--now`, for catch-up and tests)."""
    moment = parse_now(now)

    async def run(runtime: Any) -> Any:
        try:
            job = runtime.jobs.require(name)
        except KeyError as exc:
            typer.secho(str(exc.args[0]), fg="red", err=True)
            raise typer.Exit(2) from None
        return await job.run(moment)

    result = _run(run)
    typer.echo(f"{name}: done ({result})")


class _Progress:
    """A progress line on stderr for long imports (every 2% and at the end)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct >= self.last + 2 or done == total:
            self.last = pct
            end = "\n" if done == total else "\r"
            typer.echo(f"{self.label}: {done}/{total} ({pct}%)", err=True, nl=False)
            typer.echo(end, err=True, nl=False)


def _fail(lines: list[str], code: int = 1) -> None:
    for line in lines:
        typer.secho(line, fg="red", err=True)
    raise typer.Exit(code)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail([f"cannot read {path}: {exc.strerror}"], 2)
        raise  # unreachable: _fail raises


@cli.command("import-courses")
def import_courses(
    file: Annotated[Path, typer.Argument(help="catalog as JSON (courses.json format) or CSV")],
    skip_invalid: Annotated[bool, typer.Option(help="apply the valid rows, list the rest")] = False,
    retire_missing: Annotated[bool, typer.Option(help="retire courses absent from FILE")] = False,
) -> None:
    """Import or update the course catalog (idempotent upsert by id)."""
    from models.base import utcnow
    from models.catalog_import import CatalogError, parse_catalog
    from models.courses import apply_catalog

    data = _read(file)
    progress = _Progress("courses")

    async def run(runtime: Any) -> Any:
        parsed = parse_catalog(data, name=file.name, progress=progress)
        async with runtime.sessionmaker() as session:
            report = await apply_catalog(
                session,
                parsed=parsed,
                now=utcnow(),
                skip_invalid=skip_invalid,
                retire_absent=retire_missing,
                progress=progress,
            )
            await session.commit()
        return report, parsed

    try:
        report, parsed = _run(run)
    except CatalogError as exc:
        _fail(
            [
                f"{file}: refused, nothing changed ({len(exc.errors)} invalid row(s)):",
                *(f"  {e}" for e in exc.errors[:50]),
            ]
        )
    for error in getattr(parsed, "errors", [])[:50]:
        typer.secho(f"  skipped: {error}", fg="yellow", err=True)
    typer.echo(
        f"created {report.created}, updated {report.updated}, unchanged "
        f"{report.unchanged}, retired {report.retired}, skipped {report.skipped}"
    )


@cli.command("import-roster")
def import_roster(
    file: Annotated[Path, typer.Argument(help="CSV: employee_id,name,agency,mobile,email,active")],
) -> None:
    """Replace the civil-servant roster; status follows it at once."""
    from models.base import utcnow
    from models.phones import parse_regions
    from models.roster_import import RosterError
    from models.roster_import import import_roster as apply_roster

    data = _read(file)

    async def run(runtime: Any) -> Any:
        regions = parse_regions(runtime.settings.phone_allowed_regions)
        async with runtime.sessionmaker() as session:
            result = await apply_roster(
                session,
                vault=runtime.services.vault,
                data=data,
                regions=regions,
                now=utcnow(),
                progress=_Progress("roster"),
            )
            await session.commit()
        return result

    try:
        result = _run(run)
    except RosterError as exc:
        _fail([f"{file}: refused, nothing changed:", *(f"  {e}" for e in exc.errors[:50])])
    typer.echo(
        f"rows {result.rows}: added {result.added}, updated {result.updated}, "
        f"deactivated {result.deactivated}, newly verified civil servants "
        f"{result.linked}, status removed {result.status_removed}"
    )


@cli.command("rotate-pii-key")
def rotate_pii_key() -> None:
    """Re-encrypt and re-hash personal data under PII_KEY (the old key in PII_KEY_PREVIOUS)."""
    from models.audit import record_audit
    from models.base import utcnow
    from models.pii import PiiVault
    from models.privacy import dump_report
    from models.privacy import rotate_pii_key as rotate

    settings = _settings()
    if settings.pii_key_previous is None:
        _fail(["set PII_KEY to the new key and PII_KEY_PREVIOUS to the key being replaced"], 2)
    assert settings.pii_key_previous is not None
    old_secret = settings.pii_key_previous.get_secret_value()
    new = PiiVault(settings.pii_key.get_secret_value(), previous=[old_secret])

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            report = await rotate(session, old=PiiVault(old_secret), new=new)
            await record_audit(
                session,
                actor="system",
                action="pii.key_rotated",
                subject="pii_key",
                details={"key_id": new.current.key_id, "rehashed": report.rehashed},
                now=utcnow(),
            )
            await session.commit()
        return report

    typer.echo(dump_report(_run(run)))


@cli.command("seed-demo")
def seed_demo() -> None:
    """Load the demo data (course catalog, ...); running it again changes nothing."""
    from models.base import utcnow
    from models.catalog_import import read_catalog
    from models.courses import apply_catalog
    from models.search.service import demo_catalog_path

    migrate()

    async def run(runtime: Any) -> Any:
        parsed = read_catalog(demo_catalog_path())
        async with runtime.sessionmaker() as session:
            report = await apply_catalog(session, parsed=parsed, now=utcnow())
            await session.commit()
        return report

    report = _run(run)
    typer.echo(
        f"demo catalog: created {report.created}, updated {report.updated}, "
        f"unchanged {report.unchanged}"
    )
    missing = [tool for tool in ("espeak-ng", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        # The catalog is enough to start; `make run` must not stop on a machine without apt.
        typer.secho(
            f"demo podcasts skipped: {', '.join(missing)} not installed "
            "(make system-packages, or apt-get install espeak-ng ffmpeg)",
            fg="yellow",
            err=True,
        )
        return
    seed_demo_podcasts_cmd()


def seed_demo_podcasts_cmd() -> None:
    """The demo podcasts, spoken by espeak-ng (after the catalog, so they link to courses)."""
    from media.episodes import seed_demo_podcasts
    from media.files import AudioError
    from models.base import utcnow

    async def run(runtime: Any) -> Any:
        return await seed_demo_podcasts(
            runtime.sessionmaker, settings=runtime.settings, now=utcnow()
        )

    try:
        report = _run(run)
    except AudioError as exc:
        _fail([f"demo podcasts: {exc}"])
    typer.echo(
        f"demo podcasts: created {report.podcasts_created} podcasts and "
        f"{report.episodes_created} episodes, repaired {report.episodes_repaired}, "
        f"unchanged {report.unchanged}"
    )


podcast_cli = typer.Typer(help="Audio lessons: create podcasts, upload audio, text to speech.")
cli.add_typer(podcast_cli, name="podcast")


def _podcast_errors() -> tuple[type[Exception], ...]:
    from media.files import AudioError
    from models.podcasts import PodcastError

    return (AudioError, PodcastError)


@podcast_cli.command("create")
def podcast_create(
    slug: Annotated[str, typer.Argument(help="feed name: a-z, 0-9 and '-'")],
    title: Annotated[str, typer.Option(help="title shown in chat and feeds")],
    description: Annotated[str, typer.Option(help="one or two sentences")] = "",
    audience: Annotated[str, typer.Option(help="public or civil_servant")] = "public",
    course: Annotated[str | None, typer.Option(help="course id it belongs to")] = None,
    hours: Annotated[
        float | None, typer.Option(help="learning hours (default: the course's)")
    ] = None,
) -> None:
    """Create a podcast."""
    from models.base import utcnow
    from models.podcasts import create_podcast

    migrate()

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            podcast = await create_podcast(
                session,
                slug=slug,
                title=title,
                description=description,
                audience=audience,
                course_id=course,
                hours=hours,
                now=utcnow(),
            )
            await session.commit()
        return podcast

    try:
        podcast = _run(run)
    except _podcast_errors() as exc:
        _fail([str(exc)], 2)
    typer.echo(f"podcast {podcast.slug}: created")


@podcast_cli.command("upload")
def podcast_upload(
    slug: Annotated[str, typer.Argument(help="the podcast")],
    file: Annotated[Path, typer.Argument(help="mp3, m4a or wav")],
    title: Annotated[str | None, typer.Option(help="episode title (default: file name)")] = None,
    number: Annotated[int | None, typer.Option(help="episode number (default: next)")] = None,
    transcript: Annotated[Path | None, typer.Option(help="UTF-8 text file")] = None,
    chapters: Annotated[
        Path | None, typer.Option(help='JSON: [{"start_ms":0,"title":"..."}]')
    ] = None,
    publish_at: Annotated[
        str | None, typer.Option(help="ISO 8601; no offset = Asia/Taipei")
    ] = None,
) -> None:
    """Add an episode from an audio file (wav and other m4a are transcoded to AAC m4a)."""
    from media.episodes import read_chapters, upload_episode
    from models.base import utcnow

    migrate()
    try:
        script = transcript.read_text("utf-8") if transcript else ""
        marks = read_chapters(chapters)
    except (OSError, UnicodeDecodeError, *_podcast_errors()) as exc:  # type: ignore[misc]
        _fail([str(exc)], 2)

    async def run(runtime: Any) -> Any:
        return await upload_episode(
            runtime.sessionmaker,
            settings=runtime.settings,
            podcast=slug,
            file=file,
            title=title,
            number=number,
            transcript=script,
            chapters=marks,
            published_at=parse_now(publish_at) if publish_at else None,
            now=utcnow(),
        )

    try:
        episode = _run(run)
    except _podcast_errors() as exc:
        _fail([f"refused, nothing imported: {exc}"], 2)
    typer.echo(
        f"{slug} episode {episode.number}: {episode.media_path} "
        f"({episode.duration_ms / 1000:.1f} s, {episode.size_bytes} bytes)"
    )


@podcast_cli.command("tts")
def podcast_tts(
    slug: Annotated[str, typer.Argument(help="the podcast")],
    script: Annotated[Path, typer.Argument(help="lesson script, UTF-8 text (zh-TW)")],
    title: Annotated[str, typer.Option(help="episode title")],
    number: Annotated[int | None, typer.Option(help="episode number (default: next)")] = None,
    language: Annotated[str, typer.Option(help="zh-TW or en")] = "zh-TW",
) -> None:
    """Turn a lesson script into an episode with the offline voice (espeak-ng)."""
    from media.episodes import tts_episode
    from models.base import utcnow

    migrate()
    try:
        text = script.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail([f"{script}: {exc}"], 2)

    async def run(runtime: Any) -> Any:
        return await tts_episode(
            runtime.sessionmaker,
            settings=runtime.settings,
            podcast=slug,
            script=text,
            title=title,
            number=number,
            language=language,
            now=utcnow(),
        )

    try:
        episode = _run(run)
    except _podcast_errors() as exc:
        _fail([f"refused, nothing imported: {exc}"], 2)
    typer.echo(f"{slug} episode {episode.number}: {episode.duration_ms / 1000:.1f} s spoken")


@cli.command()
def chat(
    persona: Annotated[str, typer.Option("--as", help="new, citizen or civil_servant")] = "citizen",
    user: Annotated[str | None, typer.Option(help="simulator user key")] = None,
) -> None:
    """Talk to the bot in this terminal through the simulator channel (no server needed)."""
    import os

    from bot.simulator.terminal import run_terminal_chat

    os.environ.setdefault("LOG_LEVEL", "WARNING")  # keep log lines out of the conversation
    migrate()

    async def run(runtime: Any) -> int:
        await runtime.start()
        return await run_terminal_chat(runtime.processor, persona=persona, user=user)

    raise typer.Exit(_run(run))


@cli.command("search-quality")
def search_quality(
    verbose: Annotated[bool, typer.Option(help="every query")] = False,
    real: Annotated[
        bool, typer.Option(help="the real-catalog set on ../shared/data/courses.json")
    ] = False,
) -> None:
    """Print hit@5, MRR and the zero-result rate of the relevance set, by kind."""
    from models.search.evaluate import main as evaluate

    raise typer.Exit(evaluate([*(["--verbose"] if verbose else []), *(["--real"] if real else [])]))


@cli.command("telegram-setup")
def telegram_setup() -> None:
    """Set the Telegram webhook (with its secret) and the command list in zh-TW and en."""
    from bot.telegram import TelegramConfigError
    from bot.telegram import telegram_setup as setup

    settings = _settings()
    if not settings.telegram_enabled:
        _fail(["TELEGRAM_BOT_TOKEN is not set"], 2)

    async def run(runtime: Any) -> Any:
        catalog = runtime.services.catalog
        commands = [
            (
                name,
                catalog.t("zh-TW", f"start.command.{name}"),
                catalog.t("en", f"start.command.{name}"),
            )
            for name in runtime.router.command_names()
        ]
        return await setup(runtime.settings, commands, channel=runtime.telegram)

    try:
        result = _run(run)
    except TelegramConfigError as exc:
        _fail([str(exc)], 2)
    typer.echo(f"telegram: {result}")


@cli.command()
def worker() -> None:
    """Send what the outbox holds until stopped (SIGTERM or Ctrl-C); run as many as needed."""
    import signal

    from notifications.dispatcher import run_worker

    migrate()

    async def run(runtime: Runtime) -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await runtime.start()
        if runtime.settings.inbound_processing == "worker":
            # This process also answers the events the web processes only acknowledged.
            intake = asyncio.create_task(runtime.processor.run_intake(stop))
            await run_worker(runtime, stop=stop)
            await intake
        else:
            await run_worker(runtime, stop=stop)

    _run(run)


broadcast_cli = typer.Typer(help="Broadcasts: create from a file, count, test, pause, show.")
cli.add_typer(broadcast_cli, name="broadcast")


def _broadcast_file(path: Path) -> Any:
    """A broadcast file, YAML or JSON (JSON is YAML too); the parser's complaint otherwise."""
    import yaml

    raw = _read(path)
    try:
        return yaml.safe_load(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        _fail([f"{path}: not a YAML or JSON file ({exc})"], 2)


def _broadcast_run(fn: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    """Run `fn(runtime, session)` and commit; a refusal is a clear message and exit 2."""
    from models.broadcasts import BroadcastError

    migrate()

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            out = await fn(runtime, session)
            await session.commit()
            return out

    try:
        return _run(run)
    except BroadcastError as exc:
        _fail([f"refused: {exc}"], 2)


@broadcast_cli.command("create")
def broadcast_create(
    file: Annotated[Path, typer.Argument(help="broadcast file (YAML or JSON)")],
) -> None:
    """Create a broadcast; prints its id. `run-job broadcasts` plans it when it is due."""
    from media.images import ImageRefused, resolve_image_paths
    from models.base import utcnow
    from models.broadcasts import create_broadcast
    from models.identity import record_audit

    raw = _broadcast_file(file)
    try:  # an image given as a path (beside the file) is kept under MEDIA_DIR
        raw = resolve_image_paths(raw, base_dir=file.parent, settings=_settings())
    except ImageRefused as exc:
        _fail([f"refused: {exc}"], 2)

    async def run(runtime: Any, session: Any) -> Any:
        now = utcnow()
        row = await create_broadcast(session, raw, created_by="cli", now=now)
        await record_audit(
            session,
            actor="cli",
            action="broadcast.create",
            subject=f"broadcast:{row.id}",
            details={"name": row.name},
            now=now,
        )
        return row.id

    typer.echo(str(_broadcast_run(run)))


@broadcast_cli.command("count")
def broadcast_count(
    file_or_id: Annotated[str, typer.Argument(help="broadcast file, or a broadcast id")],
) -> None:
    """The live count of a segment: members with marketing on that we can reach."""
    from models import segments
    from models.base import utcnow
    from models.broadcasts import BroadcastError, count_segment, require_broadcast

    raw = None if file_or_id.isdigit() else _broadcast_file(Path(file_or_id))

    async def run(runtime: Any, session: Any) -> Any:
        if raw is None:
            tree = (await require_broadcast(session, int(file_or_id))).spec["segment"]
        else:
            if not isinstance(raw, dict):
                raise BroadcastError("", "a broadcast file is a mapping (YAML or JSON)")
            try:
                tree = segments.validate(raw.get("segment"))
            except segments.SegmentError as exc:
                raise BroadcastError(exc.field, exc.problem) from None
        return await count_segment(session, tree, now=utcnow(), channels=list(runtime.channels))

    typer.echo(str(_broadcast_run(run)))


@broadcast_cli.command("test")
def broadcast_test(
    broadcast_id: Annotated[int, typer.Argument(help="the broadcast")],
    member: Annotated[int, typer.Option(help="member id whose own chats receive it")],
) -> None:
    """Send every variant, marked as a test, to one member's chats (drain-outbox sends)."""
    from bot.broadcasts import test_send
    from models.base import utcnow
    from models.broadcasts import require_broadcast

    async def run(runtime: Any, session: Any) -> Any:
        row = await require_broadcast(session, broadcast_id)
        return await test_send(
            session,
            row,
            member_id=member,
            catalog=runtime.services.catalog,
            settings=runtime.settings,
            channels=list(runtime.channels),
            now=utcnow(),
        )

    typer.echo(f"broadcast {broadcast_id}: {_broadcast_run(run)} test message(s) queued")


def _broadcast_change(action: str, broadcast_id: int) -> None:
    from models import broadcasts
    from models.base import utcnow
    from models.identity import record_audit

    fn = getattr(broadcasts, action)

    async def run(runtime: Any, session: Any) -> Any:
        now = utcnow()
        rows = await fn(session, broadcast_id, now=now)
        await record_audit(
            session,
            actor="cli",
            action=f"broadcast.{action}",
            subject=f"broadcast:{broadcast_id}",
            details={"rows": rows},
            now=now,
        )
        return rows

    rows = _broadcast_run(run)
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
    typer.echo(f"broadcast {broadcast_id}: {done} ({rows} queued message(s) affected)")


@broadcast_cli.command("pause")
def broadcast_pause(broadcast_id: Annotated[int, typer.Argument()]) -> None:
    """Stop planning and sending; queued messages wait."""
    _broadcast_change("pause", broadcast_id)


@broadcast_cli.command("resume")
def broadcast_resume(broadcast_id: Annotated[int, typer.Argument()]) -> None:
    """Go on after a pause."""
    _broadcast_change("resume", broadcast_id)


@broadcast_cli.command("cancel")
def broadcast_cancel(broadcast_id: Annotated[int, typer.Argument()]) -> None:
    """Cancel: nothing more is planned, unsent messages are withdrawn."""
    _broadcast_change("cancel", broadcast_id)


@broadcast_cli.command("pick")
def broadcast_pick(
    broadcast_id: Annotated[int, typer.Argument()],
    variant: Annotated[str, typer.Argument(help="the variant the rest of the segment gets")],
) -> None:
    """Pick the A/B winner by hand; the next `broadcasts` run sends it to the rest."""
    from models.base import utcnow
    from models.broadcasts import pick_winner

    async def run(runtime: Any, session: Any) -> Any:
        return (await pick_winner(session, broadcast_id, variant=variant, now=utcnow())).winner

    typer.echo(f"broadcast {broadcast_id}: the rest gets variant {_broadcast_run(run)}")


@broadcast_cli.command("show")
def broadcast_show(broadcast_id: Annotated[int, typer.Argument()]) -> None:
    """Status, recipients, queued, sent, failed by reason, unreachable, clicks, claims."""
    import json

    from bot.broadcasts import describe, line_insight
    from models.base import utcnow
    from models.broadcasts import require_broadcast

    async def run(runtime: Any, session: Any) -> Any:
        row = await require_broadcast(session, broadcast_id)
        out = await describe(session, row)
        out["line_insight"] = await line_insight(runtime.settings, row, now=utcnow())
        return out

    typer.echo(json.dumps(_broadcast_run(run), ensure_ascii=False, indent=2))


@cli.command("import-completions")
def import_completions(
    file: Annotated[Path, typer.Argument(help="CSV: employee_id or member_id, course_id, ...")],
    now: Annotated[str | None, typer.Option(help="ISO 8601; no offset = Asia/Taipei")] = None,
) -> None:
    """Import course completions from the LMS (idempotent; a refused file changes nothing)."""
    from models.completions_import import CompletionsError
    from models.completions_import import import_completions as apply_completions

    moment, data = parse_now(now), _read(file)

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            result = await apply_completions(
                session, data, now=moment, progress=_Progress("completions")
            )
            await session.commit()
        return result

    try:
        result = _run(run)
    except CompletionsError as exc:
        _fail([f"{file}: refused, nothing changed: {exc}"])
    typer.echo(
        f"completions: {result.rows} rows, {result.added} new, {result.already_known} "
        f"already known, {result.reminders_withdrawn} queued reminders withdrawn"
    )


requirements_cli = typer.Typer(help="Mandatory learning requirements.")
cli.add_typer(requirements_cli, name="requirements")


@requirements_cli.command("import")
def requirements_import(
    file: Annotated[Path, typer.Argument(help="YAML or JSON, as models/data/requirements.yaml")],
) -> None:
    """Load the requirements; codes absent from FILE are switched off."""
    import json

    import yaml

    from models.learning import (
        RequirementsError,
        import_requirements,
        parse_requirements,
        requirements_without_courses,
    )

    try:
        raw = _read(file).decode("utf-8")
        records = parse_requirements(
            json.loads(raw) if file.suffix == ".json" else yaml.safe_load(raw)
        )
    except (RequirementsError, ValueError, yaml.YAMLError) as exc:
        _fail([f"{file}: refused, nothing changed: {exc}"])

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            out: dict[str, Any] = dict(
                await import_requirements(session, records, now=parse_now(None))
            )
            await session.commit()
            out["unmatched"] = await requirements_without_courses(session)
        return out

    out = _run(run)
    typer.echo(f"requirements: {out['loaded']} loaded, {out['switched_off']} switched off")
    for req in out["unmatched"]:
        typer.echo(
            f"warning: requirement {req.code} ({req.title}) matches no active course; "
            "give it title_keywords, categories or tags that the catalog has",
            err=True,
        )


@cli.command("line-richmenu")
def line_richmenu() -> None:
    """Draw, upload and set the default LINE rich menu (找課程 聽課 我的學習 活動領獎 設定)."""
    from linebot.v3.messaging import ApiException

    from bot.line.richmenu import install_rich_menu

    settings = _settings()
    if not settings.line_enabled:
        _fail(["LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN are not set"], 2)
    try:
        menu_id = asyncio.run(install_rich_menu(settings))
    except ApiException as exc:
        _fail([f"LINE refused the rich menu: HTTP {exc.status}"])
    typer.echo(f"default rich menu set: {menu_id}")


campaign_cli = typer.Typer(help="Prize campaigns: files, codes, claims, draws and audits.")
cli.add_typer(campaign_cli, name="campaign")
ACTOR = "cli"


def _campaign_do(fn: Callable[[Any, Any], Awaitable[Any]], *, write: bool = True) -> Any:
    """Run `fn(session, runtime)` in one transaction (a writer from the start) and commit;
    an expected refusal prints its reason and exits 1."""
    from models.campaigns.claims import CampaignError
    from models.db import begin_write

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            if write:
                await begin_write(session)
            out = await fn(session, runtime)
            await session.commit()
        return out

    try:
        return _run(run)
    except CampaignError as exc:
        _fail([str(exc)])


def _campaign_file(file: Path) -> Any:
    from models.campaigns.spec import CampaignFileError, parse_campaign

    try:
        return parse_campaign(_read(file))
    except CampaignFileError as exc:
        _fail([f"{file}: refused, nothing changed:", *(f"  {e}" for e in exc.errors)])


def _print_summary(data: dict[str, Any]) -> None:
    typer.echo(f"{data['slug']}: {data['title']} ({data['mode']})")
    typer.echo(f"  period: {data['starts_at']} .. {data['ends_at']}")
    typer.echo(
        f"  stock {data['stock']}, claimed {data['claimed']}, remaining {data['remaining']}, "
        f"revoked codes {data['revoked_codes']}"
    )
    claims = ", ".join(f"{k} {v}" for k, v in sorted(data["claims"].items())) or "none"
    typer.echo(f"  claims: {claims}")
    refusals = ", ".join(f"{k} {v}" for k, v in sorted(data["refusals"].items())) or "none"
    typer.echo(f"  refusals by reason: {refusals}")
    typer.echo(f"  flags: {len(data['flags'])}")
    for flag in data["flags"]:
        typer.echo(
            f"    claim {flag['claim_id']}: {flag['flag']} ({flag['phone']}, {flag['claimed_at']})"
        )
    for d in data["draws"]:
        typer.echo(
            f"  draw round {d['round']}: seed {d['seed']}, {d['entries']} entries, "
            f"{d['prizes']} prizes, winners {d['winners']}, reproduced: {d['reproduced']}"
        )


@campaign_cli.command("create")
def campaign_create(
    file: Annotated[Path, typer.Argument(help="campaign file, YAML or JSON")],
) -> None:
    """Create a campaign from its file (and generate its codes)."""
    from models.campaigns import claims

    spec = _campaign_file(file)

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.create_campaign(
            session, spec=spec, actor=ACTOR, now=parse_now(None)
        )
        return (await claims.summary(session, campaign=campaign)).as_json()

    data = _campaign_do(run)
    typer.echo(f"created campaign {data['slug']} ({data['stock']} codes)")


@campaign_cli.command("update")
def campaign_update(
    file: Annotated[Path, typer.Argument(help="campaign file, YAML or JSON")],
) -> None:
    """Change a campaign from its file (same slug)."""
    from models.campaigns import claims

    spec = _campaign_file(file)

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.update_campaign(
            session, spec=spec, actor=ACTOR, now=parse_now(None)
        )
        return (await claims.summary(session, campaign=campaign)).as_json()

    data = _campaign_do(run)
    typer.echo(f"updated campaign {data['slug']} ({data['stock']} codes)")


@campaign_cli.command("list")
def campaign_list() -> None:
    """Every campaign with its period, stock and claims."""
    from models.campaigns import claims

    async def run(session: Any, runtime: Any) -> Any:
        return [
            (await claims.summary(session, campaign=c)).as_json()
            for c in await claims.list_campaigns(session)
        ]

    rows = _campaign_do(run, write=False)
    if not rows:
        typer.echo("no campaigns")
    for d in rows:
        typer.echo(
            f"{d['slug']}\t{d['mode']}\t{d['starts_at']} .. {d['ends_at']}\t"
            f"stock {d['stock']}\tclaimed {d['claimed']}\tremaining {d['remaining']}"
        )


@campaign_cli.command("show")
def campaign_show(slug: Annotated[str, typer.Argument(help="campaign slug")]) -> None:
    """Stock, claimed, remaining, refusals by reason, flagged claims and draws."""
    from models.campaigns import claims

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        return (await claims.summary(session, campaign=campaign)).as_json()

    _print_summary(_campaign_do(run, write=False))


@campaign_cli.command("codes")
def campaign_codes(
    slug: Annotated[str, typer.Argument(help="campaign slug")],
    file: Annotated[Path, typer.Argument(help="CSV with a `code` column")],
) -> None:
    """Load the vendor's codes; a duplicate (in the file or already loaded) refuses the file."""
    from models.campaigns import claims
    from models.campaigns.spec import CodesFileError, parse_codes

    try:
        codes = parse_codes(_read(file))
    except CodesFileError as exc:
        _fail([f"{file}: refused, nothing changed:", *(f"  {e}" for e in exc.errors[:50])])

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        added = await claims.load_codes(
            session, campaign=campaign, codes=codes, actor=ACTOR, now=parse_now(None)
        )
        return added, await claims.stock(session, campaign_id=campaign.id)

    added, left = _campaign_do(run)
    typer.echo(f"loaded {added} codes: stock {left['total']}, remaining {left['free']}")


@campaign_cli.command("export")
def campaign_export(
    slug: Annotated[str, typer.Argument(help="campaign slug")],
    out: Annotated[Path | None, typer.Option(help="write the CSV here (default: stdout)")] = None,
) -> None:
    """The auditors' CSV: one row per claim, phones masked (0912-***-678) plus keyed hash."""
    from models.campaigns import claims

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        return claims.export_csv(await claims.export_rows(session, campaign=campaign))

    csv_text = _campaign_do(run, write=False)
    if out is None:
        typer.echo(csv_text, nl=False)
        return
    out.write_text(csv_text, encoding="utf-8")
    typer.echo(f"wrote {max(0, csv_text.count(chr(10)) - 1)} claims to {out}", err=True)


@campaign_cli.command("revoke")
def campaign_revoke(
    slug: Annotated[str, typer.Argument(help="campaign slug")],
    claim_id: Annotated[int, typer.Argument(help="claim id (see export)")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")],
) -> None:
    """Revoke a claim; its code is never handed out again."""
    from models.campaigns import claims

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        return await claims.revoke(
            session,
            campaign=campaign,
            claim_id=claim_id,
            reason=reason,
            actor=ACTOR,
            now=parse_now(None),
        )

    _campaign_do(run)
    typer.echo(f"claim {claim_id} revoked")


@campaign_cli.command("review")
def campaign_review(
    slug: Annotated[str, typer.Argument(help="campaign slug")],
    claim_id: Annotated[int, typer.Argument(help="a flagged claim (see show)")],
    approve: Annotated[bool, typer.Option("--approve/--reject", help="the decision")],
) -> None:
    """Decide a flagged claim: approved, it gets its code (or enters the draw)."""
    from models.campaigns import claims

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        return await claims.review(
            session,
            campaign=campaign,
            claim_id=claim_id,
            approve=approve,
            actor=ACTOR,
            now=parse_now(None),
        )

    claim, _ = _campaign_do(run)
    typer.echo(f"claim {claim_id}: {claim.status}")


@campaign_cli.command("redemptions")
def campaign_redemptions(
    slug: Annotated[str, typer.Argument(help="campaign slug")],
    file: Annotated[Path, typer.Argument(help="the vendor's CSV: code,redeemed_at")],
) -> None:
    """Mark the codes the vendor redeemed."""
    from models.campaigns import claims
    from models.campaigns.spec import CodesFileError, parse_redemptions

    now = parse_now(None)
    try:
        parsed = parse_redemptions(_read(file), now=now)
    except CodesFileError as exc:
        _fail([f"{file}: refused, nothing changed:", *(f"  {e}" for e in exc.errors[:50])])

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        return await claims.import_redemptions(
            session, campaign=campaign, redemptions=parsed, actor=ACTOR, now=now
        )

    typer.echo(f"{_campaign_do(run)} codes marked redeemed")


def _tell_winners(campaign_id: int | None, moment: Any) -> int:
    """Queue the messages of drawn winners not told yet (one campaign's, or every one's), in
    a unit of work of its own that may run again at any time: none is told twice."""
    from models.db import begin_write
    from notifications.campaigns import notify_winners

    async def run(runtime: Any) -> int:
        quiet = runtime.dispatcher.config.quiet if runtime.dispatcher is not None else None
        async with runtime.sessionmaker() as session:
            await begin_write(session)
            queued = await notify_winners(
                session,
                catalog=runtime.services.catalog,
                now=moment,
                campaign_id=campaign_id,
                **({"quiet": quiet} if quiet is not None else {}),
            )
            await session.commit()
        return queued

    return int(_run(run))


@campaign_cli.command("draw")
def campaign_draw(
    slug: Annotated[str, typer.Argument(help="a draw campaign that has ended")],
    seed: Annotated[str | None, typer.Option(help="the seed (default: a new random one)")] = None,
    now: Annotated[str | None, typer.Option(help="ISO 8601 time; no offset = Asia/Taipei")] = None,
) -> None:
    """Draw the winners (again: redraw the prizes of winners who did not claim in time) from
    a recorded seed, and tell them through the outbox."""
    from models.campaigns import claims

    moment = parse_now(now)

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        result = await claims.draw(session, campaign=campaign, actor=ACTOR, now=moment, seed=seed)
        return campaign.id, result

    campaign_id, result = _campaign_do(run)
    typer.echo(
        f"draw round {result.round}: seed {result.seed}\n"
        f"{result.entries} entries, {result.prizes} prizes, {len(result.winners)} winners "
        f"(claims {', '.join(str(w.id) for w in result.winners)}), {result.lapsed} lapsed"
    )
    # The draw is committed: telling the winners is a step of its own, retried by
    # `edoor campaign notify` and by the campaign-winners job if it fails here.
    try:
        notified = _tell_winners(campaign_id, moment)
    except Exception as exc:  # the draw stands: say how to finish the telling
        _fail(
            [
                f"the draw is recorded, but telling the winners failed ({type(exc).__name__});",
                f"run `edoor campaign notify {slug}` (the campaign-winners job also retries)",
            ]
        )
    typer.echo(f"{notified} told through the outbox")


@campaign_cli.command("notify")
def campaign_notify(
    slug: Annotated[str, typer.Argument(help="a draw campaign with drawn winners")],
    now: Annotated[str | None, typer.Option(help="ISO 8601 time; no offset = Asia/Taipei")] = None,
) -> None:
    """Tell the drawn winners not told yet through the outbox (after a draw whose telling
    failed); safe to run again: nobody is told twice."""
    from models.campaigns import claims
    from models.campaigns.tables import DRAW

    moment = parse_now(now)

    async def run(session: Any, runtime: Any) -> Any:
        campaign = await claims.require_campaign(session, slug=slug)
        if campaign.mode != DRAW:
            raise claims.CampaignError("mode: not a draw campaign")
        return campaign.id

    campaign_id = _campaign_do(run, write=False)
    typer.echo(f"{_tell_winners(campaign_id, moment)} winners told through the outbox")


admin_cli = typer.Typer(help="Console accounts: create, tokens, list, disable, revoke.")
cli.add_typer(admin_cli, name="admin")
CLI_ACTOR = "system:cli"


def _new_password() -> tuple[str, bool]:
    """The password from standard input (one line), or a generated one (True)."""
    import sys

    from models.accounts import generate_password

    if sys.stdin.isatty():
        typed = typer.prompt(
            "password (empty: generate one)", default="", hide_input=True, show_default=False
        )
    else:
        typed = sys.stdin.readline().rstrip("\r\n")
    return (typed, False) if typed else (generate_password(), True)


@admin_cli.command("create-user")
def admin_create_user(
    email: Annotated[str, typer.Argument(help="the person's email (their sign-in name)")],
    role: Annotated[str, typer.Option(help="admin, marketer, analyst or auditor")],
) -> None:
    """Create a console account; the password is read from standard input, or generated
    and printed once."""
    from models.accounts import ROLES, AccountError, create_account
    from models.audit import record_audit
    from models.base import utcnow

    if role not in ROLES:
        _fail([f"--role must be one of {', '.join(ROLES)}"], 2)
    password, generated = _new_password()

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            account = await create_account(
                session,
                email=email,
                role=role,
                password=password,
                created_by=CLI_ACTOR,
                now=utcnow(),
            )
            await record_audit(
                session,
                actor=CLI_ACTOR,
                action="accounts.create",
                subject=f"account:{account.id}",
                details={"role": role},
                now=utcnow(),
            )
            await session.commit()
            return account.email

    try:
        created = _run_db(run)
    except AccountError as exc:
        _fail([str(exc)], 1)
    typer.echo(f"account {created} created with role {role}")
    if generated:
        typer.echo(f"password (shown once): {password}")


def _account_action(email: str, action: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    from models.accounts import AccountError, require_account

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            account = await require_account(session, email=email)
            out = await action(session, account)
            await session.commit()
            return out

    try:
        return _run_db(run)
    except AccountError as exc:
        _fail([str(exc)], 1)


@admin_cli.command("token")
def admin_token(
    email: Annotated[str, typer.Argument(help="whose token")],
    label: Annotated[str, typer.Option(help="what the token is for")] = "cli",
) -> None:
    """Print a new bearer token with that person's role (only its hash is kept)."""
    from models.accounts import issue_token
    from models.audit import record_audit
    from models.base import utcnow

    async def action(session: Any, account: Any) -> str:
        token = await issue_token(session, account=account, label=label, now=utcnow())
        await record_audit(
            session,
            actor=CLI_ACTOR,
            action="accounts.token",
            subject=f"account:{account.id}",
            details={"label": label},
            now=utcnow(),
        )
        return token

    typer.echo(_account_action(email, action))


@admin_cli.command("list")
def admin_list() -> None:
    """Every account with its role and state (never a password or token)."""
    from models.accounts import list_accounts

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            return [
                (a.email, a.role, "disabled" if a.disabled_at else "active")
                for a in await list_accounts(session)
            ]

    rows = _run_db(run)
    for email, role, state in rows:
        typer.echo(f"{email}\t{role}\t{state}")
    if not rows:
        typer.echo("no accounts yet (ADMIN_TOKEN bootstraps the first admin)")


def _set_disabled(email: str, disabled: bool) -> None:
    from models.accounts import set_disabled
    from models.audit import record_audit
    from models.base import utcnow

    async def action(session: Any, account: Any) -> None:
        await set_disabled(session, account=account, disabled=disabled, now=utcnow())
        await record_audit(
            session,
            actor=CLI_ACTOR,
            action="accounts.disable" if disabled else "accounts.enable",
            subject=f"account:{account.id}",
            now=utcnow(),
        )

    _account_action(email, action)
    typer.echo(f"{email}: {'disabled (sessions and tokens ended)' if disabled else 'enabled'}")


@admin_cli.command("disable")
def admin_disable(email: Annotated[str, typer.Argument()]) -> None:
    """Disable an account: its sessions and tokens stop working at once."""
    _set_disabled(email, True)


@admin_cli.command("enable")
def admin_enable(email: Annotated[str, typer.Argument()]) -> None:
    """Enable a disabled account (it needs a new token)."""
    _set_disabled(email, False)


@admin_cli.command("revoke")
def admin_revoke(
    email: Annotated[str, typer.Argument()],
    token_id: Annotated[int | None, typer.Option(help="one token (default: all)")] = None,
) -> None:
    """Revoke the account's tokens (one, or all) and end its console sessions."""
    from models.accounts import revoke_sessions, revoke_tokens
    from models.audit import record_audit
    from models.base import utcnow

    async def action(session: Any, account: Any) -> tuple[int, int]:
        now = utcnow()
        tokens = await revoke_tokens(session, account_id=account.id, token_id=token_id, now=now)
        sessions = 0 if token_id else await revoke_sessions(session, account_id=account.id, now=now)
        await record_audit(
            session,
            actor=CLI_ACTOR,
            action="accounts.revoke",
            subject=f"account:{account.id}",
            details={"tokens": tokens, "sessions": sessions},
            now=now,
        )
        return tokens, sessions

    tokens, sessions = _account_action(email, action)
    typer.echo(f"{email}: {tokens} token(s) revoked, {sessions} session(s) ended")


@admin_cli.command("password")
def admin_password(email: Annotated[str, typer.Argument()]) -> None:
    """Set a new password (standard input, or generated and printed once); sessions end."""
    from models.accounts import set_password
    from models.audit import record_audit
    from models.base import utcnow

    password, generated = _new_password()

    async def action(session: Any, account: Any) -> None:
        await set_password(session, account=account, password=password, now=utcnow())
        await record_audit(
            session,
            actor=CLI_ACTOR,
            action="accounts.password",
            subject=f"account:{account.id}",
            now=utcnow(),
        )

    _account_action(email, action)
    typer.echo(f"{email}: password changed, sessions ended")
    if generated:
        typer.echo(f"password (shown once): {password}")


audit_cli = typer.Typer(help="The audit log.")
cli.add_typer(audit_cli, name="audit")


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exits 1 and names the first broken link."""
    from models.audit import verify_chain

    async def run(runtime: Any) -> Any:
        async with runtime.sessionmaker() as session:
            return await verify_chain(session)

    report = _run_db(run)
    if not report.ok:
        _fail([f"audit chain broken at entry {report.broken_at}: {report.reason}"], 1)
    typer.echo(
        f"audit chain verified: {report.rows} entries ({report.pseudonymised} pseudonymised)"
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
