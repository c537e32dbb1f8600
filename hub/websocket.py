"""The server's websocket protocol: uvicorn's default one (the ``websockets`` library's sans-I/O core), reading
ahead a little.

uvicorn's stops reading a socket after every frame it receives and resumes once the application has taken
that frame: two changes of the event loop's epoll set, each a system call and a selector update, for every
frame a widget or a console sends; under chat load that was a sixth of the server's CPU. This one keeps
reading until ``max_frames`` frames or ``max_bytes`` bytes wait for the application, and only then stops
reading until the application has taken them all. A client that outruns the server is still held back by
TCP, as before; what one connection may hold in memory is bounded by those two limits (plus one frame of at
most ``ws_max_size``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class ReadAheadWebSocketProtocol(WebSocketsSansIOProtocol):
    max_frames = 16
    max_bytes = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sizes: deque[int] = deque()  # the size of every received message the application has not taken
        self._buffered = 0

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
