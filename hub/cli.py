"""The ``switchboard`` command line (also ``python -m hub``). Every command reads the same settings.

This module is the command line's composition root, as ``hub/app.py`` is the application's: it adds each
package's commands, and imports nothing else from the other packages than their ``cli`` modules (the
import-linter contract "hub.cli reaches other packages only through their cli modules" in pyproject.toml).
A package's ``cli`` module defines a typer app and imports the rest of its package inside its commands.
``demo`` and ``serve`` build the application through ``hub.app``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.commands import migrate_or_exit, redact_url
from hub.config import Settings, get_settings
from ivr_flows.cli import app as ivr_app
from knowledge_base.cli import kb_app
from ticketing.cli import agent_app, contacts_app

if TYPE_CHECKING:
    import uvicorn

    from hub.api_catcher import ApiCatcher
    from hub.app import DemoSeed
    from hub.mail_catcher import MailCatcher

app = typer.Typer(help="Switchboard: a self-hosted contact center.", no_args_is_help=True)
# The packages' commands, one line each.
app.add_typer(agent_app, name="agent")
app.add_typer(contacts_app, name="contacts")
app.add_typer(ivr_app, name="ivr")
app.add_typer(kb_app, name="kb")

HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option(help="TCP port to listen on.")]


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
    from hub.websocket import server_protocol

    proxies = settings.trusted_proxies
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        ws=server_protocol(settings),
        ws_per_message_deflate=settings.ws_compression,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=list(proxies),
        **options,
    )


def run_server(settings: Settings, *, host: str, port: int, **options: Any) -> None:
    """Serve the app with uvicorn in this process, as ``switchboard serve`` does (benchmarks start it so too).
    On SQLite it first shortens the interpreter's GIL switch interval, for the whole process (see
    ``GIL_SWITCH_INTERVAL``)."""
    import uvicorn

    if settings.is_sqlite:
        shorten_gil_switch_interval()
    uvicorn.Server(server_config(settings, host=host, port=port, **options)).run()


# aiosqlite runs each connection's statements in a thread of its own, which needs the GIL to start a statement
# and again to hand its result back. While the event loop's thread is busy, a thread that wants the GIL waits
# for the interpreter's switch interval (5 ms by default) before it gets it, up to twice per statement, while
# the transaction holds SQLite's one writer. The interval is the whole process's, so the server sets it when it
# starts, not the database layer: a program that only imports hub keeps its own.
GIL_SWITCH_INTERVAL = 0.0002


def shorten_gil_switch_interval() -> None:
    """Set the process's GIL switch interval to ``GIL_SWITCH_INTERVAL`` unless it is shorter already: what
    ``serve`` does on SQLite, and what benchmarks and the test suite do to run SQLite as the server runs it."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)


@app.command()
def migrate() -> None:
    """Apply database migrations (serve and demo do this at start too)."""
    settings = get_settings()
    migrate_or_exit(settings)
    typer.echo(f"database is up to date: {redact_url(settings.database_url)}")


@app.command()
def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run the server (migrating the database first)."""
    settings = get_settings()
    migrate_or_exit(settings)
    _serve(settings, host, port)


@app.command()
def demo(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run the server on SQLite with demo queues, agents and conversations; prints URLs and logins."""
    # Demo mode: every phone number answers with the demo flow, and the demo phone signs with the demo's token.
    settings = get_settings().model_copy(update={"demo_mode": True})
    if not settings.is_sqlite:
        typer.echo("note: SWITCHBOARD_DATABASE_URL is not SQLite; the demo seeds that database instead", err=True)
    migrate_or_exit(settings)
    seed = asyncio.run(_seed(settings))
    base = f"http://{host}:{port}"
    if "public_url" not in settings.model_fields_set:
        # The links the server writes (the help center's canonical links and sitemap) name this server, as the
        # URLs printed below do, not the default port.
        settings = settings.model_copy(update={"public_url": base})
    settings, catcher = demo_settings(settings)
    settings, social = demo_social_settings(settings)
    typer.echo("")
    typer.echo("Switchboard demo" + (" (seeded demo data)" if seed.seeded else " (existing data kept)"))
    typer.echo(f"  database:    {redact_url(settings.database_url)}")
    for label, path in _demo_pages():
        typer.echo(f"  {label + ':':<12} {base}{path}")
    typer.echo("  logins (username / password):")
    for username, password, role in seed.logins:
        typer.echo(f"    {username:<11} / {password:<16} ({role})")
    typer.echo("")
    if seed.available:
        username, password = seed.available
        typer.echo(
            f"  To answer as an agent: open {base}/console in another window and log in as {username} / {password}"
        )
        typer.echo(f"  ({username} is available now), then chat from {base}/demo: the chat is offered in the console.")
    if catcher is not None:
        typer.echo(f"  Mail the demo sends goes to a local mail catcher (port {catcher.port}): {base}/demo/mailbox")
    if social is not None:
        typer.echo(f"  Write as a Messenger, Instagram, WhatsApp or Telegram customer: {base}/demo/social")
    typer.echo("")
    try:
        _serve(settings, host, port)
    finally:
        if catcher is not None:
            catcher.stop()
        if social is not None:
            social.stop()


