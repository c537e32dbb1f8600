"""HTTP and websocket endpoints of the chat channel: widget config, sessions, attachments, ``/widget.js`` and
``/ws/chat``. Thin: parse, then call the channel's running ``WebchatService`` (``build_router`` is given the
channel, which holds it once started).

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, and ``Service`` is
local to ``build_router``."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from channels.webchat.service import CHANNEL, AttachmentTooLarge, BadAttachment, VisitorClaims, WebchatService
from hub.deps import authenticate
from hub.errors import InvalidInput, NotFound, PermissionDenied
from hub.file_access import Conversation, record_upload, require_readable_file
from hub.files import SAFE_TYPES
from hub.inputs import Input

STATIC = Path(__file__).parent / "static"

FIELD_LABELS = {"name": "Your name", "email": "Email address"}


class VerifiedUser(Input):
    """A site's signed-in user, vouched for by an HMAC the site computed with the shared secret."""

    user_id: str = Field(min_length=1, max_length=200)
    hash: str = Field(min_length=64, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200)


class SessionCreate(Input):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    queue: str | None = Field(default=None, max_length=100)
    identity: VerifiedUser | None = None

    @field_validator("name", "email")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class SessionCreated(BaseModel):
    token: str
    conversation_id: str
    visitor_id: str
    verified: bool


class AttachmentRead(BaseModel):
    sha256: str
    filename: str
    content_type: str
    size: int
    url: str


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain and " " not in value)


def _visitor(service: WebchatService, authorization: str | None) -> VisitorClaims:
    token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
    claims = service.tokens.verify(token) if token else None
    if claims is None:
        raise PermissionDenied("a visitor token is required", code="unauthorized")
    return claims


async def _require_readable(request: Request, service: WebchatService, sha256: str, token: str | None) -> None:
    """A logged-in agent who may see a message carrying the file, or the visitor whose conversation carries it
    (``hub.file_access``); 401 for neither a login nor a visitor token, else 404."""
    principal = await authenticate(request)
    claims = service.tokens.verify(token) if token else None
    if principal is None and claims is None:
        raise PermissionDenied("log in, or give the visitor token of the conversation", code="unauthorized")
    await require_readable_file(
        service.rt,
        sha256=sha256,
        principal=principal,
        conversation=Conversation(CHANNEL, claims.conversation_id) if claims is not None else None,
    )


