"""The payload models of the ticketing core's events (``hub.events.EventPayload``), registered as the module
loads. ``ticketing.tickets`` builds the ticket and message payloads (``ticket_event``, ``message_event``); the
others are built where they are appended. ``hub.events.append_events`` checks every payload against these.

A client keeps what these models carry, and a fresh REST read gives the same (tests/hub/test_event_models.py):
a ticket's ``TicketSummary`` is its ``TicketRead`` less the fields no event changes; a message's
``MessageSummary`` is its ``MessageRead`` less its HTML and addresses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.events import EventPayload, EventType, event_payload


class TicketSummary(EventPayload):
    """A ticket as events carry it (``ticketing.tickets.ticket_summary``)."""

    id: int
    number: str
    subject: str | None
    status: str
    priority: str
    channel: str
    contact_id: int | None
    queue_id: int | None
    assignee_id: int | None
    offered_agent_id: int | None
    offer_expires_at: datetime | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime | None
    last_message_at: datetime | None
    rating: int | None
    rating_comment: str | None
    # For the wallboard and the console's SLA timers (a ticket just inserted has none of them yet).
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    first_response_at: datetime | None = None
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    sla_paused_at: datetime | None = None


class TicketChanged(EventPayload):
    """A ticket's new state; ``by`` is the agent who did it, if an agent did."""

    ticket: TicketSummary
    by: int | None = None


@event_payload(EventType.TICKET_CREATED)
class TicketCreated(TicketChanged):
    pass


class Deflection(EventPayload):
    """The knowledge-base article its customer said answered them (``ticketing.conversations.close_deflected``)."""

    article_id: int


@event_payload(EventType.TICKET_UPDATED)
class TicketUpdated(TicketChanged):
    """``changes``: the fields changed (``transfer`` for a transfer, with where it came from); a rating brings
    its ``rating`` and ``comment``; a conversation its customer closed with an article, ``deflected``."""

    changes: list[str] = []
    from_queue_id: int | None = None
    erased: bool = False  # closed because its contact was erased
    from_agent_id: int | None = None
    rating: int | None = None
    comment: str | None = None
    deflected: Deflection | None = None


@event_payload(EventType.TICKET_ASSIGNED)
class TicketAssigned(TicketChanged):
    """``pulled``: the agent took it from a view (``routing_service.pull_ticket``), not from an offer."""

    pulled: bool = False


@event_payload(EventType.TICKET_OFFERED)
class TicketOffered(TicketChanged):
    """Offered to ``ticket.offered_agent_id`` until ``ticket.offer_expires_at`` (``offer_timeout`` seconds)."""

    reason: str
    offer_timeout: float


@event_payload(EventType.TICKET_QUEUED)
class TicketQueued(TicketChanged):
    reason: str


@event_payload(EventType.TICKET_OVERFLOWED)
class TicketOverflowed(TicketChanged):
    reason: str
    from_queue_id: int | None


class MessageSummary(EventPayload):
    """A message as events carry it (``ticketing.tickets.message_summary``): its text cut at
    ``EVENT_TEXT_LIMIT`` characters (``truncated``)."""

    id: int
    ticket_id: int
    direction: str
    channel: str
    author_agent_id: int | None
    sender: str | None
    subject: str | None
    text: str
    truncated: bool
    attachments: list[dict[str, Any]]
    delivery_status: str | None
    created_at: datetime | None


@event_payload(EventType.MESSAGE_CREATED)
class MessageCreated(EventPayload):
    message: MessageSummary


@event_payload(EventType.MESSAGE_STATUS)
class MessageStatus(EventPayload):
    """A message's delivery status moved (or a pending one's last attempt failed: ``error``)."""

    message_id: int
    ticket_id: int
    status: str
    error: str | None


@event_payload(EventType.OFFER_ACCEPTED)
class OfferAccepted(EventPayload):
    ticket_id: int
    agent_id: int


