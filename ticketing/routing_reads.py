"""What a routing pass reads: the queues (parsed once per change), agents' slots and loads, the work it claims."""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, reduce
from types import MappingProxyType, SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import fetch_all, fetch_records
from hub.runtime import Runtime
from ticketing import routing, sla
from ticketing.models import AgentStatus
from ticketing.tables import OPEN_STATUS_VALUES, agent_queues, agents, queues, tickets

# Waiting: open and held by nobody. The two IS NULL terms are the condition of the partial indexes
# ix_tickets_waiting_* (see the model), which is what lets the database use them.
WAITING = and_(
    tickets.c.assignee_id.is_(None), tickets.c.offered_agent_id.is_(None), tickets.c.status.in_(OPEN_STATUS_VALUES)
)
# The same test for statements that find their rows by id: written so that no partial index matches it, as
# a planner with stale statistics may otherwise scan a partial index instead of using the primary key.
UNHELD = func.coalesce(tickets.c.assignee_id, tickets.c.offered_agent_id).is_(None)


@dataclass(slots=True)
class QueueSnapshot:
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
    False: reduce(operator.add, (_token(c) for c in queues.c)).label("fingerprint"),
}
_QUEUE_COLUMNS = tuple(_json_text(c) if c.name in _QUEUE_JSON else c for c in queues.c)
_READ_QUEUES = {pg: select(*_QUEUE_COLUMNS, fp).order_by(queues.c.id) for pg, fp in _ROW_FINGERPRINT.items()}
_ordered_row_fingerprints = select(_ROW_FINGERPRINT[False]).order_by(queues.c.id).subquery()
QUEUES_FINGERPRINT = {
    True: func.coalesce(
        select(func.aggregate_strings(_ROW_FINGERPRINT[True], "|").aggregate_order_by(queues.c.id)).scalar_subquery(),
        literal_column("''"),
    ),
    # SQLite 3.40 has no ORDER BY in aggregates: the rows come in order from a subquery (were they not, the
    # fingerprint would not match and the queues would be read: slower, never stale).
    False: func.coalesce(
        select(func.aggregate_strings(_ordered_row_fingerprints.c.fingerprint, "|")).scalar_subquery(),
        literal_column("''"),
    ),
}


async def read_queues(rt: Runtime, conn: AsyncConnection, fingerprint: str | None = None) -> QueueSnapshot:
    """The queues as routing sees them. Parsed (business hours, overflow steps) only when they changed: the
    runtime keeps the last parse with the queues' fingerprint. Given ``fingerprint`` (read in this
    transaction with other rows, at no extra cost), a matching cache is used without reading the queues;
    otherwise they are read, and their fingerprint with them, in one statement."""
    cached: tuple[str, QueueSnapshot] | None = rt.caches.get("routing.queues")
    if fingerprint is not None and cached is not None and cached[0] == fingerprint:
        return cached[1]
    rows = (await conn.execute(_READ_QUEUES[conn.dialect.name == "postgresql"])).all()
    read = "|".join(r.fingerprint for r in rows)
    if cached is not None and cached[0] == read:
        return cached[1]
    parsed = _parse_queues(rows)
    rt.caches["routing.queues"] = (read, parsed)
    return parsed


def _parse_queues(raw: Sequence[Any]) -> QueueSnapshot:
    rows: dict[int, Any] = {}
    for r in raw:
        m = {c.name: r._mapping[c.name] for c in queues.c}
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
    return QueueSnapshot(policies, hours, rows, {r.id: r.name for r in rows.values()})


_MEMBER_COLUMNS = (
    agents.c.id,
    agents.c.status,
    _json_text(agents.c.skills),
    _json_text(agents.c.capacity),
    agents.c.last_assigned_at,
    agent_queues.c.queue_id,
)
_MEMBERS = (
    select(*_MEMBER_COLUMNS).join(agent_queues, agent_queues.c.agent_id == agents.c.id).where(agents.c.active.is_(True))
)
_MEMBERS_OF_QUEUES = _MEMBERS.where(agent_queues.c.queue_id.in_(bindparam("ids", expanding=True)))
_HOLDER = func.coalesce(tickets.c.assignee_id, tickets.c.offered_agent_id)
_LOADS = select(_HOLDER, tickets.c.channel, func.count()).group_by(_HOLDER, tickets.c.channel)
# A few agents: through the assignee and offer indexes. Many: one pass over the open work is cheaper than a
# long IN list, and the loads of agents not asked for are dropped.
_LOADS_OF_AGENTS = _LOADS.where(
    tickets.c.status.in_(OPEN_STATUS_VALUES),
    or_(
        tickets.c.assignee_id.in_(bindparam("ids", expanding=True)),
        tickets.c.offered_agent_id.in_(bindparam("ids_offered", expanding=True)),
    ),
)
_LOADS_OF_ALL = _LOADS.where(tickets.c.status.in_(OPEN_STATUS_VALUES), _HOLDER.is_not(None))
_FEW_AGENTS = 50