def build_router(running: Callable[[], WebchatService]) -> APIRouter:
    """The channel's endpoints; ``running`` answers the channel's ``WebchatService`` once it has started."""
    router = APIRouter(tags=["webchat"])

    async def service() -> WebchatService:
        return running()

    Service = Annotated[WebchatService, Depends(service)]

    @router.get("/api/chat/config")
    async def chat_config(service: Service, queue: str | None = None) -> dict[str, Any]:
        """What the widget shows before a chat: the pre-chat form and whether anyone is available."""
        settings = service.settings
        availability = await service.queues.availability(channel=CHANNEL, queue=queue)
        return {
            "title": settings.chat_title,
            "greeting": settings.chat_greeting,
            "pre_chat_fields": [
                {
                    "name": f,
                    "label": FIELD_LABELS.get(f, f),
                    "type": "email" if f == "email" else "text",
                    "required": f in settings.chat_prechat_required,
                }
                for f in settings.chat_prechat_fields
            ],
            "available": availability.available,
            "queue": availability.queue,
            "open": availability.open,
            "offline_message": settings.chat_offline_message if availability.open else settings.chat_closed_message,
            "max_attachment_bytes": settings.chat_attachment_max_bytes,
            "attachment_types": sorted({t for _, _, t in SAFE_TYPES}),
            "max_message_chars": settings.chat_max_message_chars,
            "availability_check_seconds": settings.chat_availability_check_seconds,
        }

    @router.post("/api/chat/sessions", response_model=SessionCreated, status_code=201)
    async def start_session(body: SessionCreate, service: Service) -> SessionCreated:
        """Start a conversation. The pre-chat fields the server requires must be given; a site may pass its
        signed-in user with ``identity`` (user id and HMAC-SHA256 under ``SWITCHBOARD_CHAT_IDENTITY_SECRET``)."""
        settings = service.settings
        if body.identity is None:
            for f in settings.chat_prechat_required:
                if not getattr(body, f, None):
                    raise InvalidInput(f"{FIELD_LABELS.get(f, f)} is required", code="prechat_required")
        if body.email and not _looks_like_email(body.email):
            raise InvalidInput("that is not an email address", code="invalid_email")
        ident = body.identity
        token, claims = await service.start_session(
            name=body.name,
            email=body.email,
            queue=body.queue,
            user_id=ident.user_id if ident else None,
            user_hash=ident.hash if ident else None,
            user_email=ident.email if ident else None,
            user_name=ident.name if ident else None,
        )
        return SessionCreated(
            token=token, conversation_id=claims.conversation_id, visitor_id=claims.visitor_id, verified=claims.verified
        )

    @router.post("/api/chat/attachments", response_model=AttachmentRead, status_code=201)
    async def upload_attachment(
        service: Service,
        file: Annotated[UploadFile, File()],
        authorization: Annotated[str | None, Header()] = None,
    ) -> AttachmentRead:
        """A visitor uploads an image (PNG, JPEG, GIF, WebP) or a PDF, checked by its content, up to the size
        limit; the answer is the reference to put in a message's ``attachments``. Only messages of this
        visitor's conversation may carry it."""
        claims = _visitor(service, authorization)
        limit = service.settings.chat_attachment_max_bytes
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise AttachmentTooLarge(f"attachments are at most {limit // 1024} KB")
        if not data:
            raise BadAttachment("the file is empty")
        # File I/O off the event loop: the loop also carries every live chat.
        digest, _ = await asyncio.to_thread(service.storage.save, data)
        # Bound to this conversation: only its messages may carry the file (``hub.file_access``).
        await record_upload(service.rt, sha256=digest, conversation=Conversation(CHANNEL, claims.conversation_id))
        ref = {"sha256": digest, "filename": file.filename or "attachment"}
        described = await asyncio.to_thread(service.storage.describe, ref)
        return AttachmentRead(
            sha256=digest,
            filename=described.filename,
            content_type=described.content_type,
            size=described.size,
            url=described.url or "",
        )

    @router.get("/api/chat/attachments/{sha256}")
    async def get_attachment(
        sha256: str,
        request: Request,
        service: Service,
        token: str | None = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        """An uploaded attachment, for a logged-in agent who may see a message carrying it or for the visitor
        whose conversation holds it (visitor token as ``Authorization: Bearer`` or, for an ``<img src>``, as
        ``?token=``); anyone else gets 404.
        Served with its sniffed type, never as HTML, and sandboxed."""
        bearer = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
        await _require_readable(request, service, sha256, token or bearer)
        found = await asyncio.to_thread(service.storage.read, sha256)
        if found is None:
            raise NotFound("no such attachment")
        data, content_type = found
        disposition = "inline" if content_type.startswith("image/") else "attachment"
        return Response(
            data,
            media_type=content_type,
            headers={
                "Content-Disposition": f'{disposition}; filename="{sha256[:12]}"',
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=31536000, immutable",
            },
        )

    @router.get("/widget.js", include_in_schema=False)
    async def widget_js() -> FileResponse:
        """The embeddable chat widget: one ``<script src=".../widget.js" async></script>`` on any site."""
        return FileResponse(
            STATIC / "widget.js",
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    @router.websocket("/ws/chat")
    async def chat_socket(ws: WebSocket, service: Service, token: str | None = None, last_message_id: int = 0) -> None:
        """The widget's socket: see ``channels.webchat.service`` for the protocol."""
        await service.serve(ws, token, last_message_id)

    return router


class ChatCORS:
    """Cross-origin access to ``/api/chat/*`` (and the other ``prefixes`` the widget calls, such as the
    knowledge base's public answers) for the sites that embed the widget. Visitors authenticate with bearer
    tokens, never cookies, so no credentials are allowed; the rest of the API stays same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str], prefixes: tuple[str, ...] = ("/api/chat/",)) -> None:
        self.app = app
        self.origins = origins
        self.prefixes = prefixes

    def _allowed(self, origin: str) -> str | None:
        if "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        origin = dict(scope["headers"]).get(b"origin", b"").decode("latin-1")
        allowed = self._allowed(origin) if origin else None
        if scope["method"] == "OPTIONS" and allowed:
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": allowed,
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                },
            )
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and allowed:
                headers = MutableHeaders(scope=message)
                headers["Access-Control-Allow-Origin"] = allowed
                headers["Vary"] = "Origin"
            await send(message)

        await self.app(scope, receive, with_headers)
