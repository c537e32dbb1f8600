"""Ticketing actions. Every state change goes through one function here, inside ``Runtime.write()``,
which commits and then publishes the events the change produced. Views never write rows themselves.
"""

from __future__ import annotations

import json
import logging
import operator
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, reduce
from types import MappingProxyType, SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.auth import hash_password
from hub.db import (
    UTCDateTime,
    execute,
    fetch_all,
    fetch_records,
    insert_returning_ids,
    insert_returning_ids_by,
    one_of_param,
    taken_as,
    update_rows,
    utcnow,
)
from hub.events import EventType, NewEvent
from hub.group_commit import GroupCommit
from hub.messages import OutboundMessage
from hub.runtime import Runtime, Tx
from ticketing import queue_rules, routing, sla
from ticketing.exceptions import (
    AgentNotFound,
    ContactNotFound,
    InvalidRoutingConfig,
    NoRecipient,
    NotYourTicket,
    OfferNotPending,
    QueueNameTaken,
    QueueNotFound,
    TicketNotFound,
    UsernameTaken,
)
from ticketing.models import (
    OPEN_STATUSES,
    Agent,
    AgentCreate,
    AgentQueue,
    AgentRead,
    AgentStatus,
    AgentUpdate,
    Contact,
    ContactHistory,
    ContactIdentity,
    ContactRead,
    DeliveryStatus,
    Direction,
    IdentityRead,
    Message,
    MessageRead,
    Outbox,
    Queue,
    QueueCreate,
    QueueRead,
    QueueUpdate,
    RoutingExplanation,
    RoutingRules,
    Ticket,
    TicketDetail,
    TicketPage,
    TicketRead,
    TicketStatus,
    TicketUpdate,
)
from ticketing.permissions import Principal
from ticketing.principals import agent_changed

T = Ticket.__table__  # type: ignore[attr-defined]
M = Message.__table__  # type: ignore[attr-defined]
C = Contact.__table__  # type: ignore[attr-defined]
I = ContactIdentity.__table__  # type: ignore[attr-defined]  # noqa: E741
Q = Queue.__table__  # type: ignore[attr-defined]
A = Agent.__table__  # type: ignore[attr-defined]
AQ = AgentQueue.__table__  # type: ignore[attr-defined]
O = Outbox.__table__  # type: ignore[attr-defined]  # noqa: E741
RR = RoutingRules.__table__  # type: ignore[attr-defined]

log = logging.getLogger(__name__)
_OPEN = [s.value for s in OPEN_STATUSES]
EVENT_TEXT_LIMIT = 10_000


# --- event payloads ---------------------------------------------------------------------------------------


