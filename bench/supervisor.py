"""The supervisor's wallboard, reports and forecast at contact-center size: 500 agents in 50 queues, 10,000
waiting items, a history of tickets and 1,000,000 stored messages, and a steady stream of arrivals, status
changes and answers through a real server.

Prints:
1. the wallboard's load at start (its one scan of the tables) and its first load by a browser
   (GET /api/supervisor/wallboard over HTTP, p50/p99 of repeated loads);
2. event-to-screen latency on a connected wallboard (/ws/agent): from sending a change (an arrival through
   POST /api/inbound, an agent's status, an answer by reassignment) until a ``wallboard.update`` frame that
   shows it arrives, p50/p99, while the stream runs at ``--rate`` changes per second;
3. the time of the main reports (summary by day over 30 days, by hour over 7 days, CSV, one chart) and the
   staffing forecast over the history; the reports read the hourly rollup (``ticketing.report_rollup``),
   built once from the seeded history before the server starts (its time is printed);
4. ingest throughput (the real IngestPipeline, events delivered to the process's hub) with the supervisor's
   bookkeeping (the wallboard's listener and the reports' rollup job) off and on, alternated. A run with it on
   first takes in what the runs before it left (not its work), and its clock stops once the rollup has taken
   in all of its own messages (not with a pass still owed); with it off, ingest does not count arrivals in the
   rollup either. Beside the rates, which other processes on a shared machine move, the CPU time per message
   of this process and of PostgreSQL's backends, and each part of the bookkeeping's alone (ingest's counting
   of arrivals, the rollup's catch-up, the wallboard's listener).

    .venv/bin/python -m bench.supervisor [--agents 500] [--queues 50] [--waiting 10000] [--tickets 100000]
                                         [--messages 1000000] [--changes 300] [--rate 20] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
import websockets  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench._common import PG_DEFAULT, fresh_database, percentile, postgres_cpu  # noqa: E402
from hub.auth import hash_password  # noqa: E402
from hub.bus import EventHub, LocalTransport  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.db import Database, utcnow  # noqa: E402
from hub.messages import Identity, InboundMessage  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.runtime import Runtime, standalone  # noqa: E402
from hub.workers import FreezeSurvivors, Periodic, freeze_heap  # noqa: E402
from ticketing import report_rollup, tables  # noqa: E402
from ticketing.ingest import IngestPipeline  # noqa: E402
from ticketing.ports import register_ports  # noqa: E402
from ticketing.wallboard import Wallboard, start_wallboard  # noqa: E402

CHANNELS = ["webchat", "email", "sms"]


# --direct-reports: no rollup (never built, its job never runs), so the reports read the tickets as before it
DIRECT_REPORTS: dict[str, Any] = {}


def settings_for(url: str, **extra: Any) -> Settings:
    extra = {**DIRECT_REPORTS, **extra}
    return Settings(
        database_url=url,
        secret_key="bench-secret-key-0123456789",
        redis_url=None,
        gc_freeze_seconds=0,
        routing_tick_seconds=3600.0,  # the stream's changes alone: no offers of the 10,000 waiting meanwhile
        sla_check_seconds=0,
        kb_embedder="none",
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    )


async def chunked(conn: Any, table: Any, rows: list[dict[str, Any]], size: int = 5000) -> None:
    for i in range(0, len(rows), size):
        await conn.execute(table.insert(), rows[i : i + size])


async def seed(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Queues, agents (one supervisor), waiting tickets, history tickets and messages, by bulk inserts."""
    rng = random.Random(5)
    now = utcnow()
    settings = settings_for(url)
    pw = hash_password("bench-password")
    async with standalone(settings) as rt, rt.db.begin() as conn:
        await chunked(
            conn,
            tables.queues,
            [
                {
                    "name": f"q{i:02d}",
                    "description": "",
                    "channels": CHANNELS,
                    "required_skills": {},
                    "priority": 0,
                    "service_level_seconds": 60,
                    "service_level_target": 80,
                    "wait_alert_seconds": 300,
                    "overflow_stage": None,
                    "created_at": now,
                }
                for i in range(args.queues)
            ],  # fmt: skip
        )
        await chunked(
            conn,
            tables.agents,
            [
                {"username": f"a{i}", "display_name": f"Agent {i}", "password_hash": pw, "role": "agent",
                 "status": rng.choice(["available", "away", "offline"]), "status_changed_at": now, "skills": {},
                 "capacity": {}, "missed_offers": 0, "active": True, "created_at": now}
                for i in range(args.agents)
            ]
            + [{"username": "boss", "display_name": "Boss", "password_hash": pw, "role": "supervisor",
                "status": "offline", "status_changed_at": now, "skills": {}, "capacity": {}, "missed_offers": 0,
                "active": True, "created_at": now}],
        )  # fmt: skip
        await chunked(
            conn,
            tables.agent_queues,
            [
                {"agent_id": a + 1, "queue_id": q + 1}
                for a in range(args.agents)
                for q in {a % args.queues, (a * 7 + 3) % args.queues}
            ],
        )
        n_contacts = args.waiting + args.tickets
        await chunked(conn, tables.contacts, [{"name": f"c{i}", "attributes": {}, "created_at": now,
                                               "updated_at": now} for i in range(n_contacts)])  # fmt: skip
        tickets = []
        for i in range(args.waiting):
            queued = now - timedelta(seconds=rng.randint(1, 3600))
            tickets.append(_ticket(i + 1, rng.randint(1, args.queues), rng.choice(CHANNELS), queued, "new"))
        for i in range(args.tickets):
            created = now - timedelta(seconds=rng.randint(60, 30 * 86400))
            t = _ticket(args.waiting + i + 1, rng.randint(1, args.queues), rng.choice(CHANNELS), created, "solved")
            wait = timedelta(seconds=int(rng.expovariate(1 / 45)))
            if rng.random() < 0.08:
                t.update(status="closed", abandoned_at=created + wait, closed_at=created + wait)
            else:
                t.update(
                    answered_at=created + wait,
                    first_response_at=created + wait + timedelta(seconds=20),
                    solved_at=created + wait + timedelta(seconds=int(rng.expovariate(1 / 300))),
                    assignee_id=rng.randint(1, args.agents),
                    rating=rng.choice([None, None, 3, 4, 5]),
                )
            tickets.append(t)
        # As a real hub stores them: in the order they were created (history first, then today's waiting).
        tickets.sort(key=lambda t: t["created_at"])
        await chunked(conn, tables.tickets, tickets)
        total_tickets = len(tickets)
        for start in range(0, args.messages, 50_000):
            batch = [
                {"ticket_id": rng.randint(1, total_tickets), "direction": "inbound", "channel": "email",
                 "external_id": f"m{j}", "text": "Hello, where is my order?", "attachments": [], "meta": {},
                 "delivery_status": "received", "created_at": now}
                for j in range(start, min(args.messages, start + 50_000))
            ]  # fmt: skip
            await chunked(conn, tables.messages, batch, size=10_000)
    return {"waiting": args.waiting}


