"""One social webhook's cost, in-process: ``--batches`` WhatsApp batches of ``--entries`` text messages (the
shape of ``bench/social.py``), ``--concurrency`` at a time, posted signed to the app served in this process
(httpx's ASGI transport, no sockets). Prints the CPU time of the event loop's thread and of the whole process
per message, and the SQL statements per batch (every statement the driver ran, transaction control included:
``bench.voice_webhook.Statements``) with the most frequent ones; ``--profile`` adds cProfile's top functions by
own time.

Where ``bench/social.py`` asks how a loaded server answers, this asks what a message of a webhook costs and
where it goes: every webhook here waits for its batch to be processed (``social_webhook_answer_seconds`` 60,
not queued in the inbox), so the CPU measured is the whole cost of the batches posted.

    .venv/bin/python bench/social_webhook.py [--batches 60] [--entries 100] [--concurrency 4] [--customers 2000]
                                             [--db sqlite|postgres] [--profile]
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.basename(os.path.abspath(sys.path[0])) == "bench":
    sys.path[0] = os.path.dirname(os.path.abspath(sys.path[0]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from bench._common import fresh_database, postgres_cpu  # noqa: E402
from bench.social import NUMBER, SECRET, batch, load_arguments, seed, sign  # noqa: E402
from bench.voice_webhook import Statements  # noqa: E402

PUBLIC = "http://bench.local"
WARM_UP = 3


class Stages:
    """The wall time of ingest's two stages (``ticketing.ingest.IngestPipeline``: the commit of a batch, and the
    routing pass after it), summed while ``on``, with how many batches and messages went through."""

    def __init__(self) -> None:
        from ticketing.ingest import IngestPipeline

        self.on = False
        self.wall = {"store": 0.0, "route": 0.0}
        self.calls = {"store": 0, "route": 0}
        self.messages = 0
        store, route = IngestPipeline._store, IngestPipeline._route  # noqa: SLF001
        stages = self

        async def timed_store(pipeline: IngestPipeline, batch: list[Any]) -> Any:
            started = time.perf_counter()
            try:
                return await store(pipeline, batch)
            finally:
                stages.seen("store", time.perf_counter() - started, len(batch))

        async def timed_route(pipeline: IngestPipeline, stored: list[Any]) -> None:
            started = time.perf_counter()
            try:
                await route(pipeline, stored)
            finally:
                stages.seen("route", time.perf_counter() - started, 0)

        IngestPipeline._store = timed_store  # type: ignore[method-assign]  # noqa: SLF001
        IngestPipeline._route = timed_route  # type: ignore[method-assign]  # noqa: SLF001

    def seen(self, stage: str, seconds: float, messages: int) -> None:
        if self.on:
            self.wall[stage] += seconds
            self.calls[stage] += 1
            self.messages += messages


async def run(url: str, args: argparse.Namespace, statements: Statements, profile: cProfile.Profile | None) -> None:
    from hub.app import create_app
    from hub.config import Settings

    await seed(url)
    settings = Settings(
        database_url=url,
        secret_key="bench-secret-key-0123456789abcdef",
        public_url=PUBLIC,
        meta_app_secret=SECRET,  # type: ignore[arg-type]
        whatsapp_numbers=[{"phone_number_id": NUMBER, "access_token": "x", "queue": "social"}],  # type: ignore[list-item]
        attachment_dir=tempfile.mkdtemp(prefix="bench-social-"),
        offer_timeout_seconds=600,
        social_webhook_answer_seconds=60,  # the answer waits for the batch, whose cost is measured
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    rng = random.Random(7)
    bodies = [batch(n, args.entries, args.customers, rng) for n in range(args.batches)]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC, timeout=60) as http,
    ):

        async def post(body: bytes) -> None:
            r = await http.post("/webhooks/meta", content=body, headers=sign(body))
            if r.status_code != 200:
                raise RuntimeError(f"/webhooks/meta -> {r.status_code}: {r.text[:200]}")

        for n in range(WARM_UP):  # statements built, caches filled
            await post(batch(10**6 + n, args.entries, args.customers, rng))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                await post(queue.get_nowait())

        stages = args.stages
        database_cpu = await postgres_cpu(app.state.rt)
        statements.on = stages.on = True
        thread_cpu, process_cpu, started = time.thread_time(), time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        if profile is not None:
            profile.disable()
        thread_cpu = time.thread_time() - thread_cpu
        process_cpu = time.process_time() - process_cpu
        wall = time.perf_counter() - started
        statements.on = stages.on = False
        database_cpu = {
            pid: seconds - database_cpu.get(pid, 0.0) for pid, seconds in (await postgres_cpu(app.state.rt)).items()
        }
    sent = args.batches * args.entries
    print(
        f"{sent} messages in {args.batches} webhooks ({args.concurrency} at a time, in-process client included): "
        f"{sent / wall:.0f} messages/s; loop-thread CPU {thread_cpu / sent * 1e6:.0f} µs, "
        f"process CPU {process_cpu / sent * 1e6:.0f} µs per message; "
        f"{statements.total / args.batches:.1f} SQL statements per webhook"
    )
    commits = max(1, stages.calls["store"])
    print(
        f"  ingest: {stages.calls['store']} commits of {stages.messages / commits:.0f} messages, "
        f"{stages.wall['store'] / commits * 1000:.1f} ms each ({stages.wall['store'] / wall:.0%} of the run); "
        f"{stages.calls['route']} routing passes, {stages.wall['route'] / max(1, stages.calls['route']) * 1000:.1f} ms "
        "each"
    )
    if database_cpu:
        print(f"  PostgreSQL's own CPU: {sum(database_cpu.values()) / sent * 1e6:.0f} µs per message")
    for text, n in statements.text.most_common(25):
        print(f"  {n / args.batches:7.2f}/webhook  {text}")


def main() -> None:
    parser = load_arguments(__doc__)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions by own time")
    args = parser.parse_args()
    statements = Statements()
    args.stages = Stages()
    profile = cProfile.Profile() if args.profile else None
    with fresh_database(args.db, args.pg_url) as url:
        asyncio.run(run(url, args, statements, profile))
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()
