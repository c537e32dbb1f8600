"""The phone path under load: ``--calls`` pretend calls (200) in progress at once, each walking the demo menu
through the signed Twilio webhooks of one `switchboard serve` process (English, technical support) into the
queue, holding there (the wait URL, as Twilio's hold loop asks it) until its agent accepts, then hanging up (the
status callback). ``--calls`` agents, one per call, each with a console of their own connected to ``/ws/agent``
with their own token: a console learns of its offer from the ``ticket.offered`` frame pushed to it, and accepts
it over the REST API, as the real console does. Every event of the queue goes to all of them, so the server's
load includes the fan-out to that many connected consoles (and this client's CPU, reading them, is printed).

Prints the webhook latency p50/p99 (every signed webhook: the voice webhook, gathers, the hold loop, status
callbacks) as the calls saw it and as the server timed it (its ``switchboard_webhook_seconds`` histogram: the
difference is queuing before the app, in the kernel and in this client), the consoles' frames and accepts, the
CPU the server and this client used, the time from dialling to an agent, and the IVR engine's step time
(``bench/ivr.py``'s figure, measured in this process).

Goal on the 2-core machine, SQLite and PostgreSQL: webhook p99 under 50 ms (paced callers), an engine step
under 1 ms.

    .venv/bin/python bench/voice.py [--calls 200] [--db sqlite|postgres] [--arrival S] [--think S] [--burst]
                                    [--servers N]

Paced, the default (the figure the goal is judged by): callers as people. The calls dial in at random (Poisson)
moments over ``--arrival`` seconds (20: see ``DEFAULT_ARRIVAL``, far above a real center's arrival rate, and
still every call in progress at once), and each caller presses a key once the menu's prompt has been spoken
(``listening_seconds``: the TwiML's <Say> words at 150 a minute, and a second to react), which is when Twilio
posts the Gather's action; ``--think S`` presses every key S seconds after the TwiML came back instead.

``--burst``, the stress figure: every call dials at the same instant and presses each key the moment the menu
asks, so every caller is always waiting on the server and a webhook waits for the ~199 others ahead of it
(Little's law: latency = calls / the server's webhooks per second), whatever one costs. It measures throughput,
not what a caller hears.

``--servers N`` (PostgreSQL only): N `switchboard serve` processes share the database and fan their events out
through Redis (README: several processes behind a load balancer); call n's requests go to process n mod N, and
agent i's console (its socket and its accepts) to process i mod N. CPU and the server-side histogram are summed.

Each call has a connection of its own, as Twilio's requests for different calls come on different ones: one
pool of ``--calls`` connections cost this client more CPU than the server (httpcore scans every connection of
its pool on each request), and its latency counted that.
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.basename(os.path.abspath(sys.path[0])) == "bench":
    sys.path[0] = os.path.dirname(os.path.abspath(sys.path[0]))

import argparse
import asyncio
import json
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

import httpx
from twilio.request_validator import RequestValidator

from bench._common import PG_DEFAULT, agent_rows, cpu_seconds, fresh_database, percentile
from bench.fanout import AgentSocket

SECRET = "bench-secret-key-0123456789abcdef"
REDIS_URL = os.environ.get("SWITCHBOARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")  # --servers 2 and more
HOLD_LOOP_SECONDS = 30.0  # Twilio asks the wait URL again when its TwiML (an announcement, hold music) ends
ON_HOLD_AT_MOST = 180.0  # a call still unanswered this long has failed (no agent took it)
ACCEPT_TRIES = 3
# A connection idle this long is not used again: under uvicorn's keep-alive timeout (5 s, httpx's default
# expiry too), so no request goes out on a connection the server is closing (a ReadError, a failed call).
KEEPALIVE_SECONDS = 3.0
TOKEN = "bench-twilio-token"
# Paced callers: 200 calls dial in over 20 s, 36,000 calls an hour, some 15 times what a 200-seat center takes at
# full load (200 agents / 5 min of handling a call: 2,400 an hour); and as the demo menu's prompts take 25-40 s to
# hear, every one of the 200 is in progress at once (the issue's "200 concurrent calls").
DEFAULT_ARRIVAL = 20.0
WORDS_PER_MINUTE = 150.0  # text-to-speech at a person's speaking rate
REACTION_SECONDS = 1.0  # from the prompt's end to the key
SERVE = (
    "from hub.cli import run_server; from hub.config import Settings;"
    "run_server(Settings(), host='127.0.0.1', port={port}, log_level='warning', access_log=False, backlog=4096)"
)


async def seed(url: str, agents: int) -> list[tuple[int, str]]:
    """The demo's queues, and ``agents`` available agents in support, one call each."""
    from hub.config import Settings
    from hub.db import insert_returning_ids
    from hub.runtime import standalone
    from ticketing import tables
    from ticketing.models import QueueCreate
    from ticketing.queues import create_queue

    async with standalone(Settings(database_url=url, _env_file=None)) as rt:  # type: ignore[call-arg]
        ids = [
            (await create_queue(rt, data=QueueCreate(name=n, channels=["voice"]))).id
            for n in ("support", "billing", "sales")
        ]
        rows = agent_rows(agents, status="available", capacity={"voice": 1})
        async with rt.db.begin() as conn:
            agent_ids = await insert_returning_ids(conn, tables.agents, rows)
            await conn.execute(tables.agent_queues.insert(), [{"agent_id": a, "queue_id": ids[0]} for a in agent_ids])
    return [(a, row["password_hash"]) for a, row in zip(agent_ids, rows, strict=True)]


