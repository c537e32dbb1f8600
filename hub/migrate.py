"""Applying Alembic migrations from code (``switchboard migrate``, and ``serve``/``demo`` at start)."""

from __future__ import annotations

import asyncio
import logging
import threading

# Alembic announces each of its plugins at INFO as it is imported, and its dialect and DDL mode each time it
# runs; the migrations it runs are worth a line each, the rest is noise before every command's own output.
# The levels are set before the import below, which is what logs the plugins.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class _OnlyUpgrades(logging.Filter):
    """Of ``alembic.runtime.migration``'s INFO lines, only "Running upgrade ..." (and anything louder)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage().startswith(("Running upgrade", "Running downgrade"))


logging.getLogger("alembic.runtime.migration").addFilter(_OnlyUpgrades())

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "hub:migrations")
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the database at ``database_url`` to ``revision``. Safe to call from inside an event loop."""
    cfg = alembic_config(database_url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(cfg, revision)
        return
    # env.py runs its own event loop; give it a thread of its own.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(cfg, revision)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]
