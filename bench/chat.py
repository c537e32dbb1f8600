"""Live chat under load: N widget clients, each in its own conversation, answered by agents, against one
`switchboard serve` process; and, in the same run, a bare websocket relay with no persistence as the reference.

Phases, each printed:
1. steady: every conversation writes at ``rate / N`` messages/s (random phase) for ``--duration`` seconds;
   agents answer one message in ``--answer-every`` over the REST API. Prints messages/s delivered to agents and
   customer->agent latency (the customer's send time to the agent's receipt of the committed message) p50/p99,
   and agent->customer latency for the answers.
2. saturation: every conversation keeps one message in flight (the next is sent when the previous is
   acknowledged) for ``--saturate`` seconds: the maximum sustained throughput, messages/s delivered to agents.
3. idle: ``--idle`` widget connections opened and left idle; prints the server's resident memory.

Every Switchboard message is committed before it is acknowledged or delivered (group commit, SQLite with
synchronous=FULL by default, or PostgreSQL). The relay does no work but forwarding.

    .venv/bin/python bench/chat.py [--conversations 1000] [--rate 2000] [--duration 20] [--saturate 10]
                                   [--idle 10000] [--agents 20] [--queues 10] [--db sqlite|postgres]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, where bench/email.py would shadow the standard
# library's email package (which httpx imports): put the repository root there instead.
if sys.path and os.path.basename(os.path.abspath(sys.path[0])) == "bench":
    sys.path[0] = os.path.dirname(os.path.abspath(sys.path[0]))

import argparse
import asyncio
import gc
import json
import math
import random
import resource
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from bench._common import PG_DEFAULT, agent_rows, cpu_seconds, fresh_database, percentile  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the reference: a bare websocket relay --------------------------------------------------------------------


def relay_app() -> Any:
    """Widgets and agents connect; a widget's message goes to the agents of its queue and is acknowledged; an
    agent's answer goes to the widget. Nothing is stored."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    agents: dict[str, set[WebSocket]] = {}
    widgets: dict[str, WebSocket] = {}
    counter = 0

    async def widget(ws: WebSocket) -> None:
        nonlocal counter
        conv, queue = ws.query_params["conv"], ws.query_params["queue"]
        await ws.accept()
        widgets[conv] = ws
        await ws.send_text('{"type": "hello", "messages": []}')
        try:
            while True:
                frame = json.loads(await ws.receive_text())
                counter += 1
                out = json.dumps(
                    {
                        "type": "message.created",
                        "seq": counter,
                        "ticket_id": conv,
                        "data": {"message": {"id": counter, "direction": "inbound", "text": frame["text"]}},
                    }
                )
                for a in list(agents.get(queue, ())):
                    await a.send_text(out)
                await ws.send_text(json.dumps({"type": "ack", "client_id": frame["client_id"], "message_id": counter}))
        except WebSocketDisconnect:
            widgets.pop(conv, None)

    async def agent(ws: WebSocket) -> None:
        queue = ws.query_params["queue"]
        await ws.accept()
        agents.setdefault(queue, set()).add(ws)
        await ws.send_text('{"type": "hello", "seq": 0}')
        try:
            while True:
                frame = json.loads(await ws.receive_text())
                target = widgets.get(str(frame["ticket_id"]))
                if target is not None:
                    await target.send_text(json.dumps({"type": "message", "message": {"text": frame["text"]}}))
        except WebSocketDisconnect:
            agents[queue].discard(ws)

    return Starlette(routes=[WebSocketRoute("/ws/chat", widget), WebSocketRoute("/ws/agent", agent)])


# --- clients -------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    c2a: list[float] = field(default_factory=list)  # customer -> agent, seconds
    a2c: list[float] = field(default_factory=list)  # agent -> customer
    delivered: int = 0
    acked: int = 0
    acked_all: int = 0  # every ack, counted or not: the saturation phase starts once the backlog is drained
    counting: bool = False
    seen: set[str] = field(default_factory=set)
    answer_errors: list[str] = field(default_factory=list)  # agents' replies that failed (the error)