def ticket_summary(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    # The rating is read with get(): a ticket just created is summarized from the values inserted, which leave
    # the rating out (it has none). Rows read back (routing's claim included) carry it.
    return {
        "id": m["id"],
        "number": f"#{m['id']}",
        "subject": m["subject"],
        "status": m["status"],
        "priority": m["priority"],
        "channel": m["channel"],
        "contact_id": m["contact_id"],
        "queue_id": m["queue_id"],
        "assignee_id": m["assignee_id"],
        "offered_agent_id": m["offered_agent_id"],
        "offer_expires_at": _iso(m["offer_expires_at"]),
        "tags": list(m["tags"] or []),
        "created_at": _iso(m["created_at"]),
        "updated_at": _iso(m["updated_at"]),
        "last_message_at": _iso(m["last_message_at"]),
        "rating": m.get("rating"),
        "rating_comment": m.get("rating_comment"),
    }


def message_summary(m: dict[str, Any]) -> dict[str, Any]:
    text = m.get("text") or ""
    return {
        "id": m["id"],
        "ticket_id": m["ticket_id"],
        "direction": m["direction"],
        "channel": m["channel"],
        "author_agent_id": m.get("author_agent_id"),
        "sender": m.get("sender"),
        "subject": m.get("subject"),
        "text": text[:EVENT_TEXT_LIMIT],
        "truncated": len(text) > EVENT_TEXT_LIMIT,
        "attachments": m.get("attachments") or [],
        "delivery_status": m.get("delivery_status"),
        "created_at": _iso(m.get("created_at")),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_event(type_: str, row: Any, **extra: Any) -> NewEvent:
    m = row._mapping if hasattr(row, "_mapping") else row
    return NewEvent(
        type=type_,
        payload={"ticket": ticket_summary(m), **extra},
        ticket_id=m["id"],
        queue_id=m["queue_id"],
        agent_id=m["assignee_id"] or m["offered_agent_id"],
    )


# --- reading ----------------------------------------------------------------------------------------------


async def _ticket_row(conn: AsyncConnection, ticket_id: int, *, lock: bool = False) -> Any:
    stmt = select(T).where(T.c.id == ticket_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    return row


def _check_visible(principal: Principal, row: Any) -> None:
    if not principal.can_see_ticket(
        queue_id=row.queue_id, assignee_id=row.assignee_id, offered_agent_id=row.offered_agent_id
    ):
        raise NotYourTicket(f"ticket {row.id} is not in your queues")


async def get_ticket(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketDetail:
    """A ticket with its contact and every message, oldest first."""
    async with rt.read() as conn:
        row = await _ticket_row(conn, ticket_id)
        _check_visible(principal, row)
        messages = (await conn.execute(select(M).where(M.c.ticket_id == ticket_id).order_by(M.c.id))).all()
        contact = await _contact_read(conn, row.contact_id)
    return TicketDetail.model_validate(
        {**row._mapping, "contact": contact, "messages": [MessageRead.model_validate(m._mapping) for m in messages]}
    )


async def list_tickets(
    rt: Runtime,
    *,
    principal: Principal,
    status: Sequence[str] = (),
    queue_id: int | None = None,
    assignee_id: int | None = None,
    channel: str | None = None,
    contact_id: int | None = None,
    mine: bool = False,
    offset: int = 0,
    limit: int = 50,
) -> TicketPage:
    """Tickets the principal may see, newest activity first."""
    conds = []
    if not principal.sees_all:
        conds.append(
            or_(
                T.c.queue_id.in_(principal.queue_ids or {-1}),
                T.c.assignee_id == principal.agent_id,
                T.c.offered_agent_id == principal.agent_id,
            )
        )
    if status:
        conds.append(T.c.status.in_(list(status)))
    if queue_id is not None:
        conds.append(T.c.queue_id == queue_id)
    if assignee_id is not None:
        conds.append(T.c.assignee_id == assignee_id)
    if mine:
        conds.append(T.c.assignee_id == principal.agent_id)
    if channel:
        conds.append(T.c.channel == channel)
    if contact_id is not None:
        conds.append(T.c.contact_id == contact_id)
    async with rt.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(T).where(*conds))).scalar_one()
        rows = (
            await conn.execute(
                select(T)
                .where(*conds)
                .order_by(func.coalesce(T.c.last_message_at, T.c.created_at).desc(), T.c.id.desc())
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return TicketPage(
        items=[TicketRead.model_validate(r._mapping) for r in rows], total=total, offset=offset, limit=limit
    )


async def _contact_read(conn: AsyncConnection, contact_id: int) -> ContactRead:
    row = (await conn.execute(select(C).where(C.c.id == contact_id))).first()
    if row is None:
        raise ContactNotFound(f"contact {contact_id} does not exist")
    idents = (
        await conn.execute(select(I.c.kind, I.c.value).where(I.c.contact_id == contact_id).order_by(I.c.id))
    ).all()
    return ContactRead.model_validate(
        {**row._mapping, "identities": [IdentityRead(kind=k, value=v) for k, v in idents]}
    )


async def get_contact_history(rt: Runtime, *, contact_id: int, principal: Principal) -> ContactHistory:
    """A contact with every ticket and message across all channels (the tickets the principal may see)."""
    async with rt.read() as conn:
        contact = await _contact_read(conn, contact_id)
        rows = (await conn.execute(select(T).where(T.c.contact_id == contact_id).order_by(T.c.id))).all()
        visible = [
            r
            for r in rows
            if principal.can_see_ticket(
                queue_id=r.queue_id, assignee_id=r.assignee_id, offered_agent_id=r.offered_agent_id
            )
        ]
        if rows and not visible:
            raise NotYourTicket(f"contact {contact_id} has no tickets in your queues")
        ids = [r.id for r in visible]
        msgs = (await conn.execute(select(M).where(M.c.ticket_id.in_(ids)).order_by(M.c.id))).all() if ids else []
    by_ticket: dict[int, list[MessageRead]] = {}
    for m in msgs:
        by_ticket.setdefault(m.ticket_id, []).append(MessageRead.model_validate(m._mapping))
    tickets = [
        TicketDetail.model_validate({**r._mapping, "contact": contact, "messages": by_ticket.get(r.id, [])})
        for r in visible
    ]
    return ContactHistory.model_validate({**contact.model_dump(), "tickets": tickets})


# --- routing I/O --------------------------------------------------------------------------------------------
#
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
# Waiting: open and held by nobody. The two IS NULL terms are the condition of the partial indexes
# ix_tickets_waiting_* (see the model), which is what lets the database use them.
_WAITING = and_(T.c.assignee_id.is_(None), T.c.offered_agent_id.is_(None), T.c.status.in_(_OPEN))
# The same test for statements that find their rows by id: written so that no partial index matches it, as
# a planner with stale statistics may otherwise scan a partial index instead of using the primary key.
_UNHELD = func.coalesce(T.c.assignee_id, T.c.offered_agent_id).is_(None)
# How many waiting items a sweep reads per queue, channel and order: a few per free slot (some candidates
# lack a skill), plus a few.
_CANDIDATES_PER_FREE_SLOT = 3
_CANDIDATES_EXTRA = 5
_MAX_CANDIDATES = 500


_ROUTING_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
# The transactions that hold the routing lock: it is held until the transaction ends, so it is taken once
# (a transaction that declines an offer routes twice and takes it before both).
_holding_routing_lock: weakref.WeakSet[Any] = weakref.WeakSet()


async def _take_routing_lock(conn: AsyncConnection) -> None:
    # On SQLite there is nothing to take: every writing transaction begins IMMEDIATE (``Database.begin``), so
    # it holds the database's write lock from its first statement.
    if conn.dialect.name != "postgresql":
        return
    transaction = conn.sync_connection.get_transaction() if conn.sync_connection is not None else None
    if transaction is not None and transaction in _holding_routing_lock:
        return
    await execute(conn, _ROUTING_LOCK, {"k": ROUTING_LOCK_KEY})
    if transaction is not None:
        _holding_routing_lock.add(transaction)


@dataclass(slots=True)
class _Queues:
    policies: dict[int, routing.QueuePolicy]
    hours: dict[int, sla.BusinessHours | None]
    rows: dict[int, Any]
    names: dict[int, str]

    def feeding(self, queue_ids: Iterable[int]) -> set[int]:
        """These queues, plus every queue whose overflow widens into one of them."""
        wanted = set(queue_ids)
        out = set(wanted)
        for qid, p in self.policies.items():
            if any(step.widen_to & wanted for step in p.overflow):
                out.add(qid)
        return out

    def open_now(self, now: datetime) -> dict[int, bool]:
        """Whether each queue is inside its business hours at ``now``."""
        return {qid: sla.is_open(h, now) for qid, h in self.hours.items()}


def _json_text(column: Any) -> Any:
    """A JSON column read as its text: parsed (and cached) by the caller, not on every read."""
    return cast(column, Text).label(column.name)


_QUEUE_JSON = ("channels", "required_skills", "hours", "overflow")


def _token(column: Any) -> Any:
    """A column's value as self-delimiting text (its length, a colon, the text; '-' for NULL)."""
    value = cast(column, Text)
    return func.coalesce(cast(func.length(value), Text) + literal_column("':'") + value, literal_column("'-'"))


# A queue row's fingerprint: text that says exactly what the row holds. On PostgreSQL the row's own text form
# (record output quotes any field holding a delimiter); on SQLite each column as a token. The queues'
# fingerprint is the rows' fingerprints in id order, joined by "|": equal fingerprints mean equal queues.
_ROW_FINGERPRINT = {
    True: literal_column("CAST(queues AS TEXT)").label("fingerprint"),
    False: reduce(operator.add, (_token(c) for c in Q.c)).label("fingerprint"),
}
_QUEUE_COLUMNS = tuple(_json_text(c) if c.name in _QUEUE_JSON else c for c in Q.c)
_READ_QUEUES = {pg: select(*_QUEUE_COLUMNS, fp).order_by(Q.c.id) for pg, fp in _ROW_FINGERPRINT.items()}
_ordered_row_fingerprints = select(_ROW_FINGERPRINT[False]).order_by(Q.c.id).subquery()
_QUEUES_FINGERPRINT = {
    True: func.coalesce(
        select(func.aggregate_strings(_ROW_FINGERPRINT[True], "|").aggregate_order_by(Q.c.id)).scalar_subquery(),
        literal_column("''"),
    ),
    # SQLite 3.40 has no ORDER BY in aggregates: the rows come in order from a subquery (were they not, the
    # fingerprint would not match and the queues would be read: slower, never stale).
    False: func.coalesce(
        select(func.aggregate_strings(_ordered_row_fingerprints.c.fingerprint, "|")).scalar_subquery(),
        literal_column("''"),
    ),
}


async def _queues(rt: Runtime, conn: AsyncConnection, fingerprint: str | None = None) -> _Queues:
    """The queues as routing sees them. Parsed (business hours, overflow steps) only when they changed: the
    runtime keeps the last parse with the queues' fingerprint. Given ``fingerprint`` (read in this
    transaction with other rows, at no extra cost), a matching cache is used without reading the queues;
    otherwise they are read, and their fingerprint with them, in one statement."""
    cached: tuple[str, _Queues] | None = rt.caches.get("routing.queues")
    if fingerprint is not None and cached is not None and cached[0] == fingerprint:
        return cached[1]
    rows = (await conn.execute(_READ_QUEUES[conn.dialect.name == "postgresql"])).all()
    read = "|".join(r.fingerprint for r in rows)
    if cached is not None and cached[0] == read:
        return cached[1]
    parsed = _parse_queues(rows)
    rt.caches["routing.queues"] = (read, parsed)
    return parsed


def _parse_queues(raw: Sequence[Any]) -> _Queues:
    rows: dict[int, Any] = {}
    for r in raw:
        m = {c.name: r._mapping[c.name] for c in Q.c}
        for k in _QUEUE_JSON:
            m[k] = json.loads(m[k]) if m[k] is not None else None
        rows[m["id"]] = SimpleNamespace(**m)
    by_name = {r.name: r.id for r in rows.values()}
    policies: dict[int, routing.QueuePolicy] = {}
    hours: dict[int, sla.BusinessHours | None] = {}
    for r in rows.values():
        steps = tuple(
            routing.OverflowStep(
                after_seconds=int(s["after_seconds"]),
                widen_to=frozenset(by_name[n] for n in s.get("widen_to", []) if n in by_name),
                drop_skills=frozenset(s.get("drop_skills", [])),
            )
            for s in sorted(r.overflow or [], key=lambda s: int(s["after_seconds"]))
        )
        policies[r.id] = routing.QueuePolicy(
            queue_id=r.id,
            name=r.name,
            required_skills=dict(r.required_skills or {}),
            priority=r.priority,
            overflow=steps,
            max_wait_seconds=r.max_wait_seconds,
            overflow_queue_id=by_name.get(r.overflow_queue) if r.overflow_queue else None,
        )
        hours[r.id] = sla.BusinessHours.parse(r.hours)
    return _Queues(policies, hours, rows, {r.id: r.name for r in rows.values()})


_MEMBER_COLUMNS = (
    A.c.id,
    A.c.status,
    _json_text(A.c.skills),
    _json_text(A.c.capacity),
    A.c.last_assigned_at,
    AQ.c.queue_id,
)
_MEMBERS = select(*_MEMBER_COLUMNS).join(AQ, AQ.c.agent_id == A.c.id).where(A.c.active.is_(True))
_MEMBERS_OF_QUEUES = _MEMBERS.where(AQ.c.queue_id.in_(bindparam("ids", expanding=True)))
_HOLDER = func.coalesce(T.c.assignee_id, T.c.offered_agent_id)
_LOADS = select(_HOLDER, T.c.channel, func.count()).group_by(_HOLDER, T.c.channel)
# A few agents: through the assignee and offer indexes. Many: one pass over the open work is cheaper than a
# long IN list, and the loads of agents not asked for are dropped.
_LOADS_OF_AGENTS = _LOADS.where(
    T.c.status.in_(_OPEN),
    or_(
        T.c.assignee_id.in_(bindparam("ids", expanding=True)),
        T.c.offered_agent_id.in_(bindparam("ids_offered", expanding=True)),
    ),
)
_LOADS_OF_ALL = _LOADS.where(T.c.status.in_(_OPEN), _HOLDER.is_not(None))
_FEW_AGENTS = 50


def _slots_of_agents_statement(postgres: bool) -> Any:
    """A sweep's first read, in one statement: these agents with their queues (kind 0: ``n`` is a queue id),
    their loads (kind 1: ``n`` items in hand or offered on ``channel``) and the queues' fingerprint (kind 2,
    in ``skills``)."""
    # The agents are asked for twice, by agent_queues.agent_id and by agents.id, so that the planner finds both
    # by key (with stale statistics it may otherwise scan every agent).
    if postgres:
        ids = bindparam("ids", type_=postgresql.ARRAY(BigInteger))
        member = and_(A.c.id == any_(ids), AQ.c.agent_id == any_(ids))
        held = or_(T.c.assignee_id == any_(ids), T.c.offered_agent_id == any_(ids))
    else:
        member = and_(
            A.c.id.in_(bindparam("ids", expanding=True)), AQ.c.agent_id.in_(bindparam("ids_aq", expanding=True))
        )
        held = or_(
            T.c.assignee_id.in_(bindparam("ids_assigned", expanding=True)),
            T.c.offered_agent_id.in_(bindparam("ids_offered", expanding=True)),
        )
    members = (
        select(
            literal_column("0").label("kind"),
            A.c.id,
            A.c.status,
            _json_text(A.c.skills),
            _json_text(A.c.capacity),
            A.c.last_assigned_at,
            AQ.c.queue_id.label("n"),
            null().label("channel"),
        )
        .join(AQ, AQ.c.agent_id == A.c.id)
        .where(A.c.active.is_(True), member)
    )
    loads = (
        select(literal_column("1"), _HOLDER, null(), null(), null(), null(), func.count(), T.c.channel)
        .where(T.c.status.in_(_OPEN), held)
        .group_by(_HOLDER, T.c.channel)
    )
    return union_all(
        members,
        loads,
        select(literal_column("2"), null(), null(), _QUEUES_FINGERPRINT[postgres], null(), null(), null(), null()),
    )


_SLOTS_OF_AGENTS = {True: _slots_of_agents_statement(True), False: _slots_of_agents_statement(False)}


@lru_cache(maxsize=4096)
def _json_dict(value: str | None) -> Mapping[str, int]:
    """A skills or capacity value, parsed once per distinct text (read-only: callers copy what they change)."""
    return MappingProxyType(json.loads(value) or {}) if value else MappingProxyType({})


def _add_member(
    slots: dict[int, routing.AgentSlot],
    blocks: Mapping[str, frozenset[str]],
    agent_id: int,
    status: str,
    skills: str | None,
    capacity: str | None,
    last_assigned_at: datetime | None,
    queue_id: int,
) -> None:
    slot = slots.get(agent_id)
    if slot is None:
        slot = slots[agent_id] = routing.AgentSlot(
            agent_id=agent_id,
            queue_ids=frozenset(),
            capacity=dict(_json_dict(capacity)),
            last_assigned_at=last_assigned_at,
            available=status == AgentStatus.AVAILABLE,
            skills=_json_dict(skills),
            status=status,
            blocks=blocks,
        )
    slot.queue_ids = slot.queue_ids | {queue_id}


async def _agent_slots(
    conn: AsyncConnection, queue_ids: Iterable[int], *, voice_blocks_chats: bool = True
) -> dict[int, routing.AgentSlot]:
    """The active agents of these queues, whatever their status (explanations count the away ones too), with
    the load per channel of the available ones: open tickets in hand plus pending offers."""
    ids = sorted(set(queue_ids))
    if not ids:
        return {}
    blocks = routing.BLOCKS if voice_blocks_chats else {}
    slots: dict[int, routing.AgentSlot] = {}
    for row in await fetch_all(conn, _MEMBERS_OF_QUEUES, {"ids": ids}):
        _add_member(slots, blocks, *row)
    available = [a for a, s in slots.items() if s.available]
    if available:
        if len(available) <= _FEW_AGENTS:
            loads = await fetch_all(conn, _LOADS_OF_AGENTS, {"ids": available, "ids_offered": available})
        else:
            loads = await fetch_all(conn, _LOADS_OF_ALL)
        for agent_id, channel, count in loads:
            if agent_id in slots:
                slots[agent_id].load[channel] = count
    return slots


async def _slots_of_agents(
    conn: AsyncConnection, agent_ids: Iterable[int], *, voice_blocks_chats: bool = True
) -> tuple[dict[int, routing.AgentSlot], str]:
    """These active agents with all their queues and their loads, and the queues' fingerprint (for
    ``_queues``): one statement."""
    ids = sorted(set(agent_ids))
    postgres = conn.dialect.name == "postgresql"
    params = {"ids": ids} if postgres else {"ids": ids, "ids_aq": ids, "ids_assigned": ids, "ids_offered": ids}
    blocks = routing.BLOCKS if voice_blocks_chats else {}
    slots: dict[int, routing.AgentSlot] = {}
    loads: list[tuple[int, str, int]] = []
    fingerprint = ""
    for kind, agent_id, status, skills, capacity, last_assigned_at, n, channel in await fetch_all(
        conn, _SLOTS_OF_AGENTS[postgres], params
    ):
        if kind == 0:
            _add_member(slots, blocks, agent_id, status, skills, capacity, last_assigned_at, n)
        elif kind == 1:
            loads.append((agent_id, channel, n))
        else:
            fingerprint = skills
    for agent_id, channel, count in loads:
        if agent_id in slots:
            slots[agent_id].load[channel] = count
    return slots, fingerprint


def _decision(kind: str, reason: str, now: datetime, *, agent_id: int | None = None, old: Any = None) -> dict[str, Any]:
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


_PAST = T.alias("past")
# The contact's previous agent: the assignee of their latest ticket that had one. Ordered by ``id + 0``, an
# expression no index provides, so that the planner reads the contact's few tickets through the contact
# index and sorts them, never walking the whole primary key backwards in search of the latest match (which a
# planner with stale statistics may expect to be quick).
_PREVIOUS_AGENT = (
    select(_PAST.c.assignee_id)
    .where(_PAST.c.contact_id == T.c.contact_id, _PAST.c.assignee_id.is_not(None))
    .order_by((_PAST.c.id + 0).desc())
    .limit(1)
    .scalar_subquery()
    .label("previous_agent_id")
)
# What the policy and the events of a decision need of a claimed ticket, with its contact's previous agent
# in the same statement (one round trip fewer per pass).
_CLAIM_COLUMNS = (
    *(
        T.c[name]
        for name in (
            "id", "subject", "status", "priority", "channel", "contact_id", "queue_id", "assignee_id",
            "offered_agent_id", "offer_expires_at", "tags", "created_at", "updated_at", "last_message_at",
            "first_response_at", "first_response_due_at", "resolution_due_at", "queued_at", "overflow_stage",
            "skills", "routing", "rating", "rating_comment",
        )
    ),
    _PREVIOUS_AGENT,
)  # fmt: skip
# The claim asks for the ids and for nobody holding them; whether they are still open is checked on the rows
# it returns (``_waiting_rows``). A status condition in SQL lets a planner with stale statistics (right
# after a burst of arrivals) read every open ticket through ix_tickets_queue_status and filter them by id,
# taking ~10 ms instead of ~0.5 ms for 50 ids; without it the primary key is the only index that applies.
_CLAIM_BY_ID = select(*_CLAIM_COLUMNS).where(T.c.id.in_(bindparam("ids", expanding=True)), _UNHELD).order_by(T.c.id)
# On PostgreSQL the ids go as one array parameter: one SQL text, prepared once per connection, instead of
# one per length of the list. FOR UPDATE OF tickets: the subquery's rows are read, not locked.
_CLAIM_BY_ID_PG = (
    select(*_CLAIM_COLUMNS)
    .where(T.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))), _UNHELD)
    .order_by(T.c.id)
    .with_for_update(skip_locked=True, of=T)
)
_OPEN_SQL = ", ".join(f"'{s}'" for s in _OPEN)
# The candidates of a sweep, per queue and channel: read in order from one of the partial indexes
# ix_tickets_waiting_* (the WHERE clause repeats the index's condition word for word, which is what lets the
# planners use it), at most a given number from each of three orders.
_CANDIDATE_PARTS = (
    "ORDER BY queued_at",
    "AND first_response_due_at IS NOT NULL ORDER BY first_response_due_at",
    "AND priority IN ('high', 'urgent') ORDER BY queued_at",
)
_WAITING_SQL = f"assignee_id IS NULL AND offered_agent_id IS NULL AND status IN ({_OPEN_SQL})"
# On PostgreSQL the (queue, channel, limit) triples go as three array parameters, each order read for every
# triple through a LATERAL join: one SQL text for any number of pairs, planned in a fraction of the time a
# union of one part per pair takes (the planner weighs every index of tickets for every part: 2-8 ms for six
# pairs, the largest cost of a pass). ARRAY(...) is evaluated once, before the outer scan; the outer query
# then finds the rows by primary key, the only index its conditions match (see _CLAIM_BY_ID).
_CANDIDATES_PG = " UNION ALL ".join(
    "SELECT w.id FROM unnest(CAST(:cq AS INTEGER[]), CAST(:cc AS VARCHAR[]), CAST(:cl AS INTEGER[])) AS p(q, c, l) "
    f"CROSS JOIN LATERAL (SELECT id FROM tickets WHERE queue_id = p.q AND channel = p.c AND {_WAITING_SQL} "
    f"{order} LIMIT p.l) AS w"
    for order in _CANDIDATE_PARTS
)
_CLAIM_CANDIDATES_PG = (
    select(*_CLAIM_COLUMNS)
    .where(text(f"tickets.id = ANY(ARRAY({_CANDIDATES_PG}))"), _UNHELD)
    .order_by(T.c.id)
    .with_for_update(skip_locked=True, of=T)
)
# On SQLite a union of one part per pair, as SQL text built once per number of pairs (SQLite plans it in
# microseconds); ``id IN (...)`` is evaluated once into a list, then each row is found by rowid.
_claim_candidates_sqlite: dict[int, Any] = {}


def _claim_candidates_statement(pairs: int) -> Any:
    stmt = _claim_candidates_sqlite.get(pairs)
    if stmt is None:
        union = " UNION ALL ".join(
            f"SELECT id FROM (SELECT id FROM tickets WHERE queue_id = :q{i} AND channel = :c{i} AND {_WAITING_SQL} "
            f"{order} LIMIT :l{i}) AS p{i}_{k}"
            for i in range(pairs)
            for k, order in enumerate(_CANDIDATE_PARTS)
        )
        stmt = _claim_candidates_sqlite[pairs] = (
            select(*_CLAIM_COLUMNS).where(text(f"tickets.id IN ({union})"), _UNHELD).order_by(T.c.id)
        )
    return stmt


async def _waiting_rows(
    conn: AsyncConnection,
    *,
    ticket_ids: Sequence[int] | None,
    limits: dict[int, dict[str, int]] | None,
) -> list[Any]:
    """Waiting tickets, claimed: these ``ticket_ids``, or, per queue and channel of ``limits``, at most that many
    of each of: the oldest, the nearest to their deadline, and the oldest of high or urgent priority (the
    ones effective priority can put first). Each is read in order from a partial index of waiting work
    (queue, channel, then the order); the candidates are found and claimed in one statement."""
    postgres = conn.dialect.name == "postgresql"
    if limits is None:
        ids = sorted(set(ticket_ids or ()))
        if not ids:
            return []
        rows = await fetch_records(conn, _CLAIM_BY_ID_PG if postgres else _CLAIM_BY_ID, {"ids": ids})
    else:
        triples = [(q, c, n) for q, per_channel in sorted(limits.items()) for c, n in sorted(per_channel.items())]
        if not triples:
            return []
        if postgres:
            qs, cs, ls = (list(column) for column in zip(*triples, strict=True))
            rows = await fetch_records(conn, _CLAIM_CANDIDATES_PG, {"cq": qs, "cc": cs, "cl": ls})
        else:
            params: dict[str, Any] = {}
            for i, (q, c, n) in enumerate(triples):
                params.update({f"q{i}": q, f"c{i}": c, f"l{i}": n})
            rows = await fetch_records(conn, _claim_candidates_statement(len(triples)), params)
    return [r for r in rows if r.status in _OPEN]


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
    await _take_routing_lock(conn)
    now = utcnow()
    settings = rt.settings
    slots: dict[int, routing.AgentSlot] | None = None
    limits: dict[int, dict[str, int]] | None = None
    blocks = settings.voice_blocks_chats
    if agent_ids is not None and ticket_ids is None:
        # The agents, their loads and the queues' fingerprint in one statement: the queues themselves are
        # read only when they changed.
        slots, fingerprint = await _slots_of_agents(conn, agent_ids, voice_blocks_chats=blocks)
        qs = await _queues(rt, conn, fingerprint)
    else:
        qs = await _queues(rt, conn)
    open_now = qs.open_now(now)
    if ticket_ids is None:
        # A sweep offers the agents in scope (those whose capacity just changed, or a queue's) the work of
        # their queues and of the queues that overflow into them, looking per queue and channel at a few
        # times as many candidates as there are free slots.
        if slots is not None:
            scope = {q for s in slots.values() for q in s.queue_ids}
        else:
            scope = set(qs.policies) if queue_ids is None else set(queue_ids)
            slots = await _agent_slots(conn, scope, voice_blocks_chats=blocks)
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
    rows = [r for r in await _waiting_rows(conn, ticket_ids=ticket_ids, limits=limits) if r.queue_id is not None]
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
            if r.first_response_due_at is None and qrow.sla_first_response_seconds:
                stamp["first_response_due_at"] = sla.due_at(hours, r.created_at, qrow.sla_first_response_seconds)
            if r.resolution_due_at is None and qrow.sla_resolution_seconds:
                stamp["resolution_due_at"] = sla.due_at(hours, r.created_at, qrow.sla_resolution_seconds)
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
        slots = await _agent_slots(conn, serving_queues, voice_blocks_chats=blocks)
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
                routing=_decision("offered", d.reason, now, agent_id=d.agent_id, old=r.routing),
            )
            event = EventType.TICKET_OFFERED
        elif r.id in stamps or r.id in returned:
            values["routing"] = _decision("queued", d.reason, now, old=r.routing)
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
    await update_rows(conn, T, writes, where=_UNHELD)
    return decisions


