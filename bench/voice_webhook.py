"""One voice webhook's cost, in-process: ``--calls`` calls, one after another, walk the demo menu (the voice
webhook, English, technical support into the queue, one turn of the hold loop) through the signed webhooks of
the app served in this process (httpx's ASGI transport, no sockets). Prints, per kind of webhook, the CPU time
of the event loop's thread (the app's work, and the in-process client's: compare with ``/healthz``'s line) and
the SQL statements it ran (SQLite: every statement the driver ran, transaction control included; PostgreSQL:
none are counted); ``--profile`` adds cProfile's top functions by own time.

Where ``bench/voice.py`` asks how a loaded server answers, this asks what one webhook costs, to find the part
that makes them queue.

    .venv/bin/python bench/voice_webhook.py [--calls 60] [--db sqlite|postgres] [--profile]
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
from typing import Any
from xml.etree import ElementTree as ET

import httpx
from twilio.request_validator import RequestValidator

from bench._common import PG_DEFAULT, fresh_database
from bench.voice import SECRET, TOKEN, seed

PUBLIC = "http://bench.local"
HEALTH_ROUNDS = 100


class Statements:
    """Every statement SQLite runs in this process, counted while ``on`` (a trace callback on each connection)."""

    def __init__(self) -> None:
        self.on = False
        self.total = 0
        self.text: Counter[str] = Counter()
        connect = sqlite3.connect

        def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(self._seen)
            return conn

        sqlite3.connect = traced  # type: ignore[assignment]

    def _seen(self, sql: str) -> None:
        if self.on:
            self.total += 1
            self.text[" ".join(sql.split())[:100]] += 1


async def run(url: str, calls: int, statements: Statements, profile: cProfile.Profile | None) -> None:
    from hub.app import create_app
    from hub.config import Settings

    await seed(url, 2)
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
    measuring = False

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http,
    ):

        async def post(url: str, params: dict[str, str]) -> ET.Element:
            path = url.removeprefix(PUBLIC)
            kind = path.split("/webhooks/twilio/")[-1].split("?")[0] + (
                f" {path.split('s=')[-1]}" if "s=" in path else ""
            )
            signature = validator.compute_signature(PUBLIC + path, params)
            ran, started = statements.total, time.thread_time()
            r = await http.post(path, data=params, headers={"X-Twilio-Signature": signature})
            if measuring:
                cpu[kind].append(time.thread_time() - started)
                sql[kind].append(statements.total - ran)
            if r.status_code != 200:
                raise RuntimeError(f"{path} -> {r.status_code}: {r.text[:200]}")
            return ET.fromstring(r.text)

        async def call(n: int) -> None:
            base = {
                "AccountSid": "AC" + "b" * 32,
                "CallSid": f"CA{n:032x}",
                "From": f"+1415556{n % 10_000:04d}",
                "To": "+14155550199",
                "Direction": "inbound",
                "CallStatus": "ringing",
            }
            root = await post("/webhooks/twilio/voice", base)
            live = dict(base, CallStatus="in-progress")
            for key in ("1", "2"):  # English, technical support
                gather = root.find(".//Gather")
                assert gather is not None
                root = await post(str(gather.get("action")), dict(live, Digits=key))
            await post("/webhooks/twilio/voice/wait", live)

        for n in range(5):  # warm up: statements built, caches filled
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
            f"{hooks} webhooks ({calls} calls, one after another): wall {wall / hooks * 1000:.2f} ms, "
            f"process CPU {process_cpu / hooks * 1000:.2f} ms per webhook (all threads, background workers included)"
        )
        for kind, values in cpu.items():
            per = sum(values) / len(values) * 1000
            print(f"  {kind}: loop-thread CPU {per:.2f} ms, {sum(sql[kind]) / len(values):.1f} SQL statements")
        started = time.thread_time()
        for _ in range(HEALTH_ROUNDS):
            await http.get("/healthz")
        health = (time.thread_time() - started) / HEALTH_ROUNDS * 1000
        print(f"  /healthz (the framework and the client alone): {health:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions by own time")
    args = parser.parse_args()
    statements = Statements()
    profile = cProfile.Profile() if args.profile else None
    with fresh_database(args.db, args.pg_url) as url:
        asyncio.run(run(url, args.calls, statements, profile))
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
