"""The live chat channel: visitor tokens, the ``/ws/chat`` protocol, and the sender that delivers agents'
replies to the visitor's open sockets.

A visitor starts a conversation over HTTP (``POST /api/chat/sessions``) and gets a signed visitor token that
names their visitor id, conversation id and sender identity; the token is the only way to read or write that
conversation, so one visitor can never reach another's.

Frames from the visitor (JSON, each with a ``type``):
- ``message`` ``{client_id, text, attachments: [{sha256, filename}]}``: stored through ingest (idempotent on
  the conversation and ``client_id``, so a resend after a reconnect is stored once), then acknowledged. Each
  attachment must have been uploaded in this conversation (``POST /api/chat/attachments`` with its token) or
  be carried already by one of its messages; else the message is refused, nothing stored
  (``attachment_not_uploaded``);
- ``typing`` ``{active}``; ``delivered`` ``{message_ids}``; ``rating`` ``{ticket_id, score, comment}``;
  ``email_fallback`` ``{email}`` (nobody can chat: answer this conversation by email); ``solved``
  ``{article_id, title}`` (an article the widget offered answered the question: the open ticket closes as
  deflected); ``ping``.

Frames to the visitor:
- ``hello`` first, with every visible message after the client's ``last_message_id`` (all of them on a
  fresh page), the conversation's state (agent, rating wanted, email fallback);
- ``ack`` ``{client_id, message_id, status: "sent", created_at}`` once a message is committed;
- ``message`` ``{message}``: an agent's reply, or the visitor's own message written in another tab;
- ``agent_joined`` ``{name}``, ``agent_left``, ``typing`` ``{active, name}``, ``rating_request``
  ``{ticket_id}``, ``rating_saved``, ``email_fallback`` ``{email}``, ``deflected`` ``{ticket_id}`` (the
  visitor closed the conversation with ``solved``: no rating is asked), ``heartbeat``, ``pong``;
- ``error`` ``{code, message, client_id?}``: ``unauthorized`` (bad or expired token; closes 4401),
  ``bad_frame``, ``too_long``, ``bad_attachment``, ``attachment_not_uploaded``, ``rate_limited``, and the
  domain errors' codes.

Resume: the widget keeps the id of the newest message it shows and reconnects with ``last_message_id``; the
server registers the connection for live frames *before* it reads the history, and skips live messages the
history already held, so nothing falls between the two and nothing comes twice. Messages it sent that were
not acknowledged are resent with the same ``client_id``.

Every message is committed before anyone sees it: the visitor's through ingest (the ack follows the
commit), the agent's through the outbox (the sender runs after the reply is committed).

Errors (``hub.errors.SwitchboardError`` subclasses; over HTTP their status, on the socket an ``error`` frame
with their code)::

    SwitchboardError
    ├── BadFrame               422  bad_frame
    ├── MessageTooLong         422  too_long
    ├── BadAttachment          415  bad_attachment
    ├── AttachmentTooLarge     413  attachment_too_large
    ├── AttachmentNotUploaded  403  attachment_not_uploaded  (hub.file_access)
    ├── IdentityRejected       403  identity_rejected
    └── IdentityNotConfigured  422  identity_not_configured
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.config import Settings
from hub.db import json_dumps, utcnow
from hub.errors import SwitchboardError
from hub.events import EventRecord, EventType
from hub.file_access import Conversation as FileConversation
from hub.file_access import require_attachable
from hub.files import FileStore, StoredFileMissing, sniff_safe_type
from hub.inputs import clean, is_id
from hub.messages import Attachment, DeliveryResult, Identity, InboundMessage, Ingest, OutboundMessage
from hub.ports import ConversationMessage, ConversationState, ConversationTicket
from hub.runtime import Runtime
from hub.websocket import frame_writer, text_frame

log = logging.getLogger(__name__)

CHANNEL = "webchat"
VISITOR_SALT = "switchboard-visitor"
MAX_CLIENT_ID = 64
SEND_QUEUE = 256
# "after this message id": only the conversation's state, no messages (ids are 32-bit on PostgreSQL)
NO_MESSAGES = 2**31 - 1
HEARTBEAT = '{"type": "heartbeat"}'
# An agent's reply on its way to the visitor's sockets in every process (a listeners-only ephemeral frame)
REPLY = "webchat.reply"


# --- visitor tokens -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VisitorClaims:
    """What a visitor token carries."""

    visitor_id: str
    conversation_id: str
    identity: str  # the sender identity value ingest resolves the contact from
    name: str | None = None
    email: str | None = None
    verified: bool = False
    queue: str | None = None


class VisitorTokens:
    """Signed, timestamped visitor tokens (itsdangerous, with a salt of their own: an agent's session token is
    never a valid visitor token, nor the reverse)."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=VISITOR_SALT)
        self.ttl_seconds = ttl_seconds

    def issue(self, claims: VisitorClaims) -> str:
        return self._serializer.dumps(
            {
                "v": claims.visitor_id,
                "c": claims.conversation_id,
                "i": claims.identity,
                "n": claims.name,
                "e": claims.email,
                "ok": claims.verified,
                "q": claims.queue,
            }
        )

    def verify(self, token: str) -> VisitorClaims | None:
        try:
            data = self._serializer.loads(token, max_age=self.ttl_seconds)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("v", "c", "i")):
            return None
        return VisitorClaims(
            visitor_id=data["v"],
            conversation_id=data["c"],
            identity=data["i"],
            name=data.get("n"),
            email=data.get("e"),
            verified=bool(data.get("ok")),
            queue=data.get("q"),
        )


