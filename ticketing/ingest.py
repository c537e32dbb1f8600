"""Ingest: every inbound message of every channel comes through here.

``IngestPipeline.submit(message)`` returns once the message is durably committed. Concurrent submissions
are committed together (``hub.group_commit``): its drain task takes whatever is waiting, up to
``ingest_batch_max`` messages, and stores the whole batch in one transaction with a handful of set-based
statements (``store_batch``). A batch that fails is retried message by message, so one bad message never
takes its neighbours down and the caller of each gets its own answer.

Per message, in that transaction: resolve the contact from the sender's identity; thread into the ticket
it belongs to (references to earlier messages, then a ticket number the sender named if they take part in
that ticket, then the channel's thread key, then the contact's open ticket on that channel; for email, the
contact's open email ticket of the same subject, since a new subject without a reference is a new matter) or
open a new one; store the message (its HTML sanitized, whatever the adapter did); append events.

Then routing, in a transaction of its own: the tickets nobody holds are offered or queued. The pipeline runs
the two stages side by side (routing is the group commit's second stage): while one batch is routed, the next
is stored, and routing takes the work of every batch stored meanwhile in one pass. A submit returns once its
message is stored and its ticket routed. Work whose routing never happened (the process stopped in between) is
routed when the pipeline starts.

Idempotency: (channel, external_id) is unique. A message already stored answers with the stored one
(``created=False``); two copies inside one batch are stored once; a copy committed by another process at
the same moment makes the batch fail on the unique constraint and the per-message retry finds it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from sqlalchemy import bindparam, case, delete, null, select, update

from hub.channels import IDENTITY_OF_CHANNEL, SPECS, CapacityClass
from hub.db import (
    KeptStatements,
    UTCDateTime,
    insert_returning_ids,
    insert_returning_ids_by,
    insert_rows,
    lock_keys,
    one_of,
    one_of_pairs,
    one_of_param,
    utcnow,
)
from hub.errors import Conflict, SwitchboardError
from hub.events import EventType
from hub.group_commit import GroupCommit
from hub.messages import AlsoInTransaction, InboundMessage, IngestResult
from hub.runtime import Runtime
from ticketing import message_files, report_rollup, search_index
from ticketing.exceptions import UnknownChannel
from ticketing.identities import lookup_kinds, normalize
from ticketing.identity_cache import IdentityCache, identity_cache, remember
from ticketing.models import DeliveryStatus, Direction, TicketStatus
from ticketing.queue_rules import pick_queue
from ticketing.queues import get_routing_rules
from ticketing.routing_service import route_tickets
from ticketing.sla_service import resume_paused
from ticketing.tables import OPEN_STATUS_VALUES
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C
from ticketing.tables import messages as M
from ticketing.tables import queues as Q
from ticketing.tables import tickets as T
from ticketing.tickets import message_event, ticket_event

log = logging.getLogger(__name__)


class IngestPipeline:
    """Group commit for inbound messages (see the module docstring): a ``hub.group_commit.GroupCommit`` whose
    commit stores a batch (``store_batch``) and whose second stage routes what the batches stored meanwhile."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._group: GroupCommit[_Pending, _Stored] = GroupCommit(
            self._store, max_batch=rt.settings.ingest_batch_max, name="ingest", then=self._route
        )
        self._running = False

    async def start(self) -> None:
        await route_new_work(self.rt, await unrouted_ticket_ids(self.rt))
        self._running = True

    async def stop(self) -> None:
        """Finish what was submitted, then stop."""
        self._running = False
        await self._group.join()

    async def submit(
        self, message: InboundMessage, *, also: AlsoInTransaction | None = None, routed: bool = True
    ) -> IngestResult:
        """Store ``message`` (or find it already stored); returns after its commit and its ticket's routing
        pass (with ``routed=False`` after its commit: the routing pass runs all the same). ``also`` runs inside
        the storing transaction (a channel's own bookkeeping, such as a mailbox's last UID)."""
        if not self._running:
            raise RuntimeError("ingest pipeline is not running")
        return (await self._group.submit(_Pending(message, also), early=not routed)).result

    __call__ = submit

    async def submit_all(self, messages: Sequence[InboundMessage]) -> list[IngestResult | Exception]:
        """``hub.messages.IngestAll``: ``submit`` for messages that arrived together, kept in one commit (not cut
        between two unless more than ``ingest_batch_max``); each one's outcome, in order, once all are
        committed and routed."""
        if not self._running:
            raise RuntimeError("ingest pipeline is not running")
        outcomes = await self._group.submit_all([_Pending(m) for m in messages])
        return [o if isinstance(o, Exception) else o.result for o in outcomes]

    async def _store(self, batch: list[_Pending]) -> list[_Stored | Exception]:
        also = [p.also for p in batch if p.also is not None]
        try:
            results, waiting = await store_batch(self.rt, [p.message for p in batch], also=also)
        except Exception as exc:
            if len(batch) == 1:  # a batch of several is retried message by message
                self.rt.metrics.ingest_batch_size.observe(1)
                if not isinstance(exc, SwitchboardError):
                    log.exception("ingest of %s/%s failed", batch[0].message.channel, batch[0].message.external_id)
            raise
        self.rt.metrics.ingest_batch_size.observe(len(batch))
        route = set(waiting)  # tickets of this batch's messages (``store_batch``)
        return [r if isinstance(r, Exception) else _Stored(r, r.ticket_id in route) for r in results]

    async def _route(self, stored: list[_Stored]) -> None:
        await route_new_work(self.rt, [s.result.ticket_id for s in stored if s.route])


