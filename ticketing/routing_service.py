"""Routing's transactions: offers and their answers, agent status, overflow, re-queueing, the tick, explanations."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import KeptStatements, UTCDateTime, execute, update_rows, utcnow
from hub.events import EventType, NewEvent
from hub.principals import Principal
from hub.runtime import Runtime, Tx
from ticketing import routing, sla
from ticketing.agents import agent_read
from ticketing.exceptions import (
    AgentNotFound,
    AtCapacity,
    NotYourTicket,
    OfferNotPending,
    TicketNotFound,
    TicketTaken,
)
from ticketing.models import AgentRead, AgentStatus, OfferAnswer, RoutingExplanation, TicketRead, TicketStatus
from ticketing.routing_reads import (
    UNHELD,
    WAITING,
    QueueSnapshot,
    agent_slots,
    read_queues,
    slots_of_agents,
    waiting_rows,
)
from ticketing.tables import OPEN_STATUS_VALUES, agents, tickets
from ticketing.tickets import answered_on_take, check_visible, ticket_event, ticket_row

# The policy is pure (``ticketing.routing``); these functions feed it snapshots and write its decisions.
# Invariants, in one process on SQLite and across processes on PostgreSQL:
# - a ticket is offered to at most one agent at a time, and assigned at most once: ``offered_agent_id`` and
#   ``assignee_id`` are single columns, changed only by conditional UPDATEs (``WHERE offered_agent_id IS
#   NULL``, ``WHERE offered_agent_id = me AND assignee_id IS NULL``);
# - routing never puts an agent over capacity: every routing pass takes the routing lock first (an advisory
#   transaction lock on PostgreSQL; on SQLite the write lock every writing transaction begins with) and
#   reads the agents' loads after it, so it sees every earlier pass's offers, and no other pass commits
#   offers until it has committed. Status changes take the same lock, so no pass offers work to an agent
#   who has just gone away.
# - no deadlock on PostgreSQL: locks are taken in one order: the ticket rows a transaction changes directly
#   (ingest, a reply, a decline), then the routing lock, then agent rows. Holding the routing lock, ticket
#   rows are only claimed with FOR UPDATE SKIP LOCKED, so a pass never waits for a ticket another
#   transaction is changing; what it skips, the next pass (``routing_tick``, every second) picks up,
#   including offers left with an agent who is no longer available.
# Every decision is written to the ticket (``routing``: decision, agent, reason, time) and emitted as an
# event, so the console follows it live and ``explain_routing`` can say why.

ROUTING_LOCK_KEY = 0x5B0A_4D02
# How many waiting items a sweep reads per queue, channel and order: a few per free slot (some candidates
# lack a skill), plus a few.
_CANDIDATES_PER_FREE_SLOT = 3
_CANDIDATES_EXTRA = 5
_MAX_CANDIDATES = 500


# What takes the routing lock on PostgreSQL, sent to the driver directly.
ROUTING_LOCK_STATEMENT = text("SELECT pg_advisory_xact_lock(:k)")
# The transactions that hold the routing lock: it is held until the transaction ends, so it is taken once
# (a transaction that declines an offer routes twice and takes it before both).
_holding_routing_lock: weakref.WeakSet[Any] = weakref.WeakSet()


async def take_routing_lock(conn: AsyncConnection) -> None:
    """Hold the routing lock until ``conn``'s transaction ends (once per transaction; see the invariants above)."""
    # On SQLite there is nothing to take: every writing transaction begins IMMEDIATE (``Database.begin``), so
    # it holds the database's write lock from its first statement.
    if conn.dialect.name != "postgresql":
        return
    transaction = conn.sync_connection.get_transaction() if conn.sync_connection is not None else None
    if transaction is not None and transaction in _holding_routing_lock:
        return
    await execute(conn, ROUTING_LOCK_STATEMENT, {"k": ROUTING_LOCK_KEY})
    if transaction is not None:
        _holding_routing_lock.add(transaction)


def routing_decision(
    kind: str, reason: str, now: datetime, *, agent_id: int | None = None, old: Any = None
) -> dict[str, Any]:
    """The ``routing`` column's value: the last decision, keeping who recently passed on the ticket."""
    value: dict[str, Any] = {"decision": kind, "agent_id": agent_id, "reason": reason, "at": now.isoformat()}
    passed = (old or {}).get("passed")
    if passed:
        value["passed"] = passed
    return value


def _recently_passed(value: Any, now: datetime, window: float) -> frozenset[int]:
    """Agents who declined the ticket or let its offer expire within ``window`` seconds: not offered it again
    before then (after that, if nobody else can take it, they may be)."""
    cutoff = now - timedelta(seconds=window)
    out = set()
    for agent, at in ((value or {}).get("passed") or {}).items():
        if datetime.fromisoformat(at) > cutoff:
            out.add(int(agent))
    return frozenset(out)