class Line:
    """Signed webhooks to one server, with every latency kept."""

    def __init__(self, public: str) -> None:
        self.public = public
        self.validator = RequestValidator(TOKEN)
        self.latencies: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self.errors: list[str] = []

    async def post(self, http: httpx.AsyncClient, url: str, params: dict[str, str]) -> ET.Element:
        if url.startswith("/"):
            url = self.public + url
        signature = self.validator.compute_signature(url, params)
        t = time.perf_counter()
        r = await http.post(url.removeprefix(self.public), data=params, headers={"X-Twilio-Signature": signature})
        took = time.perf_counter() - t
        self.latencies.append(took)
        self.by_kind.setdefault(url.split("/webhooks/twilio/")[-1].split("?")[0], []).append(took)
        if r.status_code != 200:
            self.errors.append(f"{url} -> {r.status_code}")
            raise RuntimeError(r.text[:200])
        return ET.fromstring(r.text) if r.text.strip() else ET.Element("Response")


@dataclass(frozen=True, slots=True)
class Pace:
    """How the callers go. Paced (the default): the calls dial in at random (Poisson) moments over ``arrival``
    seconds, and each caller presses a key when the menu's prompt has been spoken to them (``think is None``:
    ``listening_seconds`` of the TwiML the server answered, as Twilio posts a Gather's action only after the
    caller's key). ``think`` a number: that many seconds before every key instead. The burst (``--burst``):
    every call dials at the same instant and presses each key the moment the TwiML comes back."""

    arrival: float = DEFAULT_ARRIVAL
    think: float | None = None
    seed: int = 20

    def dial_times(self, calls: int) -> list[float]:
        """When each call dials, in seconds from the start: Poisson arrivals (independent exponential gaps, a
        fixed seed) scaled so that the last of ``calls`` dials at ``arrival``; all at 0 for a burst."""
        if not self.arrival or calls < 2:
            return [0.0] * calls
        rng = random.Random(self.seed)
        gaps = [rng.expovariate(1.0) for _ in range(calls - 1)]
        scale, at, times = self.arrival / sum(gaps), 0.0, [0.0]
        for gap in gaps:
            at += gap * scale
            times.append(at)
        return times

    def before_key(self, root: ET.Element) -> float:
        return listening_seconds(root) if self.think is None else self.think


def listening_seconds(root: ET.Element) -> float:
    """How long a caller listens to a menu's TwiML before pressing a key: the <Say>s before its <Gather> and the
    Gather's own prompts, spoken at ``WORDS_PER_MINUTE``, then ``REACTION_SECONDS`` to press. A <Play>'s length
    is not in the TwiML (the demo flow's menus have none): it counts nothing."""
    words = 0
    for node in root:
        if node.tag == "Say":
            words += len((node.text or "").split())
        elif node.tag == "Gather":
            words += sum(len((say.text or "").split()) for say in node.iter("Say"))
            break
    return words / WORDS_PER_MINUTE * 60 + REACTION_SECONDS


