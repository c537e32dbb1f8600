"""One voice webhook's cost, in-process: ``--calls`` calls, one after another, each the whole phone path of
``bench/voice.py`` through the signed webhooks of the app served in this process (httpx's ASGI transport, no
sockets): the voice webhook, English, technical support (into the queue: the call becomes a ticket and is
routed), one turn of the hold loop, the offered agent accepting over the REST API and the hub connecting the
call (until ``connect`` is done), the hold loop once more (now connected), and the status callback that ends
the call. Prints, per step, the CPU time of the event loop's thread (the app's work, and the in-process
client's: compare with ``/healthz``'s line) and the SQL statements it ran (every statement the driver ran,
transaction control included: SQLite through a trace callback on each connection, PostgreSQL by counting
asyncpg's executions); ``--profile`` adds cProfile's top functions by own time, ``--show KIND`` the statements
of one request of that kind. The queued call's routing runs after "gather 2" has answered (the webhook answers
once the ticket is stored): its CPU and statements are counted in whatever step runs meanwhile, mostly "gather
2" or "wait", and the accept waits for the offer.

Where ``bench/voice.py`` asks how a loaded server answers, this asks what one webhook costs, to find the part
that makes them queue.

    .venv/bin/python bench/voice_webhook.py [--calls 60] [--db sqlite|postgres] [--profile] [--show "gather 2"]
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.basename(os.path.abspath(sys.path[0])) == "bench":
    sys.path[0] = os.path.dirname(os.path.abspath(sys.path[0]))

import argparse
import asyncio
import cProfile
import pstats
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree import ElementTree as ET

import asyncpg
import httpx
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from bench._common import PG_DEFAULT, fresh_database
from bench.voice import SECRET, TOKEN, seed

PUBLIC = "http://bench.local"
HEALTH_ROUNDS = 100
WARM_UP = 5
KINDS = ("voice", "gather 1", "gather 2", "wait", "accept", "wait connected", "status")


class Statements:
    """Every statement the database drivers run in this process, counted while ``on``: SQLite's through a trace
    callback on each connection, asyncpg's by wrapping its connection's and prepared statement's executions
    (a query with arguments, a script such as BEGIN or COMMIT, a prepared statement run once or many times)."""

    def __init__(self) -> None:
        self.on = False
        self.total = 0
        self.text: Counter[str] = Counter()
        self.kept: list[str] | None = None
        connect = sqlite3.connect

        def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(self._seen)
            return conn

        sqlite3.connect = traced  # type: ignore[assignment]
        self._wrap(asyncpg.connection.Connection, "_do_execute", lambda a: a[1])
        self._wrap(asyncpg.connection.Connection, "execute", lambda a: a[1], only=lambda a: len(a) == 2)
        self._wrap(
            asyncpg.prepared_stmt.PreparedStatement,
            "_PreparedStatement__do_execute",
            lambda a: a[0]._query,  # noqa: SLF001
        )

    def _wrap(
        self, cls: Any, name: str, sql: Callable[[tuple[Any, ...]], str], only: Callable[[Any], bool] | None = None
    ) -> None:
        original = getattr(cls, name)
        statements = self

        async def counted(*args: Any, **kwargs: Any) -> Any:
            if only is None or only(args):
                statements._seen(str(sql(args)))
            return await original(*args, **kwargs)

        setattr(cls, name, counted)

    def _seen(self, sql: str) -> None:
        if self.on:
            self.total += 1
            text = " ".join(sql.split())
            self.text[text[:100]] += 1
            if self.kept is not None:
                self.kept.append(text[:300])


async def run(url: str, calls: int, statements: Statements, profile: cProfile.Profile | None, show: str | None) -> None:
    from channels.twilio.voice import CALLS as voice_calls
    from hub.app import create_app
    from hub.auth import TokenSigner
    from hub.config import Settings
    from ticketing import tables

    credentials = dict(await seed(url, calls + WARM_UP + 1))
    signer = TokenSigner(SECRET, 3600)
    settings = Settings(
        database_url=url,
        secret_key=SECRET,
        public_url=PUBLIC,
        twilio_auth_token=TOKEN,  # type: ignore[arg-type]
        twilio_default_flow="demo",
        offer_timeout_seconds=600,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    validator = RequestValidator(TOKEN)
    cpu: dict[str, list[float]] = defaultdict(list)
    sql: dict[str, list[int]] = defaultdict(list)
    shown: list[str] = []
    measuring = False

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http,
    ):
        voice = app.state.channels["voice"].service.voice
        connect = voice.connect
        connected: dict[int, asyncio.Event] = defaultdict(asyncio.Event)

        async def connect_and_tell(ticket_id: int, agent_id: int) -> bool:
            try:
                return bool(await connect(ticket_id, agent_id))
            finally:
                connected[ticket_id].set()

        voice.connect = connect_and_tell  # the accept's work ends when the hub has connected the call

        async def measured(kind: str, work: Callable[[], Awaitable[Any]]) -> Any:
            if measuring and show == kind and not shown:
                statements.kept = shown
            ran, started = statements.total, time.thread_time()
            try:
                return await work()
            finally:
                if measuring:
                    cpu[kind].append(time.thread_time() - started)
                    sql[kind].append(statements.total - ran)
                statements.kept = None

        async def post(kind: str, url: str, params: dict[str, str]) -> ET.Element:
            path = url.removeprefix(PUBLIC)
            signature = validator.compute_signature(PUBLIC + path, params)
            r = await measured(kind, lambda: http.post(path, data=params, headers={"X-Twilio-Signature": signature}))
            if r.status_code != 200:
                raise RuntimeError(f"{path} -> {r.status_code}: {r.text[:200]}")
            return ET.fromstring(r.text) if r.text.strip() else ET.Element("Response")

        async def offer_of(sid: str) -> tuple[int, int]:
            """The call's ticket and the agent it is offered to, once routing (which goes on after the webhook
            answered) has offered it."""
            ticket = select(voice_calls.c.ticket_id).where(voice_calls.c.call_sid == sid).scalar_subquery()
            for _ in range(1000):
                async with app.state.rt.read() as conn:
                    row = (
                        await conn.execute(
                            select(tables.tickets.c.id, tables.tickets.c.offered_agent_id).where(
                                tables.tickets.c.id == ticket
                            )
                        )
                    ).one()
                if row.offered_agent_id is not None:
                    return int(row.id), int(row.offered_agent_id)
                await asyncio.sleep(0.001)
            raise RuntimeError(f"{sid}: not offered")

        async def accept(ticket_id: int, agent_id: int) -> None:
            token = signer.issue(agent_id, credentials[agent_id])
            r = await http.post(f"/api/tickets/{ticket_id}/accept", headers={"Authorization": f"Bearer {token}"})
            if r.status_code != 200:
                raise RuntimeError(f"accept {ticket_id} -> {r.status_code}: {r.text[:200]}")
            await connected[ticket_id].wait()

        async def call(n: int) -> None:
            base = {
                "AccountSid": "AC" + "b" * 32,
                "ApiVersion": "2010-04-01",
                "CallSid": f"CA{n:032x}",
                "From": f"+1415556{n % 10_000:04d}",
                "To": "+14155550199",
                "Direction": "inbound",
                "CallStatus": "ringing",
            }
            root = await post("voice", "/webhooks/twilio/voice", base)
            live = dict(base, CallStatus="in-progress")
            for n_key, key in enumerate(("1", "2"), 1):  # English, technical support
                gather = root.find(".//Gather")
                assert gather is not None
                root = await post(f"gather {n_key}", str(gather.get("action")), dict(live, Digits=key))
            assert root.find(".//Conference") is not None, ET.tostring(root)
            await post("wait", "/webhooks/twilio/voice/wait", live)
            was, statements.on = statements.on, False
            ticket_id, agent_id = await offer_of(base["CallSid"])
            statements.on = was
            await measured("accept", lambda: accept(ticket_id, agent_id))
            if (await post("wait connected", "/webhooks/twilio/voice/wait", live)).find("Play") is not None:
                raise RuntimeError(f"call {n}: accepted, and still on hold")
            await post(
                "status",
                "/webhooks/twilio/voice/status",
                dict(base, CallStatus="completed", CallDuration="30", SequenceNumber="4"),
            )

        for n in range(WARM_UP):  # warm up: statements built, caches filled
            await call(9_000 + n)
        measuring = statements.on = True
        started_cpu, started = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        for n in range(calls):
            await call(n)
        if profile is not None:
            profile.disable()
        process_cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        statements.on = False
        hooks = sum(len(v) for v in cpu.values())
        print(
            f"{hooks} requests ({calls} calls, one after another): wall {wall / hooks * 1000:.2f} ms, "
            f"process CPU {process_cpu / hooks * 1000:.2f} ms per request (all threads, background workers included)"
        )
        for kind in KINDS:
            values = cpu[kind]
            per = sum(values) / len(values) * 1000
            print(f"  {kind}: loop-thread CPU {per:.2f} ms, {sum(sql[kind]) / len(values):.1f} SQL statements")
        started = time.thread_time()
        for _ in range(HEALTH_ROUNDS):
            await http.get("/healthz")
        health = (time.thread_time() - started) / HEALTH_ROUNDS * 1000
        print(f"  /healthz (the framework and the client alone): {health:.2f} ms")
        if show:
            print(f"statements of one {show!r}:")
            for text in shown:
                print("   ", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions by own time")
    parser.add_argument("--show", choices=KINDS, help="print the statements of one request of this kind")
    args = parser.parse_args()
    statements = Statements()
    profile = cProfile.Profile() if args.profile else None
    with fresh_database(args.db, args.pg_url) as url:
        asyncio.run(run(url, args.calls, statements, profile, args.show))
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