_ROUTING_COLUMNS = (
    "offered_agent_id",
    "offer_expires_at",
    "queued_at",
    "first_response_due_at",
    "resolution_due_at",
    "routing",
    "updated_at",
)


async def route_tickets(
    rt: Runtime,
    tx: Tx,
    ticket_ids: Sequence[int] | None = None,
    *,
    exclude: dict[int, set[int]] | None = None,
    queue_ids: Iterable[int] | None = None,
    agent_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
    returned: Iterable[int] = (),
) -> list[routing.Decision]:
    """Offer waiting work (open, unassigned, no pending offer) to the best eligible agents, highest effective
    priority first, and record each decision. ``ticket_ids``: just these tickets (new or returned work);
    otherwise a sweep: the waiting work ``agent_ids`` (whose capacity just freed) may take, or that the
    agents of ``queue_ids`` (default: every queue) may take. ``channels``: only these channels' capacity
    changed, so only their work is looked at (what the agents could take on other channels was offered
    when it arrived, or waits for a change that sweeps for it: a status, an overflow, the routing tick).
    Work entering its queue is stamped (queued time, SLA deadlines) and announced as ``ticket.queued``
    unless it is offered at once; so is ``returned`` work (a declined or expired offer) that waits again."""
    if ticket_ids is not None and not ticket_ids:
        return []
    conn = tx.conn
    await take_routing_lock(conn)
    now = utcnow()
    settings = rt.settings
    slots: dict[int, routing.AgentSlot] | None = None
    limits: dict[int, dict[str, int]] | None = None
    blocks = settings.voice_blocks_chats
    if agent_ids is not None and ticket_ids is None:
        # The agents, their loads and the queues' fingerprint in one statement: the queues themselves are
        # read only when they changed.
        slots, fingerprint = await slots_of_agents(conn, agent_ids, voice_blocks_chats=blocks)
        qs = await read_queues(rt, conn, fingerprint)
    else:
        qs = await read_queues(rt, conn)
    open_now = qs.open_now(now)
    if ticket_ids is None:
        # A sweep offers the agents in scope (those whose capacity just changed, or a queue's) the work of
        # their queues and of the queues that overflow into them, looking per queue and channel at a few
        # times as many candidates as there are free slots.
        if slots is not None:
            scope = {q for s in slots.values() for q in s.queue_ids}
        else:
            scope = set(qs.policies) if queue_ids is None else set(queue_ids)
            slots = await agent_slots(conn, scope, voice_blocks_chats=blocks)
        free: dict[int, dict[str, int]] = {}
        changed = None if channels is None else set(channels)
        for slot in slots.values():
            if not slot.available:
                continue
            for channel in set(routing.DEFAULT_CAPACITY) | set(slot.capacity):
                if changed is not None and channel not in changed:
                    continue
                n = slot.free(channel)
                if n > 0:
                    for q in slot.queue_ids & scope:
                        free.setdefault(q, {})[channel] = free.get(q, {}).get(channel, 0) + n
        if not free:
            return []
        counts: dict[int, dict[str, int]] = {}
        for q, per_channel in free.items():
            # Work of a queue outside its business hours waits: not worth reading.
            for feeder in (f for f in qs.feeding({q}) if open_now.get(f, True)):
                for channel, n in per_channel.items():
                    counts.setdefault(feeder, {})[channel] = counts.get(feeder, {}).get(channel, 0) + n
        limits = {
            q: {c: min(_MAX_CANDIDATES, _CANDIDATES_PER_FREE_SLOT * n + _CANDIDATES_EXTRA) for c, n in per.items()}
            for q, per in counts.items()
        }
    # Work in no queue (no queue exists yet) is not routed: it waits until a supervisor places it.
    rows = [r for r in await waiting_rows(conn, ticket_ids=ticket_ids, limits=limits) if r.queue_id is not None]
    if not rows:
        return []
    returned = set(returned)
    items: list[routing.WorkItem] = []
    stamps: dict[int, dict[str, Any]] = {}
    by_id = {r.id: r for r in rows}
    for r in rows:
        policy = qs.policies.get(r.queue_id) if r.queue_id is not None else None
        stamp: dict[str, Any] = {}
        queued_at = r.queued_at
        if queued_at is None:
            queued_at = stamp["queued_at"] = now
        if policy is not None:
            hours = qs.hours[policy.queue_id]
            qrow = qs.rows[policy.queue_id]
            first_target, resolution_target = sla.targets_for(qrow, r.priority)
            if r.first_response_due_at is None and first_target:
                stamp["first_response_due_at"] = sla.due_at(hours, r.created_at, first_target)
            if r.resolution_due_at is None and resolution_target:
                stamp["resolution_due_at"] = sla.due_at(hours, r.created_at, resolution_target)
        if stamp:
            stamps[r.id] = stamp
        first_due = stamp.get("first_response_due_at", r.first_response_due_at)
        due = first_due if r.first_response_at is None else stamp.get("resolution_due_at", r.resolution_due_at)
        serving, required = routing.requirements(policy, r.skills, r.overflow_stage)
        excluded = _recently_passed(r.routing, now, settings.offer_timeout_seconds)
        if exclude and r.id in exclude:
            excluded |= frozenset(exclude[r.id])
        items.append(
            routing.WorkItem(
                ticket_id=r.id,
                queue_id=r.queue_id,
                channel=r.channel,
                previous_agent_id=r.previous_agent_id,
                excluded=excluded,
                queue_ids=serving,
                required_skills=required,
                priority=r.priority,
                queue_priority=policy.priority if policy else 0,
                queued_at=queued_at,
                due_at=due,
                queue_open=open_now.get(r.queue_id, True),
            )
        )
    if slots is None:
        serving_queues = {q for i in items if i.queue_open for q in i.serving_queues}
        slots = await agent_slots(conn, serving_queues, voice_blocks_chats=blocks)
    # Reasons for work that keeps waiting are written only when it enters the queue (or comes back to it).
    decisions = routing.route(items, slots.values(), now, explain=set(stamps) | returned)

    expires = now + timedelta(seconds=settings.offer_timeout_seconds)
    writes: list[dict[str, Any]] = []
    for d in decisions:
        r = by_id[d.ticket_id]
        values = {**stamps.get(r.id, {})}
        if d.agent_id is not None:
            values.update(
                offered_agent_id=d.agent_id,
                offer_expires_at=expires,
                routing=routing_decision("offered", d.reason, now, agent_id=d.agent_id, old=r.routing),
            )
            event = EventType.TICKET_OFFERED
        elif r.id in stamps or r.id in returned:
            values["routing"] = routing_decision("queued", d.reason, now, old=r.routing)
            event = EventType.TICKET_QUEUED
        else:
            continue  # still waiting, as before: nothing to write or announce
        values["updated_at"] = now
        row = {**r._asdict(), **values}
        writes.append({"id": r.id, **{c: row[c] for c in _ROUTING_COLUMNS}})
        extra: dict[str, Any] = {"reason": d.reason}
        if d.agent_id is not None:
            extra["offer_timeout"] = settings.offer_timeout_seconds
        tx.emit(ticket_event(event, row, **extra))
    # The condition repeats what the claim established; it costs nothing and guards the invariants.
    await update_rows(conn, tickets, writes, where=UNHELD)
    return decisions