def demo_settings(settings: Settings) -> tuple[Settings, MailCatcher | None]:
    """The demo's settings: its pages' hints on (``demo_mode``); unless mail is configured, outgoing email to a
    local SMTP catcher it starts (``hub.mail_catcher``, shown at /demo/mailbox); and, unless set, an available
    agent nobody is logged in as is never set away for the offers they miss (``max_missed_offers`` 0), so the
    demo's chat still reaches "a person" when a newcomer opens it minutes after the start."""
    from hub.mail_catcher import MailCatcher

    update: dict[str, Any] = {"demo_mode": True}
    if "max_missed_offers" not in settings.model_fields_set:
        update["max_missed_offers"] = 0
    catcher = None
    if not settings.mailboxes and not settings.outgoing_smtp_host:
        directory = settings.demo_mailbox_dir or settings.attachment_dir.parent / "demo-mailbox"
        catcher = MailCatcher(directory).start()
        update |= {"outgoing_smtp_host": catcher.host, "outgoing_smtp_port": catcher.port}
        update["demo_mailbox_dir"] = directory
    return settings.model_copy(update=update), catcher


def demo_social_settings(settings: Settings) -> tuple[Settings, ApiCatcher | None]:
    """Unless social accounts or Meta's app secret are configured, the demo's own accounts (a Facebook page, an
    Instagram account, a WhatsApp number and a Telegram bot, answered in the support queue, their secrets the
    demo's own: ``hub.config.DEMO_SOCIAL``), sending to a
    local catcher it starts, whose calls the pretend app (/demo/social) shows as the agent's replies; and a demo
    WhatsApp template unless templates are configured."""
    from pydantic import SecretStr

    from hub.api_catcher import ApiCatcher
    from hub.config import (
        DEMO_SOCIAL,
        MessageTemplate,
        MetaPageSettings,
        TelegramBotSettings,
        WhatsAppNumberSettings,
    )

    if settings.meta_pages or settings.whatsapp_numbers or settings.telegram_bots or settings.meta_app_secret:
        return settings, None
    directory = settings.demo_social_dir or settings.attachment_dir.parent / "demo-social"
    catcher = ApiCatcher(directory).start()
    demo, token = DEMO_SOCIAL, SecretStr("demo-access-token")
    update: dict[str, Any] = {
        "meta_app_secret": SecretStr(demo.meta_app_secret),
        "meta_verify_token": SecretStr("switchboard-demo-verify-token"),
        "meta_pages": [
            MetaPageSettings(page_id=demo.page, access_token=token, queue=demo.queue, kind="messenger"),
            MetaPageSettings(page_id=demo.instagram, access_token=token, queue=demo.queue, kind="instagram"),
        ],
        "whatsapp_numbers": [
            WhatsAppNumberSettings(phone_number_id=demo.whatsapp, access_token=token, queue=demo.queue)
        ],
        "telegram_bots": [
            TelegramBotSettings(
                name=demo.bot,
                token=SecretStr("123456789:switchboard-demo-bot-token"),
                secret_token=SecretStr(demo.telegram_secret),
                queue=demo.queue,
            )
        ],
        "meta_graph_url": f"{catcher.url}/graph",
        "telegram_api_url": f"{catcher.url}/telegram",
        "demo_social_dir": directory,
    }
    if not settings.whatsapp_templates:
        update["whatsapp_templates"] = [
            MessageTemplate(name="order_update", body="Hello {{1}}, there is news about your order {{2}}.")
        ]
    return settings.model_copy(update=update), catcher


def _demo_pages() -> list[tuple[str, str]]:
    return [
        ("console", "/console"),
        ("chat demo", "/demo"),
        ("demo phone", "/demo/phone"),
        ("social app", "/demo/social"),
        ("help center", "/help"),
        ("wallboard", "/supervisor"),
        ("admin", "/admin"),
        ("articles", "/admin/kb"),
        ("phone", "/admin/phone"),
        ("widget", "/widget.js"),
        ("API docs", "/docs"),
        ("health", "/healthz"),
        ("mailbox", "/demo/mailbox"),
        ("metrics", "/metrics"),
    ]


async def _seed(settings: Settings) -> DemoSeed:
    from hub.app import seed_demo
    from hub.runtime import standalone

    async with standalone(settings) as rt:
        return await seed_demo(rt)


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