@event_payload(EventType.OFFER_DECLINED, EventType.OFFER_EXPIRED, EventType.TICKET_REQUEUED)
class OfferTakenBack(EventPayload):
    """An offer (or, re-queued, an assignment) taken back from ``agent_id``; the ticket's new holder follows in
    its own event."""

    ticket_id: int
    agent_id: int
    reason: str


@event_payload(EventType.AGENT_STATUS)
class AgentStatusChanged(EventPayload):
    agent_id: int
    status: str
    reason: str | None = None
    wrap_up_until: datetime | None = None


@event_payload(EventType.CONTACT_UPDATED)
class ContactUpdated(EventPayload):
    """A contact changed: a conversation's contact gave an ``email`` address (``linked``: it became an identity of
    the contact); an agent changed its ``fields`` (names only: the values are personal data); or added the
    contact note ``note_id``."""

    contact_id: int
    email: str | None = None
    linked: bool | None = None
    fields: list[str] = []
    note_id: int | None = None


@event_payload(EventType.CONTACT_MERGED, EventType.CONTACT_UNMERGED)
class ContactsMerged(EventPayload):
    """``contact_ids`` = [survivor, merged]; merged: ``ticket_ids`` moved from the merged contact to the survivor;
    unmerged (the merge ``merge_id`` undone): ``ticket_ids`` moved back."""

    contact_ids: list[int]
    merge_id: int
    ticket_ids: list[int] = []


@event_payload(EventType.CONTACT_ERASED)
class ContactErased(EventPayload):
    """The contacts ``contact_ids`` (one and those merged into it) were erased: their tickets' text is blank
    (``ticketing.gdpr``); the tickets still open were closed, each in its own ``ticket.updated``."""

    contact_ids: list[int]


class AgentSummary(EventPayload):
    """An agent as ``GET /api/agents`` shows them (``ticketing.models.AgentRead``)."""

    id: int
    username: str
    display_name: str
    role: str
    status: str
    skills: dict[str, int]
    capacity: dict[str, int]
    active: bool
    queue_ids: list[int]
    wrap_up_until: datetime | None


@event_payload("agent.created", "agent.updated")
class AgentChanged(EventPayload):
    agent: AgentSummary


class QueueName(EventPayload):
    id: int
    name: str


@event_payload("queue.created", "queue.updated")
class QueueChanged(EventPayload):
    queue: QueueName


@event_payload("queue.deleted")
class QueueDeleted(EventPayload):
    """The queue is gone; its closed tickets stay, in no queue (``queue_id`` null)."""

    queue: QueueName


@event_payload("canned.created", "canned.updated")
class CannedChanged(EventPayload):
    id: int
    shortcut: str


@event_payload("canned.deleted")
class CannedDeleted(EventPayload):
    id: int


@event_payload("routing.rules_updated")
class RoutingRulesUpdated(EventPayload):
    """The queue routing rules changed (``source``: the API or a file), now ``rules`` of them."""

    source: str
    rules: int


@event_payload("ticket.escalated")
class TicketEscalated(TicketChanged):
    """The SLA sweep raised the ticket's priority (``ticketing.sla_service``): from ``from_priority``."""

    reason: str
    from_priority: str


@event_payload("sla.breached")
class SlaBreached(EventPayload):
    """A ticket passed an SLA target (``target``: first_response or resolution) due at ``due_at``."""

    ticket_id: int
    target: str
    due_at: datetime
    late_seconds: int
    priority: str


@event_payload(EventType.CALL_ABANDONED)
class CallAbandoned(TicketChanged):
    """A caller hung up while waiting in the queue (``ticketing.phone.abandon``); the ticket is solved."""

    reason: str


@event_payload("ticket.abandoned")
class TicketAbandoned(TicketChanged):
    """The ticket left its queue unanswered (``ticketing.tickets.abandoned_event``) after ``waited`` seconds."""

    waited: float