async def accept_offer(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketRead:
    """The offered agent takes the ticket. Atomic: a ticket is never assigned twice."""
    now = utcnow()
    async with rt.write() as tx:
        row = await _take_offer(tx, ticket_id, principal, now)
        if row is None:
            await ticket_row(tx.conn, ticket_id)  # 404 when it does not exist
            raise OfferNotPending(f"ticket {ticket_id} is not offered to you (it expired or was taken)")
        await _offers_taken(tx, principal, now)
    return TicketRead.model_validate(row._mapping)


async def accept_offers(rt: Runtime, *, ticket_ids: Sequence[int], principal: Principal) -> list[OfferAnswer]:
    """Several offers taken in one call (a burst's "accept all"), one answer per distinct ticket, in the order
    asked. Each offer is taken or refused on its own, as ``accept_offer`` would: one that expired or was taken
    meanwhile is answered with the reason while the others are still taken. One transaction; the tickets are
    changed in id order (the lock order on PostgreSQL), each by the same conditional UPDATE as a single accept,
    so no ticket is assigned twice."""
    now = utcnow()
    asked = list(dict.fromkeys(ticket_ids))
    taken: dict[int, Any] = {}
    async with rt.write() as tx:
        for ticket_id in sorted(asked):
            row = await _take_offer(tx, ticket_id, principal, now)
            if row is not None:
                taken[ticket_id] = row
        refused = [t for t in asked if t not in taken]
        existing = (
            set((await tx.conn.execute(select(tickets.c.id).where(tickets.c.id.in_(refused)))).scalars())
            if refused
            else set()
        )
        if taken:
            await _offers_taken(tx, principal, now)
    return [
        OfferAnswer(ticket_id=t, accepted=True, ticket=TicketRead.model_validate(taken[t]._mapping))
        if t in taken
        else OfferAnswer(
            ticket_id=t,
            accepted=False,
            code=OfferNotPending.code if t in existing else TicketNotFound.code,
            detail=f"ticket {t} is not offered to you (it expired or was taken)"
            if t in existing
            else f"ticket {t} does not exist",
        )
        for t in asked
    ]


def _build(dialect: str, name: str) -> Any:
    agent_id = bindparam("agent_id", type_=Integer())
    now = bindparam("now", type_=UTCDateTime())
    if name == "take_offer":
        return (
            update(tickets)
            .where(
                tickets.c.id == bindparam("ticket_id"),
                tickets.c.offered_agent_id == agent_id,
                tickets.c.assignee_id.is_(None),
            )
            .values(
                assignee_id=agent_id,
                offered_agent_id=None,
                offer_expires_at=None,
                answered_at=answered_on_take(now),
                status=TicketStatus.OPEN.value,
                updated_at=now,
            )
            .returning(*tickets.c)
        )
    if name == "offers_taken":
        return update(agents).where(agents.c.id == agent_id).values(last_assigned_at=now, missed_offers=0)
    raise KeyError(name)


# Accepting an offer, built once per dialect: it answers an agent's click, and on the phone a caller waits for it.
_STATEMENTS = KeptStatements(_build)


async def _take_offer(tx: Tx, ticket_id: int, principal: Principal, now: datetime) -> Any:
    """Assign the ticket to ``principal`` if it is offered to them and nobody holds it (one conditional UPDATE),
    with its events; the updated row, or None when it is not theirs to take."""
    rows = await _STATEMENTS.fetch_all(
        tx.conn, "take_offer", {"ticket_id": ticket_id, "agent_id": principal.agent_id, "now": now}
    )
    if not rows:
        return None
    row = rows[0]
    tx.emit(
        NewEvent(
            type=EventType.OFFER_ACCEPTED,
            payload={"ticket_id": ticket_id, "agent_id": principal.agent_id},
            ticket_id=ticket_id,
            queue_id=row.queue_id,
            agent_id=principal.agent_id,
        )
    )
    tx.emit(ticket_event(EventType.TICKET_ASSIGNED, row, by=principal.agent_id))
    return row


async def _offers_taken(tx: Tx, principal: Principal, now: datetime) -> None:
    """The agent took work: longest-idle counts from now, and their missed offers start over."""
    await _STATEMENTS.execute(tx.conn, "offers_taken", {"agent_id": principal.agent_id, "now": now})


async def pull_ticket(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketRead:
    """The agent takes a waiting ticket of one of their queues from a view, as routing would have offered it:
    under the routing lock, within their capacity on its channel, and only while nobody holds it (a conditional
    UPDATE, so two agents pulling at once, or a pull racing an offer, assign it once). A ticket offered to the
    agent is accepted instead. Refused (409) when it is held, closed, or the agent is at capacity; 403 when it
    is not in their queues."""
    now = utcnow()
    async with rt.write() as tx:
        conn = tx.conn
        # The ticket row first, then the routing lock (the lock order above): nobody changes it meanwhile.
        current = await ticket_row(conn, ticket_id, lock=True)
        if current.offered_agent_id == principal.agent_id and current.assignee_id is None:
            pass  # their own offer: taken below like any pull, under the same conditions
        elif current.queue_id not in principal.queue_ids:
            check_visible(principal, current)
            raise NotYourTicket(f"ticket {ticket_id} is not in your queues")
        await take_routing_lock(conn)  # before the agent row and the loads: see the lock order above
        slots, _ = await slots_of_agents(conn, [principal.agent_id], voice_blocks_chats=rt.settings.voice_blocks_chats)
        slot = slots.get(principal.agent_id)
        if slot is None:
            raise AgentNotFound(f"agent {principal.agent_id} does not exist or is not active")
        mine = current.offered_agent_id == principal.agent_id and current.assignee_id is None
        # The agent's own offer already counts in their load; anything else needs a free slot.
        if not mine and slot.free(current.channel) <= 0:
            blocker = slot.blocked(current.channel)
            raise AtCapacity(
                f"you are at capacity on {current.channel}"
                + (f" (a {blocker} item in hand blocks it)" if blocker else f" ({slot.limit(current.channel)} at once)")
            )
        held = tickets.c.offered_agent_id == principal.agent_id if mine else tickets.c.offered_agent_id.is_(None)
        row = (
            await conn.execute(
                update(tickets)
                .where(
                    tickets.c.id == ticket_id,
                    tickets.c.assignee_id.is_(None),
                    held,
                    tickets.c.status.in_(OPEN_STATUS_VALUES),
                )
                .values(
                    assignee_id=principal.agent_id,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    status=case(
                        (tickets.c.status == TicketStatus.NEW.value, TicketStatus.OPEN.value), else_=tickets.c.status
                    ),
                    routing=routing_decision("pulled", "taken from a view", now, agent_id=principal.agent_id),
                    updated_at=now,
                )
                .returning(*tickets.c)
            )
        ).first()
        if row is None:
            raise TicketTaken(f"ticket {ticket_id} is no longer waiting (someone took it, or it was offered or closed)")
        await conn.execute(
            update(agents).where(agents.c.id == principal.agent_id).values(last_assigned_at=now, missed_offers=0)
        )
        if mine:
            tx.emit(
                NewEvent(
                    type=EventType.OFFER_ACCEPTED,
                    payload={"ticket_id": ticket_id, "agent_id": principal.agent_id},
                    ticket_id=ticket_id,
                    queue_id=row.queue_id,
                    agent_id=principal.agent_id,
                )
            )
        tx.emit(ticket_event(EventType.TICKET_ASSIGNED, row, by=principal.agent_id, pulled=not mine))
    return TicketRead.model_validate(row._mapping)


async def return_offers(
    tx: Tx, offers: Sequence[tuple[int, int]], *, event_type: str, reason: str, now: datetime
) -> list[int]:
    """Take back pending offers, given as (ticket id, agent id); each agent is remembered as having passed on
    the ticket. Returns the tickets taken back (an offer accepted or returned meanwhile is left alone)."""
    back = []
    for ticket_id, agent_id in offers:
        row = (
            await tx.conn.execute(
                select(tickets.c.id, tickets.c.queue_id, tickets.c.routing).where(
                    tickets.c.id == ticket_id, tickets.c.offered_agent_id == agent_id, tickets.c.assignee_id.is_(None)
                )
            )
        ).first()
        if row is None:
            continue
        old = dict(row.routing or {})
        passed = {**(old.get("passed") or {}), str(agent_id): now.isoformat()}
        value = {**old, "passed": dict(sorted(passed.items(), key=lambda kv: kv[1])[-20:])}
        done = await tx.conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id, tickets.c.offered_agent_id == agent_id, tickets.c.assignee_id.is_(None))
            .values(offered_agent_id=None, offer_expires_at=None, routing=value, updated_at=now)
        )
        if not done.rowcount:
            continue
        back.append(ticket_id)
        tx.emit(
            NewEvent(
                type=event_type,
                payload={"ticket_id": ticket_id, "agent_id": agent_id, "reason": reason},
                ticket_id=ticket_id,
                queue_id=row.queue_id,
                agent_id=agent_id,
            )
        )
    return back