def _ticket(contact: int, queue_id: int, channel: str, at: Any, status: str) -> dict[str, Any]:
    return {
        "subject": "order question",
        "status": status,
        "priority": "normal",
        "channel": channel,
        "contact_id": contact,
        "queue_id": queue_id,
        "tags": [],
        "created_at": at,
        "updated_at": at,
        "queued_at": at,
        "overflow_stage": 0,
        "answered_at": None,
        "abandoned_at": None,
        "solved_at": None,
        "closed_at": None,
        "first_response_at": None,
        "assignee_id": None,
        "rating": None,
    }


class Server:
    def __init__(self, settings: Settings, port: int) -> None:
        from hub.app import create_app
        from hub.websocket import server_protocol

        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", ws=server_protocol(settings), lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


async def live_figures(url: str, args: argparse.Namespace, port: int) -> None:
    server = Server(settings_for(url), port)
    t0 = time.perf_counter()
    server.start()
    print(f"  server start (wallboard's scan of the tables included): {time.perf_counter() - t0:.2f} s")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            r = await client.post("/api/auth/login", json={"username": "boss", "password": "bench-password"})
            token = r.json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            loads = []
            for _ in range(args.loads):
                t = time.perf_counter()
                r = await client.get("/api/supervisor/wallboard", headers=headers)
                r.raise_for_status()
                loads.append((time.perf_counter() - t) * 1000)
            snap = r.json()
            print(
                f"  first load GET /api/supervisor/wallboard: p50 {percentile(loads, 50):.0f} ms, "
                f"p99 {percentile(loads, 99):.0f} ms ({len(r.content) / 1e6:.2f} MB, {len(snap['queues'])} queues, "
                f"{len(snap['agents'])} agents, {sum(q['waiting'] for q in snap['queues'])} waiting)"
            )
            waiting = {q["id"]: q["waiting"] for q in snap["queues"]}
            answered = {q["id"]: q["answered_today"] for q in snap["queues"]}
            status = {a["id"]: a["status"] for a in snap["agents"]}
            latencies: dict[str, list[float]] = {"arrival": [], "status": [], "answer": []}
            frames: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
            ws_url = server.url.replace("http", "ws") + f"/ws/agent?token={token}"
            async with websockets.connect(ws_url, max_size=None) as ws:

                async def read() -> None:
                    async for raw in ws:
                        f = json.loads(raw)
                        if f.get("type") == "wallboard.update":
                            frames.put_nowait((time.perf_counter(), f["data"]))

                reader = asyncio.create_task(read())
                rng = random.Random(9)
                pending: list[int] = []
                admin_headers = headers
                interval = 1 / args.rate
                for i in range(args.changes):
                    kind = ("arrival", "status", "answer")[i % 3]
                    if kind == "answer" and not pending:
                        kind = "arrival"
                    t_send = time.perf_counter()
                    if kind == "arrival":
                        q = rng.randint(1, args.queues)
                        waiting[q] = waiting.get(q, 0) + 1
                        r = await client.post(
                            "/api/inbound",
                            json={"channel": "webchat", "external_id": f"s{i}", "thread_key": f"s{i}", "text": "hi",
                                  "sender": {"kind": "webchat", "value": f"v{i}"}, "queue": f"q{q - 1:02d}"},
                            headers=admin_headers,
                        )  # fmt: skip
                        if r.status_code == 403:
                            raise SystemExit("the bench's supervisor may not ingest: run as admin")
                        pending.append(r.json()["ticket_id"])

                        def done(d: dict[str, Any], q: int = q, want: int = waiting[q]) -> bool:
                            return any(row["id"] == q and row["waiting"] >= want for row in d["queues"])
                    elif kind == "status":
                        agent = rng.randint(1, args.agents)
                        new = "away" if status.get(agent) == "available" else "available"
                        status[agent] = new
                        r = await client.put(
                            f"/api/supervisor/agents/{agent}/status", json={"status": new}, headers=headers
                        )
                        r.raise_for_status()

                        def done(d: dict[str, Any], agent: int = agent, new: str = new) -> bool:
                            return any(a["id"] == agent and a["status"] == new for a in d["agents"])
                    else:
                        ticket = pending.pop(0)
                        r = await client.post(
                            f"/api/supervisor/tickets/{ticket}/reassign",
                            json={"agent_id": rng.randint(1, args.agents)}, headers=headers,
                        )  # fmt: skip
                        r.raise_for_status()
                        q = r.json()["queue_id"]
                        answered[q] = answered.get(q, 0) + 1
                        waiting[q] -= 1

                        def done(d: dict[str, Any], q: int = q, want: int = answered[q]) -> bool:
                            return any(row["id"] == q and row["answered_today"] >= want for row in d["queues"])

                    while True:
                        try:
                            at, data = await asyncio.wait_for(frames.get(), 10)
                        except TimeoutError:
                            raise SystemExit(f"no frame showed change {i} ({kind}) within 10 s") from None
                        if done(data):
                            latencies[kind].append((at - t_send) * 1000)
                            break
                    await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t_send)))
                reader.cancel()
            every = [v for vs in latencies.values() for v in vs]
            print(
                f"  event-to-screen ({args.changes} changes at up to {args.rate}/s): "
                f"p50 {percentile(every, 50):.0f} ms, p99 {percentile(every, 99):.0f} ms; "
                + ", ".join(
                    f"{k} p50 {percentile(v, 50):.0f}/p99 {percentile(v, 99):.0f} ms" for k, v in latencies.items()
                )
            )
            today = utcnow().date()
            for label, path in (
                ("summary by day, 30 days", f"/api/reports/summary?start={today - timedelta(days=29)}&end={today}"),
                (
                    "summary by hour, 7 days",
                    f"/api/reports/summary?start={today - timedelta(days=6)}&end={today}&bucket=hour",
                ),
                ("CSV by day, 30 days", f"/api/reports/summary.csv?start={today - timedelta(days=29)}&end={today}"),
                (
                    "volume chart, 30 days",
                    f"/api/reports/chart/volume.svg?start={today - timedelta(days=29)}&end={today}",
                ),
                ("staffing forecast, 4 weeks", "/api/supervisor/forecast?weeks=4"),
            ):
                t = time.perf_counter()
                r = await client.get(path, headers=headers)
                r.raise_for_status()
                print(f"  {label}: {(time.perf_counter() - t) * 1000:.0f} ms")
    finally:
        server.stop()