async def waiting_ticket_ids(conn: AsyncConnection, queue_ids: Iterable[int], limit: int = 200) -> list[int]:
    """Waiting tickets of these queues, oldest first."""
    queue_ids = list(queue_ids)
    if not queue_ids:
        return []
    rows = await conn.execute(select(T.c.id).where(T.c.queue_id.in_(queue_ids), _WAITING).order_by(T.c.id).limit(limit))
    return [r[0] for r in rows]


async def accept_offer(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketRead:
    """The offered agent takes the ticket. Atomic: a ticket is never assigned twice."""
    now = utcnow()
    async with rt.write() as tx:
        row = (
            await tx.conn.execute(
                update(T)
                .where(T.c.id == ticket_id, T.c.offered_agent_id == principal.agent_id, T.c.assignee_id.is_(None))
                .values(
                    assignee_id=principal.agent_id,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    status=TicketStatus.OPEN,
                    updated_at=now,
                )
                .returning(*T.c)
            )
        ).first()
        if row is None:
            await _ticket_row(tx.conn, ticket_id)  # 404 when it does not exist
            raise OfferNotPending(f"ticket {ticket_id} is not offered to you (it expired or was taken)")
        await tx.conn.execute(
            update(A).where(A.c.id == principal.agent_id).values(last_assigned_at=now, missed_offers=0)
        )
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
    return TicketRead.model_validate(row._mapping)


async def _return_offers(
    tx: Tx, offers: Sequence[tuple[int, int]], *, event_type: str, reason: str, now: datetime
) -> list[int]:
    """Take back pending offers, given as (ticket id, agent id); each agent is remembered as having passed on
    the ticket. Returns the tickets taken back (an offer accepted or returned meanwhile is left alone)."""
    back = []
    for ticket_id, agent_id in offers:
        row = (
            await tx.conn.execute(
                select(T.c.id, T.c.queue_id, T.c.routing).where(
                    T.c.id == ticket_id, T.c.offered_agent_id == agent_id, T.c.assignee_id.is_(None)
                )
            )
        ).first()
        if row is None:
            continue
        old = dict(row.routing or {})
        passed = {**(old.get("passed") or {}), str(agent_id): now.isoformat()}
        value = {**old, "passed": dict(sorted(passed.items(), key=lambda kv: kv[1])[-20:])}
        done = await tx.conn.execute(
            update(T)
            .where(T.c.id == ticket_id, T.c.offered_agent_id == agent_id, T.c.assignee_id.is_(None))
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
        back = await _return_offers(
            tx, [(ticket_id, principal.agent_id)], event_type=EventType.OFFER_DECLINED, reason="declined", now=now
        )
        if not back:
            await _ticket_row(tx.conn, ticket_id)
            raise OfferNotPending(f"ticket {ticket_id} is not offered to you")
        await _take_routing_lock(tx.conn)  # before the agent row: see the lock order above
        await tx.conn.execute(update(A).where(A.c.id == principal.agent_id).values(missed_offers=0))
        await route_tickets(rt, tx, back, returned=back)
        await route_tickets(rt, tx, agent_ids=[principal.agent_id])  # their freed slot, for other work


def _offers_to_return(now: datetime) -> Any:
    """Offers past their deadline, and offers to agents no longer available that a status change could not
    take back at once."""
    away = select(A.c.id).where(A.c.status != AgentStatus.AVAILABLE)
    return and_(T.c.offered_agent_id.is_not(None), or_(T.c.offer_expires_at < now, T.c.offered_agent_id.in_(away)))


def _wrap_up_over(now: datetime) -> Any:
    return and_(A.c.status == AgentStatus.WRAP_UP, A.c.wrap_up_until.is_not(None), A.c.wrap_up_until <= now)


async def expire_offers(rt: Runtime) -> int:
    """Move offers past their deadline on to the next agent; an agent who lets ``max_missed_offers`` expire in
    a row is set away. Returns the number expired."""
    now = utcnow()
    settings = rt.settings
    async with rt.write() as tx:
        await _take_routing_lock(tx.conn)
        stmt = select(T.c.id, T.c.offered_agent_id, T.c.offer_expires_at).where(_offers_to_return(now))
        if tx.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=T)
        rows = (await tx.conn.execute(stmt.order_by(T.c.id))).all()
        if not rows:
            return 0
        late = [(r.id, r.offered_agent_id) for r in rows if r.offer_expires_at is not None and r.offer_expires_at < now]
        back = await _return_offers(
            tx,
            late,
            event_type=EventType.OFFER_EXPIRED,
            reason=f"not accepted within {settings.offer_timeout_seconds} s",
            now=now,
        )
        # Offers a status change could not take back at once (their ticket was busy): back now.
        stranded = [(r.id, r.offered_agent_id) for r in rows if r.id not in set(back)]
        back += await _return_offers(
            tx, stranded, event_type=EventType.OFFER_EXPIRED, reason="agent is not available", now=now
        )
        missed: dict[int, int] = {}
        for ticket_id, agent_id in late:
            if ticket_id in back:
                missed[agent_id] = missed.get(agent_id, 0) + 1
        for agent_id, n in missed.items():
            row = (
                await tx.conn.execute(
                    update(A)
                    .where(A.c.id == agent_id)
                    .values(missed_offers=A.c.missed_offers + n)
                    .returning(A.c.missed_offers, A.c.status)
                )
            ).one()
            if settings.max_missed_offers and row.missed_offers >= settings.max_missed_offers:
                if row.status == AgentStatus.AVAILABLE:
                    await _change_status(
                        rt, tx, agent_id, AgentStatus.AWAY, reason=f"let {row.missed_offers} offers expire in a row"
                    )
        await route_tickets(rt, tx, back, returned=back)
    return len(back)


async def _change_status(
    rt: Runtime, tx: Tx, agent_id: int, status: AgentStatus, *, reason: str | None = None
) -> AgentRead:
    """Set an agent's status inside ``tx``: available pulls waiting work; any other status returns the
    agent's pending offers to their queues at once (wrap-up ends by itself after ``wrap_up_seconds``).
    An offer whose ticket another transaction holds is returned by the next ``expire_offers``."""
    await _take_routing_lock(tx.conn)
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "status_changed_at": now, "wrap_up_until": None}
    if status is AgentStatus.WRAP_UP and rt.settings.wrap_up_seconds > 0:
        values["wrap_up_until"] = now + timedelta(seconds=rt.settings.wrap_up_seconds)
    if status is AgentStatus.AVAILABLE:
        values["missed_offers"] = 0
    row = (await tx.conn.execute(update(A).where(A.c.id == agent_id).values(**values).returning(*A.c))).first()
    if row is None:
        raise AgentNotFound(f"agent {agent_id} does not exist")
    agent = await _agent_read(tx.conn, row)
    payload: dict[str, Any] = {"agent_id": agent_id, "status": status.value}
    if reason:
        payload["reason"] = reason
    if values["wrap_up_until"]:
        payload["wrap_up_until"] = values["wrap_up_until"].isoformat()
    tx.emit(NewEvent(type=EventType.AGENT_STATUS, payload=payload, agent_id=agent_id))
    if status is AgentStatus.AVAILABLE:
        await route_tickets(rt, tx, agent_ids=[agent_id])
    else:
        stmt = select(T.c.id).where(T.c.offered_agent_id == agent_id).order_by(T.c.id)
        if tx.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        offered = [(r.id, agent_id) for r in await tx.conn.execute(stmt)]
        back = await _return_offers(
            tx, offered, event_type=EventType.OFFER_EXPIRED, reason=f"agent is {status.value}", now=now
        )
        await route_tickets(rt, tx, back, returned=back)
    return agent