async def decline_offer(rt: Runtime, *, ticket_id: int, principal: Principal) -> None:
    """The offered agent passes; the offer moves on to the next eligible agent."""
    now = utcnow()
    async with rt.write() as tx:
        back = await return_offers(
            tx, [(ticket_id, principal.agent_id)], event_type=EventType.OFFER_DECLINED, reason="declined", now=now
        )
        if not back:
            await ticket_row(tx.conn, ticket_id)
            raise OfferNotPending(f"ticket {ticket_id} is not offered to you")
        await take_routing_lock(tx.conn)  # before the agent row: see the lock order above
        await tx.conn.execute(update(agents).where(agents.c.id == principal.agent_id).values(missed_offers=0))
        await route_tickets(rt, tx, back, returned=back)
        await route_tickets(rt, tx, agent_ids=[principal.agent_id])  # their freed slot, for other work


def _offers_to_return(now: datetime) -> Any:
    """Offers past their deadline, and offers to agents no longer available that a status change could not
    take back at once."""
    away = select(agents.c.id).where(agents.c.status != AgentStatus.AVAILABLE)
    return and_(
        tickets.c.offered_agent_id.is_not(None),
        or_(tickets.c.offer_expires_at < now, tickets.c.offered_agent_id.in_(away)),
    )