async def _count_nothing(conn: Any, rows: list[dict[str, Any]]) -> None:
    return None


async def rollup_cost(url: str, n: int) -> tuple[float, float]:
    """The rollup's CPU per new email, each part alone: counting arrivals in ingest's transactions (timed inside
    them), and a catch-up taking in the events of ``n`` emails once they are stored and routed."""
    settings = settings_for(url)
    db = Database(url)
    hub = EventHub(db, LocalTransport())
    rt = Runtime(settings=settings, db=db, events=hub, metrics=Metrics())
    register_ports(rt)
    await hub.start()
    await report_rollup.catch_up(rt, build=True)
    pipeline = IngestPipeline(rt)
    await pipeline.start()
    messages = [
        InboundMessage(channel="email", external_id=f"<cost-{i}@bench>",
                       sender=Identity(kind="email", value=f"cost{i}@example.com"), subject="bench", text="hello",
                       queue="q00")
        for i in range(n)
    ]  # fmt: skip
    ids = sorted({r.ticket_id for r in await asyncio.gather(*(pipeline.submit(m) for m in messages))})
    await pipeline.stop()
    t = time.process_time()
    await report_rollup.catch_up(rt)
    catching_up = time.process_time() - t
    # Counting these tickets' arrivals again, by batches of 100 as ingest would, in a transaction rolled back:
    # timed around each call alone (inside ingest, the routing stage runs during its awaits).
    counting = 0.0
    with contextlib.suppress(_RolledBack):
        async with rt.db.begin() as conn:
            rows = (await conn.execute(select(*(tables.tickets.c[c] for c in ARRIVAL)).where(
                tables.tickets.c.id.in_(ids)))).mappings().all()  # fmt: skip
            await conn.execute(tables.report_tickets.delete().where(tables.report_tickets.c.ticket_id.in_(ids)))
            for i in range(0, len(rows), 100):
                batch = [dict(r) for r in rows[i : i + 100]]
                t = time.process_time()
                await report_rollup.count_arrivals(conn, batch)
                counting += time.process_time() - t
            raise _RolledBack
    await hub.stop()
    await db.dispose()
    return counting / n * 1e6, catching_up / n * 1e6


