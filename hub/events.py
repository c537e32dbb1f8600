"""The event log: every change appends a row with a global, increasing ``seq``.

Invariants:
- ``seq`` order is commit order. On PostgreSQL every transaction that appends events takes one advisory
  transaction lock first (``append_events``), so a transaction cannot commit seq N+1 while N is still in
  flight; a reader that sees N+1 knows N is committed or rolled back. SQLite has one writer, so it holds
  there by construction.
- Events are appended by ``append_events`` only: on PostgreSQL it takes a batch's seqs from the sequence in
  one step under that lock (``_APPEND``), which is safe because nobody else draws from it.
- Events are published only after their transaction commits (see ``hub.bus``).
- Who may see an event follows from ``queue_id`` and ``agent_id`` alone (``EventRecord.visible_to``), so a
  resume from the log and the live stream filter identically.
- Every event type has a payload model (``EventPayload``), defined by the package that appends it and
  registered here with ``@event_payload("type")``; ``append_events`` checks each payload against its model, so
  what a client receives is what the model says. The models are the contract behind Zulip's rule, which the
  tests check for every type (tests/hub/test_event_models.py): a client's state, loaded over REST, plus the
  events after it equals a fresh load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import JSON, BigInteger, Index, bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel

from hub.db import BigId, JSONType, UTCDateTime, array_type, column_arrays, insert_returning_ids, utcnow

log = logging.getLogger(__name__)

# Arbitrary constant naming the one advisory lock that orders event appends on PostgreSQL.
EVENT_LOCK_KEY = 0x5B0A_4D01


class EventType(StrEnum):
    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    MESSAGE_CREATED = "message.created"
    MESSAGE_STATUS = "message.status"
    TICKET_OFFERED = "ticket.offered"
    TICKET_ASSIGNED = "ticket.assigned"
    TICKET_QUEUED = "ticket.queued"
    OFFER_DECLINED = "offer.declined"
    OFFER_EXPIRED = "offer.expired"
    OFFER_ACCEPTED = "offer.accepted"
    TICKET_OVERFLOWED = "ticket.overflowed"
    TICKET_REQUEUED = "ticket.requeued"
    AGENT_STATUS = "agent.status"
    CONTACT_UPDATED = "contact.updated"
    CONTACT_MERGED = "contact.merged"
    CONTACT_UNMERGED = "contact.unmerged"
    CONTACT_ERASED = "contact.erased"
    TYPING = "typing"
    CALL_ABANDONED = "call.abandoned"
    CHANNEL_HEALTH = "channel.health"  # a channel account's health changed (channels/social): everyone sees it


# Event types that are never appended: ephemeral frames (``EventHub.broadcast_ephemeral``), with no row and no seq.
EPHEMERAL_TYPES = frozenset({EventType.TYPING.value})


# --- payload models -------------------------------------------------------------------------------------------


class EventPayload(BaseModel):
    """The payload of one event type (``NewEvent.payload``, the frame's ``data``). A field the model does not
    name is refused: a payload grows by adding a field here, and clients read only what a model says."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=EventPayload)

# Event type -> its payload model: the one registry, filled by ``@event_payload`` as each package's models load.
EVENT_PAYLOADS: dict[str, type[EventPayload]] = {}
# Event type -> (the fields its payload must have, the fields it may have), for the check on the hot path.
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


def event_payload(*types: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: ``model`` is the payload of these event types. A type has one model."""

    def register(model: type[M]) -> type[M]:
        for type_ in types:
            known = EVENT_PAYLOADS.get(type_)
            if known is not None and known is not model:
                raise ValueError(f"event type {type_!r} already has the payload model {known.__name__}")
            EVENT_PAYLOADS[type_] = model
            fields = model.model_fields
            _FIELDS[type_] = (
                frozenset(name for name, f in fields.items() if f.is_required()),
                frozenset(fields),
            )
        return model

    return register


class UnregisteredEvent(RuntimeError):
    """An event type was appended without a payload model (``@event_payload``, see CONTRIBUTING.md)."""


class InvalidEventPayload(ValueError):
    """A payload does not match its event type's model: the code that built it and the model disagree."""


# Strict (the test suite): every payload is validated in full against its model, and a type without a model
# is refused. Otherwise (a running hub, on the ingest and chat paths): each payload's fields are checked
# against its model's (none missing, none unknown): about 1 µs per event (timeit, on a loaded 2-core machine),
# where validating a new ticket's three payloads in full cost about 15 µs per message ingested, a twentieth
# of ingest's CPU time. A type without a model is appended with a warning (a client may not understand it,
# but the change it records is not lost).
_STRICT = [False]
_warned: set[str] = set()


def require_payload_models(required: bool = True) -> None:
    """Strict checking (see ``_STRICT``): the tests turn it on for the whole suite."""
    _STRICT[0] = required


def check_payloads(events: Sequence[NewEvent]) -> None:
    """Check each event's payload against its type's model (``InvalidEventPayload``): in full when strict, else
    its fields. An unregistered type is ``UnregisteredEvent`` when strict, else a warning once per type and
    process. Builds nothing it keeps: the payload stored and sent is the dict given."""
    strict = _STRICT[0]
    for e in events:
        fields = _FIELDS.get(e.type)
        if fields is None:
            if strict:
                raise UnregisteredEvent(f"event type {e.type!r} has no payload model (hub.events.event_payload)")
            if e.type not in _warned:
                _warned.add(e.type)
                log.warning("event type %r has no payload model; appended unchecked", e.type)
            continue
        required, allowed = fields
        keys = e.payload.keys()
        if not (required <= keys and keys <= allowed):
            raise InvalidEventPayload(
                f"{e.type} payload has the fields {sorted(keys)}; its model "
                f"{EVENT_PAYLOADS[e.type].__name__} requires {sorted(required)} and allows {sorted(allowed)}"
            )
        if strict:
            model = EVENT_PAYLOADS[e.type]
            try:
                model.__pydantic_validator__.validate_python(e.payload)
            except ValidationError as exc:
                raise InvalidEventPayload(f"{e.type} payload does not match {model.__name__}: {exc}") from None


def parse_payload(type_: str, payload: dict[str, Any]) -> EventPayload:
    """An event's payload as its model (for clients written in Python, and the tests' reducer)."""
    model = EVENT_PAYLOADS.get(type_)
    if model is None:
        raise UnregisteredEvent(f"event type {type_!r} has no payload model")
    return model.model_validate(payload)


class Event(SQLModel, table=True):
    """One row of the append-only event log."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_created_at", "created_at"), {"sqlite_autoincrement": True})

    seq: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    type: str = Field(max_length=64)
    ticket_id: int | None = Field(default=None, index=True)
    queue_id: int | None = None
    agent_id: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the visibility rule needs to know about whoever watches the stream."""

    agent_id: int
    sees_all: bool
    queue_ids: frozenset[int] = frozenset()


@dataclass(slots=True)
class NewEvent:
    """An event about to be appended."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    ticket_id: int | None = None
    queue_id: int | None = None
    agent_id: int | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An appended event, as published and as sent to websocket clients."""

    seq: int
    type: str
    payload: dict[str, Any]
    created_at: datetime
    ticket_id: int | None = None
    queue_id: int | None = None
    agent_id: int | None = None

    def visible_to(self, viewer: Viewer) -> bool:
        """Supervisors see everything; an agent sees events of their queues, about themselves, and global ones."""
        if viewer.sees_all or self.agent_id == viewer.agent_id:
            return True
        if self.queue_id is not None:
            return self.queue_id in viewer.queue_ids
        return self.agent_id is None

    def frame(self) -> dict[str, Any]:
        """The websocket frame: ``type`` is the event type, ``seq`` its position in the log."""
        return {
            "type": self.type,
            "seq": self.seq,
            "ticket_id": self.ticket_id,
            "queue_id": self.queue_id,
            "agent_id": self.agent_id,
            "at": self.created_at.isoformat(),
            "data": self.payload,
        }

    @classmethod
    def from_frame(cls, data: dict[str, Any]) -> EventRecord:
        return cls(
            seq=data["seq"],
            type=data["type"],
            payload=data["data"],
            created_at=datetime.fromisoformat(data["at"]),
            ticket_id=data["ticket_id"],
            queue_id=data["queue_id"],
            agent_id=data["agent_id"],
        )

    @classmethod
    def from_row(cls, row: Any) -> EventRecord:
        return cls(
            seq=row.seq,
            type=row.type,
            payload=row.payload,
            created_at=row.created_at,
            ticket_id=row.ticket_id,
            queue_id=row.queue_id,
            agent_id=row.agent_id,
        )


_events = Event.__table__  # type: ignore[attr-defined]


async def append_events(conn: AsyncConnection, events: Sequence[NewEvent]) -> list[EventRecord]:
    """Append ``events`` inside the caller's transaction; call it last, just before commit."""
    if not events:
        return []
    check_payloads(events)
    now = utcnow()
    rows = [
        {
            "type": e.type,
            "payload": e.payload,
            "ticket_id": e.ticket_id,
            "queue_id": e.queue_id,
            "agent_id": e.agent_id,
            "created_at": now,
        }
        for e in events
    ]
    if conn.dialect.name == "postgresql":
        # One statement: the lock, then (under it) the next n seqs in one step rather than one nextval per
        # event (a tenth of the database's CPU time during ingest went to drawing keys one by one), then the
        # rows, the k-th of them numbered last - n + k.
        params = {f"c{i}": values for i, values in enumerate(column_arrays(_events, _APPEND_COLUMNS, rows))}
        result = await conn.execute(_APPEND, {"k": EVENT_LOCK_KEY, "n": len(rows), **params})
        last = max(int(r[0]) for r in result)
        seqs = list(range(last - len(rows) + 1, last + 1))
    else:
        seqs = await insert_returning_ids(conn, _events, rows, pk="seq")
    return [
        EventRecord(
            seq=seq,
            type=e.type,
            payload=e.payload,
            created_at=now,
            ticket_id=e.ticket_id,
            queue_id=e.queue_id,
            agent_id=e.agent_id,
        )
        for seq, e in zip(seqs, events, strict=True)
    ]


_APPEND_COLUMNS = ("type", "payload", "ticket_id", "queue_id", "agent_id", "created_at")


def _append_statement() -> Any:
    """PostgreSQL's append: the materialized CTEs run once each, in order (``reserved`` reads ``locked``), and
    before any row is inserted (every row joins ``reserved``), so no seq is drawn before the lock is held."""
    names = [f"c{i}" for i in range(len(_APPEND_COLUMNS))]
    picked = ", ".join(
        f"u.{n}::jsonb" if isinstance(_events.c[c].type, JSON) else f"u.{n}"
        for n, c in zip(names, _APPEND_COLUMNS, strict=True)
    )
    sql = (
        "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(:k)), "
        "reserved AS MATERIALIZED (SELECT setval(pg_get_serial_sequence('events', 'seq'), "
        "nextval(pg_get_serial_sequence('events', 'seq')) + :n - 1) AS last FROM locked) "
        f"INSERT INTO events (seq, {', '.join(_APPEND_COLUMNS)}) "
        f"SELECT reserved.last - :n + u.ord, {picked} FROM reserved, "
        f"unnest({', '.join(':' + n for n in names)}) WITH ORDINALITY AS u({', '.join(names)}, ord) "
        "RETURNING seq"
    )
    binds = [bindparam(n, type_=array_type(_events.c[c].type)) for n, c in zip(names, _APPEND_COLUMNS, strict=True)]
    return text(sql).bindparams(bindparam("k", type_=BigInteger()), bindparam("n", type_=BigInteger()), *binds)


_APPEND = _append_statement()


async def events_after(conn: AsyncConnection, seq: int, limit: int = 10_000) -> list[EventRecord]:
    """Committed events with ``seq`` greater than the given one, oldest first."""
    result = await conn.execute(select(_events).where(_events.c.seq > seq).order_by(_events.c.seq).limit(limit))
    return [EventRecord.from_row(r) for r in result]


async def seq_bounds(conn: AsyncConnection) -> tuple[int, int]:
    """(oldest kept seq, newest seq); (0, 0) for an empty log."""
    row = (await conn.execute(select(func.min(_events.c.seq), func.max(_events.c.seq)))).one()
    return int(row[0] or 0), int(row[1] or 0)


async def prune_events(conn: AsyncConnection, older_than: datetime) -> int:
    """Drop events older than the retention window, always keeping the newest one (it anchors ``seq``)."""
    newest = (await conn.execute(select(func.max(_events.c.seq)))).scalar()
    if newest is None:
        return 0
    result = await conn.execute(delete(_events).where(_events.c.created_at < older_than, _events.c.seq < newest))
    return int(result.rowcount or 0)
