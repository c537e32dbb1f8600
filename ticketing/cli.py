"""The core's commands: ``switchboard agent create``, ``switchboard contacts dedupe`` and ``switchboard contacts
export ID``. ``hub/cli.py`` adds ``agent_app`` under ``agent`` and ``contacts_app`` under ``contacts``.

Imported whenever the ``switchboard`` command starts, so everything heavier than typer is imported inside the
commands."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.commands import migrate_or_exit
from hub.config import Settings, get_settings

if TYPE_CHECKING:
    from ticketing.models import AgentCreate, AgentRead

agent_app = typer.Typer(help="Manage agents, supervisors and admins.", no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts: find duplicates, export one contact's data.", no_args_is_help=True)


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
    migrate_or_exit(settings)
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


@contacts_app.command("dedupe")
def contacts_dedupe(
    out: Annotated[Path, typer.Option(help="The review list to write (CSV).")] = Path("contacts-duplicates.csv"),
) -> None:
    """Scan every contact for possible duplicates (the same address or number in another form, a visitor's
    pre-chat email matching a known contact, similar names at a shared company domain or phone, the same full
    name) and write a review list, most likely first. Nothing is merged: merge in the console (a contact's
    page, or the duplicates list), where a merge can be undone."""
    settings = get_settings()
    migrate_or_exit(settings)
    rows = asyncio.run(_dedupe(settings))
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["score", "contact_id", "contact_name", "other_id", "other_name", "reasons", "review"])
        for row in rows:
            writer.writerow(row)
    typer.echo(f"{len(rows)} possible duplicate pairs written to {out}")


async def _dedupe(settings: Settings) -> list[list[Any]]:
    from hub.runtime import standalone
    from ticketing.contact_index import ContactIndex

    index = ContactIndex(settings.default_phone_region, scan_only=True)
    async with standalone(settings) as rt:
        typer.echo("reading contacts...", err=True)
        async with rt.read() as conn:
            await index.refresh(conn)
    typer.echo(f"{len(index.entries)} contacts, {index.block_count} blocks to compare", err=True)
    with typer.progressbar(length=index.block_count, label="comparing", show_pos=True, file=sys.stderr) as bar:
        last = 0

        def advance(done: int) -> None:
            nonlocal last
            bar.update(done - last)
            last = done

        pairs = index.scan(progress=advance)
    base = settings.public_url.rstrip("/")
    return [
        [
            p.score,
            p.contact_id,
            index.entries[p.contact_id].name or "",
            p.other_id,
            p.other_name or "",
            "; ".join(p.reasons),
            f"{base}/console/contacts/{p.contact_id}",
        ]
        for p in pairs
    ]


@contacts_app.command("export")
def contacts_export(
    contact_id: Annotated[int, typer.Argument(help="The contact's id (on its page in the console).", min=1)],
    out: Annotated[Path | None, typer.Option(help="File to write; standard output if not given.")] = None,
) -> None:
    """Everything stored about one contact as JSON (GDPR access request): the contact, identities, notes,
    every ticket and message, and the attachments (base64)."""
    from hub.errors import SwitchboardError

    settings = get_settings()
    migrate_or_exit(settings)
    try:
        data = asyncio.run(_export(settings, contact_id))
    except SwitchboardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(
            f"contact {contact_id}: {len(data['tickets'])} tickets, {len(data['attachments'])} files written to {out}"
        )


async def _export(settings: Settings, contact_id: int) -> dict[str, Any]:
    from hub.runtime import standalone
    from ticketing.gdpr import export_contact

    async with standalone(settings) as rt:
        return await export_contact(rt, contact_id=contact_id, principal=None)