def _wrap_up_over(now: datetime) -> Any:
    return and_(
        agents.c.status == AgentStatus.WRAP_UP, agents.c.wrap_up_until.is_not(None), agents.c.wrap_up_until <= now
    )


async def expire_offers(rt: Runtime) -> int:
    """Move offers past their deadline on to the next agent; an agent who lets ``max_missed_offers`` expire in
    a row is set away (offers made together, a burst, count as one). Returns the number expired."""
    now = utcnow()
    settings = rt.settings
    async with rt.write() as tx:
        await take_routing_lock(tx.conn)
        stmt = select(tickets.c.id, tickets.c.offered_agent_id, tickets.c.offer_expires_at).where(
            _offers_to_return(now)
        )
        if tx.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=tickets)
        rows = (await tx.conn.execute(stmt.order_by(tickets.c.id))).all()
        if not rows:
            return 0
        late = [(r.id, r.offered_agent_id) for r in rows if r.offer_expires_at is not None and r.offer_expires_at < now]
        back = await return_offers(
            tx,
            late,
            event_type=EventType.OFFER_EXPIRED,
            reason=f"not accepted within {settings.offer_timeout_seconds} s",
            now=now,
        )
        # Offers a status change could not take back at once (their ticket was busy): back now.
        stranded = [(r.id, r.offered_agent_id) for r in rows if r.id not in set(back)]
        back += await return_offers(
            tx, stranded, event_type=EventType.OFFER_EXPIRED, reason="agent is not available", now=now
        )
        # A burst (the offers one routing pass made an agent, going available say: they share their deadline)
        # let expire counts as one miss, not one per offer: six offers at once missed once are one absence.
        deadline_of = {r.id: r.offer_expires_at for r in rows}
        bursts: dict[int, set[datetime]] = {}
        for ticket_id, agent_id in late:
            if ticket_id in back:
                bursts.setdefault(agent_id, set()).add(deadline_of[ticket_id])
        for agent_id, deadlines in bursts.items():
            n = len(deadlines)
            row = (
                await tx.conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id)
                    .values(missed_offers=agents.c.missed_offers + n)
                    .returning(agents.c.missed_offers, agents.c.status)
                )
            ).one()
            if settings.max_missed_offers and row.missed_offers >= settings.max_missed_offers:
                if row.status == AgentStatus.AVAILABLE:
                    await change_status(
                        rt, tx, agent_id, AgentStatus.AWAY, reason=f"let {row.missed_offers} offers expire in a row"
                    )
        await route_tickets(rt, tx, back, returned=back)
    return len(back)