async def one_call(
    line: Line,
    http: httpx.AsyncClient,
    n: int,
    dial_at: float,
    answered: dict[str, asyncio.Event],
    to_agent: list[float],
    pace: Pace,
) -> None:
    sid = f"CA{n:032x}"
    await asyncio.sleep(dial_at)
    base = {
        "AccountSid": "AC" + "b" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "From": f"+1415556{n:04d}",
        "To": "+14155550199",
        "Direction": "inbound",
        "CallStatus": "ringing",
    }
    started = time.perf_counter()
    root = await line.post(http, "/webhooks/twilio/voice", base)
    live = dict(base, CallStatus="in-progress")
    for key in ("1", "2"):  # English, technical support
        gather = root.find(".//Gather")
        assert gather is not None
        await asyncio.sleep(pace.before_key(root))
        root = await line.post(http, str(gather.get("action")), dict(live, Digits=key))
    while root.find(".//Conference") is None:  # a long wait offers a callback: keep holding (2)
        gather = root.find(".//Gather")
        assert gather is not None, ET.tostring(root)
        await asyncio.sleep(pace.before_key(root))
        root = await line.post(http, str(gather.get("action")), dict(live, Digits="2"))
    event = answered[sid]
    connecting: float | None = None
    while True:  # Twilio's hold loop: the wait URL, again each time its music ends (HOLD_LOOP_SECONDS)
        wait = await line.post(http, "/webhooks/twilio/voice/wait", live)
        if wait.find("Play") is None:
            break
        if event.is_set():  # accepted: the hub connects the agent in a moment
            connecting = connecting or time.perf_counter()
            if time.perf_counter() - connecting > HOLD_LOOP_SECONDS:
                raise RuntimeError(f"{sid}: accepted, and still on hold {HOLD_LOOP_SECONDS:.0f} s later")
            await asyncio.sleep(0.2)
            continue
        if time.perf_counter() - started > ON_HOLD_AT_MOST:
            raise RuntimeError(f"{sid}: no agent took the call in {ON_HOLD_AT_MOST:.0f} s")
        try:  # an agent accepting the call ends the wait at once (Twilio: the agent joins the room)
            await asyncio.wait_for(event.wait(), HOLD_LOOP_SECONDS)
        except TimeoutError:
            pass
    to_agent.append(time.perf_counter() - started)
    await line.post(
        http, "/webhooks/twilio/voice/status", dict(base, CallStatus="completed", CallDuration="30", SequenceNumber="4")
    )


@dataclass(slots=True)
class Consoles:
    """What the agents' consoles saw: frames received (all of them, and the offers among them), accepts."""

    frames: int = 0
    offers: int = 0
    accepted: int = 0
    errors: list[str] = field(default_factory=list)
    accept_latencies: list[float] = field(default_factory=list)


OFFERED = b'{"type":"ticket.offered"'