async def end_wrap_ups(rt: Runtime) -> int:
    """Agents whose wrap-up time is over become available (and are offered waiting work)."""
    now = utcnow()
    async with rt.write() as tx:
        await _take_routing_lock(tx.conn)
        due = [r.id for r in await tx.conn.execute(select(A.c.id).where(_wrap_up_over(now)))]
        for agent_id in due:
            await _change_status(rt, tx, agent_id, AgentStatus.AVAILABLE, reason="wrap-up over")
    return len(due)


async def _work_done(rt: Runtime, tx: Tx, *, agent_id: int, channel: str) -> None:
    """An agent's ticket was solved or closed: after a call or chat the agent wraps up; otherwise the freed
    capacity is offered waiting work."""
    # Under the routing lock, taken before the agent row is read (the lock order above): every status change
    # holds it, so the status read is the one in force, not one that a concurrent change (going offline, say)
    # is about to replace and that wrap-up would then overwrite. The ticket row is already locked.
    await _take_routing_lock(tx.conn)
    status = (await tx.conn.execute(select(A.c.status).where(A.c.id == agent_id))).scalar()
    if status != AgentStatus.AVAILABLE:
        return
    if channel in routing.LIVE_CHANNELS and rt.settings.wrap_up_seconds > 0:
        await _change_status(rt, tx, agent_id, AgentStatus.WRAP_UP, reason=f"after a {channel} conversation")
    else:
        await route_tickets(rt, tx, agent_ids=[agent_id], channels=routing.freed_by(channel))


