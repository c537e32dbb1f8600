"""One hub process for the two-process routing test: its own engine and runtime on the shared database,
doing random routing work as fast as it can for SECONDS, and on until it has done MIN_OPERATIONS operations
(a loaded machine, or the fast paths off, does fewer in that time: too few to offer, accept, decline and
expire enough for the test's checks), but no longer than EXTRA_SECONDS more.

    python -m tests.ticketing.routing_worker DATABASE_URL SEED START_AT SECONDS
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import timedelta

from sqlalchemy import select, update

from hub.config import Settings
from hub.db import utcnow
from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import standalone
from ticketing import tables
from ticketing.exceptions import AtCapacity, OfferNotPending, TicketTaken
from ticketing.ingest import ingest_batch
from ticketing.models import AgentStatus, TicketStatus, TicketUpdate
from ticketing.routing_service import (
    accept_offer,
    decline_offer,
    expire_offers,
    pull_ticket,
    routing_tick,
    set_agent_status,
)
from ticketing.ticket_updates import update_ticket
from ticketing.workspace import Sort, View, ViewFilters, view_tickets

MIN_OPERATIONS = 300
EXTRA_SECONDS = 50.0
CHANNELS = ["webchat", "voice", "email"]
KINDS = {"webchat": "webchat", "voice": "phone", "email": "email"}


def _who(agent_id: int, role: str = "agent") -> Principal:
    return Principal(agent_id=agent_id, username=f"a{agent_id}", display_name="", role=role, queue_ids=frozenset())


async def main(url: str, seed: int, start_at: float, seconds: float) -> None:
    rng = random.Random(seed)
    settings = Settings(database_url=url, wrap_up_seconds=0, max_missed_offers=3, _env_file=None)  # type: ignore[call-arg]
    async with standalone(settings) as rt:
        async with rt.read() as conn:
            agents = [r.id for r in await conn.execute(select(tables.agents.c.id).order_by(tables.agents.c.id))]
            queues = [r.name for r in await conn.execute(select(tables.queues.c.name).order_by(tables.queues.c.id))]
            members: dict[int, set[int]] = {a: set() for a in agents}
            for m in await conn.execute(select(tables.agent_queues)):
                members.setdefault(m.agent_id, set()).add(m.queue_id)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + seconds
        n = 0
        while (now := time.monotonic()) < deadline or (n < MIN_OPERATIONS and now < deadline + EXTRA_SECONDS):
            n += 1
            op = rng.choices(
                ["arrive", "accept", "decline", "solve", "status", "expire", "tick", "pull"], [6, 4, 2, 2, 1, 1, 2, 3]
            )[0]
            if op == "arrive":
                batch = []
                for i in range(rng.randint(1, 8)):
                    channel = rng.choice(CHANNELS)
                    who = f"p{seed}-{n}-{i}"
                    value = {"webchat": who, "voice": f"+1415{seed}{n:05d}{i}", "email": f"{who}@example.com"}[channel]
                    batch.append(
                        InboundMessage(
                            channel=channel,
                            external_id=f"w{seed}-{n}-{i}",
                            sender=Identity(kind=KINDS[channel], value=value),
                            thread_key=who if channel == "webchat" else None,
                            queue=rng.choice(queues),
                            text="hi",
                        )
                    )
                for r in await ingest_batch(rt, batch):
                    if isinstance(r, Exception):
                        raise r
            elif op in ("accept", "decline"):
                async with rt.read() as conn:
                    offers = (
                        await conn.execute(
                            select(tables.tickets.c.id, tables.tickets.c.offered_agent_id).where(
                                tables.tickets.c.offered_agent_id.is_not(None)
                            )
                        )
                    ).all()
                if offers:
                    tid, holder = rng.choice(offers)
                    action = accept_offer if op == "accept" else decline_offer
                    try:
                        await action(rt, ticket_id=tid, principal=_who(holder))
                    except OfferNotPending:
                        pass  # the other process got there first: expected
            elif op == "pull":
                # An agent takes a ticket from their waiting view (the other process may pull it, offer it, or
                # fill the agent's capacity at the same moment).
                aid = rng.choice(agents)
                puller = Principal(
                    agent_id=aid, username=f"a{aid}", display_name="", role="agent", queue_ids=frozenset(members[aid])
                )
                page = await view_tickets(
                    rt, principal=puller, view=View.WAITING, filters=ViewFilters(), sort=rng.choice(list(Sort))
                )
                if page.items:
                    try:
                        await pull_ticket(rt, ticket_id=rng.choice(page.items).id, principal=puller)
                    except (AtCapacity, TicketTaken):
                        pass  # full, or someone got there first: expected
            elif op == "solve":
                async with rt.read() as conn:
                    held = (
                        await conn.execute(
                            select(tables.tickets.c.id).where(
                                tables.tickets.c.assignee_id.is_not(None),
                                tables.tickets.c.status.in_(tables.OPEN_STATUS_VALUES),
                            )
                        )
                    ).all()
                if held:
                    data = TicketUpdate(status=rng.choice([TicketStatus.SOLVED, TicketStatus.CLOSED]))
                    await update_ticket(rt, ticket_id=rng.choice(held).id, principal=_who(0, "supervisor"), data=data)
            elif op == "status":
                status = rng.choices(list(AgentStatus), [6, 2, 1, 1])[0]
                await set_agent_status(rt, agent_id=rng.choice(agents), status=status)
            elif op == "expire":
                async with rt.db.begin() as conn:
                    await conn.execute(
                        update(tables.tickets)
                        .where(tables.tickets.c.offered_agent_id == rng.choice(agents))
                        .values(offer_expires_at=utcnow() - timedelta(seconds=1))
                    )
                await expire_offers(rt)
            else:
                await routing_tick(rt)
        print(n, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
