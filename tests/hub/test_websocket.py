"""The server's websocket protocol reads ahead a bounded number of frames, in order, and still holds back a
client that outruns the application; it writes pre-encoded frames at once only to an open connection without
extensions."""

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
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from hub.websocket import ReadAheadWebSocketProtocol, frame_writer, text_frame
from tests.conftest import free_port


class CountingProtocol(ReadAheadWebSocketProtocol):
    """The protocol under test, counting how often it stops reading its socket."""

    pauses = 0

    def connection_made(self, transport: Any) -> None:
        # A wrapper: uvloop's transports do not let their methods be replaced.
        super().connection_made(_CountingTransport(transport))


class _CountingTransport:
    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pause_reading(self) -> None:
        CountingProtocol.pauses += 1
        self._transport.pause_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class EchoServer:
    """A real uvicorn server with the protocol under test and one route that echoes every frame once the test
    lets it (``release``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.released = threading.Event()
        self.after_close: list[bool] = []  # what send_frame_now said once /direct's connection was closing

        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            await asyncio.to_thread(self.released.wait)
            while True:
                await ws.send_text(await ws.receive_text())

        async def direct(ws: WebSocket) -> None:
            """Says whether the connection has a frame writer, then echoes every frame through it."""
            await ws.accept()
            writer = frame_writer(ws)
            await ws.send_text("writer" if writer is not None else "no writer")
            if writer is None:
                return
            try:
                while True:
                    text = await ws.receive_text()
                    if text == "close, please":
                        await ws.close(4002)
                        self.after_close.append(writer.send_frame_now(text_frame("too late")))
                        return
                    assert writer.send_frame_now(text_frame(text))
            except WebSocketDisconnect:
                self.after_close.append(writer.send_frame_now(text_frame("too late")))

        config = uvicorn.Config(
            Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/direct", direct)]),
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


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_text_frame_is_the_frame_the_library_sends(size: int) -> None:
    """``text_frame`` gives the bytes the websockets library writes for a server's text frame, at each boundary
    of the length encoding, and UTF-8 encodes (a length in bytes, not characters)."""
    text = ("é" + "x" * size)[:size] if size else ""
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert text_frame(text) == expected


async def test_frame_writer_writes_frames_at_once_in_order(echo_server: EchoServer) -> None:
    """A connection without extensions has a frame writer; frames it writes arrive whole and in order."""
    async with connect(f"ws://127.0.0.1:{echo_server.port}/direct", compression=None, max_size=None) as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == "writer"
        texts = [f"{i} " + "é" * (i * 97) for i in range(60)]  # every length encoding, up to 11 KB
        for text in texts:
            await ws.send(text)
        assert [await asyncio.wait_for(ws.recv(), 10) for _ in texts] == texts


async def test_no_frame_writer_when_compression_is_negotiated(echo_server: EchoServer) -> None:
    """With permessage-deflate (the test server allows it) every frame is the connection's own: no writer."""
    async with connect(f"ws://127.0.0.1:{echo_server.port}/direct", compression="deflate") as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == "no writer"


async def test_frame_writer_refuses_once_the_client_has_closed(echo_server: EchoServer) -> None:
    """After the client's close the writer writes nothing and says so, and the connection closes cleanly."""
    async with connect(f"ws://127.0.0.1:{echo_server.port}/direct", compression=None) as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == "writer"
        await ws.close()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000
    await _wait_for(lambda: echo_server.after_close == [False])


async def test_frame_writer_refuses_once_the_server_has_closed(echo_server: EchoServer) -> None:
    """After the application's close frame, before the client answers it, the writer writes nothing more: the
    client sees the close and no frame after it."""
    async with connect(f"ws://127.0.0.1:{echo_server.port}/direct", compression=None) as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == "writer"
        await ws.send("close, please")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4002
    await _wait_for(lambda: echo_server.after_close == [False])
