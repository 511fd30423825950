"""What the ``funnel`` commands share: the consoles, settings and model from the environment
with plain errors, progress bars, SIGTERM as Ctrl-C."""

from __future__ import annotations

import signal

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from funnel.config import ModelError, ScoringModel, load_model
from streams.settings import Settings

console = Console(stderr=False)
err = Console(stderr=True)


def load_settings(**overrides: object) -> Settings:
    try:
        s = Settings()
    except ValidationError as exc:
        lines = [f"  FUNNEL_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None
    return s.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def load_model_or_fail(settings: Settings) -> ScoringModel:
    try:
        return load_model(settings.model)
    except ModelError as exc:
        raise click.ClickException(f"bad model file:\n{exc}") from None


def sigterm_is_ctrl_c() -> None:
    """So that a SIGTERM (from a supervisor, or ``timeout``) also stops the stack cleanly."""
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, raise_interrupt)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def db_settings(what: str) -> Settings:
    settings = load_settings()
    if settings.database_url is None:
        raise click.UsageError(f"{what} needs FUNNEL_DATABASE_URL (printed by 'funnel up')")
    return settings


def migrated(settings: Settings) -> None:
    import psycopg

    from streams.db.migrate import migrate

    try:
        migrate(settings.dsn(), settings.db_schema)
    except psycopg.Error as exc:
        raise click.ClickException(f"PostgreSQL at FUNNEL_DATABASE_URL: {str(exc).strip()}") \
            from None
