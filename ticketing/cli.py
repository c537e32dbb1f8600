"""The core's commands: ``switchboard agent create``. ``hub/cli.py`` adds ``agent_app`` under ``agent``.

Imported whenever the ``switchboard`` command starts, so everything heavier than typer is imported inside the
commands."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from hub.commands import migrate_or_exit
from hub.config import Settings, get_settings

if TYPE_CHECKING:
    from ticketing.models import AgentCreate, AgentRead

agent_app = typer.Typer(help="Manage agents, supervisors and admins.", no_args_is_help=True)


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
