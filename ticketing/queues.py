"""Queues (creating, changing, listing them) and the stored rules that pick a new ticket's queue.

A change made by a person (``actor``: the API's caller) is written to the audit log (``hub.audit``) in its own
transaction; seeds, the CLI and a rules file read at start pass no actor and are not audited."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit
from hub.db import taken_as, utcnow
from hub.events import NewEvent
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing import queue_rules, report_rollup
from ticketing.exceptions import InvalidRoutingConfig, QueueInUse, QueueNameTaken, QueueNotFound
from ticketing.models import QueueCreate, QueueRead, QueueUpdate
from ticketing.queue_rules import DryRunAnswer, DryRunRequest, DryRunStep
from ticketing.routing_service import route_tickets
from ticketing.tables import OPEN_STATUS_VALUES, agent_queues, queues, routing_rules, tickets

log = logging.getLogger(__name__)

# Columns with a stored default: left out (or null) on create and update, they keep it.
_DEFAULTED = ("service_level_seconds", "service_level_target", "wait_alert_seconds")


async def _check_queue_routing(conn: AsyncConnection, name: str, values: dict[str, Any]) -> None:
    """Overflow targets must name existing queues (or the queue itself, for a widening step)."""
    known = {n for (n,) in await conn.execute(select(queues.c.name))} | {name}
    named = {q for step in values.get("overflow") or [] for q in step.get("widen_to", [])}
    if values.get("overflow_queue"):
        named.add(values["overflow_queue"])
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for n, step in enumerate(values.get("overflow") or []):
        missing = [q for q in step.get("widen_to", []) if q not in known]
        if missing:
            errors.append((("body", "overflow", n, "widen_to"), f"no queue named {', '.join(missing)}"))
    if values.get("overflow_queue") and values["overflow_queue"] not in known:
        errors.append((("body", "overflow_queue"), f"no queue named {values['overflow_queue']}"))
    unknown = sorted(named - known)
    if unknown:
        raise InvalidRoutingConfig(f"overflow names queues that do not exist: {', '.join(unknown)}", errors=errors)
    if values.get("max_wait_seconds") and not values.get("overflow_queue"):
        raise InvalidRoutingConfig(
            "max_wait_seconds needs an overflow_queue to move the work to", loc=("body", "overflow_queue")
        )


async def create_queue(rt: Runtime, *, data: QueueCreate, actor: Principal | None = None) -> QueueRead:
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
        if actor is not None:
            await audit.record(tx.conn, actor=actor, action="queue.create", target=f"queue:{row.id}", detail=values)
        tx.emit(NewEvent(type="queue.created", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
    return QueueRead.model_validate(row._mapping)


async def update_queue(rt: Runtime, *, queue_id: int, data: QueueUpdate, actor: Principal | None = None) -> QueueRead:
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
        # What changed: a form sends every field, the log keeps those whose value differs (no overflow steps is
        # null or [] alike).
        changed = [k for k, v in values.items() if row._mapping[k] != v and (row._mapping[k] or v)]
        if actor is not None:
            await audit.record(
                tx.conn,
                actor=actor,
                action="queue.update",
                target=f"queue:{queue_id}",
                detail={
                    "name": row.name,
                    "before": {k: row._mapping[k] for k in changed},
                    "after": {k: values[k] for k in changed},
                },
            )
        if values:
            row = (
                await tx.conn.execute(
                    update(queues).where(queues.c.id == queue_id).values(**values).returning(*queues.c)
                )
            ).one()
        if "service_level_seconds" in changed:
            # Reports apply a queue's current threshold to every period: its past hours are counted again.
            await report_rollup.schedule_recount(tx.conn, queue_id)
        tx.emit(NewEvent(type="queue.updated", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
        await route_tickets(rt, tx, queue_ids=[queue_id])
    return QueueRead.model_validate(row._mapping)


async def delete_queue(rt: Runtime, *, queue_id: int, actor: Principal | None = None) -> None:
    """Delete a queue that holds no open work and that no other queue's overflow and no routing rule names
    (each refused with a 409 that says what to change first). Its agents leave it; its closed tickets stay, in
    no queue, and the reports count them so."""
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(queues).where(queues.c.id == queue_id))).first()
        if row is None:
            raise QueueNotFound(f"queue {queue_id} does not exist")
        open_count = (
            await tx.conn.execute(
                select(func.count())
                .select_from(tickets)
                .where(tickets.c.queue_id == queue_id, tickets.c.status.in_(OPEN_STATUS_VALUES))
            )
        ).scalar() or 0
        if open_count:
            raise QueueInUse(
                f"queue {row.name} has {open_count} open ticket(s): re-queue them to another queue or close them "
                f"first (the wallboard's Re-queue, or POST /api/supervisor/tickets/{{id}}/requeue)"
            )
        others = (await tx.conn.execute(select(queues.c.name, queues.c.overflow, queues.c.overflow_queue))).all()
        naming = sorted(
            q.name
            for q in others
            if q.name != row.name
            and (q.overflow_queue == row.name or any(row.name in (s.get("widen_to") or []) for s in q.overflow or []))
        )
        if naming:
            raise QueueInUse(
                f"queue {row.name} is an overflow target of {', '.join(naming)}: change their overflow first"
            )
        rules = await get_routing_rules(tx.conn)
        known = {q.name for q in others} - {row.name}
        if unknown_queue_errors(rules, known):
            raise QueueInUse(f"routing rules send work to queue {row.name}: change the rules first")
        detached = list((await tx.conn.execute(select(tickets.c.id).where(tickets.c.queue_id == queue_id))).scalars())
        await tx.conn.execute(update(tickets).where(tickets.c.queue_id == queue_id).values(queue_id=None))
        await tx.conn.execute(delete(agent_queues).where(agent_queues.c.queue_id == queue_id))
        await tx.conn.execute(delete(queues).where(queues.c.id == queue_id))
        # the detached tickets count in no queue from now on, in the reports' rollup too
        await report_rollup.apply_tickets(tx.conn, detached)
        if actor is not None:
            await audit.record(
                tx.conn,
                actor=actor,
                action="queue.delete",
                target=f"queue:{queue_id}",
                detail={"name": row.name, "closed_tickets_kept_without_queue": len(detached)},
            )
        tx.emit(NewEvent(type="queue.deleted", payload={"queue": {"id": queue_id, "name": row.name}}))


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
    rt: Runtime,
    *,
    rules: queue_rules.RuleSet,
    source: str = "api",
    strict: bool = True,
    actor: Principal | None = None,
) -> list[str]:
    """Store the queue-selection rules every process uses. ``strict``: a rule naming a queue that does not
    exist is refused; otherwise such names are returned (the rule is skipped until the queue exists)."""
    async with rt.write() as tx:
        known = {n for (n,) in await tx.conn.execute(select(queues.c.name))}
        unknown = sorted(rules.queue_names() - known)
        if unknown and strict:
            raise InvalidRoutingConfig(
                f"rules name queues that do not exist: {', '.join(unknown)}", errors=unknown_queue_errors(rules, known)
            )
        value = rules.model_dump(mode="json", exclude_none=True)
        now = utcnow()
        detail = {"source": source, **value}
        if actor is not None:
            await audit.record(
                tx.conn, actor=actor, action="routing.rules_update", target="routing:rules", detail=detail
            )
        # One row, id 1; workers starting together with a rules file may all write it at once.
        await tx.conn.execute(
            rt.db.upsert(routing_rules, {"id": 1, "rules": value, "source": source, "updated_at": now}, ["id"])
        )
        tx.emit(NewEvent(type="routing.rules_updated", payload={"source": source, "rules": len(rules.rules)}))
    return unknown


def unknown_queue_errors(rules: queue_rules.RuleSet, known: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
    """Where a rule set names a queue that does not exist, each as ``(loc, msg)``."""
    errors: list[tuple[tuple[str | int, ...], str]] = [
        (("body", "rules", n, "queue"), f"no queue named {rule.queue}")
        for n, rule in enumerate(rules.rules)
        if rule.queue not in known
    ]
    if rules.default_queue and rules.default_queue not in known:
        errors.append((("body", "default_queue"), f"no queue named {rules.default_queue}"))
    return errors


def validate_rules(data: Any, *, loc: tuple[str | int, ...] = ("body",)) -> queue_rules.RuleSet:
    """A rule set from the API; refused with every field at fault located under ``loc``."""
    try:
        return queue_rules.parse_rules(data, source="rules")
    except queue_rules.RulesInvalid as exc:
        errors = [((*loc, *where), msg) for where, msg in exc.errors]
        raise InvalidRoutingConfig(str(exc), errors=errors or None) from None


async def dry_run(rt: Runtime, *, data: DryRunRequest) -> DryRunAnswer:
    """Where a message would go and why, under the rules given (or those in force); changes nothing."""
    async with rt.read() as conn:
        rows = (await conn.execute(select(queues.c.id, queues.c.name, queues.c.channels).order_by(queues.c.id))).all()
        if data.rules is None:
            rules = await get_routing_rules(conn)
        else:
            rules = validate_rules(data.rules, loc=("body", "rules"))
    by_name = {r.name: r.id for r in rows}
    names = {r.id: r.name for r in rows}
    m = data.message
    metadata: dict[str, Any] = {}
    if m.ivr_choice is not None:
        metadata["ivr_choice"] = m.ivr_choice
    if m.language is not None:
        metadata["language"] = m.language
    queue_id, rule, how = queue_rules.pick_queue(
        rules,
        by_name,
        rows,
        channel=m.channel,
        recipient=m.recipient,
        metadata=metadata,
        subject=m.subject,
        text=m.text,
        adapter_queue=m.queue,
        contact_attributes=m.contact,
    )
    f = queue_rules.facts(
        channel=m.channel,
        recipient=m.recipient,
        metadata=metadata,
        subject=m.subject,
        text=m.text,
        contact_attributes=m.contact,
    )
    steps = []
    for r in rules.rules:
        if r is rule:
            steps.append(DryRunStep(rule=r.name, matched=True, reason=queue_rules.why_matched(r, f)))
            break
        steps.append(DryRunStep(rule=r.name, matched=False, reason=queue_rules.why_not(r, f, by_name) or ""))
    queue = names.get(queue_id) if queue_id is not None else None
    if rule is not None:
        reason = f"rule {rule.name!r} matched: {queue_rules.why_matched(rule, f)}"
    elif how == queue_rules.BY_ADAPTER:
        reason = f"no rule matched, and the message came with the queue {queue} (its mailbox's or phone menu's)"
    elif how == queue_rules.BY_DEFAULT:
        reason = "no rule matched: the rules' default queue"
    elif how == queue_rules.BY_CHANNEL:
        reason = f"no rule matched and there is no default queue: the first queue that takes {m.channel}"
    elif how == queue_rules.BY_FIRST:
        reason = f"no rule matched, no default queue, and no queue takes {m.channel}: the first queue"
    else:
        reason = "there are no queues"
    return DryRunAnswer(
        queue_id=queue_id,
        queue=queue,
        rule=rule.name if rule else None,
        priority=rule.priority if rule else None,
        skills=dict(rule.skills) if rule else {},
        reason=reason,
        steps=steps,
    )


async def load_rules_file(rt: Runtime, *, path: Any) -> None:
    """At start: validate the YAML rules file and make it the rules in force (queues it names that do not
    exist yet are logged, and their rules skipped until they do)."""
    rules = queue_rules.load_rules_file(path)
    unknown = await set_routing_rules(rt, rules=rules, source=str(path), strict=False)
    if unknown:
        log.warning("routing rules in %s name queues that do not exist: %s", path, ", ".join(unknown))
