"""The server's websocket protocol: uvicorn's default one (the ``websockets`` library's sans-I/O core), reading
ahead a little, and writing pre-encoded frames at once for a broadcast.

It subclasses uvicorn's ``WebSocketsSansIOProtocol`` and uses its internals (``frames``, ``queue``,
``read_paused``, ``send_receive_event_to_app``, ``handle_connect``, ``conn``, ``writable``...), which uvicorn
does not promise to keep: it is one of the fast paths behind ``SWITCHBOARD_FAST_PATHS``. With them off, the
server runs uvicorn's own protocol (``server_protocol``), ``frame_writer`` finds no writer, and every frame
goes the ordinary way. A/B (bench.chat --idle 0 --saturate 5 on SQLite, on a shared 2-core machine under load
10-16, where the server got 0.1-0.6 of a core): server CPU per message delivered at saturation 0.25 and 0.32
ms with this protocol, 0.36 and 0.31 ms with uvicorn's (the database fast paths on in both) — within that
machine's noise, so the figure that counts is a quiet machine's.

uvicorn's stops reading a socket after every frame it receives and resumes once the application has taken
that frame: two changes of the event loop's epoll set, each a system call and a selector update, for every
frame a widget or a console sends; under chat load that was a sixth of the server's CPU. This one keeps
reading until ``max_frames`` frames or ``max_bytes`` bytes wait for the application, and only then stops
reading until the application has taken them all. A client that outruns the server is still held back by
TCP, as before; what one connection may hold in memory is bounded by those two limits (plus one frame of at
most ``ws_max_size``).

Writing frames at once: a broadcast sends the same text to many connections, and a server's frame (unmasked)
without an extension is the same bytes on each of them. Going through ``WebSocket.send_text`` costs every
connection a task switch, Starlette's and uvicorn's send path and the framing; ``text_frame`` builds the bytes
once and ``FrameWriter.send_frame_now`` writes them straight to one connection's socket, if it can take them
now. The application reaches a connection's writer with ``frame_writer(ws)`` (through the ASGI scope's
``extensions``), and uses it like this::

    writer = frame_writer(ws)  # after accept; None: no such writer (another server, or compression)
    frame = text_frame(text)  # once per broadcast, for every connection
    if writer is None or queued_for(ws) or not writer.send_frame_now(frame):
        ...  # the ordinary way: queue it for the task that calls ws.send_text(text)

The caller keeps each connection's order of frames: it writes at once only while nothing of that connection
waits to be sent the ordinary way (nor is being sent: ``send_text`` may wait for the socket). The writer
refuses, writing nothing, when the connection is closing or closed, when its socket does not keep up (asyncio
stopped its writers, or more than ``direct_buffer_limit`` bytes wait in its buffer), or when the connection
negotiated an extension (permessage-deflate: frames differ per connection), so a slow client is still held
back by the ordinary path and its bounded queue.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any, Protocol

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from hub.config import Settings

# The ASGI scope's extension that holds the connection's FrameWriter, as {"writer": writer} (extensions are
# dicts by the ASGI convention).
FRAME_WRITER = "switchboard.frame_writer"


def text_frame(text: str) -> bytes:
    """One complete text frame as a server sends it without extensions: final, unmasked (RFC 6455, 5.2)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


def server_protocol(settings: Settings) -> type[ReadAheadWebSocketProtocol] | str:
    """What uvicorn serves websockets with: ``ReadAheadWebSocketProtocol`` with the fast paths on, else
    uvicorn's own protocol on the same ``websockets`` core (``"websockets-sansio"``)."""
    return ReadAheadWebSocketProtocol if settings.fast_paths else "websockets-sansio"


class FrameWriter(Protocol):
    def send_frame_now(self, frame: bytes) -> bool:
        """Write one complete frame (``text_frame``) to the socket now and say True; or write nothing and say
        False when the connection is not open or its socket does not keep up."""
        ...


def frame_writer(ws: WebSocket) -> FrameWriter | None:
    """The accepted connection's writer of pre-encoded frames, or None if it has none: served by another
    protocol (a test client), or an extension was negotiated, so a frame's bytes are its own."""
    writer = (ws.scope.get("extensions") or {}).get(FRAME_WRITER, {}).get("writer")
    if not isinstance(writer, ReadAheadWebSocketProtocol) or writer.conn.extensions:
        return None
    return writer


class ReadAheadWebSocketProtocol(WebSocketsSansIOProtocol):
    max_frames = 16
    max_bytes = 256 * 1024
    # What ``send_frame_now`` lets wait in the socket's buffer: below asyncio's high-water mark (64 KiB), where
    # the ordinary send would go on writing too.
    direct_buffer_limit = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sizes: deque[int] = deque()  # the size of every received message the application has not taken
        self._buffered = 0

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:  # the parent built the scope and started the application
            self.scope["extensions"][FRAME_WRITER] = {"writer": self}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The scope refers to this protocol: let the two go without waiting for the cycle collector.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(FRAME_WRITER, None)

    def send_frame_now(self, frame: bytes) -> bool:
        """See ``FrameWriter``: the checks are those under which uvicorn's ``send`` would write at once."""
        if self.close_sent or self.disconnected or not self.writable.is_set() or self.conn.state is not State.OPEN:
            return False
        transport = self.transport
        if transport.is_closing() or transport.get_write_buffer_size() > self.direct_buffer_limit:
            return False
        transport.write(frame)
        return True

    def send_receive_event_to_app(self) -> None:
        size = sum(len(f) for f in self.frames)
        queued = self.queue.qsize()
        paused = self.read_paused
        # The parent stops reading after every message unless it believes reading is stopped already: let it
        # believe so, and decide here.
        self.read_paused = True
        super().send_receive_event_to_app()
        self.read_paused = paused
        if self.queue.qsize() > queued:  # the parent queued it (it drops messages after a close it sent)
            self._sizes.append(size)
            self._buffered += size
        if not self.read_paused and (len(self._sizes) >= self.max_frames or self._buffered >= self.max_bytes):
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if message["type"] == "websocket.receive" and self._sizes:
            self._buffered -= self._sizes.popleft()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message