async def change_status(
    rt: Runtime, tx: Tx, agent_id: int, status: AgentStatus, *, reason: str | None = None
) -> AgentRead:
    """Set an agent's status inside ``tx``: available pulls waiting work; any other status returns the
    agent's pending offers to their queues at once (wrap-up ends by itself after ``wrap_up_seconds``).
    An offer whose ticket another transaction holds is returned by the next ``expire_offers``."""
    await take_routing_lock(tx.conn)
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "status_changed_at": now, "wrap_up_until": None}
    if status is AgentStatus.WRAP_UP and rt.settings.wrap_up_seconds > 0:
        values["wrap_up_until"] = now + timedelta(seconds=rt.settings.wrap_up_seconds)
    if status is AgentStatus.AVAILABLE:
        values["missed_offers"] = 0
    row = (
        await tx.conn.execute(update(agents).where(agents.c.id == agent_id).values(**values).returning(*agents.c))
    ).first()
    if row is None:
        raise AgentNotFound(f"agent {agent_id} does not exist")
    agent = await agent_read(tx.conn, row)
    payload: dict[str, Any] = {"agent_id": agent_id, "status": status.value}
    if reason:
        payload["reason"] = reason
    if values["wrap_up_until"]:
        payload["wrap_up_until"] = values["wrap_up_until"].isoformat()
    tx.emit(NewEvent(type=EventType.AGENT_STATUS, payload=payload, agent_id=agent_id))
    if status is AgentStatus.AVAILABLE:
        await route_tickets(rt, tx, agent_ids=[agent_id])
    else:
        stmt = select(tickets.c.id).where(tickets.c.offered_agent_id == agent_id).order_by(tickets.c.id)
        if tx.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        offered = [(r.id, agent_id) for r in await tx.conn.execute(stmt)]
        back = await return_offers(
            tx, offered, event_type=EventType.OFFER_EXPIRED, reason=f"agent is {status.value}", now=now
        )
        await route_tickets(rt, tx, back, returned=back)
    return agent


async def set_agent_status(rt: Runtime, *, agent_id: int, status: AgentStatus) -> AgentRead:
    """Change an agent's status. Going available pulls waiting work; leaving returns pending offers at once;
    wrap-up ends by itself after ``wrap_up_seconds``."""
    async with rt.write() as tx:
        return await change_status(rt, tx, agent_id, status)


async def end_wrap_ups(rt: Runtime) -> int:
    """Agents whose wrap-up time is over become available (and are offered waiting work)."""
    now = utcnow()
    async with rt.write() as tx:
        await take_routing_lock(tx.conn)
        due = [r.id for r in await tx.conn.execute(select(agents.c.id).where(_wrap_up_over(now)))]
        for agent_id in due:
            await change_status(rt, tx, agent_id, AgentStatus.AVAILABLE, reason="wrap-up over")
    return len(due)


