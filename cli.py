"""The `edoor` command line: serve, worker, migrate, imports, jobs, chat and platform set-up.

Every command prints a clear message and exits non-zero on bad input.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
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
        return Settings()
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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
