"""Event fan-out: N agent websockets connected to one `switchboard serve` process; changes are committed
through the REST API at a steady rate, and every client measures commit-to-delivery latency (its receive
time minus the event's commit timestamp, which is taken just before the commit, so the figure includes the
commit itself).

    .venv/bin/python -m bench.fanout [--agents 200] [--events 300] [--rate 50] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

# The repository root instead of bench/, which a script run puts first and where bench/email.py would shadow
# the standard library's email package.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from bench._common import PG_DEFAULT, fresh_database, percentile  # noqa: E402
from hub.auth import TokenSigner, hash_password  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.messages import Identity, InboundMessage  # noqa: E402
from hub.runtime import standalone  # noqa: E402
from ticketing import service  # noqa: E402
from ticketing.ingest import ingest_batch  # noqa: E402
from ticketing.models import QueueCreate  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"


async def seed(url: str, agents: int) -> tuple[list[tuple[int, str]], int]:
    """A queue, ``agents`` agents in it (one password hash shared, to skip hundreds of argon2 runs), a ticket."""
    async with standalone(Settings(database_url=url, _env_file=None)) as rt:  # type: ignore[call-arg]
        queue = await service.create_queue(rt, data=QueueCreate(name="support", channels=["email"]))
        pw_hash = hash_password("password-123")
        now = datetime.now(UTC)
        rows = [
            {
                "username": f"agent{i}",
                "display_name": f"Agent {i}",
                "password_hash": pw_hash,
                "role": "agent",
                "status": "offline",
                "status_changed_at": now,
                "skills": {},
                "capacity": {},
                "active": True,
                "created_at": now,
            }
            for i in range(agents)
        ]
        async with rt.db.begin() as conn:
            from hub.db import insert_returning_ids

            ids = await insert_returning_ids(conn, service.A, rows)
            await conn.execute(service.AQ.insert(), [{"agent_id": i, "queue_id": queue.id} for i in ids])
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
    return [(i, pw_hash) for i in ids], result.ticket_id  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(parts[11]) / tick, int(parts[12]) / tick


async def run(
    url: str, agents: int, events: int, rate: float, compression: bool, profile: str | None, py_spy: str
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
            arrivals: list[tuple[float, str]] = []
            received = 0
            done = asyncio.Event()
            expected = events * agents

            async def listen(token: str, ready: asyncio.Event) -> None:
                nonlocal received
                async with connect(
                    f"ws://127.0.0.1:{port}/ws/agent?token={token}",
                    max_queue=None,
                    compression="deflate" if compression else None,
                ) as ws:
                    await ws.recv()  # hello
                    ready.set()
                    # Only the arrival time is taken here; frames are parsed after the run, so that 200
                    # clients sharing one process do not add their parsing to each other's latency.
                    while received < expected:
                        raw = await ws.recv(decode=True)
                        arrivals.append((time.time(), raw))
                        if '"message.created"' not in raw:
                            continue
                        received += 1
                        if received >= expected:
                            done.set()

            readies = [asyncio.Event() for _ in tokens]
            tasks = [asyncio.create_task(listen(t, r)) for t, r in zip(tokens, readies, strict=True)]
            await asyncio.gather(*(r.wait() for r in readies))
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
            started = time.perf_counter()
            for i in range(events):
                r = await client.post(f"/api/tickets/{ticket_id}/notes", json={"text": f"note {i}"}, headers=headers)
                r.raise_for_status()
                delay = started + (i + 1) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(done.wait(), 30)
            except TimeoutError:
                pass
            user, system = (b - a for a, b in zip(cpu0, cpu_seconds(server.pid), strict=True))
            for t in tasks:
                t.cancel()
            if profiler is not None:
                profiler.send_signal(2)  # py-spy writes its file on SIGINT
                profiler.wait(timeout=60)
        ms = []
        per_event: dict[int, list[float]] = {}
        for now, raw in arrivals:
            frame = json.loads(raw)
            if frame.get("type") == "message.created":
                ms.append((now - datetime.fromisoformat(frame["at"]).timestamp()) * 1000)
                per_event.setdefault(frame["seq"], []).append(ms[-1])
        # Where the time goes: the first client's latency is the commit plus the server's path to its first
        # socket; the spread (last client minus first) is the fan-out to the other sockets.
        first = [min(v) for v in per_event.values()]
        spread = [max(v) - min(v) for v in per_event.values()]
        print(
            f"{agents} agents, {events} events at {rate}/s, compression {'on' if compression else 'off'}: "
            f"delivered {received}/{expected}   commit->delivery p50 {percentile(ms, 50):.1f} ms   "
            f"p99 {percentile(ms, 99):.1f} ms   max {max(ms) if ms else float('nan'):.1f} ms\n"
            f"    per event: first delivery p50 {percentile(first, 50):.1f} ms  p99 {percentile(first, 99):.1f} ms;"
            f"   spread to the last client p50 {percentile(spread, 50):.1f} ms  p99 {percentile(spread, 99):.1f} ms\n"
            # CPU time is the figure that another busy process on the machine does not move much.
            f"    server CPU per event: {1000 * user / events:.2f} ms user, {1000 * system / events:.2f} ms system"
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
    parser.add_argument("--postgres-url", default=os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--profile", help="record the server while events are sent, with py-spy, into this file")
    parser.add_argument("--profile-with", default="py-spy", help="the py-spy executable")
    args = parser.parse_args()
    for kind in args.db.split(","):
        with fresh_database(kind, args.postgres_url) as url:
            print(f"[{kind}] ", end="", flush=True)
            asyncio.run(
                run(url, args.agents, args.events, args.rate, args.compression, args.profile, args.profile_with)
            )


if __name__ == "__main__":
    main()
