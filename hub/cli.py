"""The ``switchboard`` command line (also ``python -m hub``). Every command reads the same settings."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.config import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn

    from ticketing.models import AgentCreate, AgentRead

app = typer.Typer(help="Switchboard: a self-hosted contact center.", no_args_is_help=True)
agent_app = typer.Typer(help="Manage agents, supervisors and admins.", no_args_is_help=True)
app.add_typer(agent_app, name="agent")

HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option(help="TCP port to listen on.")]


def _migrate(settings: Settings) -> None:
    """Bring the database up to date, the first thing every command does: a database that cannot be reached
    or opened ends the command with what to check, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from hub.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except (OSError, DBAPIError) as exc:
        reason = getattr(exc, "orig", None) or exc
        typer.echo(f"error: cannot open the database {_redact(settings.database_url)}: {reason}", err=True)
        typer.echo("  check SWITCHBOARD_DATABASE_URL, and that the database server is running", err=True)
        raise typer.Exit(1) from None


def _serve(settings: Settings, host: str, port: int) -> None:
    run_server(settings, host=host, port=port, log_level="info")


def server_config(settings: Settings, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration of ``switchboard serve`` and ``demo``.

    Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are believed only from the addresses in
    ``SWITCHBOARD_TRUSTED_PROXIES``; with none (the default) they are ignored. uvicorn's own default believes
    them from 127.0.0.1, so any local client could claim any address, and a new one for every wrong password.
    """
    import uvicorn

    from hub.app import create_app
    from hub.websocket import ReadAheadWebSocketProtocol

    proxies = settings.trusted_proxies
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        ws=ReadAheadWebSocketProtocol,
        ws_per_message_deflate=settings.ws_compression,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=list(proxies),
        **options,
    )


def run_server(settings: Settings, *, host: str, port: int, **options: Any) -> None:
    """Serve the app with uvicorn in this process, as ``switchboard serve`` does (benchmarks start it so too)."""
    import uvicorn

    uvicorn.Server(server_config(settings, host=host, port=port, **options)).run()


@app.command()
def migrate() -> None:
    """Apply database migrations (serve and demo do this at start too)."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(f"database is up to date: {_redact(settings.database_url)}")


@app.command()
def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run the server (migrating the database first)."""
    settings = get_settings()
    _migrate(settings)
    _serve(settings, host, port)


@app.command()
def demo(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run the server on SQLite with demo queues, agents and conversations; prints URLs and logins."""
    settings = get_settings()
    if not settings.is_sqlite:
        typer.echo("note: SWITCHBOARD_DATABASE_URL is not SQLite; the demo seeds that database instead", err=True)
    _migrate(settings)
    seeded = asyncio.run(_seed(settings))
    base = f"http://{host}:{port}"
    from ticketing.demo import DEMO_LOGINS

    typer.echo("")
    typer.echo("Switchboard demo" + (" (seeded demo data)" if seeded else " (existing data kept)"))
    typer.echo(f"  database:    {_redact(settings.database_url)}")
    for label, path in _demo_pages():
        typer.echo(f"  {label + ':':<12} {base}{path}")
    typer.echo("  logins (username / password):")
    for username, password, role, _name, _queues in DEMO_LOGINS:
        typer.echo(f"    {username:<11} / {password:<16} ({role.value})")
    typer.echo("")
    _serve(settings, host, port)


def _demo_pages() -> list[tuple[str, str]]:
    return [
        ("console", "/console"),
        ("chat demo", "/demo"),
        ("widget", "/widget.js"),
        ("API docs", "/docs"),
        ("health", "/healthz"),
        ("metrics", "/metrics"),
    ]


async def _seed(settings: Settings) -> bool:
    from hub.runtime import standalone
    from ticketing.demo import seed

    async with standalone(settings) as rt:
        return await seed(rt)


@agent_app.command("create")
def agent_create(
    username: str,
    password: Annotated[str, typer.Option(help="At least 8 characters.", prompt=True, hide_input=True)],
    role: Annotated[str, typer.Option(help="agent, supervisor or admin.")] = "agent",
    queue: Annotated[list[str] | None, typer.Option(help="Queue to join (repeatable).")] = None,
    display_name: Annotated[str, typer.Option(help="Name shown to customers.")] = "",
) -> None:
    """Create an agent, supervisor or admin."""
    from pydantic import ValidationError

    from hub.errors import SwitchboardError
    from ticketing.models import AgentCreate

    settings = get_settings()
    _migrate(settings)
    try:
        # Validated from plain values, so a bad role gets the same message as any other bad field.
        fields = {"username": username, "password": password, "role": role, "display_name": display_name}
        data = AgentCreate.model_validate({**fields, "queues": queue or []})
    except ValidationError as exc:
        for err in exc.errors():
            typer.echo(f"error: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    try:
        agent = asyncio.run(_create_agent(settings, data))
    except SwitchboardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {agent.role} {agent.username} (id {agent.id}), queues: {agent.queue_ids or 'none'}")


async def _create_agent(settings: Settings, data: AgentCreate) -> AgentRead:
    from hub.runtime import standalone
    from ticketing.agents import create_agent

    async with standalone(settings) as rt:
        return await create_agent(rt, data=data)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    from pydantic import ValidationError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        # A setting from the environment or .env that does not parse: say which, without echoing its value
        # (it may be a password).
        for err in exc.errors():
            where = f"SWITCHBOARD_{'_'.join(str(p) for p in err['loc']).upper()}: " if err["loc"] else ""
            typer.echo(f"error: {where}{err['msg']}", err=True)
        raise SystemExit(2) from None