def identity_hash(secret: str, user_id: str, email: str | None = None) -> str:
    """The HMAC-SHA256 (hex) a site computes on its server to vouch for its user: over the user id, or over
    ``user_id + "\\n" + email`` when it also passes the user's email address."""
    message = user_id if not email else f"{user_id}\n{email.strip().lower()}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_identity(secret: str, user_id: str, email: str | None, given: str) -> bool:
    return hmac.compare_digest(identity_hash(secret, user_id, email), given.strip().lower())


# --- what the widget is sent ------------------------------------------------------------------------------------


def message_frame(m: ConversationMessage) -> dict[str, Any]:
    """A message as the widget shows it (in ``hello`` and in ``message`` frames)."""
    return {
        "id": m.id,
        "ticket_id": m.ticket_id,
        "direction": m.direction,
        "text": m.text,
        "attachments": m.attachments,
        "agent_name": m.author_name,
        "delivery_status": m.delivery_status,
        "client_id": m.metadata.get("client_id"),
        "created_at": m.created_at.isoformat(),
    }


def ticket_state(t: ConversationTicket) -> dict[str, Any]:
    """What the channel keeps of a conversation's newest ticket, and keeps current from events."""
    return {
        "id": t.id,
        "status": t.status,
        "queue_id": t.queue_id,
        "assignee_id": t.assignee_id,
        "offered_agent_id": t.offered_agent_id,
        "agent_name": t.assignee_name,
        "rating": t.rating,
        # Moved to email because nobody could chat: the widget says where the answer will go.
        "reply_to": t.reply_to if t.reply_channel == "email" else None,
        "deflected": t.deflected,
    }


# --- connections -------------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Connection:
    """One visitor socket: its claims, a bounded queue of frames to send, and the messages it has been sent."""

    ws: WebSocket
    claims: VisitorClaims
    queue: asyncio.Queue[tuple[int | None, str]] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    seen: set[int] = field(default_factory=set)
    overflowed: bool = False
    last_typing: tuple[bool, float] = (False, 0.0)
    last_sent: float = field(default_factory=time.monotonic)  # the loop's clock: when a frame last went out
    # Writes a frame's bytes to the socket now or says False (hub.websocket.FrameWriter); set once the hello
    # went out, and only where the socket's protocol offers it.
    direct: Callable[[bytes], bool] | None = None

    def push(self, text: str, message_id: int | None = None) -> None:
        if self.overflowed:
            return
        if self.direct is not None and self.queue.empty():
            # Nothing waits before it, so it goes out now, in order, without a turn of the writer task (an ack
            # for every message, and the agents' replies): as ``_write`` would send it.
            if message_id is not None and message_id in self.seen:
                return
            if self.direct(text_frame(text)):
                if message_id is not None:
                    self.seen.add(message_id)
                self.last_sent = time.monotonic()
                return
        try:
            self.queue.put_nowait((message_id, text))
        except asyncio.QueueFull:
            # Too slow to keep up: it is closed and the widget resumes from its newest message.
            self.overflowed = True