async def work_done(rt: Runtime, tx: Tx, *, agent_id: int, channel: str) -> None:
    """An agent's ticket was solved or closed: after a call or chat the agent wraps up; otherwise the freed
    capacity is offered waiting work."""
    # Under the routing lock, taken before the agent row is read (the lock order above): every status change
    # holds it, so the status read is the one in force, not one that a concurrent change (going offline, say)
    # is about to replace and that wrap-up would then overwrite. The ticket row is already locked.
    await take_routing_lock(tx.conn)
    status = (await tx.conn.execute(select(agents.c.status).where(agents.c.id == agent_id))).scalar()
    if status != AgentStatus.AVAILABLE:
        return
    if channel in routing.WRAP_UP_CHANNELS and rt.settings.wrap_up_seconds > 0:
        await change_status(rt, tx, agent_id, AgentStatus.WRAP_UP, reason=f"after a {channel} conversation")
    else:
        await route_tickets(rt, tx, agent_ids=[agent_id], channels=routing.freed_by(channel))


async def apply_overflow(rt: Runtime) -> int:
    """Waiting work that has waited long enough takes its queue's next overflow steps (more queues' agents,
    fewer skills asked), or past the queue's maximum wait moves to its overflow queue; each is announced as
    ``ticket.overflowed`` with the reason, then routed. Returns the number of tickets changed."""
    now = utcnow()
    # Most ticks find nothing to move: a plain read says so without taking the writer's turn.
    async with rt.read() as conn:
        due = _overflow_due(await read_queues(rt, conn), now)
        if due is None or (await conn.execute(select(tickets.c.id).where(due).limit(1))).first() is None:
            return 0
    async with rt.write() as tx:
        conn = tx.conn
        await take_routing_lock(conn)
        qs = await read_queues(rt, conn)
        due = _overflow_due(qs, now)
        if due is None:
            return 0
        stmt = select(tickets).where(due).order_by(tickets.c.id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        changed: list[int] = []
        for r in await conn.execute(stmt):
            p = qs.policies[r.queue_id]
            waited = (now - r.queued_at).total_seconds()
            if p.past_max_wait(waited) and p.overflow_queue_id is not None and p.overflow_queue_id != r.queue_id:
                target = p.overflow_queue_id
                reason = f"waited over the maximum of {p.max_wait_seconds} s in {p.name}: moved to {qs.names[target]}"
                values: dict[str, Any] = {"queue_id": target, "queued_at": now, "overflow_stage": 0}
            else:
                stage = p.stage_after(waited)
                if stage <= r.overflow_stage:
                    continue
                reason = f"waited {int(waited)} s in {p.name}: " + routing.overflow_summary(p, stage, qs.names)
                values = {"overflow_stage": stage}
            values["routing"] = routing_decision("overflowed", reason, now, old=r.routing)
            values["updated_at"] = now
            done = await conn.execute(
                update(tickets)
                .where(
                    tickets.c.id == r.id,
                    tickets.c.queue_id == r.queue_id,
                    tickets.c.overflow_stage == r.overflow_stage,
                    UNHELD,
                )
                .values(**values)
            )
            if not done.rowcount:
                continue
            changed.append(r.id)
            tx.emit(
                ticket_event(
                    EventType.TICKET_OVERFLOWED, {**r._mapping, **values}, reason=reason, from_queue_id=r.queue_id
                )
            )
        await route_tickets(rt, tx, changed)
    return len(changed)


def _overflow_due(qs: QueueSnapshot, now: datetime) -> Any:
    """The condition of waiting work that has waited long enough for a next overflow step or for its queue's
    overflow queue; None when no queue overflows."""
    conds = []
    for qid, p in qs.policies.items():
        parts = []
        if p.overflow:
            first = now - timedelta(seconds=p.overflow[0].after_seconds)
            parts.append(and_(tickets.c.overflow_stage < len(p.overflow), tickets.c.queued_at <= first))
        if p.max_wait_seconds is not None and p.overflow_queue_id is not None and p.overflow_queue_id != qid:
            parts.append(tickets.c.queued_at <= now - timedelta(seconds=p.max_wait_seconds))
        if parts:
            conds.append(and_(tickets.c.queue_id == qid, or_(*parts)))
    return and_(WAITING, tickets.c.queued_at.is_not(None), or_(*conds)) if conds else None


async def routing_tick(rt: Runtime) -> None:
    """The periodic routing job: expire offers, end wrap-ups, apply overflow, then offer waiting work to
    any free agent (work that could not be offered when it arrived, or an agent freed outside routing).

    Each step is a writing transaction, taken only when one read says it has something to do: every
    transaction takes the writer's turn (SQLite has one writer, which every ingest batch and reply waits
    for) and the routing lock. What becomes due after the read waits for the next tick."""
    now = utcnow()
    async with rt.read() as conn:
        offers, wrap_ups, work = (
            await conn.execute(
                select(
                    exists().where(_offers_to_return(now)),
                    exists().where(_wrap_up_over(now)),
                    exists().where(WAITING, tickets.c.queue_id.is_not(None)),
                )
            )
        ).one()
    if offers:
        await expire_offers(rt)
    if wrap_ups:
        await end_wrap_ups(rt)
    await apply_overflow(rt)
    if work:
        async with rt.write() as tx:
            await route_tickets(rt, tx)


async def requeue_from_agent(
    rt: Runtime, tx: Tx, *, agent_id: int, reason: str, only: Sequence[Any] = (), now: datetime | None = None
) -> list[int]:
    """Put the open tickets ``agent_id`` holds (narrowed by the ``only`` conditions) back in their queues,
    keeping their place (``queued_at``), and offer them again to anyone but that agent: the one re-queue step
    of a supervisor's re-queue and of a call the agent did not pick up. Each gets ``ticket.requeued`` (to the
    agent) and ``ticket.updated``. The routing lock is taken first (see the lock order above)."""
    now = now or utcnow()
    await take_routing_lock(tx.conn)
    rows = (
        await tx.conn.execute(
            update(tickets)
            .where(tickets.c.assignee_id == agent_id, tickets.c.status.in_(OPEN_STATUS_VALUES), *only)
            .values(
                assignee_id=None,
                offered_agent_id=None,
                offer_expires_at=None,
                routing=routing_decision("requeued", reason, now),
                updated_at=now,
            )
            .returning(*tickets.c)
        )
    ).all()
    ids = sorted(r.id for r in rows)
    for r in rows:
        tx.emit(
            NewEvent(
                type=EventType.TICKET_REQUEUED,
                payload={"ticket_id": r.id, "agent_id": agent_id, "reason": reason},
                ticket_id=r.id,
                queue_id=r.queue_id,
                agent_id=agent_id,
            )
        )
        tx.emit(ticket_event(EventType.TICKET_UPDATED, r, changes=["assignee_id"]))
    await route_tickets(rt, tx, ids, exclude={t: {agent_id} for t in ids}, returned=ids)
    return ids


async def requeue_agent_work(rt: Runtime, *, agent_id: int, principal: Principal) -> list[int]:
    """Supervisors: put an agent's open conversations back in their queues (an agent gone for the day)."""
    principal.require_supervisor()
    async with rt.write() as tx:
        if not (await tx.conn.execute(select(agents.c.id).where(agents.c.id == agent_id))).first():
            raise AgentNotFound(f"agent {agent_id} does not exist")
        reason = f"re-queued by {principal.username} from agent {agent_id}"
        return await requeue_from_agent(rt, tx, agent_id=agent_id, reason=reason)


async def explain_routing(rt: Runtime, *, ticket_id: int, principal: Principal) -> RoutingExplanation:
    """Why a ticket is where it is: the last decision and its reason; for waiting work, why it waits now."""
    now = utcnow()
    async with rt.read() as conn:
        r = await ticket_row(conn, ticket_id)
        check_visible(principal, r)
        qs = await read_queues(rt, conn)
        policy = qs.policies.get(r.queue_id) if r.queue_id is not None else None
        serving, required = routing.requirements(policy, r.skills, r.overflow_stage)
        due = r.first_response_due_at if r.first_response_at is None else r.resolution_due_at
        item = routing.WorkItem(
            ticket_id=r.id,
            queue_id=r.queue_id,
            channel=r.channel,
            excluded=_recently_passed(r.routing, now, rt.settings.offer_timeout_seconds),
            queue_ids=serving,
            required_skills=required,
            priority=r.priority,
            queue_priority=policy.priority if policy else 0,
            queued_at=r.queued_at or now,
            due_at=due,
            queue_open=policy is None or sla.is_open(qs.hours[policy.queue_id], now),
        )
        if r.status not in OPEN_STATUS_VALUES:
            state, agent_id, why = "closed", r.assignee_id, f"the ticket is {r.status}"
        elif r.assignee_id is not None:
            state, agent_id, why = "assigned", r.assignee_id, "assigned"
        elif r.offered_agent_id is not None:
            state, agent_id, why = "offered", r.offered_agent_id, "offered, waiting for the agent to accept"
        else:
            slots = (
                await agent_slots(conn, serving, voice_blocks_chats=rt.settings.voice_blocks_chats)
                if item.queue_open
                else {}
            )
            decision = routing.decide(item, slots.values())
            state, agent_id = "waiting", None
            why = (
                decision.reason
                if decision.agent_id is None
                else f"agent {decision.agent_id} can take it ({decision.reason}); the next routing pass offers it"
            )
    return RoutingExplanation(
        ticket_id=r.id,
        state=state,
        queue_id=r.queue_id,
        agent_id=agent_id,
        effective_priority=routing.effective_priority(item, now) if state == "waiting" else None,
        overflow_stage=r.overflow_stage,
        last_decision=r.routing,
        now=why,
    )
