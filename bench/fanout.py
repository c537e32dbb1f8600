"""Event fan-out: N agent websockets connected to one `switchboard serve` process; changes are committed
through the REST API at a steady rate, and every client measures commit-to-delivery latency (its receive
time minus the event's commit timestamp, which is taken just before the commit, so the figure includes the
commit itself).

The clients are the measuring instrument, all in this one process: each is a non-blocking socket read with
recvmsg, driving the ``websockets`` library's sans-I/O client (handshake, framing, pongs). Every frame gets two
receive times: when this process read its bytes (before parsing them: the headline figures), and when the
kernel queued them on the client's socket (SO_TIMESTAMPNS: "at the clients' sockets"), which leaves out the
wait for this one process to come round to that socket after the others. The library's asyncio client cost
about twice the CPU per frame (a task switch, a queue and the message assembler per frame) and took its time
only once the client's task had run, behind the other clients' work.

    .venv/bin/python -m bench.fanout [--agents 200] [--events 300] [--rate 50] [--concurrent] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime

# The repository root instead of bench/, which a script run puts first and where bench/email.py would shadow
# the standard library's email package.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import httpx  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from bench._common import PG_DEFAULT, agent_rows, fresh_database, percentile  # noqa: E402
from hub.auth import TokenSigner  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.messages import Identity, InboundMessage  # noqa: E402
from hub.runtime import standalone  # noqa: E402
from ticketing import tables  # noqa: E402
from ticketing.ingest import ingest_batch  # noqa: E402
from ticketing.models import QueueCreate  # noqa: E402
from ticketing.queues import create_queue  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"


async def seed(url: str, agents: int) -> tuple[list[tuple[int, str]], int]:
    """A queue, ``agents`` agents in it (one password hash shared, to skip hundreds of argon2 runs), a ticket."""
    async with standalone(Settings(database_url=url, _env_file=None)) as rt:  # type: ignore[call-arg]
        queue = await create_queue(rt, data=QueueCreate(name="support", channels=["email"]))
        rows = agent_rows(agents, status="offline", capacity={})
        async with rt.db.begin() as conn:
            from hub.db import insert_returning_ids

            ids = await insert_returning_ids(conn, tables.agents, rows)
            await conn.execute(tables.agent_queues.insert(), [{"agent_id": i, "queue_id": queue.id} for i in ids])
        [result] = await ingest_batch(
            rt,
            [
                InboundMessage(
                    channel="email",
                    external_id="<fanout@x>",
                    sender=Identity(kind="email", value="c@example.com"),
                    text="hello",
                    queue="support",
                )
            ],
        )
    return [(i, row["password_hash"]) for i, row in zip(ids, rows, strict=True)], result.ticket_id  # type: ignore[union-attr]


# Linux: the kernel's receive time of a socket's data, as ancillary data of recvmsg (not in Python's socket).
SO_TIMESTAMPNS = 35


class AgentSocket:
    """One agent's /ws/agent connection: waits for hello, then records every frame with two receive times:
    when the kernel queued its bytes on the client's socket, and when this process read them."""

    def __init__(self, url: str, compression: bool, on_frame: Callable[[float, float, bytes], None]) -> None:
        extensions = [ClientPerMessageDeflateFactory()] if compression else None
        self.conn = ClientProtocol(parse_uri(url), extensions=extensions)
        self.on_frame = on_frame
        self.loop = asyncio.get_running_loop()
        self.hello: asyncio.Future[None] = self.loop.create_future()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)

    async def open(self, host: str, port: int) -> None:
        await self.loop.sock_connect(self.sock, (host, port))
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.conn.send_request(self.conn.connect())
        self._flush()
        await self.hello

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        try:
            data, ancdata, _, _ = self.sock.recvmsg(65536, 64)
        except (BlockingIOError, InterruptedError):
            return
        now = time.time()  # when this process read the bytes: before any parsing
        kernel = now
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                kernel = sec + nsec / 1e9
        if not data:
            self.loop.remove_reader(self.sock.fileno())
            self.conn.receive_eof()
            if not self.hello.done():
                self.hello.set_exception(ConnectionError("closed before hello"))
            return
        self.conn.receive_data(data)
        for event in self.conn.events_received():
            if isinstance(event, Response):
                if self.conn.handshake_exc is not None and not self.hello.done():
                    self.hello.set_exception(self.conn.handshake_exc)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                assert event.fin, "the server sends every frame whole"
                if self.hello.done():
                    self.on_frame(kernel, now, bytes(event.data))
                else:
                    self.hello.set_result(None)
        self._flush()  # pongs, and the reply to a close

    def _flush(self) -> None:
        for data in self.conn.data_to_send():
            if data:  # a few hundred bytes at most (the handshake, a pong): the socket takes them at once
                self.sock.send(data)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(parts[11]) / tick, int(parts[12]) / tick