ARRIVAL = ("id", "created_at", "queue_id", "channel")


class _RolledBack(Exception):
    pass


@dataclass
class IngestRun:
    rate: float  # messages per second
    cpu: float  # µs per message in this process (the pipeline, and the bookkeeping when on)
    backend_cpu: float  # µs per message in PostgreSQL's backends (0 on SQLite)


async def ingest_throughput(url: str, n: int, board_on: bool, offset: int) -> IngestRun:
    settings = settings_for(url)
    db = Database(url)
    hub = EventHub(db, LocalTransport())
    rt = Runtime(settings=settings, db=db, events=hub, metrics=Metrics())
    register_ports(rt)
    await hub.start()
    board: Wallboard | None = await start_wallboard(rt) if board_on else None
    # Off: none of the supervisor's bookkeeping, the reports' counting of arrivals in ingest's transaction
    # (``report_rollup.count_arrivals``) included.
    count_arrivals = report_rollup.count_arrivals
    if not board_on:
        report_rollup.count_arrivals = _count_nothing  # type: ignore[assignment]
    # the supervisor's other bookkeeping: the reports' rollup taking in the new events, as a server runs it
    rollup = Periodic("report-rollup", settings.report_rollup_seconds, lambda: report_rollup.catch_up(rt, build=True))
    if board_on:
        # what the runs with it off left behind is not this run's work: taken in before the clock starts
        await report_rollup.catch_up(rt, build=True)
        await rollup.start()
    pipeline = IngestPipeline(rt)
    await pipeline.start()
    messages = [
        InboundMessage(
            channel="email",
            external_id=f"<ing-{offset}-{i}@bench>",
            sender=Identity(kind="email", value=f"ing{offset}-{i}@example.com"),
            subject="bench",
            text="hello",
            queue="q00",
        )
        for i in range(n)
    ]
    # As a server does once started (hub.app): what the start built (the board's state among it) is frozen, so
    # that the collector's full passes during the run do not walk it again and again.
    freeze_heap()
    survivors = FreezeSurvivors()
    survivors.install()
    backends = await postgres_cpu(rt)
    cpu = time.process_time()
    t = time.perf_counter()
    await asyncio.gather(*(pipeline.submit(m) for m in messages))
    if board_on:
        # the rollup's work for this run's last seconds, which its next pass would do after the clock stops
        await rollup.stop()
        await report_rollup.catch_up(rt)
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - cpu
    backend = sum(c - backends.get(pid, 0.0) for pid, c in (await postgres_cpu(rt)).items())
    survivors.remove()
    gc.unfreeze()
    await pipeline.stop()
    report_rollup.count_arrivals = count_arrivals  # type: ignore[assignment]
    await rollup.stop()
    if board is not None:
        board.stop()
    await hub.stop()
    await db.dispose()
    return IngestRun(n / elapsed, cpu / n * 1e6, backend / n * 1e6)


