"""Routing throughput and latency: 500 agents in 20 queues, a burst of 10,000 arrivals, then decisions with
the queues full.

1. Burst: 10,000 new conversations (chat, email, voice) submitted at once through the real IngestPipeline;
   each commit routes its batch, so when the last submit returns every item is offered or queued. Prints the
   wall time and arrivals/s, and checks that every item was offered or queued.
2. Decisions with ~10,000 waiting: an agent solves an offered item (one transaction: the solve frees a slot
   and routing offers the best waiting item to fill it). Prints decisions/s and p50/p99 latency of that
   transaction, i.e. from the slot freeing to the next offer committed.

    .venv/bin/python -m bench.routing [--agents 500] [--queues 20] [--arrivals 10000] [--decisions 2000]
                                       [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import func, select, update  # noqa: E402

from bench._common import PG_DEFAULT, fresh_database, percentile  # noqa: E402
from hub.auth import hash_password  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.db import utcnow  # noqa: E402
from hub.messages import Identity, InboundMessage  # noqa: E402
from hub.principals import Principal  # noqa: E402
from hub.runtime import standalone  # noqa: E402
from hub.workers import FreezeSurvivors, freeze_heap  # noqa: E402
from ticketing import ingest as ingest_module  # noqa: E402
from ticketing import routing_service, tables  # noqa: E402
from ticketing.ingest import IngestPipeline, ingest_batch  # noqa: E402
from ticketing.models import AgentStatus, QueueCreate, TicketStatus, TicketUpdate  # noqa: E402
from ticketing.queues import create_queue  # noqa: E402
from ticketing.routing_reads import WAITING  # noqa: E402
from ticketing.ticket_updates import update_ticket  # noqa: E402

SUPERVISOR = Principal(agent_id=0, username="bench", display_name="", role="supervisor", queue_ids=frozenset())


def arrivals(n: int, queues: list[str], seed: int = 11, prefix: str = "b") -> list[InboundMessage]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        channel = rng.choices(["webchat", "email", "voice"], [5, 4, 1])[0]
        q = rng.choice(queues)
        if channel == "webchat":
            m = InboundMessage(
                channel="webchat",
                external_id=f"wc-{i}",
                thread_key=f"c{i}",
                queue=q,
                sender=Identity(kind="webchat", value=f"{prefix}visitor-{i}"),
                text="hi",
            )
        elif channel == "email":
            m = InboundMessage(
                channel="email",
                external_id=f"<{prefix}r{i}@example.com>",
                queue=q,
                subject=f"Q {i}",
                sender=Identity(kind="email", value=f"{prefix}p{i}@example.com"),
                text="hello",
            )
        else:
            m = InboundMessage(
                channel="voice",
                external_id=f"{prefix}CA{i:032d}",
                queue=q,
                sender=Identity(kind="phone", value=f"+1{416 if prefix == 'top' else 415}{5000000 + i:07d}"),
                text="",
            )
        out.append(m)
    return out  # fmt: skip


async def setup(rt: object, n_agents: int, n_queues: int) -> list[str]:
    """Queues (half ask a language skill, priorities 0-2, a 10-minute first-response SLA) and agents in two
    queues each with the skills they need, all available. Agents are inserted directly (hashing 500
    passwords would time argon2, not routing)."""
    names = [f"q{i:02d}" for i in range(n_queues)]
    for i, name in enumerate(names):
        await create_queue(
            rt,  # type: ignore[arg-type]
            data=QueueCreate(
                name=name,
                required_skills={f"lang:{i % 4}": 1} if i % 2 else {},
                priority=i % 3,
                sla_first_response_seconds=600,
            ),
        )
    pw = hash_password("bench-password")
    now = utcnow()
    async with rt.db.begin() as conn:  # type: ignore[attr-defined]
        qids = {r.name: r.id for r in await conn.execute(select(tables.queues.c.name, tables.queues.c.id))}
        agents = []
        members = []
        for a in range(n_agents):
            mine = [names[a % n_queues], names[(a * 7 + 3) % n_queues]]
            skills = {f"lang:{int(q[1:]) % 4}": 1 for q in mine}
            agents.append(
                {"username": f"agent{a}", "display_name": f"Agent {a}", "password_hash": pw, "role": "agent",
                 "status": AgentStatus.AVAILABLE.value, "status_changed_at": now, "skills": skills,
                 "capacity": {"webchat": 3, "email": 5, "voice": 1}, "active": True, "created_at": now,
                 "missed_offers": 0}
            )  # fmt: skip
            members.append(set(mine))
        ids = [r.id for r in await conn.execute(tables.agents.insert().returning(tables.agents.c.id), agents)]
        await conn.execute(
            tables.agent_queues.insert(),
            [{"agent_id": aid, "queue_id": qids[q]} for aid, qs in zip(ids, members, strict=True) for q in qs],
        )
    return names


class Timed:
    """Wraps ``routing_service.route_tickets`` (every routing pass goes through it) to time each pass."""

    def __init__(self) -> None:
        self.original = routing_service.route_tickets
        self.passes: list[tuple[float, int]] = []  # (seconds, decisions)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        decisions = await self.original(*args, **kwargs)
        self.passes.append((time.perf_counter() - t, len(decisions)))
        return decisions


async def run(url: str, args: argparse.Namespace) -> None:
    settings = Settings(database_url=url, wrap_up_seconds=0, offer_timeout_seconds=3600, _env_file=None)  # type: ignore[call-arg]
    timed = Timed()
    routing_service.route_tickets = timed  # type: ignore[assignment]
    ingest_module.route_tickets = timed  # type: ignore[assignment]
    async with standalone(settings) as rt:
        names = await setup(rt, args.agents, args.queues)
        msgs = arrivals(args.arrivals, names)
        # The garbage collector as a server runs it (hub.app): the heap frozen after start, and the survivors of
        # each full collection frozen after it. Otherwise a full collection, walking every object the run made,
        # stalls whichever pass it falls in.
        freeze_heap()
        survivors = FreezeSurvivors()
        survivors.install()
        pipeline = IngestPipeline(rt)
        await pipeline.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(pipeline.submit(m) for m in msgs))
        burst = time.perf_counter() - t0
        await pipeline.stop()
        async with rt.read() as conn:
            T = tables.tickets
            total, offered, queued = (
                await conn.execute(
                    select(
                        func.count(),
                        func.count(T.c.offered_agent_id),
                        func.count().filter(T.c.offered_agent_id.is_(None), T.c.queued_at.is_not(None)),
                    )
                )
            ).one()
        assert total == offered + queued == args.arrivals, (total, offered, queued)
        routing_s = sum(t for t, _ in timed.passes)
        decided = sum(n for _, n in timed.passes)
        print(f"  burst: {args.arrivals} arrivals offered or queued in {burst:.2f} s ({args.arrivals / burst:.0f}/s, "
              f"ingest included): {offered} offered, {queued} queued; routing took {routing_s:.2f} s of it in "
              f"{len(timed.passes)} passes, {decided / routing_s:.0f} decisions/s")  # fmt: skip

        # Top up so that the decisions below choose among 10,000 waiting items (untimed).
        extra = args.arrivals - queued
        if extra > 0:
            for r in await ingest_batch(rt, arrivals(extra, names, seed=12, prefix="top")):
                assert not isinstance(r, Exception), r

        # Decisions with the queues full: an agent solves an item; that frees a slot, and the routing pass in
        # the same transaction offers the agent the best of the waiting items.
        rng = random.Random(5)
        latencies = []
        timed.passes.clear()
        offers_before = await _count_offers(rt)
        for _ in range(args.decisions):
            async with rt.read() as conn:
                offered_ids = [
                    r.id for r in await conn.execute(select(T.c.id).where(T.c.offered_agent_id.is_not(None)).limit(200))
                ]
            tid = rng.choice(offered_ids)
            async with rt.db.begin() as conn:  # the agent accepted it earlier (outside the timing)
                await conn.execute(
                    update(T).where(T.c.id == tid).values(assignee_id=T.c.offered_agent_id, offered_agent_id=None)
                )
            s = time.perf_counter()
            await update_ticket(rt, ticket_id=tid, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.SOLVED))
            latencies.append(time.perf_counter() - s)
        offers = await _count_offers(rt) - offers_before
        async with rt.read() as conn:
            waiting = (await conn.execute(select(func.count()).select_from(T).where(WAITING))).scalar_one()
        decision_ms = [t * 1000 for t, _ in timed.passes]
        tx_ms = [x * 1000 for x in latencies]
        print(
            f"  {len(tx_ms)} slots freed with ~{waiting} items waiting: {offers} offers made (a chat slot freed "
            f"while a call is in hand stays blocked), {offers / (sum(decision_ms) / 1000):.0f} decisions/s"
        )
        print(
            f"    routing decision (the routing pass, in the transaction): p50 {percentile(decision_ms, 50):.2f} ms, "
            f"p99 {percentile(decision_ms, 99):.2f} ms, max {max(decision_ms):.2f} ms"
        )
        print(f"    whole transaction (solve + routing + events + durable commit): p50 {percentile(tx_ms, 50):.2f} ms, "
              f"p99 {percentile(tx_ms, 99):.2f} ms")  # fmt: skip
        survivors.remove()
    routing_service.route_tickets = timed.original  # type: ignore[assignment]
    ingest_module.route_tickets = timed.original  # type: ignore[assignment]


async def _count_offers(rt: object) -> int:
    from hub.events import Event

    E = Event.__table__  # type: ignore[attr-defined]
    async with rt.read() as conn:  # type: ignore[attr-defined]
        return int(
            (await conn.execute(select(func.count()).select_from(E).where(E.c.type == "ticket.offered"))).scalar_one()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--arrivals", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL", PG_DEFAULT))
    args = parser.parse_args()
    for kind in args.db.split(","):
        print(f"{kind}: {args.agents} agents, {args.queues} queues")
        with fresh_database(kind, args.postgres_url) as url:
            asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