@dataclass(slots=True)
class _Conversation:
    connections: set[Connection] = field(default_factory=set)
    ticket: dict[str, Any] | None = None  # the newest ticket's state, kept current from events
    ticket_ids: set[int] = field(default_factory=set)


class WebchatService:
    """The running chat channel of one process. It asks the core through the ports (``hub.ports``): the
    conversation's history and state, rating, receipts and moving to email (``conversations``), verified
    visitors' contacts (``contacts``), agents' names (``agents``), whether anybody is available (``queues``)."""

    def __init__(self, rt: Runtime, ingest: Ingest, settings: Settings) -> None:
        self.rt = rt
        self.ingest = ingest
        self.settings = settings
        ports = rt.ports
        self.conversations = ports.conversations
        self.contacts = ports.contacts
        self.agents = ports.agents
        self.queues = ports.queues
        self.tokens = VisitorTokens(settings.secret_key.get_secret_value(), settings.chat_visitor_token_ttl_seconds)
        self.storage = ChatAttachments(FileStore(settings.attachment_dir))
        self._conversations: dict[str, _Conversation] = {}
        self._by_ticket: dict[int, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sender = WebchatSender(self)

    async def start(self) -> None:
        self.rt.events.listen(self._on_event)
        self._spawn(self._heartbeats())

    async def stop(self) -> None:
        self.rt.events.unlisten(self._on_event)
        for task in list(self._tasks):
            task.cancel()

    # --- sessions ---------------------------------------------------------------------------------------------

    async def start_session(
        self,
        *,
        name: str | None,
        email: str | None,
        queue: str | None,
        user_id: str | None = None,
        user_hash: str | None = None,
        user_email: str | None = None,
        user_name: str | None = None,
    ) -> tuple[str, VisitorClaims]:
        """A new conversation; a site-verified user is linked to their existing contact."""
        visitor_id = uuid.uuid4().hex
        verified = False
        identity = f"visitor:{visitor_id}"
        if user_id is not None:
            secret = self.settings.chat_identity_secret
            if secret is None:
                raise IdentityNotConfigured("identity verification is not configured on this server")
            if not user_hash or not verify_identity(secret.get_secret_value(), user_id, user_email, user_hash):
                raise IdentityRejected("the identity hash does not match this user")
            verified = True
            identity = f"user:{user_id}"
            email = user_email or email
            name = user_name or name
            verified_ids = [Identity(kind="webchat", value=identity)]
            if user_email:
                verified_ids.append(Identity(kind="email", value=user_email))
            await self.contacts.link_verified(identities=verified_ids, name=name)
        claims = VisitorClaims(
            visitor_id=visitor_id,
            conversation_id=uuid.uuid4().hex,
            identity=identity,
            name=name,
            email=email,
            verified=verified,
            queue=queue,
        )
        return self.tokens.issue(claims), claims

    # --- the socket ---------------------------------------------------------------------------------------------

    async def serve(self, ws: WebSocket, token: str | None, last_message_id: int) -> None:
        """Run one visitor websocket until it closes (see the module docstring for the protocol)."""
        claims = self.tokens.verify(token) if token else None
        try:
            await ws.accept()
            if claims is None:
                await ws.send_text(json_dumps({"type": "error", "code": "unauthorized", "message": "start a new chat"}))
                await ws.close(code=4401)
                return
        except (WebSocketDisconnect, OSError):
            return  # gone already: before the handshake completed, uvicorn raises ClientDisconnected (an OSError)
        conn = Connection(ws, claims)
        conv = self._conversations.setdefault(claims.conversation_id, _Conversation())
        conv.connections.add(conn)  # before reading the history: see "Resume" above
        gauge = self.rt.metrics.websocket_clients.labels("chat")
        gauge.inc()
        writer: asyncio.Task[None] | None = None
        try:
            state = await self.conversations.state(
                channel=CHANNEL,
                thread_key=claims.conversation_id,
                after_message_id=min(max(0, last_message_id), NO_MESSAGES),
            )
            self._learn(claims.conversation_id, state)
            for m in state.messages:
                conn.seen.add(m.id)
            await ws.send_text(json_dumps(self._hello(claims, state)))
            direct = frame_writer(ws)
            conn.direct = direct.send_frame_now if direct is not None else None
            writer = asyncio.create_task(self._write(conn))
            await self._read(conn)
        except WebSocketDisconnect:
            pass
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await writer
            gauge.dec()
            conv.connections.discard(conn)
            if not conv.connections:
                self._forget(claims.conversation_id)

    def _hello(self, claims: VisitorClaims, state: ConversationState) -> dict[str, Any]:
        current = state.current
        ticket = ticket_state(current) if current is not None else None
        return {
            "type": "hello",
            "conversation_id": claims.conversation_id,
            "visitor": {"name": claims.name, "email": claims.email, "verified": claims.verified},
            "messages": [message_frame(m) for m in state.messages],
            "ticket_id": ticket["id"] if ticket else None,
            "status": ticket["status"] if ticket else None,
            "agent": {"name": ticket["agent_name"]} if ticket and ticket.get("agent_name") else None,
            "rating_request": _wants_rating(ticket),
            "email_fallback": ticket.get("reply_to") if ticket else None,
        }

    async def _write(self, conn: Connection) -> None:
        # No timer per frame or per wait: heartbeats come from one sweep over every socket (``_heartbeats``).
        queue = conn.queue
        loop = asyncio.get_running_loop()
        while True:
            if queue.empty():
                if conn.overflowed:
                    # Everything queued before the overflow is sent; the widget resumes from its newest message.
                    await conn.ws.send_text(json_dumps({"type": "error", "code": "queue_overflow"}))
                    await conn.ws.close(code=4001)
                    return
                message_id, text = await queue.get()
            else:
                message_id, text = queue.get_nowait()
            if message_id is not None:
                if message_id in conn.seen:
                    continue
                conn.seen.add(message_id)
            await conn.ws.send_text(text)
            conn.last_sent = loop.time()

    async def _heartbeats(self) -> None:
        """Queue a heartbeat on every socket that sent nothing for ``heartbeat_seconds`` (it goes out at most a
        quarter period later): one timer for all the sockets of the process, however many are idle."""
        period = self.settings.heartbeat_seconds
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period / 4)
            now = loop.time()
            for conv in list(self._conversations.values()):
                for conn in conv.connections:
                    if now - conn.last_sent >= period and conn.queue.empty():
                        conn.push(HEARTBEAT)
                        conn.last_sent = now

    async def _read(self, conn: Connection) -> None:
        """Read the visitor's frames until they leave. A frame that is not one (binary, not JSON, not an object,
        too large), or that fails, gets an ``error`` frame, and the next frame is read as usual: one bad frame
        never ends the conversation, nor leaves the widget resending it for ever (an error naming its
        ``client_id`` takes it off the widget's list of messages to send)."""
        while True:
            try:
                message = await conn.ws.receive()
            except RuntimeError:
                # A send to this socket failed while this task was busy (the visitor is gone): Starlette then
                # refuses to read it (``WebSocketDisconnected``, a RuntimeError) instead of handing over the
                # disconnect. Many widgets closing at once made this an "Exception in ASGI application".
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                conn.push(_error("bad_frame", "frames must be JSON text, not binary"))
                continue
            if len(raw) > 4 * self.settings.chat_max_message_chars + 4096:
                conn.push(_error("too_long", "frame too large"))
                continue
            try:
                data = orjson.loads(raw)
            except ValueError:
                conn.push(_error("bad_frame", "frames must be JSON objects"))
                continue
            if not isinstance(data, dict):
                conn.push(_error("bad_frame", "frames must be JSON objects"))
                continue
            if data.get("type") != "message":
                # A message's text is cleaned once, as its InboundMessage is built (the chat's hot path).
                data = clean(data)
            try:
                await self._handle(conn, data)
            except SwitchboardError as exc:
                conn.push(_error(exc.code, exc.message, client_id=data.get("client_id")))
            except Exception:
                log.exception("a frame of chat %s failed", conn.claims.conversation_id)
                conn.push(_error("internal", "that could not be done; try again", client_id=data.get("client_id")))

    async def _handle(self, conn: Connection, data: dict[str, Any]) -> None:
        kind = data.get("type")
        claims = conn.claims
        if kind == "message":
            await self._on_message(conn, data)
        elif kind == "typing":
            await self._on_typing(conn, bool(data.get("active")))
        elif kind == "delivered":
            given = data.get("message_ids")
            if not isinstance(given, list):
                raise BadFrame("delivered needs message_ids, a list of message ids")
            ids = [i for i in given if is_id(i)][:200]
            if ids:
                await self.conversations.mark_delivered(
                    channel=CHANNEL, thread_key=claims.conversation_id, message_ids=ids
                )
        elif kind == "rating":
            score, ticket_id = data.get("score"), data.get("ticket_id")
            if type(score) is not int or not is_id(ticket_id):
                raise BadFrame("a rating needs ticket_id and score (1-5)")
            comment = data.get("comment")
            await self.conversations.rate(
                channel=CHANNEL,
                thread_key=claims.conversation_id,
                ticket_id=ticket_id,
                rating=score,
                comment=comment[:2000] if isinstance(comment, str) else None,
            )
            conn.push(json_dumps({"type": "rating_saved", "ticket_id": ticket_id}))
        elif kind == "email_fallback":
            email = data.get("email")
            if not isinstance(email, str) or len(email) > 320:
                raise BadFrame("give an email address")
            result = await self.conversations.reply_by_email(
                channel=CHANNEL, thread_key=claims.conversation_id, email=email, verified=claims.verified
            )
            self._broadcast(claims.conversation_id, {"type": "email_fallback", "email": result.reply_to})
        elif kind == "solved":
            article_id, title = data.get("article_id"), data.get("title")
            if not is_id(article_id) or not isinstance(title, str):
                raise BadFrame("solved needs article_id and title")
            ticket_id = await self.conversations.close_deflected(
                channel=CHANNEL, thread_key=claims.conversation_id, article_id=article_id, article_title=title[:300]
            )
            # The ticket's event tells every tab of the conversation; this one hears it even with none closed.
            conn.push(json_dumps({"type": "deflected", "ticket_id": ticket_id}))
        elif kind == "ping":
            conn.push('{"type": "pong"}')
        else:
            raise BadFrame(f"unknown frame type {kind!r}")

    async def _on_message(self, conn: Connection, data: dict[str, Any]) -> None:
        claims = conn.claims
        client_id, text = data.get("client_id"), data.get("text", "")
        if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID or not isinstance(text, str):
            raise BadFrame("a message needs a client_id (up to 64 characters) and text")
        if len(text) > self.settings.chat_max_message_chars:
            raise MessageTooLong(f"messages are at most {self.settings.chat_max_message_chars} characters")
        refs = data.get("attachments") or []
        if not isinstance(refs, list) or len(refs) > 5:
            raise BadAttachment("at most 5 attachments per message")
        if refs:
            # Only files uploaded in this conversation, or sent in it before: a hash alone attaches nothing (else
            # the visitor could read any stored file through their own message). Checked before anything is stored.
            await require_attachable(
                self.rt,
                sha256s=[self.storage.reference(ref) for ref in refs],
                conversation=FileConversation(CHANNEL, claims.conversation_id),
            )
        attachments = [self.storage.describe(ref) for ref in refs]
        if not text.strip() and not attachments:
            raise BadFrame("an empty message")
        received = utcnow()
        result = await self.ingest(
            InboundMessage(
                channel=CHANNEL,
                external_id=f"{claims.conversation_id}:{client_id}",
                sender=Identity(kind="webchat", value=claims.identity, name=claims.name),
                text=text,
                attachments=attachments,
                thread_key=claims.conversation_id,
                queue=claims.queue,
                received_at=received,
                metadata={"client_id": client_id, "visitor_id": claims.visitor_id, "verified": claims.verified},
            )
        )
        conv = self._conversations.get(claims.conversation_id)
        if conv is not None and result.ticket_id not in conv.ticket_ids:
            conv.ticket_ids.add(result.ticket_id)
            self._by_ticket[result.ticket_id] = claims.conversation_id
            if conv.ticket is None or conv.ticket["id"] < result.ticket_id:
                # A new ticket (the first message, or writing again after a solve): refresh its state.
                state = await self.conversations.state(
                    channel=CHANNEL, thread_key=claims.conversation_id, after_message_id=NO_MESSAGES
                )
                self._learn(claims.conversation_id, state)
        if result.ticket_created and claims.email and not claims.verified:
            # Before the ack, so that an agent who opens the new ticket finds it. A failure costs the agent a
            # hint, not the visitor their message.
            try:
                await self.contacts.note_unverified_email(
                    contact_id=result.contact_id, ticket_id=result.ticket_id, email=claims.email
                )
            except Exception:
                log.exception("keeping the pre-chat email of conversation %s failed", claims.conversation_id)
        created = received.isoformat()
        conn.seen.add(result.message_id)
        conn.push(
            json_dumps(
                {
                    "type": "ack",
                    "client_id": client_id,
                    "message_id": result.message_id,
                    "ticket_id": result.ticket_id,
                    "status": "sent",
                    "created_at": created,
                }
            )
        )
        if conv is not None and len(conv.connections) > 1:
            frame = {
                "type": "message",
                "message": {
                    "id": result.message_id,
                    "ticket_id": result.ticket_id,
                    "direction": "inbound",
                    "text": text,
                    "attachments": [a.model_dump(mode="json") for a in attachments],
                    "agent_name": None,
                    "client_id": client_id,
                    "delivery_status": "received",
                    "created_at": created,
                },
            }
            text_frame = json_dumps(frame)
            for other in conv.connections:
                if other is not conn:
                    other.push(text_frame, result.message_id)

    async def _on_typing(self, conn: Connection, active: bool) -> None:
        conv = self._conversations.get(conn.claims.conversation_id)
        ticket = conv.ticket if conv else None
        if ticket is None:
            return
        now = time.monotonic()
        last_active, last_at = conn.last_typing
        if active == last_active and now - last_at < 1.0:
            return  # at most one "still typing" a second per socket
        conn.last_typing = (active, now)
        await self.rt.events.broadcast_ephemeral(
            EventType.TYPING,
            {"who": "visitor", "name": conn.claims.name, "active": active},
            ticket_id=ticket["id"],
            queue_id=ticket.get("queue_id"),
            agent_id=ticket.get("assignee_id") or ticket.get("offered_agent_id"),
        )

    # --- conversation state from events --------------------------------------------------------------------------

    def _learn(self, conversation_id: str, state: ConversationState) -> None:
        conv = self._conversations.get(conversation_id)
        if conv is None:
            return
        for t in state.tickets:
            conv.ticket_ids.add(t.id)
            self._by_ticket[t.id] = conversation_id
        if state.current is not None:
            conv.ticket = ticket_state(state.current)

    def _forget(self, conversation_id: str) -> None:
        conv = self._conversations.pop(conversation_id, None)
        if conv is not None:
            for t in conv.ticket_ids:
                self._by_ticket.pop(t, None)

    def _broadcast(self, conversation_id: str, frame: dict[str, Any], message_id: int | None = None) -> int:
        conv = self._conversations.get(conversation_id)
        if conv is None:
            return 0
        text = json_dumps(frame)
        for c in conv.connections:
            c.push(text, message_id)
        return len(conv.connections)

    def _on_event(self, event: EventRecord, _text: str) -> None:
        """Hub listener: one dict lookup per event; only tickets of connected visitors go further."""
        if event.type == REPLY and event.seq == 0:
            self._push_reply(event.payload)
            return
        if event.ticket_id is None:
            return
        conversation_id = self._by_ticket.get(event.ticket_id)
        if conversation_id is None:
            return
        conv = self._conversations.get(conversation_id)
        if conv is None:
            return
        if event.type == EventType.MESSAGE_CREATED:
            message = event.payload.get("message")
            if (
                isinstance(message, dict)
                and message.get("direction") == "outbound"
                and message.get("channel") != CHANNEL
                and isinstance(message.get("id"), int)
            ):
                # A reply sent by email (the visitor asked for it) while their widget is open: shown there too,
                # as it is after a reload. Chat replies come through ``deliver`` instead.
                self._spawn(self._show_message(conversation_id, message["id"]))
            return
        if event.type == EventType.TYPING:
            if event.payload.get("who") == "agent":
                self._broadcast(
                    conversation_id,
                    {"type": "typing", "active": bool(event.payload.get("active")), "name": event.payload.get("name")},
                )
            return
        summary = event.payload.get("ticket")
        if not isinstance(summary, dict):
            return
        before = conv.ticket or {}
        if before and summary["id"] < before.get("id", 0):
            return  # an older ticket of this conversation
        after = {**before, **{k: summary.get(k) for k in ("id", "status", "queue_id", "assignee_id")}}
        after["offered_agent_id"] = summary.get("offered_agent_id")
        if summary["id"] != before.get("id"):
            after["deflected"] = False  # a new ticket of the conversation: the customer wrote again
        if "rating" in event.payload:
            after["rating"] = event.payload["rating"]
        conv.ticket = after
        if after.get("assignee_id") and after.get("assignee_id") != before.get("assignee_id"):
            self._spawn(self._announce_agent(conversation_id, after["assignee_id"]))
        elif before.get("assignee_id") and not after.get("assignee_id"):
            after["agent_name"] = None
            self._broadcast(conversation_id, {"type": "agent_left"})
        if "deflected" in event.payload:
            # The visitor closed it themselves (``solved``): an article answered them, nothing to rate.
            after["deflected"] = True
            self._broadcast(conversation_id, {"type": "deflected", "ticket_id": after["id"]})
        elif after.get("status") in ("solved", "closed") and before.get("status") not in ("solved", "closed"):
            if after.get("rating") is None:
                self._broadcast(conversation_id, {"type": "rating_request", "ticket_id": after["id"]})
        elif after.get("status") not in ("solved", "closed") and before.get("status") in ("solved", "closed"):
            self._broadcast(conversation_id, {"type": "reopened", "ticket_id": after["id"]})

    async def _announce_agent(self, conversation_id: str, agent_id: int) -> None:
        name = await self.agents.public_name(agent_id)
        conv = self._conversations.get(conversation_id)
        if conv is not None and conv.ticket is not None:
            conv.ticket["agent_name"] = name
        self._broadcast(conversation_id, {"type": "agent_joined", "name": name})

    async def _show_message(self, conversation_id: str, message_id: int) -> None:
        """Push one stored message to the conversation's sockets, as the visitor's history shows it."""
        state = await self.conversations.state(
            channel=CHANNEL, thread_key=conversation_id, after_message_id=message_id - 1
        )
        for message in state.messages:
            if message.id == message_id:
                self._broadcast(conversation_id, {"type": "message", "message": message_frame(message)}, message_id)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- delivering agents' replies --------------------------------------------------------------------------------

    async def deliver(self, message: OutboundMessage) -> None:
        """Send a committed agent reply to the visitor's open sockets, in whichever process they are connected:
        through the event hub to every process's chat listener (``_push_reply``)."""
        conversation_id = message.metadata.get("thread_key")
        if not isinstance(conversation_id, str):
            return
        frame = {
            "type": "message",
            "message": {
                "id": message.message_id,
                "ticket_id": message.ticket_id,
                "direction": "outbound",
                "text": message.text,
                "attachments": [a.model_dump(mode="json") for a in message.attachments],
                "agent_name": message.agent_name,
                "delivery_status": "sent",
                "created_at": utcnow().isoformat(),
            },
        }
        await self.rt.events.broadcast_ephemeral(
            REPLY,
            {"conversation_id": conversation_id, "message_id": message.message_id, "frame": frame},
            ticket_id=message.ticket_id,
            listeners_only=True,
        )

    def _push_reply(self, payload: dict[str, Any]) -> None:
        conversation_id, message_id = payload.get("conversation_id"), payload.get("message_id")
        if isinstance(conversation_id, str) and isinstance(message_id, int):
            self._broadcast(conversation_id, payload["frame"], message_id)


