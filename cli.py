"""The `edoor` command line: serve, worker, migrate, imports, jobs, chat and platform set-up.

Every command prints a clear message and exits non-zero on bad input.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.i18n import TAIPEI
from bot.settings import ConfigError, Settings

cli = typer.Typer(
    help="edoor: the chat front door of Taipei e-University.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    from bot.phones import normalise_phone, parse_regions
    from models.base import utcnow
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
                normalise_phone=lambda raw: normalise_phone(raw, regions=regions),
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
    from bot.media import AudioError
    from bot.podcasts import seed_demo_podcasts
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
    from bot.media import AudioError
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
    from bot.podcasts import read_chapters, upload_episode
    from models.base import utcnow

    migrate()
    try:
        script = transcript.read_text("utf-8") if transcript else ""
        marks = read_chapters(chapters)
    except (OSError, UnicodeDecodeError, *_podcast_errors()) as exc:
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
    from bot.podcasts import tts_episode
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

    from bot.terminal_chat import run_terminal_chat

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

    async def run(runtime: Any) -> None:
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
            out = await import_requirements(session, records, now=parse_now(None))
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

    from bot.line_richmenu import install_rich_menu

    settings = _settings()
    if not settings.line_enabled:
        _fail(["LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN are not set"], 2)
    try:
        menu_id = asyncio.run(install_rich_menu(settings))
    except ApiException as exc:
        _fail([f"LINE refused the rich menu: HTTP {exc.status}"])
    typer.echo(f"default rich menu set: {menu_id}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
