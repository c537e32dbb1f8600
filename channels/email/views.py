"""/api/email/...: mailboxes and quarantine for admins, stored attachments for the agents who may see them
(``hub.file_access``). Thin: each endpoint authorizes through ``hub.deps`` and calls one method of the channel's
running ``EmailService``.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, and ``Service`` is
local to ``build_router``."""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from channels.email.models import MailboxRead, MailboxUpdate, QuarantineRead, ReprocessResult
from channels.email.service import EmailService
from hub.config import MailboxSettings
from hub.deps import CurrentAdmin, current_admin
from hub.file_access import ReadableFile
from hub.inputs import IdParam


def build_router(running: Callable[[], EmailService]) -> APIRouter:
    """The router; ``running`` answers the channel's ``EmailService`` once it has started."""
    router = APIRouter(prefix="/api/email", tags=["email"])
    as_admin = [Depends(current_admin)]

    async def service() -> EmailService:
        return running()

    Service = Annotated[EmailService, Depends(service)]

    @router.get("/mailboxes", response_model=list[MailboxRead], dependencies=as_admin)
    async def list_mailboxes(channel: Service) -> list[MailboxRead]:
        """Every mailbox, from settings and from this API, with its IMAP position and health."""
        return await channel.list_mailboxes()

    @router.post("/mailboxes", response_model=MailboxRead, status_code=201)
    async def create_mailbox(body: MailboxSettings, channel: Service, me: CurrentAdmin) -> MailboxRead:
        """Add a mailbox; its worker starts at once."""
        return await channel.create_mailbox(body, actor=me)

    @router.get("/mailboxes/{name}", response_model=MailboxRead, dependencies=as_admin)
    async def get_mailbox(name: str, channel: Service) -> MailboxRead:
        return await channel.get_mailbox(name)

    @router.patch("/mailboxes/{name}", response_model=MailboxRead)
    async def update_mailbox(name: str, body: MailboxUpdate, channel: Service, me: CurrentAdmin) -> MailboxRead:
        """Change a mailbox made through this API; its worker restarts with the new settings."""
        return await channel.update_mailbox(name, body, actor=me)

    @router.delete("/mailboxes/{name}", status_code=204)
    async def delete_mailbox(name: str, channel: Service, me: CurrentAdmin) -> Response:
        await channel.delete_mailbox(name, actor=me)
        return Response(status_code=204)

    @router.get("/quarantine", response_model=list[QuarantineRead], dependencies=as_admin)
    async def list_quarantine(
        channel: Service,
        include_reprocessed: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[QuarantineRead]:
        """Mails that could not become messages, newest first."""
        return await channel.list_quarantine(include_reprocessed=include_reprocessed, limit=limit)

    @router.get("/quarantine/{quarantine_id}/raw", dependencies=as_admin)
    async def quarantined_raw(quarantine_id: IdParam, channel: Service) -> Response:
        """The mail exactly as received, to download and inspect."""
        raw = await channel.quarantined_raw(quarantine_id)
        return Response(
            raw,
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="quarantine-{quarantine_id}.eml"'},
        )

    @router.post("/quarantine/{quarantine_id}/reprocess", response_model=ReprocessResult, dependencies=as_admin)
    async def reprocess(quarantine_id: IdParam, channel: Service) -> ReprocessResult:
        """Try a quarantined mail again; answers whether it became a message."""
        return await channel.reprocess(quarantine_id)

    @router.get("/attachments/{sha256}")
    async def attachment(sha256: ReadableFile, channel: Service) -> Response:
        """A stored attachment, inline image or raw mail, by its content hash, for an agent who may see a message
        that carries it (``hub.file_access``); 404 for anyone else."""
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