@dataclass
class Target:
    """How the harness talks to one server (Switchboard or the relay)."""

    name: str
    port: int
    widget_url: Callable[[int], Awaitable[str]]
    agent_urls: list[tuple[str, str]]  # (url, queue) per agent
    answer: Callable[[Any, dict[str, Any], str], Awaitable[None]]
    pid: int


def stamp_text(conv: int, n: int) -> str:
    return f"conversation {conv} message {n} t={time.perf_counter():.6f}"


def stamp_of(text: str) -> float | None:
    i = text.rfind("t=")
    try:
        return float(text[i + 2 :]) if i >= 0 else None
    except ValueError:
        return None


async def agent_client(
    url: str,
    stats: Stats,
    answer: Callable[[dict[str, Any]], Awaitable[None]] | None,
    every: int,
    ready: asyncio.Event,
    on_frame: Callable[[dict[str, Any]], None] | None,
) -> None:
    async with connect(url, max_queue=None, compression=None, open_timeout=60) as ws:
        await ws.recv()
        ready.set()
        n = 0
        async for raw in ws:
            frame = json.loads(raw)
            if on_frame is not None:
                on_frame(frame)
            if frame.get("type") != "message.created":
                continue
            msg = frame["data"]["message"]
            if msg.get("direction") != "inbound":
                continue
            text = msg.get("text", "")
            t = stamp_of(text)
            if t is None or text in stats.seen:  # every agent of the queue gets it: count the first
                continue
            stats.seen.add(text)
            if stats.counting:
                stats.c2a.append(time.perf_counter() - t)
                stats.delivered += 1
            n += 1
            if answer is not None and stats.counting and n % every == 0:
                task = asyncio.get_running_loop().create_task(answer(frame))
                task.add_done_callback(lambda t: _record_failure(t, stats.answer_errors))


