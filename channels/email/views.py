"""/api/email/...: mailboxes and quarantine for admins, stored attachments for agents. Thin: each endpoint
authorizes through the dependencies ``hub/app.py`` hands in and calls one ``EmailChannel`` method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from channels.email.models import MailboxRead, MailboxUpdate, QuarantineRead, ReprocessResult
from channels.email.service import EmailChannel
from hub.config import MailboxSettings
from hub.inputs import IdParam


async def _channel(request: Request) -> EmailChannel:
    return request.app.state.email  # type: ignore[no-any-return]


ChannelDep = Annotated[EmailChannel, Depends(_channel)]


def build_router(*, admin: Callable[..., Any], agent: Callable[..., Any]) -> APIRouter:
    """The router; ``admin`` and ``agent`` are dependencies that refuse anyone else."""
    router = APIRouter(prefix="/api/email", tags=["email"])
    as_admin = [Depends(admin)]

    @router.get("/mailboxes", response_model=list[MailboxRead], dependencies=as_admin)
    async def list_mailboxes(channel: ChannelDep) -> list[MailboxRead]:
        """Every mailbox, from settings and from this API, with its IMAP position and health."""
        return await channel.list_mailboxes()

    @router.post("/mailboxes", response_model=MailboxRead, status_code=201, dependencies=as_admin)
    async def create_mailbox(body: MailboxSettings, channel: ChannelDep) -> MailboxRead:
        """Add a mailbox; its worker starts at once."""
        return await channel.create_mailbox(body)

    @router.get("/mailboxes/{name}", response_model=MailboxRead, dependencies=as_admin)
    async def get_mailbox(name: str, channel: ChannelDep) -> MailboxRead:
        return await channel.get_mailbox(name)

    @router.patch("/mailboxes/{name}", response_model=MailboxRead, dependencies=as_admin)
    async def update_mailbox(name: str, body: MailboxUpdate, channel: ChannelDep) -> MailboxRead:
        """Change a mailbox made through this API; its worker restarts with the new settings."""
        return await channel.update_mailbox(name, body)

    @router.delete("/mailboxes/{name}", status_code=204, dependencies=as_admin)
    async def delete_mailbox(name: str, channel: ChannelDep) -> Response:
        await channel.delete_mailbox(name)
        return Response(status_code=204)

    @router.get("/quarantine", response_model=list[QuarantineRead], dependencies=as_admin)
    async def list_quarantine(
        channel: ChannelDep,
        include_reprocessed: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[QuarantineRead]:
        """Mails that could not become messages, newest first."""
        return await channel.list_quarantine(include_reprocessed=include_reprocessed, limit=limit)

    @router.get("/quarantine/{quarantine_id}/raw", dependencies=as_admin)
    async def quarantined_raw(quarantine_id: IdParam, channel: ChannelDep) -> Response:
        """The mail exactly as received, to download and inspect."""
        raw = await channel.quarantined_raw(quarantine_id)
        return Response(
            raw,
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="quarantine-{quarantine_id}.eml"'},
        )

    @router.post("/quarantine/{quarantine_id}/reprocess", response_model=ReprocessResult, dependencies=as_admin)
    async def reprocess(quarantine_id: IdParam, channel: ChannelDep) -> ReprocessResult:
        """Try a quarantined mail again; answers whether it became a message."""
        return await channel.reprocess(quarantine_id)

    @router.get("/attachments/{sha256}", dependencies=[Depends(agent)])
    async def attachment(sha256: str, channel: ChannelDep) -> Response:
        """A stored attachment or inline image, by its content hash."""
        data = await channel.attachment(sha256)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": "attachment",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )

    return router