def _slots_of_agents_statement(postgres: bool) -> Any:
    """A sweep's first read, in one statement: these agents with their queues (kind 0: ``n`` is a queue id),
    their loads (kind 1: ``n`` items in hand or offered on ``channel``) and the queues' fingerprint (kind 2,
    in ``skills``)."""
    # The agents are asked for twice, by agent_queues.agent_id and by agents.id, so that the planner finds both
    # by key (with stale statistics it may otherwise scan every agent).
    if postgres:
        ids = bindparam("ids", type_=postgresql.ARRAY(BigInteger))
        member = and_(agents.c.id == any_(ids), agent_queues.c.agent_id == any_(ids))
        held = or_(tickets.c.assignee_id == any_(ids), tickets.c.offered_agent_id == any_(ids))
    else:
        member = and_(
            agents.c.id.in_(bindparam("ids", expanding=True)),
            agent_queues.c.agent_id.in_(bindparam("ids_aq", expanding=True)),
        )
        held = or_(
            tickets.c.assignee_id.in_(bindparam("ids_assigned", expanding=True)),
            tickets.c.offered_agent_id.in_(bindparam("ids_offered", expanding=True)),
        )
    members = (
        select(
            literal_column("0").label("kind"),
            agents.c.id,
            agents.c.status,
            _json_text(agents.c.skills),
            _json_text(agents.c.capacity),
            agents.c.last_assigned_at,
            agent_queues.c.queue_id.label("n"),
            null().label("channel"),
        )
        .join(agent_queues, agent_queues.c.agent_id == agents.c.id)
        .where(agents.c.active.is_(True), member)
    )
    loads = (
        select(literal_column("1"), _HOLDER, null(), null(), null(), null(), func.count(), tickets.c.channel)
        .where(tickets.c.status.in_(OPEN_STATUS_VALUES), held)
        .group_by(_HOLDER, tickets.c.channel)
    )
    return union_all(
        members,
        loads,
        select(literal_column("2"), null(), null(), QUEUES_FINGERPRINT[postgres], null(), null(), null(), null()),
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


async def agent_slots(
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


async def slots_of_agents(
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


_PAST = tickets.alias("past")
# The contact's previous agent: the assignee of their latest ticket that had one. Ordered by ``id + 0``, an
# expression no index provides, so that the planner reads the contact's few tickets through the contact
# index and sorts them, never walking the whole primary key backwards in search of the latest match (which a
# planner with stale statistics may expect to be quick).
_PREVIOUS_AGENT = (
    select(_PAST.c.assignee_id)
    .where(_PAST.c.contact_id == tickets.c.contact_id, _PAST.c.assignee_id.is_not(None))
    .order_by((_PAST.c.id + 0).desc())
    .limit(1)
    .scalar_subquery()
    .label("previous_agent_id")
)
# What the policy and the events of a decision need of a claimed ticket, with its contact's previous agent
# in the same statement (one round trip fewer per pass).
_CLAIM_COLUMNS = (
    *(
        tickets.c[name]
        for name in (
            "id", "subject", "status", "priority", "channel", "contact_id", "queue_id", "assignee_id",
            "offered_agent_id", "offer_expires_at", "tags", "created_at", "updated_at", "last_message_at",
            "first_response_at", "first_response_due_at", "resolution_due_at", "queued_at", "overflow_stage",
            "answered_at", "sla_paused_at",
            "skills", "routing", "rating", "rating_comment",
        )
    ),
    _PREVIOUS_AGENT,
)  # fmt: skip
# The claim asks for the ids and for nobody holding them; whether they are still open is checked on the rows
# it returns (``_waiting_rows``). A status condition in SQL lets a planner with stale statistics (right
# after a burst of arrivals) read every open ticket through ix_tickets_queue_status and filter them by id,
# taking ~10 ms instead of ~0.5 ms for 50 ids; without it the primary key is the only index that applies.
_CLAIM_BY_ID = (
    select(*_CLAIM_COLUMNS).where(tickets.c.id.in_(bindparam("ids", expanding=True)), UNHELD).order_by(tickets.c.id)
)
# On PostgreSQL the ids go as one array parameter: one SQL text, prepared once per connection, instead of
# one per length of the list. FOR UPDATE OF tickets: the subquery's rows are read, not locked.
_CLAIM_BY_ID_PG = (
    select(*_CLAIM_COLUMNS)
    .where(tickets.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))), UNHELD)
    .order_by(tickets.c.id)
    .with_for_update(skip_locked=True, of=tickets)
)
_OPEN_SQL = ", ".join(f"'{s}'" for s in OPEN_STATUS_VALUES)
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
    .where(text(f"tickets.id = ANY(ARRAY({_CANDIDATES_PG}))"), UNHELD)
    .order_by(tickets.c.id)
    .with_for_update(skip_locked=True, of=tickets)
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
            select(*_CLAIM_COLUMNS).where(text(f"tickets.id IN ({union})"), UNHELD).order_by(tickets.c.id)
        )
    return stmt


async def waiting_rows(
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
    return [r for r in rows if r.status in OPEN_STATUS_VALUES]