async def console(
    public: str,
    agent_id: int,
    token: str,
    http: httpx.AsyncClient,
    answered: dict[str, asyncio.Event],
    seen: Consoles,
    accepting: set[asyncio.Task[None]],
) -> AgentSocket:
    """One agent's console: connected to ``/ws/agent`` with the agent's own token, it accepts the ticket it is
    offered (a ``ticket.offered`` frame naming this agent) over the REST API, as the console's Accept does.
    The socket is ``bench.fanout``'s sans-I/O client: the ``websockets`` library's asyncio client cost this
    process about twice the CPU per frame, and every event of the queue reaches all the consoles."""

    async def accept(ticket: dict[str, Any]) -> None:
        for _ in range(ACCEPT_TRIES):  # a refused accept (a 5xx, a dropped connection) is clicked again
            t = time.perf_counter()
            try:
                r = await http.post(f"/api/tickets/{ticket['id']}/accept", headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError as exc:
                seen.errors.append(f"accept {ticket['id']}: {type(exc).__name__}")
                continue
            finally:
                seen.accept_latencies.append(time.perf_counter() - t)
            if r.status_code == 200:
                break
            seen.errors.append(f"accept {ticket['id']} -> {r.status_code}")
            if r.status_code < 500:  # the offer is gone (taken back, expired): nothing to click again
                return
        else:
            return
        seen.accepted += 1
        # The ticket's subject names the caller, +1415556NNNN: call NNNN hears the agent join.
        tail = str(ticket.get("subject", ""))[-4:]
        event = answered.get(f"CA{int(tail):032x}") if tail.isdigit() else None
        if event is not None:
            event.set()

    def on_frame(_kernel: float, _now: float, raw: bytes) -> None:
        seen.frames += 1
        if not raw.startswith(OFFERED):  # only an offer to this agent needs reading
            return
        ticket = json.loads(raw)["data"]["ticket"]
        if ticket.get("offered_agent_id") != agent_id or ticket.get("assignee_id"):
            return
        seen.offers += 1
        task = asyncio.ensure_future(accept(ticket))
        accepting.add(task)
        task.add_done_callback(accepting.discard)

    host, port = public.removeprefix("http://").split(":")
    sock = AgentSocket(f"ws://{host}:{port}/ws/agent?token={token}", False, on_frame)
    await sock.open(host, int(port))
    return sock


async def run(url: str, calls: int, pace: Pace, servers: int = 1) -> dict[str, Any]:
    from hub.auth import TokenSigner

    credentials = await seed(url, calls)
    signer = TokenSigner(SECRET, 3600)
    tokens = {a: signer.issue(a, h) for a, h in credentials}
    port = 19500 + os.getpid() % 400 * 4
    # Behind a load balancer every process has the one public URL the webhooks are signed for; here each has a
    # port of its own, and a call's (or a console's) requests all go to one of them, round-robin.
    public = f"http://127.0.0.1:{port}"
    bases = [f"http://127.0.0.1:{port + i}" for i in range(servers)]
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": url,
        "SWITCHBOARD_SECRET_KEY": SECRET,
        "SWITCHBOARD_PUBLIC_URL": public,
        "SWITCHBOARD_TWILIO_AUTH_TOKEN": TOKEN,
        "SWITCHBOARD_TWILIO_DEFAULT_FLOW": "demo",
        "SWITCHBOARD_OFFER_TIMEOUT_SECONDS": "600",
        "SWITCHBOARD_ATTACHMENT_DIR": tempfile.mkdtemp(prefix="bench-att-"),
    }
    if servers > 1:  # the processes' events meet in Redis (README: several `serve` processes)
        env |= {"SWITCHBOARD_REDIS_URL": REDIS_URL, "SWITCHBOARD_REDIS_CHANNEL": f"bench-voice-{os.getpid()}"}
    log = tempfile.NamedTemporaryFile(prefix="bench-voice-", suffix=".log", delete=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SERVE.format(port=port + i)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        for i in range(servers)
    ]
    try:
        async with AsyncExitStack() as stack:
            https = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=base, timeout=60, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS)
                    )
                )
                for base in bases
            ]
            for http in https:
                for _ in range(600):
                    try:
                        await http.get("/healthz")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            lines = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=bases[n % servers],
                        timeout=60,
                        limits=httpx.Limits(max_connections=1, keepalive_expiry=KEEPALIVE_SECONDS),
                    )
                )
                for n in range(calls)
            ]
            line = Line(public)
            answered = {f"CA{n:032x}": asyncio.Event() for n in range(calls)}
            to_agent: list[float] = []
            seen = Consoles()
            accepting: set[asyncio.Task[None]] = set()
            consoles = [
                await console(bases[i % servers], a, tokens[a], https[i % servers], answered, seen, accepting)
                for i, (a, _) in enumerate(credentials)
            ]
            before = [await server_histogram(http) for http in https]
            cpu = ([cpu_seconds(p.pid) for p in procs], time.process_time())
            dial_at = pace.dial_times(calls)
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(one_call(line, lines[n], n, dial_at[n], answered, to_agent, pace) for n in range(calls)),
                return_exceptions=True,
            )
            wall = time.perf_counter() - t0
            server_cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu[0], strict=True))
            client_cpu = time.process_time() - cpu[1]
            after = [await server_histogram(http) for http in https]
            for sock in consoles:
                sock.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    failed = [r for r in results if isinstance(r, BaseException)]
    served: dict[str, list[float]] = {}
    for earlier, later in zip(before, after, strict=True):
        for k, v in later.items():
            counts = [n - earlier.get(k, {}).get(le, 0) for le, n in v.items()]
            served[k] = [a + b for a, b in zip(served.get(k, [0.0] * len(counts)), counts, strict=True)]
    return {
        "line": line,
        "to_agent": to_agent,
        "wall": wall,
        "failed": failed,
        "log": log.name,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "served": served,
        "bounds": sorted({le for histogram in after for v in histogram.values() for le in v}),
        "consoles": seen,
    }


async def server_histogram(http: httpx.AsyncClient) -> dict[str, dict[float, float]]:
    """The server's ``switchboard_webhook_seconds`` buckets (cumulative counts by upper bound), by path."""
    r = await http.get("/metrics")
    r.raise_for_status()
    found: dict[str, dict[float, float]] = {}
    for text in r.text.splitlines():
        if text.startswith("switchboard_webhook_seconds_bucket{"):
            labels, _, count = text.rpartition(" ")
            path = labels.split('path="', 1)[1].split('"', 1)[0]
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            found.setdefault(path, {})[float(le)] = float(count)
    return found


