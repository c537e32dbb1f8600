"""Who may read a stored file (``hub.files``): the one check every route that serves one makes.

A file is served to whoever may see a message that carries it, and to nobody else; knowing its hash grants
nothing. An agent may read the files of the messages of the tickets they may see (``Principal.can_see_ticket``:
their queues' tickets, those assigned or offered to them; supervisors and admins all); a customer (a chat
visitor, a messaging app's user) those of the messages of their own conversation, never of an internal note.
The core records which messages carry which files as it stores them (``ticketing.message_files``) and answers
through the ports (``TicketPort.may_read_file``, ``ConversationPort.carries_file``). A refusal is a 404, the
same as a file that does not exist, so a refused reader learns nothing about what is stored.

A customer's message may carry only files uploaded in its own conversation (``record_upload``, as the channel
stores the upload) or already carried by one of its messages (``require_attachable``); anything else is refused
before the message is stored (``AttachmentNotUploaded``), the same way for a file of another conversation as
for one never stored. Otherwise a hash would be a key after all: attached to one's own message, it would be
served to its sender. Agents attach no files (replies and notes carry none), so there is nothing of theirs to
bind yet; an agent's upload would be bound the same way, to its ticket.

A channel's file route, for agents only::

    @router.get("/api/<name>/media/{sha256}")
    async def media(sha256: ReadableFile) -> Response: ...   # 401 without a login, 404 unless allowed

for agents and the channel's customers (their conversation's key authenticated by the channel itself)::

    await require_readable_file(rt, sha256=sha256, principal=await authenticate(request),
                                conversation=Conversation(channel="telegram", thread_key=chat_id))

a channel that takes customers' uploads::

    sha = store.put(data); await record_upload(rt, sha256=sha, conversation=conversation)
    ...
    await require_attachable(rt, sha256s=refs, conversation=conversation)  # AttachmentNotUploaded, else on
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from hub.deps import current_agent, get_runtime
from hub.errors import NotFound, SwitchboardError
from hub.files import is_sha256
from hub.principals import Principal

if TYPE_CHECKING:
    from hub.runtime import Runtime


class FileNotFound(NotFound):
    """No such file, or not one the asker may read (the two are not told apart)."""

    code = "file_not_found"


class AttachmentNotUploaded(SwitchboardError):
    """A message names a file not uploaded in its conversation nor carried by one of its messages (or no stored
    file at all: the two are not told apart)."""

    status = 403
    code = "attachment_not_uploaded"


@dataclass(frozen=True, slots=True)
class Conversation:
    """A customer's conversation, as the channel that authenticated them names it."""

    channel: str
    thread_key: str


async def may_read_file(
    rt: Runtime, *, sha256: str, principal: Principal | None = None, conversation: Conversation | None = None
) -> bool:
    """Whether ``principal`` (a logged-in agent) may see a message carrying the file, or a message of
    ``conversation`` that its customer sees carries it. Neither given: no."""
    if not is_sha256(sha256):
        return False
    if principal is not None and await rt.ports.tickets.may_read_file(principal=principal, sha256=sha256):
        return True
    return conversation is not None and await rt.ports.conversations.carries_file(
        channel=conversation.channel, thread_key=conversation.thread_key, sha256=sha256
    )


async def require_readable_file(
    rt: Runtime, *, sha256: str, principal: Principal | None = None, conversation: Conversation | None = None
) -> None:
    """``may_read_file``, or ``FileNotFound`` (404)."""
    if not await may_read_file(rt, sha256=sha256, principal=principal, conversation=conversation):
        raise FileNotFound("no such file")


async def record_upload(rt: Runtime, *, sha256: str, conversation: Conversation) -> None:
    """The customer of ``conversation`` uploaded the stored file ``sha256``: a message of the conversation may
    carry it from now on (once this returns)."""
    await rt.ports.conversations.record_upload(
        channel=conversation.channel, thread_key=conversation.thread_key, sha256=sha256
    )


async def require_attachable(rt: Runtime, *, sha256s: Collection[str], conversation: Conversation) -> None:
    """``AttachmentNotUploaded`` (403) unless a new message of ``conversation`` may carry every one of
    ``sha256s``: each uploaded in it, or already carried by a message of it that its customer sees."""
    wanted = set(sha256s)
    if not wanted:
        return
    allowed = await rt.ports.conversations.attachable(
        channel=conversation.channel, thread_key=conversation.thread_key, sha256s=wanted
    )
    if wanted - allowed:
        raise AttachmentNotUploaded(
            "a message can carry only files uploaded in this conversation: upload the file, then send it"
        )


async def agent_readable_file(sha256: str, conn: HTTPConnection) -> str:
    """The ``{sha256}`` path parameter of a route that serves stored files to agents: 401 without a login,
    404 unless the agent may see a message carrying the file."""
    principal = await current_agent(conn)
    await require_readable_file(get_runtime(conn), sha256=sha256, principal=principal)
    return sha256


# A route's ``sha256: ReadableFile`` parameter: the file's hash, once the logged-in agent may read it.
ReadableFile = Annotated[str, Depends(agent_readable_file)]