async def run(
    url: str,
    agents: int,
    events: int,
    rate: float,
    compression: bool,
    profile: str | None,
    py_spy: str,
    concurrent: bool = False,
) -> None:
    credentials, ticket_id = await seed(url, agents)
    signer = TokenSigner(SECRET, 3600)
    tokens = [signer.issue(agent_id, pw_hash) for agent_id, pw_hash in credentials]
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": url,
        "SWITCHBOARD_SECRET_KEY": SECRET,
        "SWITCHBOARD_WS_COMPRESSION": "true" if compression else "false",
        "SWITCHBOARD_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
    }
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            arrivals: list[tuple[float, float, bytes]] = []
            received = 0
            done = asyncio.Event()
            expected = events * agents

            def on_frame(kernel: float, now: float, raw: bytes) -> None:
                # Only the arrival times are taken here; frames are parsed after the run, so that 200 clients
                # sharing one process do not add their parsing to each other's latency.
                nonlocal received
                arrivals.append((kernel, now, raw))
                if b'"message.created"' in raw:
                    received += 1
                    if received >= expected:
                        done.set()

            sockets: list[AgentSocket] = []
            for token in tokens:
                sock = AgentSocket(f"ws://127.0.0.1:{port}/ws/agent?token={token}", compression, on_frame)
                sockets.append(sock)
                await sock.open("127.0.0.1", port)
            headers = {"Authorization": f"Bearer {tokens[0]}"}
            # The clients' process is the measuring instrument: a full garbage collection in it stalled
            # every client at once (one 120 ms stall per run); the server keeps its collector.
            gc.disable()
            profiler = (
                subprocess.Popen(
                    [py_spy, "record", "-r", "200", "-f", "raw", "--threads", "--pid", str(server.pid), "-o", profile],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                if profile
                else None
            )
            cpu0 = cpu_seconds(server.pid)
            client0 = cpu_seconds(os.getpid())
            started = time.perf_counter()
            posts: list[asyncio.Future[httpx.Response]] = []
            for i in range(events):
                post = client.post(f"/api/tickets/{ticket_id}/notes", json={"text": f"note {i}"}, headers=headers)
                if concurrent:
                    posts.append(asyncio.ensure_future(post))
                else:
                    (await post).raise_for_status()
                delay = started + (i + 1) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            for r in await asyncio.gather(*posts):
                r.raise_for_status()
            try:
                await asyncio.wait_for(done.wait(), 30)
            except TimeoutError:
                pass
            user, system = (b - a for a, b in zip(cpu0, cpu_seconds(server.pid), strict=True))
            c_user, c_system = (b - a for a, b in zip(client0, cpu_seconds(os.getpid()), strict=True))
            for sock in sockets:
                sock.close()
            if profiler is not None:
                profiler.send_signal(2)  # py-spy writes its file on SIGINT
                profiler.wait(timeout=60)
        ms: list[float] = []  # when the client process read the frame
        kernel_ms: list[float] = []  # when the client's kernel queued it on the socket
        per_event: dict[int, list[float]] = {}
        kernel_per_event: dict[int, list[float]] = {}
        for kernel, now, raw in arrivals:
            frame = json.loads(raw)
            if frame.get("type") == "message.created":
                at = datetime.fromisoformat(frame["at"]).timestamp()
                ms.append((now - at) * 1000)
                kernel_ms.append((kernel - at) * 1000)
                per_event.setdefault(frame["seq"], []).append(ms[-1])
                kernel_per_event.setdefault(frame["seq"], []).append(kernel_ms[-1])
        # Where the time goes: the first client's latency is the commit plus the server's path to its first
        # socket; the spread (last client minus first) is the fan-out to the other sockets. Read by the client
        # process, both include that process's own turn (one process reads all the sockets, one after another);
        # at the socket, they do not.
        first = [min(v) for v in per_event.values()]
        spread = [max(v) - min(v) for v in per_event.values()]
        k_first = [min(v) for v in kernel_per_event.values()]
        k_spread = [max(v) - min(v) for v in kernel_per_event.values()]
        print(
            f"{agents} agents, {events} events at {rate}/s{' concurrently' if concurrent else ''}, "
            f"compression {'on' if compression else 'off'}: "
            f"delivered {received}/{expected}   commit->delivery p50 {percentile(ms, 50):.1f} ms   "
            f"p99 {percentile(ms, 99):.1f} ms   max {max(ms) if ms else float('nan'):.1f} ms\n"
            f"    per event: first delivery p50 {percentile(first, 50):.1f} ms  p99 {percentile(first, 99):.1f} ms;"
            f"   spread to the last client p50 {percentile(spread, 50):.1f} ms  p99 {percentile(spread, 99):.1f} ms\n"
            f"    at the clients' sockets (kernel receive time): p50 {percentile(kernel_ms, 50):.1f} ms   "
            f"p99 {percentile(kernel_ms, 99):.1f} ms;   first p99 {percentile(k_first, 99):.1f} ms;"
            f"   spread p50 {percentile(k_spread, 50):.1f} ms  p99 {percentile(k_spread, 99):.1f} ms\n"
            # CPU time is the figure that another busy process on the machine does not move much.
            f"    server CPU per event: {1000 * user / events:.2f} ms user, {1000 * system / events:.2f} ms system;"
            f"   clients' CPU per event: {1000 * c_user / events:.2f} ms user, {1000 * c_system / events:.2f} ms system"
        )
    finally:
        server.terminate()
        server.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="changes committed per second")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate on the websockets")
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="post each change on time without waiting for the previous answer (many callers at once: changes "
        "reach the hub side by side, as a busy hub's calls do); by default one after another, so a slow answer "
        "lowers the rate",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--profile", help="record the server while events are sent, with py-spy, into this file")
    parser.add_argument("--profile-with", default="py-spy", help="the py-spy executable")
    args = parser.parse_args()
    for kind in args.db.split(","):
        with fresh_database(kind, args.postgres_url) as url:
            print(f"[{kind}] ", end="", flush=True)
            asyncio.run(
                run(
                    url,
                    args.agents,
                    args.events,
                    args.rate,
                    args.compression,
                    args.profile,
                    args.profile_with,
                    args.concurrent,
                )
            )


if __name__ == "__main__":
    main()
