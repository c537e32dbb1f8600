"""Ingest throughput and latency: N synthetic inbound messages across channels, submitted concurrently
through the real IngestPipeline (group commit, every message durably committed before its submit returns).

Prints messages/s and per-message p50/p99 latency; the CPU time spent per message by this process and (on
PostgreSQL) by the database's server processes, which unlike wall-clock rates do not depend on what else
the machine is doing; and, as the reference ceiling, the rate of plain
single-row inserts, one committed transaction each, at the same durability (SQLite WAL with
synchronous=FULL; PostgreSQL with synchronous_commit on), both with the same concurrency.

    .venv/bin/python -m bench.ingest [--messages 20000] [--concurrency 500] [--db sqlite,postgres]
                                     [--shape generic|chat] [--conversations 1000]

``--shape chat`` measures the live-chat case by itself: ``--conversations`` widget conversations, each opened
by one message first (not measured: that creates the contact and the ticket), then ``--messages`` messages in
all, every one threading into its conversation's open ticket. Each conversation sends at ``--rate / N``
messages/s from a random phase (issue #3's load: 1,000 conversations, 2,000 messages/s), so batches are as
small as a live server's; ``--rate 0`` saturates instead (each conversation keeps one message in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

# The repository root instead of bench/, which a script run puts first and where bench/email.py would shadow
# the standard library's email package.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench._common import PG_DEFAULT, fresh_database, percentile, pg_admin, postgres_cpu  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.db import Database  # noqa: E402
from hub.messages import Identity, InboundMessage  # noqa: E402
from hub.runtime import standalone  # noqa: E402
from hub.workers import FreezeSurvivors, freeze_heap  # noqa: E402
from ticketing.agents import create_agent  # noqa: E402
from ticketing.ingest import IngestPipeline  # noqa: E402
from ticketing.models import AgentCreate, AgentStatus, QueueCreate  # noqa: E402
from ticketing.queues import create_queue  # noqa: E402
from ticketing.routing_service import set_agent_status  # noqa: E402


def synthetic(n: int, seed: int = 7) -> list[InboundMessage]:
    """A mix like a real contact center's: email, SMS, WhatsApp, chat and Telegram; a third of the
    senders write more than once, so threading into existing tickets is exercised too."""
    rng = random.Random(seed)
    people = max(1, n * 2 // 3)
    out = []
    for i in range(n):
        p = rng.randrange(people)
        kind = rng.choice(["email", "email", "sms", "whatsapp", "webchat", "telegram"])
        if kind == "email":
            m = InboundMessage(
                channel="email",
                external_id=f"<bench-{i}@example.com>",
                sender=Identity(kind="email", value=f"person{p}@example.com", name=f"Person {p}"),
                # One subject per person: an email threads into its sender's open ticket of the same subject
                # (a new subject is a new matter), so a person's second email is threaded, as the mix intends.
                subject=f"Question from person {p}",
                text=f"Hello, this is message {i}. " * 5,
            )
        elif kind in ("sms", "whatsapp"):
            number = f"+1415{5500000 + p:07d}"
            m = InboundMessage(
                channel=kind,
                external_id=f"SM{i:032d}",
                sender=Identity(kind="phone" if kind == "sms" else "whatsapp", value=number),
                text=f"sms {i}",
            )
        elif kind == "webchat":
            m = InboundMessage(
                channel="webchat",
                external_id=f"wc-{i}",
                thread_key=f"conv-{p}",
                sender=Identity(kind="webchat", value=f"visitor-{p}"),
                text=f"chat {i}",
            )
        else:
            m = InboundMessage(
                channel="telegram",
                external_id=f"tg-{i}",
                thread_key=f"chat-{p}",
                sender=Identity(kind="telegram", value=str(1000 + p)),
                text=f"tg {i}",
            )
        out.append(m)
    return out


def chat_opening(conversations: int) -> list[InboundMessage]:
    """The first message of each widget conversation: it opens the contact and the ticket."""
    return [_chat_message(c, 0) for c in range(conversations)]


def chat_messages(conversations: int, n: int) -> list[list[InboundMessage]]:
    """``n`` later messages, spread over the conversations: one list per conversation, in sending order."""
    per: list[list[InboundMessage]] = [[] for _ in range(conversations)]
    for i in range(n):
        c = i % conversations
        per[c].append(_chat_message(c, 1 + i // conversations))
    return per


def _chat_message(conversation: int, k: int) -> InboundMessage:
    # The shape of channels/webchat's InboundMessage.
    conv = f"conv-{conversation:06d}"
    client_id = f"c{k}"
    return InboundMessage(
        channel="webchat",
        external_id=f"{conv}:{client_id}",
        sender=Identity(kind="webchat", value=f"visitor-{conversation}", name=f"Visitor {conversation}"),
        text=f"chat message {k} of conversation {conversation}",
        thread_key=conv,
        queue="support",
        metadata={"client_id": client_id, "visitor_id": f"v{conversation}", "verified": False},
    )


def _batches(rt: Any) -> int:
    """How many batches the ingest pipeline has committed so far."""
    for metric in rt.metrics.ingest_batch_size.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return int(sample.value)
    return 0


@dataclass
class IngestRun:
    elapsed: float
    latencies: list[float]
    stored: int
    client_cpu: float  # seconds of this process
    client_sys: float  # of which in the kernel (system calls: sockets, fsync)
    server_cpu: float  # seconds of PostgreSQL's backends (0 on SQLite)
    statements: int  # statements sent through SQLAlchemy during the run (not those sent straight to SQLite's driver)
    batches: int  # group commits during the run


async def _run_ingest(
    url: str,
    n: int,
    concurrency: int,
    shape: str = "generic",
    conversations: int = 0,
    rate: float = 0.0,
    batch: int = 0,
) -> IngestRun:
    settings = Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]
    async with standalone(settings) as rt:
        await create_queue(
            rt, data=QueueCreate(name="support", channels=["email", "sms", "whatsapp", "webchat", "telegram"])
        )
        for i in range(20):
            agent = await create_agent(
                rt, data=AgentCreate(username=f"agent{i}", password="password-123", queues=["support"])
            )
            await set_agent_status(rt, agent_id=agent.id, status=AgentStatus.AVAILABLE)
        pipeline = IngestPipeline(rt)
        await pipeline.start()
        latencies: list[float] = []
        queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        if shape == "chat":
            await asyncio.gather(*(pipeline.submit(m) for m in chat_opening(conversations)))
            per_conversation = chat_messages(conversations, n)
        else:
            for m in synthetic(n):
                queue.put_nowait(m)

        async def worker() -> None:
            while not queue.empty():
                m = queue.get_nowait()
                t0 = time.perf_counter()
                await pipeline.submit(m)
                latencies.append(time.perf_counter() - t0)

        async def conversation(messages: list[InboundMessage]) -> None:
            interval = conversations / rate if rate > 0 else 0.0
            due = time.perf_counter() + random.random() * interval
            for m in messages:
                if interval:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += interval
                t0 = time.perf_counter()
                await pipeline.submit(m)
                latencies.append(time.perf_counter() - t0)

        async def rounds(messages: list[InboundMessage]) -> None:
            # ``batch`` conversations send at once, then wait: every group commit holds exactly that many.
            for start in range(0, len(messages), batch):
                t0 = time.perf_counter()
                await asyncio.gather(*(pipeline.submit(m) for m in messages[start : start + batch]))
                latencies.append(time.perf_counter() - t0)

        if shape == "chat" and batch:
            longest = max(map(len, per_conversation))
            workers = [rounds([ms[k] for k in range(longest) for ms in per_conversation if k < len(ms)])]
        elif shape == "chat":
            workers = [conversation(ms) for ms in per_conversation]
        else:
            workers = [worker() for _ in range(concurrency)]

        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        # The garbage collector as the server has it (hub/app.py): what the start built, frozen, and each full
        # collection's survivors frozen after it. Without it a full collection walks the whole heap, this
        # harness's pre-built messages included, and stalls every message in flight for 100 ms or more.
        survivors = FreezeSurvivors()
        if settings.gc_freeze_seconds > 0:
            freeze_heap()
            survivors.install()
        batches_before = _batches(rt)
        server_before = await postgres_cpu(rt)
        for engine in rt.db.engines:
            event.listen(engine.sync_engine, "before_cursor_execute", count)
        cpu_before = time.process_time()
        sys_before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        started = time.perf_counter()
        await asyncio.gather(*workers)
        elapsed = time.perf_counter() - started
        survivors.remove()
        for engine in rt.db.engines:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        batches = _batches(rt) - batches_before
        client_cpu = time.process_time() - cpu_before
        client_sys = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_before
        # Backends that appeared during the run started from zero.
        server_cpu = sum(c - server_before.get(pid, 0.0) for pid, c in (await postgres_cpu(rt)).items())
        await pipeline.stop()
        async with rt.read() as conn:
            stored = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one()
    return IngestRun(elapsed, latencies, int(stored), client_cpu, client_sys, server_cpu, statements, batches)


async def _run_reference(url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Plain single-row inserts, one transaction (and one durable commit) each."""
    db = Database(url)
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        latencies: list[float] = []
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                async with db.begin() as conn:
                    await conn.execute(
                        text("INSERT INTO bench_rows (id, body) VALUES (:i, :b)"), {"i": i, "b": f"row {i}"}
                    )
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        # SQLite has one writer: concurrent single-row transactions only queue on its lock.
        await asyncio.gather(*(worker() for _ in range(1 if db.is_sqlite else min(concurrency, 20))))
        return time.perf_counter() - started, latencies
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--shape", choices=["generic", "chat"], default="generic")
    parser.add_argument("--conversations", type=int, default=1000, help="chat shape: widget conversations")
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="chat shape: messages/s offered in all (0: saturate)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="chat shape: send in rounds of this many messages at once (exactly one group commit each) instead",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the plain-insert reference run")
    parser.add_argument("--reference-rows", type=int, default=3_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument(
        "--pg-log-statements",
        action="store_true",
        help="log every statement of the ingest run with its duration and CPU time in PostgreSQL's server log",
    )
    args = parser.parse_args()
    if args.shape == "chat":
        print(
            f"ingest benchmark, chat shape: {args.messages} messages in {args.conversations} open conversations, "
            + (
                f"in rounds of {args.batch} at once"
                if args.batch
                else f"{args.rate:.0f} messages/s offered"
                if args.rate
                else "saturated"
            )
            + f", {os.cpu_count()} cores"
        )
    else:
        print(
            f"ingest benchmark: {args.messages} messages, {args.concurrency} concurrent submitters, "
            f"{os.cpu_count()} cores"
        )
    for kind in args.db.split(","):
        with fresh_database(kind, args.postgres_url) as url:
            if kind != "sqlite" and args.pg_log_statements:
                name = make_url(url).database
                for setting in ("log_min_duration_statement = 0", "log_statement_stats = on"):
                    asyncio.run(pg_admin(args.postgres_url, f'ALTER DATABASE "{name}" SET {setting}'))
                print(f"[{kind}] statements logged as @{name}")
            run = asyncio.run(
                _run_ingest(
                    url,
                    args.messages,
                    args.concurrency,
                    shape=args.shape,
                    conversations=args.conversations,
                    rate=args.rate,
                    batch=args.batch,
                )
            )
        lat = run.latencies
        print(
            f"[{kind}] ingest:    {args.messages / run.elapsed:8.0f} messages/s   "
            f"p50 {percentile(lat, 50) * 1000:6.1f} ms   p99 {percentile(lat, 99) * 1000:6.1f} ms"
            f"   ({run.stored} stored in {run.elapsed:.2f} s)"
        )
        cpu = (
            f"[{kind}] cpu:       {run.client_cpu / args.messages * 1e6:8.0f} µs/message in this process "
            f"({run.client_sys / args.messages * 1e6:.0f} of them in the kernel)"
        )
        if kind != "sqlite":
            cpu += f", {run.server_cpu / args.messages * 1e6:.0f} µs/message in PostgreSQL's backends"
        print(cpu)
        print(
            f"[{kind}] statements: {run.statements / args.messages:7.2f} per message, "
            f"{run.statements / max(1, run.batches):.1f} per batch; {args.messages / max(1, run.batches):.1f} "
            "messages per batch"
            + (" (through SQLAlchemy; not those sent straight to the driver)" if kind == "sqlite" else "")
        )
        if args.no_reference:
            continue
        with fresh_database(kind, args.postgres_url) as url:
            ref_elapsed, ref_lat = asyncio.run(_run_reference(url, args.reference_rows, args.concurrency))
        print(
            f"[{kind}] reference: {args.reference_rows / ref_elapsed:8.0f} rows/s       "
            f"p50 {percentile(ref_lat, 50) * 1000:6.1f} ms   p99 {percentile(ref_lat, 99) * 1000:6.1f} ms"
            f"   (plain single-row insert, one durable commit each)"
        )


if __name__ == "__main__":
    main()