@dataclass(slots=True)
class _Pending:
    message: InboundMessage
    also: AlsoInTransaction | None = None


@dataclass(slots=True)
class _Stored:
    """A stored message, and whether its ticket waits for routing (nobody holds it)."""

    result: IngestResult
    route: bool


async def route_new_work(rt: Runtime, ticket_ids: Sequence[int]) -> None:
    """Offer or queue freshly stored work. The messages are already safe: a failure here is logged, and the
    routing sweep (or the next start, for work never queued) picks the tickets up."""
    if not ticket_ids:
        return
    try:
        async with rt.write() as tx:
            await route_tickets(rt, tx, sorted(set(ticket_ids)))
    except Exception:
        log.exception("routing %d new tickets failed; the routing sweep will retry", len(ticket_ids))


async def unrouted_ticket_ids(rt: Runtime, limit: int = 10_000) -> list[int]:
    """Open work that was stored but never reached routing (not queued, offered or assigned)."""
    async with rt.read() as conn:
        rows = await conn.execute(
            select(T.c.id)
            .where(
                T.c.status.in_(OPEN_STATUS_VALUES),
                T.c.queued_at.is_(None),
                T.c.assignee_id.is_(None),
                T.c.offered_agent_id.is_(None),
                T.c.queue_id.is_not(None),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        return [r[0] for r in rows]


async def _run(conn: Any, name: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
    """One of ingest's hot statements (``_build``), built once per dialect and kept (see
    ``hub.db.one_of_param``), its rows. On SQLite straight through the driver (``hub.db.fetch_all``: a tenth of a
    chat batch's CPU time went to SQLAlchemy's adapter)."""
    return await _STATEMENTS.fetch_all(conn, name, params)


# The names of the pairs' two lists: messages by (channel, external id), identities by (kind, value).
_MESSAGE_PAIRS = ("channels", "ids")
_IDENTITY_PAIRS = ("kinds", "values")
_TOUCHED = ("id", "queue_id", "assignee_id", "offered_agent_id", "queued_at")  # what "touch" reads back


def _build(dialect: str, name: str) -> Any:
    if name == "stored":
        # The batch's messages already stored: their (channel, external id) pairs are bound as ``channels`` and
        # ``ids``, one element per message.
        source, condition = one_of_pairs(dialect, M.c.channel, M.c.external_id, _MESSAGE_PAIRS)
        return (
            select(M.c.id, M.c.ticket_id, M.c.contact_id, M.c.channel, M.c.external_id)
            .select_from(source)
            .where(condition)
        )
    if name == "references":
        source, condition = one_of_pairs(dialect, M.c.channel, M.c.external_id, _MESSAGE_PAIRS)
        return select(M.c.channel, M.c.external_id, M.c.ticket_id).select_from(source).where(condition)
    if name in ("identities", "identity_owners"):
        # Identities by (kind, value): with their contact's name, or (after inserting new ones) only whose they are.
        source, condition = one_of_pairs(dialect, I.c.kind, I.c.value, _IDENTITY_PAIRS)
        if name == "identity_owners":
            return select(I.c.kind, I.c.value, I.c.contact_id).select_from(source).where(condition)
        return (
            select(I.c.kind, I.c.value, I.c.contact_id, C.c.name)
            .select_from(source.join(C, C.c.id == I.c.contact_id))
            .where(condition)
        )
    if name in ("by_key", "by_key_locked"):
        query = (
            select(T.c.id, T.c.channel, T.c.thread_key, T.c.status)
            .where(one_of_param(dialect, T.c.thread_key, "keys"), T.c.status.in_(OPEN_STATUS_VALUES))
            .order_by(T.c.id)
        )
        return query.with_for_update() if name == "by_key_locked" else query
    if name == "touch":
        at = bindparam("at", type_=UTCDateTime())
        return (
            update(T)
            .where(one_of_param(dialect, T.c.id, "ids"))
            .values(last_message_at=at, updated_at=at)
            .returning(*(T.c[c] for c in _TOUCHED))
        )
    raise KeyError(name)


_STATEMENTS = KeptStatements(_build)


def _pairs(pairs: Iterable[tuple[str, str]], names: tuple[str, str] = _MESSAGE_PAIRS) -> dict[str, list[str]]:
    """``pairs`` as the two parallel lists of a ``one_of_pairs`` statement, named ``names``."""
    firsts, seconds = [], []
    for a, b in pairs:
        firsts.append(a)
        seconds.append(b)
    return {names[0]: firsts, names[1]: seconds}


@dataclass(slots=True)
class IngestItem:
    """One message of a batch as ingest works it through: its place in the batch, its sender's normalized
    identity, then its contact and ticket as they are resolved."""

    index: int
    msg: InboundMessage
    kind: str
    value: str
    contact_id: int = 0
    ticket_ref: int | str = 0  # an existing ticket id, or "new:<n>" for one this batch opens
    reopen: bool = False


async def ingest_batch(
    rt: Runtime, messages: Sequence[InboundMessage], *, also: Sequence[AlsoInTransaction] = ()
) -> list[IngestResult | Exception]:
    """Store a batch of inbound messages (``store_batch``), then route the work nobody holds; one result
    (or error) per message, in order."""
    results, waiting = await store_batch(rt, messages, also=also)
    await route_new_work(rt, waiting)
    return results


async def store_batch(
    rt: Runtime, messages: Sequence[InboundMessage], *, also: Sequence[AlsoInTransaction] = ()
) -> tuple[list[IngestResult | Exception], list[int]]:
    """Store a batch of inbound messages in one transaction: one result (or error) per message, in order,
    and the tickets this batch touched that nobody holds (for routing). Each of ``also`` runs in that
    transaction too, whatever the messages' fate.

    On PostgreSQL a ticket the batch threads into may change status (an agent solves or closes it) between
    the read that threads the batch and the lock taken to touch it; or another process may open the ticket
    of a conversation this batch was about to open (``claim_openings``). The transaction then rolls back
    and starts again, threading by what is in force (``_Rethread``)."""
    for attempt in range(1, _THREADING_ATTEMPTS + 1):
        try:
            return await _store_once(rt, messages, also=also)
        except _Rethread:
            if attempt == _THREADING_ATTEMPTS:
                raise Conflict(
                    f"the tickets these messages belong to changed {attempt} times while they were stored; "
                    "send them again"
                ) from None
    raise AssertionError("unreachable")


_THREADING_ATTEMPTS = 5


def _threads_as(status: str | None) -> str | None:
    """What of a ticket's status threading decides by: new and open are the same to it (an agent accepting a
    ticket does not send its next message elsewhere); pending and solved reopen; closed starts a new ticket."""
    return TicketStatus.OPEN.value if status == TicketStatus.NEW.value else status


class _Rethread(Exception):
    """A ticket the batch was threaded into changed status before it was locked, or a conversation it was
    about to open a ticket for got one meanwhile (see ``store_batch``)."""


async def _store_once(
    rt: Runtime, messages: Sequence[InboundMessage], *, also: Sequence[AlsoInTransaction]
) -> tuple[list[IngestResult | Exception], list[int]]:
    out: list[IngestResult | Exception | None] = [None] * len(messages)
    waiting: list[int] = []
    now = utcnow()
    region = rt.settings.default_phone_region
    async with rt.write() as tx:
        conn = tx.conn
        for extra in also:
            await extra(conn)
        # 1. Normalize identities; a message we cannot attribute is refused on its own.
        items: list[IngestItem] = []
        first_of: dict[tuple[str, str], int] = {}
        copies: list[tuple[int, int]] = []
        for i, msg in enumerate(messages):
            try:
                kind = msg.sender.kind or IDENTITY_OF_CHANNEL.get(msg.channel)
                if msg.channel not in IDENTITY_OF_CHANNEL or kind is None:
                    raise UnknownChannel(f"unknown channel {msg.channel!r}")
                kind, value = normalize(kind, msg.sender.value, default_region=region)
            except SwitchboardError as exc:
                out[i] = exc
                continue
            key = (msg.channel, msg.external_id)
            if key in first_of:
                copies.append((i, first_of[key]))
                continue
            first_of[key] = i
            items.append(IngestItem(i, msg, kind, value))
        if not items:
            return _finish(out, copies), waiting

        # 2. Already stored: answer with the stored message.
        stored = {
            (r[3], r[4]): r
            for r in await _run(conn, "stored", _pairs([(it.msg.channel, it.msg.external_id) for it in items]))
        }
        fresh: list[IngestItem] = []
        for it in items:
            row = stored.get((it.msg.channel, it.msg.external_id))
            if row is None:
                fresh.append(it)
            else:
                message_id, ticket_id, contact_id = row[0], row[1], row[2]
                out[it.index] = IngestResult(message_id, ticket_id, contact_id or 0, created=False)
        if not fresh:
            tx.after_commit.append(lambda: _count_duplicates(rt, items))
            return _finish(out, copies), waiting

        # 3. Contacts: find by identity (a phone number is one person on SMS, voice and WhatsApp), else create.
        identities = identity_cache(rt)
        generation = identities.generation
        learned = await _resolve_contacts(conn, rt, fresh, now, identities)

        # 4. Threading.
        new_tickets, locked, seen = await _thread(conn, fresh, now)

        # 5. New tickets.
        new_ids: dict[str, int] = {}
        new_rows: list[dict[str, Any]] = []
        if new_tickets:
            specs = [spec for _, spec in new_tickets]
            for (ref, spec), tid in zip(new_tickets, await insert_returning_ids(conn, T, specs), strict=True):
                new_ids[ref] = tid
                new_rows.append({**spec, "id": tid})
            await report_rollup.count_arrivals(conn, new_rows)  # the reports' rollup, in this transaction
        for it in fresh:
            if isinstance(it.ticket_ref, str):
                it.ticket_ref = new_ids[it.ticket_ref]

        # 6. Messages.
        msg_rows = [
            {
                "ticket_id": it.ticket_ref,
                "direction": Direction.INBOUND.value,
                "channel": it.msg.channel,
                "external_id": it.msg.external_id,
                "contact_id": it.contact_id,
                "author_agent_id": None,
                "sender": it.msg.sender.value,
                "recipient": it.msg.recipient,
                "subject": it.msg.subject,
                "text": it.msg.text,
                "html": sanitize_html(it.msg.html) if it.msg.html else None,
                "attachments": [a.model_dump(mode="json") for a in it.msg.attachments],
                "meta": {**it.msg.metadata, **({"references": it.msg.references} if it.msg.references else {})},
                "delivery_status": DeliveryStatus.RECEIVED.value,
                "delivery_error": None,
                "received_at": it.msg.received_at,
                "created_at": now,
            }
            for it in fresh
        ]
        # (channel, external id) is unique and distinct within the batch (copies were set aside above).
        message_ids = await insert_returning_ids_by(conn, M, msg_rows, ("channel", "external_id"))
        for it, message_id, data in zip(fresh, message_ids, msg_rows, strict=True):
            data["id"] = message_id
            out[it.index] = IngestResult(
                message_id,
                int(it.ticket_ref),
                it.contact_id,
                created=True,
                ticket_created=int(it.ticket_ref) in new_ids.values(),
            )
        await message_files.record(conn, msg_rows)
        await search_index.index_new(conn, tickets=bool(new_ids))

        # 7. Existing tickets: new activity; a customer writing again reopens a pending or solved ticket.
        new_id_set = set(new_ids.values())
        touched = {int(it.ticket_ref): it.reopen for it in fresh if int(it.ticket_ref) not in new_id_set}
        ticket_rows = {r["id"]: r for r in new_rows}
        if touched:
            ids = sorted(touched)
            if conn.dialect.name == "postgresql" and not locked.issuperset(ids):
                # One lock order (ascending id) against concurrent writers; SQLite has one writer at a time.
                # Threading read these tickets' status without a lock: if it changed since, thread again.
                held = await conn.execute(
                    select(T.c.id, T.c.status).where(one_of(conn, T.c.id, ids)).order_by(T.c.id).with_for_update()
                )
                if any(_threads_as(status) != _threads_as(seen.get(ticket_id)) for ticket_id, status in held):
                    raise _Rethread
            values: dict[str, Any] = {"last_message_at": now, "updated_at": now}
            reopen = [t for t, r in touched.items() if r]
            if reopen:
                reopening = one_of(conn, T.c.id, reopen)
                values["status"] = case((reopening, TicketStatus.OPEN.value), else_=T.c.status)
                values["solved_at"] = case((reopening, null()), else_=T.c.solved_at)
            # One statement for every touched ticket, which also reads them back for the events: the whole row
            # for a reopened ticket's event, else what a message's event and routing need.
            if reopen:
                await resume_paused(conn, reopen, now)  # SLA clocks stopped while pending on the customer
                touch = update(T).where(one_of(conn, T.c.id, ids)).values(values).returning(*T.c)
                for full in await conn.execute(touch):
                    ticket_rows[full.id] = full._asdict()
            else:
                for r in await _run(conn, "touch", {"ids": ids, "at": now}):
                    ticket_rows[r[0]] = dict(zip(_TOUCHED, r, strict=True))

        # 7b. What an adapter asks of routing (an IVR's priority and skills) also applies to work already waiting
        # that its message lands on (a caller whose earlier call is still open): routing serves it as asked.
        asked = [
            it
            for it in fresh
            if (it.msg.priority or it.msg.skills)
            and int(it.ticket_ref) not in new_id_set
            and ticket_rows[int(it.ticket_ref)]["assignee_id"] is None
        ]
        for it in asked:
            ticket_id = int(it.ticket_ref)
            own = (await conn.execute(select(T.c.skills).where(T.c.id == ticket_id))).scalar()
            change: dict[str, Any] = {"priority": it.msg.priority} if it.msg.priority else {}
            if it.msg.skills:
                change["skills"] = {**(own or {}), **it.msg.skills}
            full = (await conn.execute(update(T).where(T.c.id == ticket_id).values(change).returning(*T.c))).one()
            ticket_rows[ticket_id] = full._asdict()
            tx.emit(ticket_event(EventType.TICKET_UPDATED, full, changes=sorted(change)))

        # 8. Events; new, reopened and never-queued work nobody holds goes to routing after the commit. Work
        # already waiting in its queue is not routed again for each message: it is offered when capacity frees
        # (and by the routing tick), in its turn.
        for created in new_rows:
            tx.emit(ticket_event(EventType.TICKET_CREATED, created))
        for t, reopened in touched.items():
            if reopened:
                tx.emit(ticket_event(EventType.TICKET_UPDATED, ticket_rows[t], changes=["status"]))
        for data in msg_rows:
            tx.emit(message_event(data, ticket_rows[data["ticket_id"]]))
        waiting = [
            t
            for t, r in ticket_rows.items()
            if r["assignee_id"] is None
            and r["offered_agent_id"] is None
            and (r.get("queued_at") is None or touched.get(t, False))
        ]
        tx.after_commit.append(lambda: _count(rt, fresh, items))
        if learned:
            tx.after_commit.append(lambda: remember(identities, learned, generation))
    return _finish(out, copies), waiting


def _finish(
    out: list[IngestResult | Exception | None], copies: list[tuple[int, int]]
) -> list[IngestResult | Exception]:
    for dup, first in copies:
        original = out[first]
        if isinstance(original, IngestResult):
            out[dup] = IngestResult(original.message_id, original.ticket_id, original.contact_id, created=False)
        else:
            out[dup] = original
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _count(rt: Runtime, fresh: list[IngestItem], items: list[IngestItem]) -> None:
    _count_per_channel(rt.metrics.messages_ingested, fresh)
    if len(items) > len(fresh):
        fresh_ids = {id(it) for it in fresh}
        _count_duplicates(rt, [it for it in items if id(it) not in fresh_ids])


def _count_duplicates(rt: Runtime, items: list[IngestItem]) -> None:
    _count_per_channel(rt.metrics.messages_duplicate, items)


def _count_per_channel(counter: Any, items: list[IngestItem]) -> None:
    # One increment per channel and batch, not per message.
    for channel, n in Counter(it.msg.channel for it in items).items():
        counter.labels(channel).inc(n)


async def _resolve_contacts(
    conn: Any, rt: Runtime, fresh: list[IngestItem], now: Any, cache: IdentityCache
) -> dict[tuple[str, str], tuple[int, bool]]:
    """Set each item's contact; returns what to add to ``cache`` once the transaction commits."""
    # A cached identity is enough unless the message brings a name for a contact we have none for (the
    # lookup below learns it).
    pending = []
    for it in fresh:
        hit = cache.get((it.kind, it.value))
        if hit is not None and (hit[1] or not it.msg.sender.name):
            it.contact_id = hit[0]
        else:
            pending.append(it)
    if not pending:
        return {}
    fresh = pending
    asked = {(k, it.value) for it in fresh for k in lookup_kinds(it.kind)}
    known: dict[tuple[str, str], int] = {}
    unnamed: set[int] = set()  # known contacts we have no name for yet
    named_contacts: set[int] = set()  # contacts known to have a name
    for kind, value, contact_id, name in await _run(conn, "identities", _pairs(asked, _IDENTITY_PAIRS)):
        known[(kind, value)] = contact_id
        if name is None:
            unnamed.add(contact_id)
        else:
            named_contacts.add(contact_id)

    def lookup(it: IngestItem) -> int | None:
        for k in (it.kind, *lookup_kinds(it.kind)):
            if (k, it.value) in known:
                return known[(k, it.value)]
        return None

    # One new contact per distinct person not yet known.
    person_of: dict[tuple[tuple[str, ...], str], IngestItem] = {}
    for it in fresh:
        if lookup(it) is None:
            person_of.setdefault((lookup_kinds(it.kind), it.value), it)
    if person_of:
        people = list(person_of.items())
        created = await insert_returning_ids(
            conn,
            C,
            [{"name": it.msg.sender.name, "attributes": {}, "created_at": now, "updated_at": now} for _, it in people],
        )
        new_contact = {key: cid for (key, _), cid in zip(people, created, strict=True)}
        named_contacts |= {cid for (_, it), cid in zip(people, created, strict=True) if it.msg.sender.name}
    else:
        new_contact = {}
    wanted: dict[tuple[str, str], int] = {}
    for it in fresh:
        cid = lookup(it)
        if cid is None:
            cid = new_contact[(lookup_kinds(it.kind), it.value)]
        if (it.kind, it.value) not in known:
            wanted.setdefault((it.kind, it.value), cid)
    if wanted:
        await insert_rows(
            conn,
            I,
            [{"kind": k, "value": v, "contact_id": c, "created_at": now} for (k, v), c in wanted.items()],
            ignore_conflicts=True,
        )
        # Another process may have won the race for an identity: the stored one is the truth.
        for kind, value, contact_id in await _run(conn, "identity_owners", _pairs(wanted, _IDENTITY_PAIRS)):
            known[(kind, value)] = contact_id
        unused = set(new_contact.values()) - set(known.values())
        if unused:
            await conn.execute(delete(C).where(one_of(conn, C.c.id, unused)))
    for it in fresh:
        cid = lookup(it)
        assert cid is not None
        it.contact_id = cid
    # Learn a name we did not have (new contacts got theirs when created).
    named = {it.contact_id: it.msg.sender.name for it in fresh if it.msg.sender.name and it.contact_id in unnamed}
    if named:
        await conn.execute(
            update(C)
            .where(C.c.id == bindparam("cid"), C.c.name.is_(None))
            .values(name=bindparam("nm"), updated_at=now),
            [{"cid": c, "nm": n} for c, n in named.items()],
        )
        named_contacts |= set(named)
    # A contact another process created (it won an identity's race) counts as unnamed: at worst its next
    # message with a name looks it up again.
    return {(it.kind, it.value): (it.contact_id, it.contact_id in named_contacts) for it in fresh}


async def _thread(
    conn: Any, fresh: list[IngestItem], now: Any
) -> tuple[list[tuple[str, dict[str, Any]]], set[int], dict[int, str]]:
    """Decide each message's ticket; returns the tickets to open as (ref, row) pairs, the tickets this
    already locked (PostgreSQL) in the one lock order, ascending id, and the status of each existing ticket
    it read, which the decisions rest on."""
    seen: dict[int, str] = {}

    def saw(ticket_id: int, status: str) -> None:
        # Read twice with two statuses (it changed between two statements): no status is the one in force.
        seen[ticket_id] = status if seen.get(ticket_id, status) == status else ""

    refs = [(it.msg.channel, r) for it in fresh for r in it.msg.references]
    ref_ticket: dict[tuple[str, str], int] = {}
    if refs:
        for channel, external_id, ticket_id in await _run(conn, "references", _pairs(refs)):
            ref_ticket[(channel, external_id)] = ticket_id
    hints = {it.msg.ticket_hint for it in fresh if it.msg.ticket_hint}
    participants: set[tuple[int, int]] = set()
    if hints:
        participants |= {
            (r.ticket_id, r.contact_id)
            for r in await conn.execute(
                select(M.c.ticket_id, M.c.contact_id).where(one_of(conn, M.c.ticket_id, hints)).distinct()
            )
        }
        participants |= {
            (r.id, r.contact_id)
            for r in await conn.execute(select(T.c.id, T.c.contact_id).where(one_of(conn, T.c.id, hints)))
        }
    linked_ids = set(ref_ticket.values()) | {t for t, _ in participants}
    linked = (
        {
            r.id: r
            for r in await conn.execute(
                select(T.c.id, T.c.status, T.c.queue_id).where(one_of(conn, T.c.id, linked_ids))
            )
        }
        if linked_ids
        else {}
    )
    for t, r in linked.items():
        saw(t, r.status)

    keys = {(it.msg.channel, it.msg.thread_key) for it in fresh if it.msg.thread_key}
    by_key: dict[tuple[str, str], int] = {}
    pending: set[int] = set()  # open conversations waiting on the customer: a message from them reopens it
    locked: set[int] = set()
    if keys:
        # When every message threads by its key (a chat batch, a webhook's, however many messages share a
        # conversation), the tickets it touches are among these: lock them here, in the one lock order, and save
        # the separate locking statement. Otherwise the locks are taken later for every touched ticket at once
        # (taking some here would break the order).
        lock = conn.dialect.name == "postgresql" and not refs and not hints and all(it.msg.thread_key for it in fresh)
        for ticket_id, channel, thread_key, status in await _run(
            conn, "by_key_locked" if lock else "by_key", {"keys": list({k for _, k in keys})}
        ):
            by_key[(channel, thread_key)] = ticket_id
            saw(ticket_id, status)
            if status == TicketStatus.PENDING:
                pending.add(ticket_id)
            if lock:
                locked.add(ticket_id)
    # The contact's open conversation on the channel: only for messages without a thread key.
    contacts = {it.contact_id for it in fresh if not it.msg.thread_key}
    by_contact: dict[tuple[Any, ...], int] = {}
    if contacts:
        for r in await _open_by_contact(conn, contacts):
            by_contact[_contact_conversation(r.contact_id, r.channel, r.subject)] = r.id
            saw(r.id, r.status)
            if r.status == TicketStatus.PENDING:
                pending.add(r.id)

    opening: list[tuple[str, IngestItem, int | None]] = []

    def open_new(it: IngestItem, linked_to: int | None = None) -> str:
        ref = f"new:{len(opening)}"
        opening.append((ref, it, linked_to))
        return ref

    for it in fresh:
        target: int | None = None
        for r in reversed(it.msg.references):
            target = ref_ticket.get((it.msg.channel, r))
            if target:
                break
        if target is None and it.msg.ticket_hint and (it.msg.ticket_hint, it.contact_id) in participants:
            target = it.msg.ticket_hint
        if target is not None and target in linked:
            status = linked[target].status
            if status == TicketStatus.CLOSED:
                it.ticket_ref = open_new(it, linked_to=target)
            else:
                it.ticket_ref = target
                it.reopen = status in (TicketStatus.SOLVED, TicketStatus.PENDING)
            continue
        if it.msg.thread_key:
            key = (it.msg.channel, it.msg.thread_key)
            if key not in by_key:
                by_key[key] = open_new(it)  # type: ignore[assignment]
            it.ticket_ref = by_key[key]
        else:
            ckey = _contact_conversation(it.contact_id, it.msg.channel, it.msg.subject)
            if ckey not in by_contact:
                by_contact[ckey] = open_new(it)  # type: ignore[assignment]
            it.ticket_ref = by_contact[ckey]
        it.reopen = it.ticket_ref in pending
    if not opening:
        return [], locked, seen
    if conn.dialect.name == "postgresql":
        await claim_openings(conn, [it for _, it, linked_to in opening if linked_to is None])

    # A conversation whose ticket was solved or closed goes on in a new ticket, linked to the one before.
    continuing = {(it.msg.channel, it.msg.thread_key) for _, it, to in opening if to is None and it.msg.thread_key}
    if continuing:
        follows = await _previous_tickets(conn, continuing)
        opening = [
            (ref, it, follows.get((it.msg.channel, it.msg.thread_key)) if to is None and it.msg.thread_key else to)
            for ref, it, to in opening
        ]

    # New tickets: the queues and the rules that place them are read only when some are opened.
    queues = (await conn.execute(select(Q.c.id, Q.c.name, Q.c.channels).order_by(Q.c.id))).all()
    by_name = {q.name: q.id for q in queues}
    rules = await get_routing_rules(conn)
    attributes: dict[int, dict[str, Any]] = {}
    if rules.rules:
        attributes = {
            r.id: r.attributes or {}
            for r in await conn.execute(
                select(C.c.id, C.c.attributes).where(one_of(conn, C.c.id, {it.contact_id for _, it, _ in opening}))
            )
        }
    new: list[tuple[str, dict[str, Any]]] = []
    for ref, it, linked_to in opening:
        msg = it.msg
        queue_id, rule, _ = pick_queue(
            rules,
            by_name,
            queues,
            channel=msg.channel,
            recipient=msg.recipient,
            metadata=msg.metadata,
            subject=msg.subject,
            text=msg.text,
            adapter_queue=msg.queue,
            contact_attributes=attributes.get(it.contact_id),
        )
        subject = it.msg.subject or _first_line(it.msg.text) or f"{it.msg.channel} conversation"
        new.append(
            (
                ref,
                {
                    "subject": subject[:500],
                    "status": TicketStatus.NEW.value,
                    "priority": (rule.priority if rule and rule.priority else None) or msg.priority or "normal",
                    "skills": _skills(msg.skills, rule.skills if rule else None),
                    "routing": {"decision": "queue", "reason": f"rule {rule.name!r}", "at": now.isoformat()}
                    if rule
                    else None,
                    "channel": it.msg.channel,
                    "thread_key": it.msg.thread_key,
                    "contact_id": it.contact_id,
                    "queue_id": queue_id,
                    "assignee_id": None,
                    "offered_agent_id": None,
                    "offer_expires_at": None,
                    "tags": [],
                    "linked_ticket_id": linked_to,
                    "created_at": now,
                    "updated_at": now,
                    "last_message_at": now,
                    "first_response_at": None,
                    "first_response_due_at": None,
                    "resolution_due_at": None,
                    "solved_at": None,
                    "closed_at": None,
                },
            )
        )
    return new, locked, seen


def _skills(asked: dict[str, int], by_rule: dict[str, int] | None) -> dict[str, int] | None:
    """A new ticket's own skills: the adapter's (an IVR's) with a queue-selection rule's added over them."""
    merged = {**asked, **(by_rule or {})}
    return merged or None


_OPENING_LOCK_SPACE = 0x1A6E57  # names the locks (``hub.db.lock_keys``) on conversations about to be opened


def _opening_key(it: IngestItem) -> str:
    """What makes two messages one conversation when no ticket holds it yet: the channel's thread key, else
    the contact on the channel (and for email the subject: ``_contact_conversation``)."""
    if it.msg.thread_key:
        return f"key\x1f{it.msg.channel}\x1f{it.msg.thread_key}"
    return "contact\x1f" + "\x1f".join(map(str, _contact_conversation(it.contact_id, it.msg.channel, it.msg.subject)))


EMAIL_CHANNELS = frozenset(name for name, spec in SPECS.items() if spec.capacity_class == CapacityClass.EMAIL)
# Reply and forward prefixes in the languages mail clients write them (Re, Fwd, AW, WG, SV, VS, Antw, RIF, ...),
# with a counter ("Re[2]:"), and a ticket tag ("[#12]"): none of it makes a subject another matter.
_SUBJECT_NOISE = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|antw|rif|tr|r)\s*(?:\[\d+\])?\s*:\s*|\[#\d+\]\s*)", re.I)


def subject_key(subject: str | None) -> str:
    """A subject as email threading compares it: without reply/forward prefixes and ticket tags, case and
    spacing folded."""
    text = subject or ""
    while True:
        stripped = _SUBJECT_NOISE.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(re.sub(r"\[#\d+\]", " ", text).split()).casefold()


def _contact_conversation(contact_id: int, channel: str, subject: str | None) -> tuple[Any, ...]:
    """Which open ticket a message without a thread key (and without a reference) goes on: the contact's
    conversation on the channel (SMS, messaging); for email the contact's open ticket of the same subject, so a
    customer writing about a second matter opens a second ticket instead of burying it in the first."""
    if channel in EMAIL_CHANNELS:
        return (contact_id, channel, subject_key(subject))
    return (contact_id, channel)


async def _previous_tickets(conn: Any, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The newest ticket of each (channel, thread key) conversation: asked only when a conversation opens a new
    ticket, which then follows that one (no open ticket holds the key, so it is solved or closed)."""
    if not keys:
        return {}
    rows = await conn.execute(
        select(T.c.channel, T.c.thread_key, T.c.id)
        .where(one_of(conn, T.c.thread_key, {k for _, k in keys}))
        .order_by(T.c.id)
    )
    return {(r.channel, r.thread_key): r.id for r in rows if (r.channel, r.thread_key) in keys}


_HTML_LINK_REL = "noopener noreferrer nofollow"


def sanitize_html(html: str) -> str:
    """HTML as the core stores it: cleaned with nh3 (no script, event handler, ``javascript:`` URL or style
    that could act in an agent's browser), whatever the adapter or API client that handed it did."""
    return nh3.clean(html, link_rel=_HTML_LINK_REL)


async def claim_openings(conn: Any, opening: list[IngestItem]) -> None:
    """PostgreSQL: before opening tickets for conversations that have none, hold each conversation's lock
    until commit, then look again; if another transaction opened one meanwhile, thread again (into it).

    No row exists yet to lock, so without this two processes receiving a conversation's first messages at
    once would each open a ticket. The locks are taken in one order (by key hash); a transaction that holds
    one commits its ticket before it is released, so the second look sees it. SQLite runs one writer at a
    time, and one process's ingest is one writer task: neither needs this."""
    if not opening:
        return
    await lock_keys(conn, _OPENING_LOCK_SPACE, [_opening_key(it) for it in opening])
    keyed = {(it.msg.channel, it.msg.thread_key) for it in opening if it.msg.thread_key}
    if keyed and any(
        (channel, thread_key) in keyed
        for _, channel, thread_key, _ in await _run(conn, "by_key", {"keys": list({k for _, k in keyed})})
    ):
        raise _Rethread
    by_contact = {
        _contact_conversation(it.contact_id, it.msg.channel, it.msg.subject) for it in opening if not it.msg.thread_key
    }
    if by_contact and any(
        _contact_conversation(r.contact_id, r.channel, r.subject) in by_contact
        for r in await _open_by_contact(conn, {c[0] for c in by_contact})
    ):
        raise _Rethread


async def _open_by_contact(conn: Any, contacts: set[int]) -> Any:
    """The open tickets of ``contacts`` that no thread key holds (each a contact's conversation on a channel),
    by id."""
    return await conn.execute(
        select(T.c.id, T.c.contact_id, T.c.channel, T.c.status, T.c.subject)
        .where(one_of(conn, T.c.contact_id, contacts), T.c.status.in_(OPEN_STATUS_VALUES), T.c.thread_key.is_(None))
        .order_by(T.c.id)
    )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""