def main_for(kind: str, args: argparse.Namespace) -> None:
    with fresh_database(kind, args.pg_url) as url:
        asyncio.run(measure(kind, url, args))


async def measure(kind: str, url: str, args: argparse.Namespace) -> None:
    print(f"{kind}:")
    t = time.perf_counter()
    await seed(url, args)
    print(
        f"  seeded {args.queues} queues, {args.agents} agents, {args.waiting} waiting, {args.tickets} history "
        f"tickets, {args.messages} messages in {time.perf_counter() - t:.0f} s"
    )
    async with standalone(settings_for(url)) as rt:
        board = Wallboard(rt)
        t = time.perf_counter()
        await board.load()
        load_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        board.snapshot()
        snap_ms = (time.perf_counter() - t) * 1000
        freeze_heap()  # as a server does once started: the loaded board is not walked by every collection
        per_event = listener_cost(board)
        gc.unfreeze()
        if not DIRECT_REPORTS:
            t = time.perf_counter()
            await report_rollup.catch_up(rt, build=True)
            rollup_s = time.perf_counter() - t
    if DIRECT_REPORTS:
        print("  reports read the tickets directly (--direct-reports: no rollup)")
    else:
        print(f"  the reports' hourly rollup built from the history (once, at the first start): {rollup_s:.1f} s")
    print(
        f"  wallboard's load from the tables: {load_ms:.0f} ms; a snapshot from memory: {snap_ms:.1f} ms; "
        f"the listener's cost per event: {per_event:.1f} µs"
    )
    # the bench's supervisor ingests through /api/inbound: make it an admin
    async with standalone(settings_for(url)) as rt, rt.db.begin() as conn:
        await conn.execute(tables.agents.update().where(tables.agents.c.username == "boss").values(role="admin"))
    if not args.ingest_only:
        await live_figures(url, args, args.port)
    counting, catching_up = await rollup_cost(url, args.ingest)
    runs: dict[bool, list[IngestRun]] = {False: [], True: []}
    for round_ in range(args.ingest_rounds):
        # ABBA: each run adds 5000 tickets, and a later run meets a bigger database; alternating which goes
        # first keeps that from counting against one side
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            runs[on].append(await ingest_throughput(url, args.ingest, on, offset=round_ * 2 + int(on)))

    # the median run of each: the load of other processes on a shared machine moves single runs by tens of %
    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    off_rate, on_rate = (median([r.rate for r in runs[k]]) for k in (False, True))
    print(
        f"  ingest ({args.ingest} emails per run, median of {args.ingest_rounds}): bookkeeping off {off_rate:.0f}/s, "
        f"on {on_rate:.0f}/s ({(on_rate - off_rate) / off_rate * 100:+.1f} %)"
    )

    cpu_off, cpu_on = (median([r.cpu for r in runs[k]]) for k in (False, True))
    pg_off, pg_on = (median([r.backend_cpu for r in runs[k]]) for k in (False, True))
    pg = kind != "sqlite"
    print(
        f"  ingest CPU per message, this process: off {cpu_off:.0f} µs, on {cpu_on:.0f} µs "
        f"({(cpu_on - cpu_off) / cpu_off * 100:+.1f} %)"
        + (f"; PostgreSQL's backends: off {pg_off:.0f} µs, on {pg_on:.0f} µs" if pg else "")
    )
    # The bookkeeping's own cost in this process, each part measured alone: the rollup's counting of arrivals in
    # ingest's transactions and its catch-up over the emails' events, and the listener at its cost per event
    # times the events a new email makes (ticket.created, message.created, ticket.queued), against what
    # storing and routing an email costs with it off.
    listener = 3 * per_event
    total = counting + catching_up + listener
    print(
        f"  bookkeeping CPU per message in this process, each part alone: rollup {counting:.1f} µs counting "
        f"arrivals + {catching_up:.1f} µs catching up, listener {listener:.1f} µs: {total / cpu_off * 100:.1f} % "
        "of ingest's"
    )


