"""Queues (creating, changing, listing them) and the stored rules that pick a new ticket's queue."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import taken_as, utcnow
from hub.events import NewEvent
from hub.runtime import Runtime
from ticketing import queue_rules
from ticketing.exceptions import InvalidRoutingConfig, QueueNameTaken, QueueNotFound
from ticketing.models import QueueCreate, QueueRead, QueueUpdate
from ticketing.routing_service import route_tickets
from ticketing.tables import queues, routing_rules

log = logging.getLogger(__name__)

# Columns with a stored default: left out (or null) on create and update, they keep it.
_DEFAULTED = ("service_level_seconds", "service_level_target", "wait_alert_seconds")


async def _check_queue_routing(conn: AsyncConnection, name: str, values: dict[str, Any]) -> None:
    """Overflow targets must name existing queues (or the queue itself, for a widening step)."""
    known = {n for (n,) in await conn.execute(select(queues.c.name))} | {name}
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
    for key in _DEFAULTED:
        if values.get(key) is None:
            values.pop(key, None)
    async with rt.write() as tx:
        taken = QueueNameTaken(f"a queue named {data.name!r} exists")
        if (await tx.conn.execute(select(queues.c.id).where(queues.c.name == data.name))).first():
            raise taken
        await _check_queue_routing(tx.conn, data.name, values)
        with taken_as(taken):
            inserted = await tx.conn.execute(queues.insert().values(**values, created_at=utcnow()).returning(*queues.c))
        row = inserted.one()
        tx.emit(NewEvent(type="queue.created", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
    return QueueRead.model_validate(row._mapping)


async def update_queue(rt: Runtime, *, queue_id: int, data: QueueUpdate) -> QueueRead:
    """Change a queue's settings; waiting work is routed again under the new ones."""
    values = data.model_dump(mode="json", exclude_unset=True)
    for key in ("description", "channels", "required_skills", "priority", "overflow", *_DEFAULTED):
        if key in values and values[key] is None:
            del values[key]
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(queues).where(queues.c.id == queue_id))).first()
        if row is None:
            raise QueueNotFound(f"queue {queue_id} does not exist")
        await _check_queue_routing(tx.conn, row.name, {**row._mapping, **values})
        if values:
            row = (
                await tx.conn.execute(
                    update(queues).where(queues.c.id == queue_id).values(**values).returning(*queues.c)
                )
            ).one()
        tx.emit(NewEvent(type="queue.updated", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
        await route_tickets(rt, tx, queue_ids=[queue_id])
    return QueueRead.model_validate(row._mapping)


async def list_queues(rt: Runtime) -> list[QueueRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(queues).order_by(queues.c.id))).all()
    return [QueueRead.model_validate(r._mapping) for r in rows]


# --- queue-selection rules ---------------------------------------------------------------------------------


async def get_routing_rules(conn: AsyncConnection) -> queue_rules.RuleSet:
    """The rules in force (none configured: an empty set)."""
    row = (await conn.execute(select(routing_rules.c.rules).where(routing_rules.c.id == 1))).first()
    return queue_rules.parse_rules(row.rules if row else {}, source="stored rules")


async def set_routing_rules(
    rt: Runtime, *, rules: queue_rules.RuleSet, source: str = "api", strict: bool = True
) -> list[str]:
    """Store the queue-selection rules every process uses. ``strict``: a rule naming a queue that does not
    exist is refused; otherwise such names are returned (the rule is skipped until the queue exists)."""
    async with rt.write() as tx:
        known = {n for (n,) in await tx.conn.execute(select(queues.c.name))}
        unknown = sorted(rules.queue_names() - known)
        if unknown and strict:
            raise InvalidRoutingConfig(f"rules name queues that do not exist: {', '.join(unknown)}")
        value = rules.model_dump(mode="json", exclude_none=True)
        now = utcnow()
        # One row, id 1; workers starting together with a rules file may all write it at once.
        await tx.conn.execute(
            rt.db.upsert(routing_rules, {"id": 1, "rules": value, "source": source, "updated_at": now}, ["id"])
        )
        tx.emit(NewEvent(type="routing.rules_updated", payload={"source": source, "rules": len(rules.rules)}))
    return unknown


async def load_rules_file(rt: Runtime, *, path: Any) -> None:
    """At start: validate the YAML rules file and make it the rules in force (queues it names that do not
    exist yet are logged, and their rules skipped until they do)."""
    rules = queue_rules.load_rules_file(path)
    unknown = await set_routing_rules(rt, rules=rules, source=str(path), strict=False)
    if unknown:
        log.warning("routing rules in %s name queues that do not exist: %s", path, ", ".join(unknown))
