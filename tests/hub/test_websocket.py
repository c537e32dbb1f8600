"""The server's websocket protocol reads ahead a bounded number of frames, in order, and still holds back a
client that outruns the application."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from hub.websocket import ReadAheadWebSocketProtocol
from tests.conftest import free_port


class CountingProtocol(ReadAheadWebSocketProtocol):
    """The protocol under test, counting how often it stops reading its socket."""

    pauses = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        pause = transport.pause_reading

        def counted() -> None:
            CountingProtocol.pauses += 1
            pause()

        transport.pause_reading = counted


class EchoServer:
    """A real uvicorn server with the protocol under test and one route that echoes every frame once the test
    lets it (``release``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.released = threading.Event()

        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            await asyncio.to_thread(self.released.wait)
            while True:
                await ws.send_text(await ws.receive_text())

        config = uvicorn.Config(
            Starlette(routes=[WebSocketRoute("/echo", echo)]),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws=CountingProtocol,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def protocols(self) -> list[ReadAheadWebSocketProtocol]:
        return [c for c in self.server.server_state.connections if isinstance(c, ReadAheadWebSocketProtocol)]


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    s = EchoServer()
    s.thread.start()
    deadline = time.monotonic() + 15
    while not s.server.started:
        assert time.monotonic() < deadline, "echo server did not start"
        time.sleep(0.02)
    try:
        yield s
    finally:
        s.released.set()
        s.server.should_exit = True
        s.thread.join(timeout=30)


async def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_reads_ahead_then_holds_back_a_client_that_outruns_the_application(echo_server: EchoServer) -> None:
    """While the application reads nothing, the server queues a bounded number of frames and then stops reading
    the socket; once the application reads again, every frame arrives, in order, and reading resumes."""
    count = 5 * ReadAheadWebSocketProtocol.max_frames
    frames = [f"{i:04d}" + "x" * 32_000 for i in range(count)]  # 2.5 MB in all: more than read ahead
    async with connect(f"ws://127.0.0.1:{echo_server.port}/echo", compression=None, max_size=None) as ws:

        async def send_all() -> None:
            for frame in frames:
                await ws.send(frame)

        sending = asyncio.create_task(send_all())
        await _wait_for(lambda: any(p.read_paused for p in echo_server.protocols()))
        [protocol] = echo_server.protocols()
        await asyncio.sleep(0.2)  # what the socket still had ready is not read either
        # One read from the socket can hold several frames: the bound is the limit plus what that read held.
        assert protocol.queue.qsize() < count // 2
        assert protocol._buffered < 2 * ReadAheadWebSocketProtocol.max_bytes
        echo_server.released.set()
        received = [await asyncio.wait_for(ws.recv(), 10) for _ in range(count)]
        await sending
        assert received == frames
        await _wait_for(lambda: not protocol.read_paused)
        assert protocol._buffered == 0


async def test_keeps_reading_while_the_application_keeps_up(echo_server: EchoServer) -> None:
    """Frames a client sends in a burst that the application keeps up with never make the server stop reading
    its socket (uvicorn's own protocol stopped and resumed reading for every frame)."""
    echo_server.released.set()
    CountingProtocol.pauses = 0
    async with connect(f"ws://127.0.0.1:{echo_server.port}/echo", compression=None) as ws:
        for round_ in range(20):
            for i in range(ReadAheadWebSocketProtocol.max_frames // 2):
                await ws.send(f"frame {round_}.{i}")
            for i in range(ReadAheadWebSocketProtocol.max_frames // 2):
                assert await asyncio.wait_for(ws.recv(), 10) == f"frame {round_}.{i}"
    assert CountingProtocol.pauses == 0