async def apply_overflow(rt: Runtime) -> int:
    """Waiting work that has waited long enough takes its queue's next overflow steps (more queues' agents,
    fewer skills asked), or past the queue's maximum wait moves to its overflow queue; each is announced as
    ``ticket.overflowed`` with the reason, then routed. Returns the number of tickets changed."""
    now = utcnow()
    # Most ticks find nothing to move: a plain read says so without taking the writer's turn.
    async with rt.read() as conn:
        due = _overflow_due(await _queues(rt, conn), now)
        if due is None or (await conn.execute(select(T.c.id).where(due).limit(1))).first() is None:
            return 0
    async with rt.write() as tx:
        conn = tx.conn
        await _take_routing_lock(conn)
        qs = await _queues(rt, conn)
        due = _overflow_due(qs, now)
        if due is None:
            return 0
        stmt = select(T).where(due).order_by(T.c.id)
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
            values["routing"] = _decision("overflowed", reason, now, old=r.routing)
            values["updated_at"] = now
            done = await conn.execute(
                update(T)
                .where(
                    T.c.id == r.id,
                    T.c.queue_id == r.queue_id,
                    T.c.overflow_stage == r.overflow_stage,
                    _UNHELD,
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


def _overflow_due(qs: _Queues, now: datetime) -> Any:
    """The condition of waiting work that has waited long enough for a next overflow step or for its queue's
    overflow queue; None when no queue overflows."""
    conds = []
    for qid, p in qs.policies.items():
        parts = []
        if p.overflow:
            first = now - timedelta(seconds=p.overflow[0].after_seconds)
            parts.append(and_(T.c.overflow_stage < len(p.overflow), T.c.queued_at <= first))
        if p.max_wait_seconds is not None and p.overflow_queue_id is not None and p.overflow_queue_id != qid:
            parts.append(T.c.queued_at <= now - timedelta(seconds=p.max_wait_seconds))
        if parts:
            conds.append(and_(T.c.queue_id == qid, or_(*parts)))
    return and_(_WAITING, T.c.queued_at.is_not(None), or_(*conds)) if conds else None


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
                    exists().where(_WAITING, T.c.queue_id.is_not(None)),
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


async def requeue_agent_work(rt: Runtime, *, agent_id: int, principal: Principal) -> list[int]:
    """Supervisors: put an agent's open conversations back in their queues (an agent gone for the day)."""
    principal.require_supervisor()
    now = utcnow()
    async with rt.write() as tx:
        if not (await tx.conn.execute(select(A.c.id).where(A.c.id == agent_id))).first():
            raise AgentNotFound(f"agent {agent_id} does not exist")
        reason = f"re-queued by {principal.username} from agent {agent_id}"
        rows = (
            await tx.conn.execute(
                update(T)
                .where(T.c.assignee_id == agent_id, T.c.status.in_(_OPEN))
                .values(
                    assignee_id=None,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    routing=_decision("requeued", reason, now),
                    updated_at=now,
                )
                .returning(T.c.id, T.c.queue_id)
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
        await route_tickets(rt, tx, ids, exclude={t: {agent_id} for t in ids}, returned=ids)
    return ids


async def explain_routing(rt: Runtime, *, ticket_id: int, principal: Principal) -> RoutingExplanation:
    """Why a ticket is where it is: the last decision and its reason; for waiting work, why it waits now."""
    now = utcnow()
    async with rt.read() as conn:
        r = await _ticket_row(conn, ticket_id)
        _check_visible(principal, r)
        qs = await _queues(rt, conn)
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
        if r.status not in _OPEN:
            state, agent_id, why = "closed", r.assignee_id, f"the ticket is {r.status}"
        elif r.assignee_id is not None:
            state, agent_id, why = "assigned", r.assignee_id, "assigned"
        elif r.offered_agent_id is not None:
            state, agent_id, why = "offered", r.offered_agent_id, "offered, waiting for the agent to accept"
        else:
            slots = (
                await _agent_slots(conn, serving, voice_blocks_chats=rt.settings.voice_blocks_chats)
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


# --- queue-selection rules ---------------------------------------------------------------------------------


async def get_routing_rules(conn: AsyncConnection) -> queue_rules.RuleSet:
    """The rules in force (none configured: an empty set)."""
    row = (await conn.execute(select(RR.c.rules).where(RR.c.id == 1))).first()
    return queue_rules.parse_rules(row.rules if row else {}, source="stored rules")


async def set_routing_rules(
    rt: Runtime, *, rules: queue_rules.RuleSet, source: str = "api", strict: bool = True
) -> list[str]:
    """Store the queue-selection rules every process uses. ``strict``: a rule naming a queue that does not
    exist is refused; otherwise such names are returned (the rule is skipped until the queue exists)."""
    async with rt.write() as tx:
        known = {n for (n,) in await tx.conn.execute(select(Q.c.name))}
        unknown = sorted(rules.queue_names() - known)
        if unknown and strict:
            raise InvalidRoutingConfig(f"rules name queues that do not exist: {', '.join(unknown)}")
        value = rules.model_dump(mode="json", exclude_none=True)
        now = utcnow()
        # One row, id 1; workers starting together with a rules file may all write it at once.
        await tx.conn.execute(rt.db.upsert(RR, {"id": 1, "rules": value, "source": source, "updated_at": now}, ["id"]))
        tx.emit(NewEvent(type="routing.rules_updated", payload={"source": source, "rules": len(rules.rules)}))
    return unknown


async def load_rules_file(rt: Runtime, *, path: Any) -> None:
    """At start: validate the YAML rules file and make it the rules in force (queues it names that do not
    exist yet are logged, and their rules skipped until they do)."""
    rules = queue_rules.load_rules_file(path)
    unknown = await set_routing_rules(rt, rules=rules, source=str(path), strict=False)
    if unknown:
        log.warning("routing rules in %s name queues that do not exist: %s", path, ", ".join(unknown))


# --- agents -------------------------------------------------------------------------------------------------


async def _agent_read(conn: AsyncConnection, row: Any) -> AgentRead:
    qids = [q for (q,) in (await conn.execute(select(AQ.c.queue_id).where(AQ.c.agent_id == row.id)))]
    return AgentRead.model_validate({**row._mapping, "queue_ids": sorted(qids)})


async def get_agent(rt: Runtime, *, agent_id: int) -> AgentRead:
    """One agent with its queues."""
    async with rt.read() as conn:
        row = (await conn.execute(select(A).where(A.c.id == agent_id))).first()
        if row is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        return await _agent_read(conn, row)


async def load_principal(rt: Runtime, *, agent_id: int) -> tuple[Principal, str] | None:
    """The active agent behind a token, with its password hash (to check the token's fingerprint)."""
    async with rt.read() as conn:
        row = (await conn.execute(select(A).where(A.c.id == agent_id, A.c.active.is_(True)))).first()
        if row is None:
            return None
        qids = frozenset(q for (q,) in await conn.execute(select(AQ.c.queue_id).where(AQ.c.agent_id == agent_id)))
    principal = Principal(
        agent_id=row.id,
        username=row.username,
        display_name=row.display_name or row.username,
        role=row.role,
        queue_ids=qids,
    )
    return principal, row.password_hash


async def agent_for_login(rt: Runtime, *, username: str) -> Any:
    async with rt.read() as conn:
        return (await conn.execute(select(A).where(A.c.username == username, A.c.active.is_(True)))).first()


async def _queue_ids_by_name(conn: AsyncConnection, names: Sequence[str]) -> list[int]:
    if not names:
        return []
    found = await conn.execute(select(Q.c.name, Q.c.id).where(Q.c.name.in_(list(names))))
    rows: dict[str, int] = {name: id_ for name, id_ in found}
    missing = [n for n in names if n not in rows]
    if missing:
        raise QueueNotFound(f"no queue named {', '.join(missing)}")
    return [rows[n] for n in names]


async def create_agent(rt: Runtime, *, data: AgentCreate) -> AgentRead:
    """A new agent, supervisor or admin, member of the named queues."""
    pw_hash = hash_password(data.password)
    async with rt.write() as tx:
        taken = UsernameTaken(f"username {data.username!r} is taken")
        exists = (await tx.conn.execute(select(A.c.id).where(A.c.username == data.username))).first()
        if exists:
            raise taken
        qids = await _queue_ids_by_name(tx.conn, data.queues)
        with taken_as(taken):
            inserted = await tx.conn.execute(
                A.insert()
                .values(
                    username=data.username,
                    display_name=data.display_name or data.username,
                    password_hash=pw_hash,
                    role=data.role.value,
                    status=AgentStatus.OFFLINE,
                    status_changed_at=utcnow(),
                    skills=data.skills,
                    capacity=data.capacity,
                    active=True,
                    created_at=utcnow(),
                )
                .returning(*A.c)
            )
        row = inserted.one()
        if qids:
            await tx.conn.execute(AQ.insert(), [{"agent_id": row.id, "queue_id": q} for q in qids])
        result = await _agent_read(tx.conn, row)
        tx.emit(NewEvent(type="agent.created", payload={"agent": _public_agent(result)}, agent_id=row.id))
    return result


def _public_agent(agent: AgentRead) -> dict[str, Any]:
    return agent.model_dump(mode="json")


async def update_agent(rt: Runtime, *, agent_id: int, data: AgentUpdate) -> AgentRead:
    values: dict[str, Any] = data.model_dump(exclude_unset=True, exclude={"queues", "password"})
    if "role" in values and values["role"] is not None:
        values["role"] = values["role"].value
    if data.password:
        values["password_hash"] = hash_password(data.password)
    async with rt.write() as tx:
        if values:
            done = await tx.conn.execute(update(A).where(A.c.id == agent_id).values(**values))
            if not done.rowcount:
                raise AgentNotFound(f"agent {agent_id} does not exist")
        # Locked (PostgreSQL): two edits of one agent's queues at once would each delete the memberships they
        # saw and insert their own, and the second fail on the key or leave both sets.
        row = (await tx.conn.execute(select(A).where(A.c.id == agent_id).with_for_update())).first()
        if row is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        if data.queues is not None:
            qids = await _queue_ids_by_name(tx.conn, data.queues)
            await tx.conn.execute(AQ.delete().where(AQ.c.agent_id == agent_id))
            if qids:
                await tx.conn.execute(AQ.insert(), [{"agent_id": agent_id, "queue_id": q} for q in qids])
        result = await _agent_read(tx.conn, row)
        tx.emit(NewEvent(type="agent.updated", payload={"agent": _public_agent(result)}, agent_id=agent_id))
        # Before the caller hears of the change: no request of this process authenticates as the old agent.
        tx.after_commit.append(lambda: agent_changed(rt, agent_id))
    return result


async def list_agents(rt: Runtime) -> list[AgentRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(A).order_by(A.c.id))).all()
        members = (await conn.execute(select(AQ.c.agent_id, AQ.c.queue_id))).all()
    by_agent: dict[int, list[int]] = {}
    for a, q in members:
        by_agent.setdefault(a, []).append(q)
    return [AgentRead.model_validate({**r._mapping, "queue_ids": sorted(by_agent.get(r.id, []))}) for r in rows]


async def set_agent_status(rt: Runtime, *, agent_id: int, status: AgentStatus) -> AgentRead:
    """Change an agent's status. Going available pulls waiting work; leaving returns pending offers at once;
    wrap-up ends by itself after ``wrap_up_seconds``."""
    async with rt.write() as tx:
        return await _change_status(rt, tx, agent_id, status)


# --- queues ----------------------------------------------------------------------------------------------------


async def _check_queue_routing(conn: AsyncConnection, name: str, values: dict[str, Any]) -> None:
    """Overflow targets must name existing queues (or the queue itself, for a widening step)."""
    known = {n for (n,) in await conn.execute(select(Q.c.name))} | {name}
    named = {q for step in values.get("overflow") or [] for q in step.get("widen_to", [])}
    if values.get("overflow_queue"):
        named.add(values["overflow_queue"])
    unknown = sorted(named - known)
    if unknown:
        raise InvalidRoutingConfig(f"overflow names queues that do not exist: {', '.join(unknown)}")
    if values.get("max_wait_seconds") and not values.get("overflow_queue"):
        raise InvalidRoutingConfig("max_wait_seconds needs an overflow_queue to move the work to")


async def create_queue(rt: Runtime, *, data: QueueCreate) -> QueueRead:
    """A queue, with its routing configuration (skills, priority, business hours, SLA, overflow)."""
    values = data.model_dump(mode="json")
    async with rt.write() as tx:
        taken = QueueNameTaken(f"a queue named {data.name!r} exists")
        if (await tx.conn.execute(select(Q.c.id).where(Q.c.name == data.name))).first():
            raise taken
        await _check_queue_routing(tx.conn, data.name, values)
        with taken_as(taken):
            inserted = await tx.conn.execute(Q.insert().values(**values, created_at=utcnow()).returning(*Q.c))
        row = inserted.one()
        tx.emit(NewEvent(type="queue.created", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
    return QueueRead.model_validate(row._mapping)


async def update_queue(rt: Runtime, *, queue_id: int, data: QueueUpdate) -> QueueRead:
    """Change a queue's settings; waiting work is routed again under the new ones."""
    values = data.model_dump(mode="json", exclude_unset=True)
    for key in ("description", "channels", "required_skills", "priority", "overflow"):
        if key in values and values[key] is None:
            del values[key]
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(Q).where(Q.c.id == queue_id))).first()
        if row is None:
            raise QueueNotFound(f"queue {queue_id} does not exist")
        await _check_queue_routing(tx.conn, row.name, {**row._mapping, **values})
        if values:
            row = (await tx.conn.execute(update(Q).where(Q.c.id == queue_id).values(**values).returning(*Q.c))).one()
        tx.emit(NewEvent(type="queue.updated", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
        await route_tickets(rt, tx, queue_ids=[queue_id])
    return QueueRead.model_validate(row._mapping)


async def list_queues(rt: Runtime) -> list[QueueRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(Q).order_by(Q.c.id))).all()
    return [QueueRead.model_validate(r._mapping) for r in rows]


# --- agent actions on tickets ------------------------------------------------------------------------------------


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


async def reply(rt: Runtime, *, ticket_id: int, principal: Principal, text: str) -> MessageRead:
    """An agent's reply: the message and its outbox row commit together; the dispatcher delivers it.

    Replies arriving together from many agents commit in one transaction (``hub.group_commit``): one
    transaction each would hold the database's one writer about as long as a whole batch of them does."""
    group = rt.caches.get("replies")
    if group is None:
        group = rt.caches["replies"] = GroupCommit(
            lambda batch: _store_replies(rt, batch), max_batch=_REPLY_BATCH_MAX, name="reply-batches"
        )
    return await group.submit(_ReplyRequest(ticket_id, principal, text))


_REPLY_BATCH_MAX = 200


@dataclass(frozen=True, slots=True)
class _ReplyRequest:
    ticket_id: int
    principal: Principal
    text: str


@dataclass(frozen=True, slots=True)
class _LastInbound:
    """What a reply takes from the message it answers: the newest inbound message of its ticket, when it has a
    sender to answer."""

    channel: str
    external_id: str | None
    sender: str
    recipient: str | None
    meta: dict[str, Any] | None


# ``Runtime.caches`` key of the process's running outbox dispatcher (``ticketing.outbox``), which replies are
# handed to as they commit.
OUTBOX_HANDOFF = "outbox-handoff"


class OutboxHandoff(Protocol):
    lease: timedelta

    def hand(self, rows: list[tuple[int, OutboundMessage]]) -> None:
        """Take committed outbox rows (id, message), leased to this dispatcher, for sending."""


def _reply_statements(postgres: bool) -> tuple[Any, Any]:
    """``_store_replies``' statements, built once per dialect: the tickets with the newest inbound message of
    each (one statement; on PostgreSQL locking the tickets, in id order, so that two batches never wait on each
    other in a cycle), and the update that answers the tickets' new state."""
    dialect = "postgresql" if postgres else "sqlite"
    last_in_id = (
        select(M.c.id)
        .where(M.c.ticket_id == T.c.id, M.c.direction == Direction.INBOUND.value)
        .order_by(M.c.id.desc())
        .limit(1)
        .correlate(T)
        .scalar_subquery()
    )
    tickets = (
        select(
            T,
            M.c.channel.label("in_channel"),
            M.c.external_id.label("in_external_id"),
            M.c.sender.label("in_sender"),
            M.c.recipient.label("in_recipient"),
            M.c.meta.label("in_meta"),
        )
        .select_from(T.outerjoin(M, M.c.id == last_in_id))
        .where(one_of_param(dialect, T.c.id, "ids"))
        .order_by(T.c.id)
    )
    if postgres:
        tickets = tickets.with_for_update(of=T)
    now = bindparam("now", type_=UTCDateTime())
    replied = (
        update(T)
        .where(one_of_param(dialect, T.c.id, "ids"))
        .values(
            updated_at=now,
            last_message_at=now,
            first_response_at=func.coalesce(T.c.first_response_at, now),
            status=case((T.c.status == TicketStatus.NEW.value, TicketStatus.OPEN.value), else_=T.c.status),
        )
        .returning(*T.c)
    )
    return tickets, replied


_REPLY_STATEMENTS = {postgres: _reply_statements(postgres) for postgres in (False, True)}


async def _store_replies(rt: Runtime, batch: Sequence[_ReplyRequest]) -> list[MessageRead | Exception]:
    """Store a batch of replies in one transaction with a fixed number of statements; one answer per reply, in
    order. A reply that is refused (no such ticket, not the agent's, nobody to answer) is answered with its
    error and the others still commit."""
    now = utcnow()
    out: list[MessageRead | Exception | None] = [None] * len(batch)
    async with rt.write() as tx:
        conn = tx.conn
        read_tickets, update_tickets = _REPLY_STATEMENTS[conn.dialect.name == "postgresql"]
        ticket_ids = sorted({r.ticket_id for r in batch})
        tickets: dict[int, Any] = {}
        last_in: dict[int, _LastInbound] = {}
        for r in await fetch_all(conn, read_tickets, {"ids": ticket_ids}):
            tickets[r.id] = r
            if r.in_sender:
                last_in[r.id] = _LastInbound(r.in_channel, r.in_external_id, r.in_sender, r.in_recipient, r.in_meta)
        rows: list[dict[str, Any]] = []
        outbound: list[OutboundMessage] = []
        accepted: list[int] = []  # indexes into batch
        for i, request in enumerate(batch):
            ticket_id = request.ticket_id
            row = tickets.get(ticket_id)
            try:
                if row is None:
                    raise TicketNotFound(f"ticket {ticket_id} does not exist")
                _check_visible(request.principal, row)
                last = last_in.get(ticket_id)
                if last is None:
                    raise NoRecipient(f"ticket {ticket_id} has no inbound message to reply to")
            except (TicketNotFound, NotYourTicket, NoRecipient) as exc:
                out[i] = exc
                continue
            msg, message = _reply_message(rt, row, last, request, now)
            rows.append(msg)
            outbound.append(message)
            accepted.append(i)
        if rows:
            ids = await insert_returning_ids(conn, M, rows)
            for msg, message, mid in zip(rows, outbound, ids, strict=True):
                msg["id"] = message.message_id = mid
            # With this process's dispatcher running, the rows are leased to it as they are written and handed
            # to it after the commit: no pass has to find and claim them. Should the process stop before
            # sending them, any dispatcher claims them once the lease ends.
            handoff: OutboxHandoff | None = rt.caches.get(OUTBOX_HANDOFF)
            leased_until = now + handoff.lease if handoff is not None else None
            # One outbox row per message (message_id is unique): on PostgreSQL one statement reads the keys back.
            outbox_ids = await insert_returning_ids_by(
                conn,
                O,
                [
                    {
                        "message_id": m.message_id,
                        "channel": m.channel,
                        "payload": m.model_dump(mode="json"),
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "locked_until": leased_until,
                        "created_at": now,
                    }
                    for m in outbound
                ],
                ("message_id",),
            )
            replied = sorted({batch[i].ticket_id for i in accepted})  # locked above, on PostgreSQL
            # The update answers the tickets' new state, for the events.
            updated = {r.id: r for r in await fetch_all(conn, update_tickets, {"ids": replied, "now": now})}
            # Each message's event, and after a ticket's last message in this batch, the ticket's new state.
            last_of = {batch[i].ticket_id: n for n, i in enumerate(accepted)}
            for n, (i, msg) in enumerate(zip(accepted, rows, strict=True)):
                ticket = updated[batch[i].ticket_id]
                tx.emit(_message_event(msg, ticket))
                if last_of[batch[i].ticket_id] == n:
                    tx.emit(ticket_event(EventType.TICKET_UPDATED, ticket))
                out[i] = MessageRead.model_validate({**msg, "delivery_error": None})
            if handoff is not None:
                handed = list(zip(outbox_ids, outbound, strict=True))
                tx.after_commit.append(lambda: handoff.hand(handed))
            else:
                tx.after_commit.append(rt.outbox_wakeup.set)
    return [o if o is not None else RuntimeError("reply not answered") for o in out]


def _reply_message(
    rt: Runtime, row: Any, last_in: _LastInbound, request: _ReplyRequest, now: datetime
) -> tuple[dict[str, Any], OutboundMessage]:
    """The message row of a reply and what its channel adapter will send (``message_id`` set once stored)."""
    ticket_id = row.id
    # A conversation moved to another channel (a chat left for email) is answered there.
    channel = row.reply_channel or row.channel
    recipient = row.reply_to or last_in.sender
    moved = channel != last_in.channel
    external_id = new_message_id(rt.settings.mail_domain) if channel == "email" else None
    subject = _reply_subject(row.subject, ticket_id) if channel == "email" else None
    references = (
        [*(last_in.meta or {}).get("references", []), last_in.external_id] if last_in.external_id and not moved else []
    )
    msg = {
        "ticket_id": ticket_id,
        "direction": Direction.OUTBOUND.value,
        "channel": channel,
        "external_id": external_id,
        "author_agent_id": request.principal.agent_id,
        "sender": None,
        "recipient": recipient,
        "subject": subject,
        "text": request.text,
        "html": None,
        "attachments": [],
        "meta": {"references": references} if references else {},
        "delivery_status": DeliveryStatus.PENDING.value,
        "created_at": now,
        "contact_id": row.contact_id,
    }
    outbound = OutboundMessage(
        message_id=0,
        ticket_id=ticket_id,
        channel=channel,
        recipient=recipient,
        text=request.text,
        subject=subject,
        external_id=external_id,
        in_reply_to=last_in.external_id if channel == "email" and not moved else None,
        references=references,
        sender_address=None if moved else last_in.recipient,
        agent_name=request.principal.display_name,
        metadata={"thread_key": row.thread_key} if row.thread_key else {},
    )
    return msg, outbound


def _reply_subject(subject: str, ticket_id: int) -> str:
    tag = f"[#{ticket_id}]"
    base = subject or "Your request"
    if tag not in base:
        base = f"{base} {tag}"
    return base if base.lower().startswith("re:") else f"Re: {base}"


def _message_event(msg: dict[str, Any], ticket_row: Any) -> NewEvent:
    t = ticket_row._mapping if hasattr(ticket_row, "_mapping") else ticket_row
    return NewEvent(
        type=EventType.MESSAGE_CREATED,
        payload={"message": message_summary(msg)},
        ticket_id=t["id"],
        queue_id=t["queue_id"],
        agent_id=t["assignee_id"] or t["offered_agent_id"],
    )


async def add_note(rt: Runtime, *, ticket_id: int, principal: Principal, text: str) -> MessageRead:
    """An internal note: visible to agents only, never sent to the customer."""
    now = utcnow()
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id)
        _check_visible(principal, row)
        msg = {
            "ticket_id": ticket_id,
            "direction": Direction.NOTE.value,
            "channel": row.channel,
            "author_agent_id": principal.agent_id,
            "text": text,
            "attachments": [],
            "meta": {},
            "delivery_status": DeliveryStatus.RECEIVED.value,
            "created_at": now,
        }
        msg_row = (await tx.conn.execute(M.insert().values(**msg).returning(*M.c))).one()
        updated = (
            await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(updated_at=now).returning(*T.c))
        ).one()
        tx.emit(_message_event(dict(msg_row._mapping), updated))
    return MessageRead.model_validate(msg_row._mapping)


async def update_ticket(rt: Runtime, *, ticket_id: int, principal: Principal, data: TicketUpdate) -> TicketRead:
    """Change status, priority, tags or subject."""
    now = utcnow()
    values: dict[str, Any] = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id, lock=True)
        _check_visible(principal, row)
        if "status" in values:
            status = TicketStatus(values["status"])
            values["status"] = status.value
            if status is TicketStatus.SOLVED and row.solved_at is None:
                values["solved_at"] = now
            if status is TicketStatus.CLOSED:
                values["closed_at"] = now
            if status in OPEN_STATUSES:
                values["solved_at"] = None
                values["closed_at"] = None
            if status not in OPEN_STATUSES:
                values["offered_agent_id"] = None
                values["offer_expires_at"] = None
        if "priority" in values:
            values["priority"] = (
                values["priority"].value if hasattr(values["priority"], "value") else values["priority"]
            )
        values["updated_at"] = now
        updated = (await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(**values).returning(*T.c))).one()
        tx.emit(
            ticket_event(
                EventType.TICKET_UPDATED,
                updated,
                changes=sorted(k for k in values if k != "updated_at"),
                by=principal.agent_id,
            )
        )
        if row.status in _OPEN and updated.status not in _OPEN and row.assignee_id is not None:
            await _work_done(rt, tx, agent_id=row.assignee_id, channel=row.channel)
    return TicketRead.model_validate(updated._mapping)


async def assign(rt: Runtime, *, ticket_id: int, principal: Principal, agent_id: int | None) -> TicketRead:
    """A supervisor assigns a ticket to an agent, or unassigns it (back to its queue)."""
    principal.require_supervisor()
    now = utcnow()
    async with rt.write() as tx:
        await _ticket_row(tx.conn, ticket_id, lock=True)
        if agent_id is not None and not (await tx.conn.execute(select(A.c.id).where(A.c.id == agent_id))).first():
            raise AgentNotFound(f"agent {agent_id} does not exist")
        updated = (
            await tx.conn.execute(
                update(T)
                .where(T.c.id == ticket_id)
                .values(
                    assignee_id=agent_id,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    updated_at=now,
                    routing=_decision(
                        "assigned" if agent_id else "unassigned", f"by {principal.username}", now, agent_id=agent_id
                    ),
                )
                .returning(*T.c)
            )
        ).one()
        tx.emit(ticket_event(EventType.TICKET_ASSIGNED, updated, by=principal.agent_id))
        if agent_id is None:
            await route_tickets(rt, tx, [ticket_id], returned=[ticket_id])
    return TicketRead.model_validate(updated._mapping)


async def transfer(
    rt: Runtime, *, ticket_id: int, principal: Principal, queue_id: int | None, agent_id: int | None
) -> TicketRead:
    """Hand a ticket to another queue (it is routed there afresh) or straight to another agent."""
    now = utcnow()
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id, lock=True)
        _check_visible(principal, row)
        values: dict[str, Any] = {
            "updated_at": now,
            "offered_agent_id": None,
            "offer_expires_at": None,
            "assignee_id": agent_id,
        }
        if queue_id is not None:
            if not (await tx.conn.execute(select(Q.c.id).where(Q.c.id == queue_id))).first():
                raise QueueNotFound(f"queue {queue_id} does not exist")
            values["queue_id"] = queue_id
            if queue_id != row.queue_id:
                values.update(queued_at=None, overflow_stage=0)  # waits afresh in the new queue
        values["routing"] = _decision("transferred", f"by {principal.username}", now, agent_id=agent_id)
        if agent_id is not None and not (await tx.conn.execute(select(A.c.id).where(A.c.id == agent_id))).first():
            raise AgentNotFound(f"agent {agent_id} does not exist")
        updated = (await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(**values).returning(*T.c))).one()
        tx.emit(
            ticket_event(
                EventType.TICKET_UPDATED,
                updated,
                changes=["transfer"],
                by=principal.agent_id,
                from_queue_id=row.queue_id,
                from_agent_id=row.assignee_id,
            )
        )
        if agent_id is None:
            await route_tickets(rt, tx, [ticket_id], exclude={ticket_id: {principal.agent_id}}, returned=[ticket_id])
    return TicketRead.model_validate(updated._mapping)