def listener_cost(board: Wallboard, n: int = 30_000) -> float:
    """Microseconds the wallboard's listener takes per event, over a mix of what ingest and routing emit: a
    ticket created, a message, the ticket queued (no websocket connected, so nothing is pushed)."""
    from hub.events import EventRecord

    now = utcnow()
    events = []
    for i in range(n // 3):
        ticket = {"id": 10_000_000 + i, "status": "new", "queue_id": 1, "channel": "email", "assignee_id": None,
                  "offered_agent_id": None, "queued_at": None, "first_response_due_at": None}  # fmt: skip
        queued = {**ticket, "queued_at": now.isoformat()}
        events += [
            EventRecord(seq=0, type="ticket.created", payload={"ticket": ticket}, created_at=now, ticket_id=i),
            EventRecord(seq=0, type="message.created", payload={"message": {"id": i}}, created_at=now, ticket_id=i),
            EventRecord(seq=0, type="ticket.queued", payload={"ticket": queued}, created_at=now, ticket_id=i),
        ]
    t = time.process_time()
    for event in events:
        board.apply(event)
    return (time.process_time() - t) / len(events) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--queues", type=int, default=50)
    p.add_argument("--waiting", type=int, default=10_000)
    p.add_argument("--tickets", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--changes", type=int, default=300)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--loads", type=int, default=20)
    p.add_argument("--ingest", type=int, default=5000)
    p.add_argument("--ingest-rounds", type=int, default=4)
    p.add_argument("--port", type=int, default=8799)
    p.add_argument("--ingest-only", action="store_true", help="skip the live server: only the ingest comparison")
    p.add_argument(
        "--direct-reports", action="store_true", help="no reports rollup: the reports read the tickets (as before it)"
    )
    p.add_argument("--db", default="sqlite,postgres")
    p.add_argument("--pg-url", default=os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL", PG_DEFAULT))
    args = p.parse_args()
    if args.direct_reports:
        DIRECT_REPORTS["report_rollup_seconds"] = 1e9
    for kind in args.db.split(","):
        main_for(kind.strip(), args)


if __name__ == "__main__":
    main()