def bucket_percentile(bounds: list[float], cumulative: list[float], p: float) -> str:
    """The upper bound of the bucket holding the ``p``th percentile (Prometheus' buckets: no finer figure)."""
    total = cumulative[-1] if cumulative else 0
    if not total:
        return "-"
    for le, n in zip(bounds, cumulative, strict=True):
        if n >= total * p / 100:
            return f"<= {le * 1000:.0f} ms" if le != float("inf") else "> 10 s"
    return "?"


def sums(bounds: list[float], served: dict[str, list[float]]) -> Iterator[tuple[str, list[float]]]:
    yield "all", [sum(v[i] for v in served.values()) for i in range(len(bounds))]
    for path, values in sorted(served.items()):
        yield path.removeprefix("/webhooks/twilio/"), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument(
        "--arrival",
        type=float,
        default=DEFAULT_ARRIVAL,
        help=f"seconds over which the calls dial in, at random moments (default {DEFAULT_ARRIVAL:g}; 0: at once)",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=None,
        help="seconds a caller takes to press each key (default: the time to hear the menu's prompt, and a second)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="serve processes sharing the database (PostgreSQL), their events through Redis (default 1)",
    )
    parser.add_argument(
        "--burst", action="store_true", help="the stress figure: every call dials at once and presses each key at once"
    )
    args = parser.parse_args()
    pace = Pace(arrival=0.0, think=0.0) if args.burst else Pace(arrival=args.arrival, think=args.think)
    if args.servers > 1 and args.db != "postgres":
        parser.error("--servers above 1 needs --db postgres (several processes share PostgreSQL, README)")
    with fresh_database(args.db, args.pg_url) as url:
        r = asyncio.run(run(url, args.calls, pace, args.servers))
    line: Line = r["line"]
    ms = [x * 1000 for x in line.latencies]
    keys = (
        "each key the moment the menu asks"
        if pace.think == 0
        else (f"{pace.think:g} s a key" if pace.think is not None else "each key after hearing the prompt")
    )
    how = "all dialling at once" if not pace.arrival else f"dialling in over {pace.arrival:g} s"
    where = f"{args.db}, {args.servers} serve processes" if args.servers > 1 else args.db
    print(
        f"{args.calls} calls on {where} ({how}, {keys}): {len(ms)} signed webhooks in {r['wall']:.1f} s, "
        f"{len(r['failed'])} calls failed ({line.errors[:3]}{r['failed'][:1]})"
    )
    print(
        f"webhook latency: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms "
        + ("(goal: p99 under 50 ms)" if pace.arrival else "(a stress figure: every caller always waits on the server)")
    )
    for kind, values in sorted(line.by_kind.items()):
        kms = [x * 1000 for x in values]
        print(f"  {kind}: {len(kms)} webhooks, p50 {percentile(kms, 50):.1f} ms, p99 {percentile(kms, 99):.1f} ms")
    print("server's own time (switchboard_webhook_seconds, bucket bounds):")
    for path, values in sums(r["bounds"], r["served"]):
        print(
            f"  {path}: {values[-1] if values else 0:.0f} webhooks, p50 {bucket_percentile(r['bounds'], values, 50)}, "
            f"p99 {bucket_percentile(r['bounds'], values, 99)}"
        )
    seen: Consoles = r["consoles"]
    acc = [x * 1000 for x in seen.accept_latencies]
    print(
        f"agents' consoles ({args.calls} on /ws/agent): {seen.frames} frames received, {seen.offers} offers, "
        f"{seen.accepted} accepted ({len(seen.errors)} accepts refused: {seen.errors[:3]}); "
        f"accept p50 {percentile(acc, 50):.1f} ms, p99 {percentile(acc, 99):.1f} ms"
    )
    print(
        f"CPU over the run: server {r['server_cpu']:.1f} s, this client {r['client_cpu']:.1f} s "
        f"({r['server_cpu'] / max(len(ms), 1) * 1000:.1f} ms of server CPU per webhook, the consoles' accepts and "
        "the events pushed to them included)"
    )
    if r["to_agent"]:
        secs = r["to_agent"]
        print(
            f"dial to agent: p50 {percentile(secs, 50):.2f} s, p99 {percentile(secs, 99):.2f} s "
            f"({len(secs)} calls answered)"
        )
    from bench.ivr import engine_step_times

    for text in engine_step_times(50).lines():
        print(text)


if __name__ == "__main__":
    main()