def _record_failure(task: asyncio.Task[Any], errors: list[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        errors.append(repr(task.exception()))


class Widget:
    def __init__(self, conv: int, ws: ClientConnection, stats: Stats, receipts: bool = False) -> None:
        self.conv = conv
        self.receipts = receipts
        self.ws = ws
        self.stats = stats
        self.n = 0
        self.inflight: asyncio.Event = asyncio.Event()
        self.inflight.set()
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "ack":
                self.stats.acked_all += 1
                if self.stats.counting:
                    self.stats.acked += 1
                self.inflight.set()
            elif kind == "message":
                t = stamp_of(frame["message"].get("text", ""))
                if t is not None and self.stats.counting:
                    self.stats.a2c.append(time.perf_counter() - t)
                if self.receipts and isinstance(frame["message"].get("id"), int):
                    # What the real widget does with an agent's message it shows.
                    await self.ws.send(json.dumps({"type": "delivered", "message_ids": [frame["message"]["id"]]}))

    async def send(self) -> None:
        self.n += 1
        self.inflight.clear()
        await self.ws.send(
            json.dumps({"type": "message", "client_id": f"c{self.n}", "text": stamp_text(self.conv, self.n)})
        )


async def open_widgets(
    target: Target, count: int, stats: Stats, concurrency: int = 200, receipts: bool = False
) -> list[Widget]:
    sem = asyncio.Semaphore(concurrency)
    out: list[Widget | None] = [None] * count

    async def one(i: int) -> None:
        async with sem:
            url = await target.widget_url(i)
            ws = await connect(url, max_queue=None, compression=None, open_timeout=120)
            await ws.recv()  # hello
            out[i] = Widget(i, ws, stats, receipts)

    await asyncio.gather(*(one(i) for i in range(count)))
    return [w for w in out if w is not None]


async def close_all(widgets: list[Widget]) -> None:
    for w in widgets:
        w.reader.cancel()
    await asyncio.gather(*(w.ws.close() for w in widgets), return_exceptions=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def profile(args: argparse.Namespace, pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for the saturation phase, every thread, as raw collapsed stacks."""
    command = [args.profile_with, "record", "-r", "100", "-f", "raw", "--threads", "-d", str(math.ceil(args.saturate))]
    return subprocess.Popen(
        [*command, "--pid", str(pid), "-o", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


# --- the phases ----------------------------------------------------------------------------------------------


async def phases(
    target: Target,
    args: argparse.Namespace,
    setup: Callable[[list[Widget], Stats], Awaitable[None]] | None,
    on_agent_frame: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    stats = Stats()
    readies = [asyncio.Event() for _ in target.agent_urls]
    agents = [
        asyncio.create_task(
            agent_client(url, stats, lambda f, q=q: target.answer(None, f, q), args.answer_every, r, on_agent_frame)
        )
        for (url, q), r in zip(target.agent_urls, readies, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    widgets = await open_widgets(target, args.conversations, stats, receipts=not args.no_receipts)
    if setup is not None:
        await setup(widgets, stats)
    # This harness holds a large heap too (a thousand clients): Python's full collections of it stalled every
    # client for 100-150 ms every few seconds, which the latency figures of both servers counted.
    gc.collect()
    gc.freeze()
    result: dict[str, Any] = {}

    # 1. steady rate
    interval = args.conversations / args.rate

    async def steady(w: Widget, until: float) -> None:
        await asyncio.sleep(random.random() * interval)
        nxt = time.perf_counter()
        while nxt < until:
            await w.send()
            nxt += interval
            delay = nxt - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    cpu0, harness0 = cpu_seconds(target.pid), time.process_time()
    stats.counting = True
    t0 = time.perf_counter()
    await asyncio.gather(*(steady(w, t0 + args.duration) for w in widgets))
    await asyncio.sleep(1.0)  # let the last ones arrive
    stats.counting = False
    elapsed = time.perf_counter() - t0
    sent = sum(w.n for w in widgets)
    c2a = [x * 1000 for x in stats.c2a]
    a2c = [x * 1000 for x in stats.a2c]
    result["steady"] = {
        "offered_rate": args.rate,
        "sent": sent,
        "delivered": stats.delivered,
        "msgs_per_s": stats.delivered / args.duration,
        "c2a_p50": percentile(c2a, 50),
        "c2a_p99": percentile(c2a, 99),
        "c2a_max": max(c2a) if c2a else float("nan"),
        "a2c_n": len(a2c),
        "answer_errors": list(stats.answer_errors),
        "a2c_p50": percentile(a2c, 50),
        "a2c_p99": percentile(a2c, 99),
        "server_cpu": (cpu_seconds(target.pid) - cpu0) / elapsed,
        # This process (the clients) shares the machine with the server: near a core, it adds latency too.
        "harness_cpu": (time.process_time() - harness0) / elapsed,
    }
    # Drain what the steady phase left in flight, so that the saturation figures are its own.
    for _ in range(600):  # at most 120 s
        if stats.acked_all >= sent:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)

    # 2. saturation: one message in flight per conversation
    stats.c2a.clear()
    stats.a2c.clear()
    stats.delivered = 0
    stats.acked = 0

    async def flood(w: Widget, until: float) -> None:
        while time.perf_counter() < until:
            await w.inflight.wait()
            await w.send()

    for w in widgets:
        w.inflight.set()
    profilers = []
    if target.name == "switchboard":
        # Only the saturation phase is recorded: setup (sessions, accepts, connects) would blur the
        # per-message costs.
        profilers = [
            profile(args, pid, path)
            for pid, path in ((target.pid, args.profile), (os.getpid(), args.profile_client))
            if path
        ]
    stats.counting = True
    t0 = time.perf_counter()
    cpu0 = cpu_seconds(target.pid)
    floods = [asyncio.create_task(flood(w, t0 + args.saturate)) for w in widgets]
    await asyncio.sleep(args.saturate)
    delivered, acked = stats.delivered, stats.acked
    elapsed = time.perf_counter() - t0
    stats.counting = False
    for f in floods:
        f.cancel()
    sat = [x * 1000 for x in stats.c2a]
    result["saturation"] = {
        "msgs_per_s": delivered / elapsed,
        "acks_per_s": acked / elapsed,
        "c2a_p50": percentile(sat, 50),
        "c2a_p99": percentile(sat, 99),
        "server_cpu": (cpu_seconds(target.pid) - cpu0) / elapsed,
    }
    for p in profilers:
        await asyncio.to_thread(p.wait, 60)
    await asyncio.sleep(2.0)
    await close_all(widgets)
    for a in agents:
        a.cancel()
    return result


async def idle_memory(target: Target, count: int) -> dict[str, float]:
    before = rss_mb(target.pid)
    stats = Stats()
    widgets = await open_widgets(target, count, stats, concurrency=300)
    await asyncio.sleep(3.0)
    after = rss_mb(target.pid)
    opened = len(widgets)
    await close_all(widgets)
    return {"connections": opened, "rss_before_mb": before, "rss_mb": after}


# --- Switchboard ---------------------------------------------------------------------------------------------


async def seed(url: str, agents: int, queues: int) -> list[tuple[int, str, str]]:
    """``queues`` chat queues, ``agents`` agents spread over them with room for every conversation."""
    from hub.config import Settings
    from hub.db import insert_returning_ids
    from hub.runtime import standalone
    from ticketing import tables
    from ticketing.models import QueueCreate
    from ticketing.queues import create_queue

    async with standalone(Settings(database_url=url, _env_file=None)) as rt:  # type: ignore[call-arg]
        qids = [
            (await create_queue(rt, data=QueueCreate(name=f"q{i}", channels=["webchat"]))).id for i in range(queues)
        ]
        rows = agent_rows(agents, status="available", capacity={"webchat": 100_000})
        async with rt.db.begin() as conn:
            ids = await insert_returning_ids(conn, tables.agents, rows)
            await conn.execute(
                tables.agent_queues.insert(), [{"agent_id": a, "queue_id": qids[i % queues]} for i, a in enumerate(ids)]
            )
    return [(a, row["password_hash"], f"q{i % queues}") for i, (a, row) in enumerate(zip(ids, rows, strict=True))]


def stop(server: subprocess.Popen[bytes], signal: int = 15) -> None:
    server.send_signal(signal)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)


def start_server(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = tempfile.NamedTemporaryFile(prefix="bench-chat-", suffix=".log", delete=False)
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_up(port: int, path: str = "/healthz") -> None:
    async with httpx.AsyncClient(timeout=5) as c:
        for _ in range(600):
            try:
                await c.get(f"http://127.0.0.1:{port}{path}")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


SERVE = (
    "from hub.cli import run_server; from hub.config import Settings;"
    "run_server(Settings(), host='127.0.0.1', port={port}, log_level='warning', access_log=False, backlog=4096)"
)


async def run_switchboard(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from hub.auth import TokenSigner

    credentials = await seed(url, args.agents, args.queues)
    signer = TokenSigner(SECRET, 3600)
    tokens = [(signer.issue(a, h), q) for a, h, q in credentials]
    port = 19000 + os.getpid() % 500
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": url,
        "SWITCHBOARD_SECRET_KEY": SECRET,
        "SWITCHBOARD_OFFER_TIMEOUT_SECONDS": "600",
        "SWITCHBOARD_WS_SEND_QUEUE": "100000",
        "SWITCHBOARD_ATTACHMENT_DIR": tempfile.mkdtemp(prefix="bench-att-"),
    }
    command = [sys.executable, "-c", SERVE.format(port=port)]
    server = start_server(command, env)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_up(port)
        # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them: a request sent on
        # one just as the server closed it failed with ReadError (one agent reply in a run, now and then).
        http = httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=50, keepalive_expiry=2.0)
        )
        answer_sem = asyncio.Semaphore(20)
        by_queue_token = {q: t for t, q in tokens}
        offers: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        agent_of: dict[str, str] = {}

        async def session_url(i: int) -> str:
            queue = f"q{i % args.queues}"
            for attempt in range(5):
                try:
                    r = await http.post("/api/chat/sessions", json={"name": f"Visitor {i}", "queue": queue})
                    break
                except httpx.TransportError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1 + attempt)
            r.raise_for_status()
            return f"ws://127.0.0.1:{port}/ws/chat?token={r.json()['token']}"

        async def answer(_: Any, frame: dict[str, Any], queue: str) -> None:
            ticket_id = frame["ticket_id"]
            text = f"answer t={time.perf_counter():.6f}"
            async with answer_sem:
                await http.post(
                    f"/api/tickets/{ticket_id}/reply",
                    json={"text": text},
                    headers={"Authorization": f"Bearer {agent_of.get(str(ticket_id), by_queue_token[queue])}"},
                )

        def on_frame(frame: dict[str, Any]) -> None:
            if frame.get("type") == "ticket.offered":
                offers.put_nowait((frame["ticket_id"], str(frame["agent_id"])))

        token_of_agent = {str(a): t for (a, _, _), (t, _) in zip(credentials, tokens, strict=True)}

        async def setup(widgets: list[Widget], stats: Stats) -> None:
            # The first message of each conversation opens its ticket; agents accept every offer.
            for w in widgets:
                await w.send()
            accepted = 0

            async def accept_loop() -> None:
                nonlocal accepted
                sem = asyncio.Semaphore(20)

                async def one(tid: int, agent_id: str) -> None:
                    nonlocal accepted
                    async with sem:
                        tok = token_of_agent[agent_id]
                        r = await http.post(f"/api/tickets/{tid}/accept", headers={"Authorization": f"Bearer {tok}"})
                        if r.status_code == 200:
                            agent_of[str(tid)] = tok
                            accepted += 1

                pending = []
                while accepted + len(pending) < len(widgets):
                    tid, agent_id = await offers.get()
                    pending.append(asyncio.create_task(one(tid, agent_id)))
                    pending = [p for p in pending if not p.done()]
                await asyncio.gather(*pending)

            await asyncio.wait_for(accept_loop(), 300)

        target = Target(
            "switchboard",
            port,
            session_url,
            [(f"ws://127.0.0.1:{port}/ws/agent?token={t}", q) for t, q in tokens],
            answer,
            server.pid,
        )
        result = await phases(target, args, setup, on_frame)
        report("switchboard", result)
        if args.idle:
            result["idle"] = await idle_memory(target, args.idle)
        await http.aclose()
        return result
    finally:
        stop(server)


async def run_relay(args: argparse.Namespace) -> dict[str, Any]:
    port = 19600 + os.getpid() % 300
    root = ROOT
    code = (
        f"import sys, uvicorn; sys.path.insert(0, {root!r}); from bench.chat import relay_app;"
        f"uvicorn.run(relay_app(), host='127.0.0.1', port={port}, log_level='warning', ws_per_message_deflate=False,"
        " backlog=4096)"
    )
    server = start_server([sys.executable, "-c", code], dict(os.environ))
    try:
        await wait_up(port, "/")
        agent_socks: dict[str, ClientConnection] = {}

        async def widget_url(i: int) -> str:
            return f"ws://127.0.0.1:{port}/ws/chat?conv={i}&queue=q{i % args.queues}"

        async def answer(_: Any, frame: dict[str, Any], queue: str) -> None:
            ws = agent_socks.get(queue)
            if ws is not None:
                await ws.send(
                    json.dumps({"ticket_id": frame["ticket_id"], "text": f"answer t={time.perf_counter():.6f}"})
                )

        agent_urls = [
            (f"ws://127.0.0.1:{port}/ws/agent?queue=q{i % args.queues}", f"q{i % args.queues}")
            for i in range(args.agents)
        ]
        # The relay's agents answer over a socket of their own per queue.
        for q in {q for _, q in agent_urls}:
            agent_socks[q] = await connect(f"ws://127.0.0.1:{port}/ws/agent?queue=answers-{q}")
            await agent_socks[q].recv()
        target = Target("relay", port, widget_url, agent_urls, answer, server.pid)
        result = await phases(target, args, None)
        report("relay", result)
        for ws in agent_socks.values():
            await ws.close()
        return result
    finally:
        stop(server)


def report(name: str, r: dict[str, Any]) -> None:
    if "steady" not in r:
        return
    s, t = r["steady"], r["saturation"]
    print(
        f"  {name:<11} steady {s['offered_rate']:.0f}/s offered: {s['msgs_per_s']:8.1f} msgs/s delivered "
        f"({s['delivered']}/{s['sent']}), customer->agent p50 {s['c2a_p50']:6.1f} ms p99 {s['c2a_p99']:7.1f} ms "
        f"max {s['c2a_max']:7.1f} ms; agent->customer p50 {s['a2c_p50']:.1f} ms p99 {s['a2c_p99']:.1f} ms "
        f"(n={s['a2c_n']}); server CPU {s['server_cpu']:.2f} cores, harness CPU {s['harness_cpu']:.2f} cores"
    )
    if s["answer_errors"]:
        print(f"  {name:<11} {len(s['answer_errors'])} agent replies failed, first: {s['answer_errors'][0]}")
    print(
        f"  {name:<11} saturation: {t['msgs_per_s']:8.1f} msgs/s delivered ({t['acks_per_s']:.1f} acks/s), "
        f"customer->agent p50 {t['c2a_p50']:.1f} ms p99 {t['c2a_p99']:.1f} ms; server CPU {t['server_cpu']:.2f} cores"
    )
    sys.stdout.flush()


def report_idle(name: str, r: dict[str, Any]) -> None:
    if "idle" in r:
        i = r["idle"]
        print(
            f"  {name:<11} idle: {i['connections']} widget connections, server RSS {i['rss_mb']:.0f} MB "
            f"(before {i['rss_before_mb']:.0f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="customer messages per second, in all")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--saturate", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=10_000, help="idle widget connections for the memory figure")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--answer-every", type=int, default=20, help="agents answer one message in this many")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--no-relay", action="store_true")
    parser.add_argument(
        "--no-receipts", action="store_true", help="widgets do not acknowledge agents' messages (the real one does)"
    )
    parser.add_argument("--profile", help="record the Switchboard server's saturation phase with py-spy into this file")
    parser.add_argument("--profile-client", help="record this harness's saturation phase with py-spy into this file")
    parser.add_argument("--profile-with", default="py-spy", help="the py-spy executable")
    parser.add_argument("--postgres-url", default=os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL", PG_DEFAULT))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(
        f"{args.conversations} conversations, {args.rate:.0f} msgs/s offered for {args.duration:.0f} s, "
        f"{args.agents} agents in {args.queues} queues, saturation {args.saturate:.0f} s, {os.cpu_count()} cores"
    )
    results: dict[str, dict[str, Any]] = {}
    for kind in args.db.split(","):
        with fresh_database(kind, args.postgres_url) as url:
            results[f"sb/{kind}"] = asyncio.run(run_switchboard(url, args))
            report_idle(f"sb/{kind}", results[f"sb/{kind}"])
    if not args.no_relay:
        saved = args.idle
        results["relay"] = asyncio.run(run_relay(args))
        args.idle = saved
        for name, r in results.items():
            if name != "relay":
                ratio = r["saturation"]["msgs_per_s"] / results["relay"]["saturation"]["msgs_per_s"]
                print(f"  {name}: maximum sustained throughput is {ratio:.2f} of the bare relay's")


if __name__ == "__main__":
    main()
