"""What every package's commands share (``hub/cli.py`` and each package's ``cli`` module): bringing the
database up to date first, with a clear line instead of a traceback when it cannot be opened, and database URLs
printed without their passwords."""

from __future__ import annotations

import typer

from hub.config import Settings


def migrate_or_exit(settings: Settings) -> None:
    """Bring the database up to date, the first thing every command does: a database that cannot be reached
    or opened ends the command with what to check, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from hub.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except (OSError, DBAPIError) as exc:
        reason = getattr(exc, "orig", None) or exc
        typer.echo(f"error: cannot open the database {redact_url(settings.database_url)}: {reason}", err=True)
        typer.echo("  check SWITCHBOARD_DATABASE_URL, and that the database server is running", err=True)
        raise typer.Exit(1) from None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