def _wants_rating(ticket: dict[str, Any] | None) -> bool:
    return bool(
        ticket
        and ticket["status"] in ("solved", "closed")
        and ticket.get("rating") is None
        and not ticket.get("deflected")
    )


def _error(code: str, message: str, client_id: Any = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if isinstance(client_id, str):
        frame["client_id"] = client_id
    return json_dumps(frame)


class WebchatSender:
    """Delivers agents' replies to chat visitors. A visitor who is not connected finds the reply in the
    conversation's history when they come back, so a reply counts as sent once it is committed and pushed to
    whatever sockets are open, in every process (through the event hub: Redis when there are several)."""

    def __init__(self, service: WebchatService) -> None:
        self.service = service

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        await self.service.deliver(message)
        return DeliveryResult()


# --- attachments ---------------------------------------------------------------------------------------------------


class ChatAttachments:
    """What a visitor or agent may attach in a chat: images and PDF, checked by their bytes, kept in the shared
    content-addressed ``FileStore`` (so a file sent by chat and by email is stored once)."""

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def _ref(self, sha256: str) -> str:
        try:
            self.store.path(sha256)
        except StoredFileMissing:
            raise BadAttachment("not an attachment reference") from None
        return sha256

    def save(self, data: bytes) -> tuple[str, str]:
        """Store ``data`` (already size-checked); (sha256, content type)."""
        content_type = sniff_safe_type(data[:16])
        if content_type is None:
            raise BadAttachment("only PNG, JPEG, GIF, WebP images and PDF files can be sent")
        return self.store.put(data), content_type

    def read(self, sha256: str) -> tuple[bytes, str] | None:
        try:
            data = self.store.get(self._ref(sha256))
        except StoredFileMissing:
            return None
        content_type = sniff_safe_type(data[:16])
        return (data, content_type) if content_type else None

    def reference(self, ref: Any) -> str:
        """The hash a message's attachment reference (``{"sha256", "filename"}``) names, or ``BadAttachment``."""
        if not isinstance(ref, dict) or not isinstance(ref.get("sha256"), str):
            raise BadAttachment("attachments are given as {sha256, filename}")
        return self._ref(ref["sha256"])

    def describe(self, ref: Any) -> Attachment:
        """The stored attachment a message refers to (``{"sha256", "filename"}``); the size and type are read
        from the stored file, not taken from the client."""
        sha = self.reference(ref)
        try:
            head, size = self.store.head(sha, 16), self.store.size(sha)
        except StoredFileMissing:
            raise BadAttachment("upload the attachment first") from None
        given = ref.get("filename")
        filename = given if isinstance(given, str) else "attachment"
        filename = "".join(ch for ch in filename if ch.isprintable() and ch not in '/\\"')[:200] or "attachment"
        return Attachment(
            filename=filename,
            content_type=sniff_safe_type(head) or "application/octet-stream",
            size=size,
            sha256=sha,
            url=f"/api/chat/attachments/{sha}",
        )


# --- errors ----------------------------------------------------------------------------------------------------------


class BadFrame(SwitchboardError):
    status = 422
    code = "bad_frame"


class MessageTooLong(SwitchboardError):
    status = 422
    code = "too_long"


class BadAttachment(SwitchboardError):
    status = 415
    code = "bad_attachment"


class AttachmentTooLarge(SwitchboardError):
    status = 413
    code = "attachment_too_large"


class IdentityRejected(SwitchboardError):
    status = 403
    code = "identity_rejected"


class IdentityNotConfigured(SwitchboardError):
    status = 422
    code = "identity_not_configured"
