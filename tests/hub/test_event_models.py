"""Zulip's rule for every event type: a client's state loaded from the API, plus the events appended after it,
equals the state loaded afresh. Each test loads the state (``fetch``: what the REST API answers, through the
same service functions), makes one change that appends the event type it is named for, applies every event
appended meanwhile with ``apply`` (the reducer a client runs: it reads each payload through its registered
model, as agent_ui/static/console/console.js reads the frames' ``data``), and compares with a new ``fetch``.

Also: every appended event type has a payload model, and a payload that disagrees with its model is refused.
A new event type gets its model and a test here (CONTRIBUTING.md, "Events").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from channels.social.events import ChannelHealthChanged
from channels.social.health import AccountHealth, Health, HealthStatus
from hub.db import utcnow
from hub.events import (
    EPHEMERAL_TYPES,
    EVENT_PAYLOADS,
    EventRecord,
    EventType,
    InvalidEventPayload,
    NewEvent,
    UnregisteredEvent,
    events_after,
    parse_payload,
    require_payload_models,
    seq_bounds,
)
from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from knowledge_base import service as kb
from knowledge_base.models import ArticleCreate, ArticleUpdate
from tests.conftest import make_agent
from tests.ticketing.routing_helpers import agent, arrive, backdate, message, queue
from ticketing import (
    agents,
    canned,
    contacts,
    conversations,
    gdpr,
    phone,
    queues,
    replies,
    routing_service,
    sla_service,
    tables,
    ticket_updates,
    tickets,
)
from ticketing import events as te
from ticketing.canned import CannedCreate, CannedUpdate
from ticketing.models import (
    AgentStatus,
    AgentUpdate,
    ContactUpdate,
    DeliveryStatus,
    OverflowStepSpec,
    QueueUpdate,
    TicketStatus,
    TicketUpdate,
)
from ticketing.outbox import StatusChange, set_delivery_statuses
from ticketing.queue_rules import Rule, RuleSet

ROOT = Principal(agent_id=0, username="root", display_name="Root", role="admin", queue_ids=frozenset())

# What a client keeps of a ticket and of a message: the fields their events carry.
TICKET_FIELDS = tuple(f for f in te.TicketSummary.model_fields if f != "number")
MESSAGE_FIELDS = (*(f for f in te.MessageSummary.model_fields if f != "truncated"), "delivery_error")


@dataclass
class State:
    """A client's state, as the API shows it."""

    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    agents: dict[int, dict[str, Any]] = field(default_factory=dict)
    queues: dict[int, str] = field(default_factory=dict)
    canned: dict[int, str] = field(default_factory=dict)
    contact_emails: dict[int, tuple[str | None, bool]] = field(default_factory=dict)  # (attribute, an identity)
    rules: int = 0
    articles: dict[int, dict[str, Any]] = field(default_factory=dict)
    feedback: dict[int, tuple[int, int]] = field(default_factory=dict)


def _pick(model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    data = model if isinstance(model, dict) else dict(model)
    return {n: data.get(n) for n in names}


async def fetch(rt: Runtime) -> State:
    """The state as the REST API answers it (an admin's view)."""
    s = State()
    page = await tickets.list_tickets(rt, principal=ROOT, limit=1000)
    for t in page.items:
        s.tickets[t.id] = _pick(t, TICKET_FIELDS)
        detail = await tickets.get_ticket(rt, ticket_id=t.id, principal=ROOT)
        for m in detail.messages:
            s.messages[m.id] = _pick(m, MESSAGE_FIELDS)
        history = await tickets.get_contact_history(rt, contact_id=t.contact_id, principal=ROOT)
        emails = {i.value for i in history.identities if i.kind == "email"}
        attribute = history.attributes.get("email")
        if attribute is not None:  # contacts themselves are no client state; the address they gave is
            s.contact_emails[t.contact_id] = (attribute, attribute in emails)
    s.agents = {a.id: a.model_dump() for a in await agents.list_agents(rt)}
    s.queues = {q.id: q.name for q in await queues.list_queues(rt)}
    s.canned = {c.id: c.shortcut for c in await canned.search_canned(rt, limit=1000)}
    async with rt.read() as conn:
        s.rules = len((await queues.get_routing_rules(conn)).rules)
    s.articles = {
        a.id: {"slug": a.slug, "locale": a.locale, "status": a.status, "version": a.version}
        for a in await kb.all_articles(rt)
    }
    s.feedback = await kb.feedback_counts(rt)
    return s


def apply(s: State, event: EventRecord) -> None:
    """The client's reducer: one event, read through its payload model."""
    p = parse_payload(event.type, event.payload)
    if isinstance(p, te.TicketChanged):
        s.tickets[p.ticket.id] = _pick(p.ticket.model_dump(), TICKET_FIELDS)
    elif isinstance(p, te.MessageCreated):
        m = p.message
        s.messages[m.id] = {**_pick(m.model_dump(), MESSAGE_FIELDS), "delivery_error": None}
        # As the console does: a customer's message is the ticket's last activity; a note touches it too.
        ticket = s.tickets[m.ticket_id]
        if m.direction == "inbound":
            ticket["last_message_at"] = ticket["updated_at"] = m.created_at
        elif m.direction == "note":
            ticket["updated_at"] = m.created_at
    elif isinstance(p, te.MessageStatus):
        s.messages[p.message_id].update(delivery_status=p.status, delivery_error=p.error)
    elif isinstance(p, te.OfferAccepted):
        pass  # the ticket's new state follows in ticket.assigned
    elif isinstance(p, ChannelHealthChanged):
        pass  # the console's alert: no state the REST API reads (GET /api/social/accounts answers it live)
    elif isinstance(p, te.SlaBreached):
        pass  # the wallboard's alert; the escalated priority follows in ticket.escalated
    elif isinstance(p, te.OfferTakenBack):
        ticket = s.tickets[p.ticket_id]
        ticket.update(offered_agent_id=None, offer_expires_at=None)
        if event.type == EventType.TICKET_REQUEUED:
            ticket["assignee_id"] = None
    elif isinstance(p, te.AgentStatusChanged):
        s.agents[p.agent_id].update(status=p.status, wrap_up_until=p.wrap_up_until)
    elif isinstance(p, te.ContactUpdated):
        if p.email is not None:  # a name, attributes or a note: no client state (the address only as given)
            s.contact_emails[p.contact_id] = (p.email, bool(p.linked))
    elif isinstance(p, te.ContactsMerged):
        survivor, merged = p.contact_ids
        owner = survivor if event.type == EventType.CONTACT_MERGED else merged
        for ticket_id in p.ticket_ids:
            s.tickets[ticket_id]["contact_id"] = owner
        _drop_contacts_without_tickets(s)
    elif isinstance(p, te.ContactErased):
        erased = {t for t, ticket in s.tickets.items() if ticket["contact_id"] in p.contact_ids}
        for t in erased:
            s.tickets[t].update(subject="", rating_comment=None)
        for m in s.messages.values():
            if m["ticket_id"] in erased:
                m.update(text="", subject=None, sender=None, attachments=[], delivery_error=None)
        for contact_id in p.contact_ids:
            s.contact_emails.pop(contact_id, None)
    elif isinstance(p, te.AgentChanged):
        s.agents[p.agent.id] = p.agent.model_dump()
    elif isinstance(p, te.QueueChanged):
        s.queues[p.queue.id] = p.queue.name
    elif isinstance(p, te.QueueDeleted):  # its (closed) tickets stay, in no queue
        s.queues.pop(p.queue.id, None)
        for ticket in s.tickets.values():
            if ticket["queue_id"] == p.queue.id:
                ticket["queue_id"] = None
    elif isinstance(p, te.CannedChanged):
        s.canned[p.id] = p.shortcut
    elif isinstance(p, te.CannedDeleted):
        s.canned.pop(p.id, None)
    elif isinstance(p, te.RoutingRulesUpdated):
        s.rules = p.rules
    elif isinstance(p, kb.ArticleChanged):
        if p.action == "deleted":  # with its feedback
            s.articles.pop(p.id, None)
            s.feedback.pop(p.id, None)
        else:
            s.articles[p.id] = {"slug": p.slug, "locale": p.locale, "status": p.status, "version": p.version}
    elif isinstance(p, kb.ArticleFeedback):
        yes, no = s.feedback.get(p.id, (0, 0))
        s.feedback[p.id] = (yes + 1, no) if p.helpful else (yes, no + 1)
    else:
        raise AssertionError(f"the reducer does not know {event.type}")


def _drop_contacts_without_tickets(s: State) -> None:
    """The state keeps a contact's address while one of its tickets is in the state (``fetch`` reads contacts
    through their tickets)."""
    owners = {t["contact_id"] for t in s.tickets.values()}
    for contact_id in [c for c in s.contact_emails if c not in owners]:
        del s.contact_emails[contact_id]


async def check(rt: Runtime, change: Callable[[], Awaitable[Any]], *types: str) -> list[str]:
    """Old state + the events of ``change`` == a fresh fetch; ``change`` appended each of ``types``."""
    state = await fetch(rt)
    async with rt.read() as conn:
        _, last = await seq_bounds(conn)
    await change()
    async with rt.read() as conn:
        events = await events_after(conn, last)
    appended = [e.type for e in events]
    assert set(types) <= set(appended), appended
    for e in events:
        apply(state, e)
    fresh = await fetch(rt)
    assert state == fresh
    return appended


def _email(n: int, **kw: Any) -> InboundMessage:
    return InboundMessage(
        channel="email",
        external_id=f"<m{n}@example.com>",
        sender=Identity(kind="email", value=f"ann{n}@example.com"),
        subject="Help",
        text=f"message {n}",
        queue="support",
        **kw,
    )


@pytest.fixture
async def support(rt: Runtime) -> int:
    return await queue(rt, "support", channels=["email", "webchat"])


async def _offered(rt: Runtime) -> tuple[int, int]:
    """A ticket offered to the available agent ``sam``: (ticket id, agent id)."""
    sam = await agent(rt, "sam", ["support"], capacity={"email": 5, "chat": 3})
    [ticket_id] = await arrive(rt, _email(1))
    return ticket_id, sam


def _as(agent_id: int) -> Principal:
    return Principal(agent_id=agent_id, username="a", display_name="A", role="agent", queue_ids=frozenset())


# --- one test per event type ---------------------------------------------------------------------------------


async def test_ticket_created_message_created_and_queued(rt: Runtime, support: int) -> None:
    """A first message: a new ticket, its message, and the ticket queued (nobody available)."""
    await check(
        rt, lambda: arrive(rt, _email(1)), EventType.TICKET_CREATED, EventType.MESSAGE_CREATED, EventType.TICKET_QUEUED
    )


async def test_message_created_on_an_existing_ticket(rt: Runtime, support: int) -> None:
    """A customer writes again: the message, and the ticket's last activity."""
    await arrive(rt, _email(1))
    appended = await check(
        rt, lambda: arrive(rt, _email(2, references=["<m1@example.com>"])), EventType.MESSAGE_CREATED
    )
    assert EventType.TICKET_CREATED not in appended


async def test_ticket_offered(rt: Runtime, support: int) -> None:
    await agent(rt, "sam", ["support"], capacity={"email": 5, "chat": 3})
    await check(rt, lambda: arrive(rt, _email(1)), EventType.TICKET_OFFERED)


async def test_offer_accepted_and_ticket_assigned(rt: Runtime, support: int) -> None:
    ticket_id, sam = await _offered(rt)
    await check(
        rt,
        lambda: routing_service.accept_offer(rt, ticket_id=ticket_id, principal=_as(sam)),
        EventType.OFFER_ACCEPTED,
        EventType.TICKET_ASSIGNED,
    )


async def test_offer_declined(rt: Runtime, support: int) -> None:
    ticket_id, sam = await _offered(rt)
    await check(
        rt, lambda: routing_service.decline_offer(rt, ticket_id=ticket_id, principal=_as(sam)), EventType.OFFER_DECLINED
    )


async def test_offer_expired(rt: Runtime, support: int) -> None:
    ticket_id, _ = await _offered(rt)
    await backdate(rt, ticket_id, offer_seconds=5)
    await check(rt, lambda: routing_service.expire_offers(rt), EventType.OFFER_EXPIRED)


async def test_agent_status_returning_an_offer(rt: Runtime, support: int) -> None:
    """An agent going away: their status, and their pending offer taken back."""
    _, sam = await _offered(rt)
    await check(
        rt,
        lambda: routing_service.set_agent_status(rt, agent_id=sam, status=AgentStatus.AWAY),
        EventType.AGENT_STATUS,
        EventType.OFFER_EXPIRED,
    )


async def test_ticket_requeued(rt: Runtime, support: int) -> None:
    ticket_id, sam = await _offered(rt)
    await routing_service.accept_offer(rt, ticket_id=ticket_id, principal=_as(sam))
    await check(
        rt,
        lambda: routing_service.requeue_agent_work(rt, agent_id=sam, principal=ROOT),
        EventType.TICKET_REQUEUED,
    )


async def test_ticket_updated_by_an_agent_and_by_a_transfer(rt: Runtime, support: int) -> None:
    billing = await queue(rt, "billing", channels=["email"])
    [t] = await arrive(rt, _email(1))
    await check(
        rt,
        lambda: ticket_updates.update_ticket(
            rt, ticket_id=t, principal=ROOT, data=TicketUpdate(status="pending", tags=["vip"])
        ),
        EventType.TICKET_UPDATED,
    )
    await check(
        rt,
        lambda: ticket_updates.transfer(rt, ticket_id=t, principal=ROOT, queue_id=billing, agent_id=None),
        EventType.TICKET_UPDATED,
    )


async def test_reply_note_and_message_status(rt: Runtime, support: int) -> None:
    """A reply (its message and the ticket's new state), a note, and the reply's delivery status."""
    root = await agent(rt, "root", ["support"], available=False)
    boss = Principal(agent_id=root, username="root", display_name="Root", role="admin", queue_ids=frozenset())
    [t] = await arrive(rt, _email(1))
    sent: list[int] = []

    async def reply() -> None:
        sent.append((await replies.reply(rt, ticket_id=t, principal=boss, text="on it")).id)

    await check(rt, reply, EventType.MESSAGE_CREATED, EventType.TICKET_UPDATED)
    await check(rt, lambda: replies.add_note(rt, ticket_id=t, principal=boss, text="vip"), EventType.MESSAGE_CREATED)

    async def delivered() -> None:
        async with rt.write() as tx:
            await set_delivery_statuses(tx, [StatusChange(sent[0], DeliveryStatus.SENT)])

    await check(rt, delivered, EventType.MESSAGE_STATUS)


async def test_ticket_updated_by_a_rating_and_contact_updated(rt: Runtime, support: int) -> None:
    """A chat visitor moves the conversation to email (contact.updated, ticket.updated), then rates it."""
    msg = message(queue="support")
    [t] = await arrive(rt, msg)
    key = msg.thread_key or ""
    await check(
        rt,
        lambda: conversations.answer_by_email(
            rt, channel="webchat", thread_key=key, email="vera@example.com", verified=True
        ),
        EventType.CONTACT_UPDATED,
        EventType.TICKET_UPDATED,
    )
    await ticket_updates.update_ticket(rt, ticket_id=t, principal=ROOT, data=TicketUpdate(status="solved"))
    await check(
        rt,
        lambda: conversations.rate(rt, channel="webchat", thread_key=key, ticket_id=t, rating=5, comment="great"),
        EventType.TICKET_UPDATED,
    )


async def test_ticket_overflowed(rt: Runtime) -> None:
    await queue(rt, "backup", channels=["email"])
    await queue(
        rt,
        "support",
        channels=["email"],
        overflow=[OverflowStepSpec(after_seconds=60, widen_to=["backup"])],
        max_wait_seconds=300,
        overflow_queue="backup",
    )
    [t] = await arrive(rt, _email(1))
    await backdate(rt, t, queued_seconds=400)
    await check(rt, lambda: routing_service.apply_overflow(rt), EventType.TICKET_OVERFLOWED)


async def test_agent_created_and_updated(rt: Runtime, support: int) -> None:
    await check(rt, lambda: agent(rt, "zoe", ["support"], available=False), "agent.created")
    [zoe] = [a.id for a in await agents.list_agents(rt) if a.username == "zoe"]
    await check(
        rt,
        lambda: agents.update_agent(rt, agent_id=zoe, data=AgentUpdate(display_name="Zoë", queues=[])),
        "agent.updated",
    )


async def test_queue_created_and_updated(rt: Runtime) -> None:
    await check(rt, lambda: queue(rt, "sales"), "queue.created")
    [sales] = [q.id for q in await queues.list_queues(rt)]
    await check(rt, lambda: queues.update_queue(rt, queue_id=sales, data=QueueUpdate(name="presales")), "queue.updated")


async def test_queue_deleted(rt: Runtime, support: int) -> None:
    sales = await queue(rt, "sales", channels=["email"])
    [ticket_id] = await arrive(rt, _email(7))
    await queues.update_queue(rt, queue_id=sales, data=QueueUpdate(description="soon gone"))
    async with rt.write() as tx:  # a closed ticket of sales (the support ticket moved there, then closed)
        await tx.conn.execute(
            tables.tickets.update().where(tables.tickets.c.id == ticket_id).values(queue_id=sales, status="closed")
        )
    await check(rt, lambda: queues.delete_queue(rt, queue_id=sales), "queue.deleted")


async def test_canned_created_and_deleted(rt: Runtime) -> None:
    created: list[int] = []

    async def create() -> None:
        row = await canned.create_canned(rt, data=CannedCreate(shortcut="hi", title="Hello", text="Hello!"))
        created.append(row.id)

    await check(rt, create, "canned.created")
    change = CannedUpdate(shortcut="hello")
    await check(rt, lambda: canned.update_canned(rt, canned_id=created[0], data=change), "canned.updated")
    await check(rt, lambda: canned.delete_canned(rt, canned_id=created[0]), "canned.deleted")


async def test_sla_breached_and_ticket_escalated(rt: Runtime, support: int) -> None:
    await queues.update_queue(rt, queue_id=support, data=QueueUpdate(sla_first_response_seconds=60))
    [ticket_id] = await arrive(rt, _email(1))
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.id == ticket_id)
            .values(first_response_due_at=utcnow() - timedelta(seconds=30))
        )
    await check(rt, lambda: sla_service.check_breaches(rt), "sla.breached", "ticket.escalated")


async def test_ticket_abandoned(rt: Runtime, support: int) -> None:
    [ticket_id] = await arrive(rt, _email(1))
    solve = TicketUpdate(status=TicketStatus.SOLVED)  # while it waits in its queue
    await check(
        rt,
        lambda: ticket_updates.update_ticket(rt, ticket_id=ticket_id, principal=ROOT, data=solve),
        "ticket.abandoned",
    )


async def test_call_abandoned(rt: Runtime) -> None:
    await queue(rt, "phones", channels=["voice"])
    [ticket_id] = await arrive(rt, message("voice", queue="phones"))
    await check(rt, lambda: phone.abandon(rt, ticket_id=ticket_id, reason="hung up"), EventType.CALL_ABANDONED)


async def test_contact_updated_merged_unmerged_and_erased(rt: Runtime, support: int) -> None:
    [first, second] = await arrive(rt, _email(1), _email(2))
    ada = await make_agent(rt, "ada", role="admin")  # a note's author is an agent
    admin = Principal(agent_id=ada, username="ada", display_name="Ada", role="admin", queue_ids=frozenset())
    survivor, merged = [
        (await tickets.get_ticket(rt, ticket_id=t, principal=admin)).contact_id for t in (first, second)
    ]
    rename = ContactUpdate(name="Ann Example")
    await check(
        rt,
        lambda: contacts.update_contact(rt, contact_id=survivor, principal=admin, data=rename),
        EventType.CONTACT_UPDATED,
    )
    await check(
        rt, lambda: contacts.add_contact_note(rt, contact_id=survivor, principal=admin, text="VIP"), "contact.updated"
    )
    merges: list[int] = []

    async def merge() -> None:
        merges.append((await contacts.merge_contacts(rt, survivor_id=survivor, merged_id=merged, principal=admin)).id)

    await check(rt, merge, EventType.CONTACT_MERGED)
    await check(rt, lambda: contacts.undo_merge(rt, merge_id=merges[0], principal=admin), EventType.CONTACT_UNMERGED)
    await check(rt, lambda: gdpr.erase_contact(rt, contact_id=merged, principal=admin), EventType.CONTACT_ERASED)


async def test_channel_health(rt: Runtime) -> None:
    page = AccountHealth(channel="messenger", account="1001", queue="support")
    health = Health(rt, [page])
    await check(
        rt, lambda: health.set(page, HealthStatus.TOKEN_EXPIRED, "Error validating access token"), "channel.health"
    )


async def test_routing_rules_updated(rt: Runtime, support: int) -> None:
    rules = RuleSet(rules=[Rule(name="vip", queue="support")])
    await check(rt, lambda: queues.set_routing_rules(rt, rules=rules), "routing.rules_updated")


async def test_kb_article_changed_and_feedback(rt: Runtime) -> None:
    made: list[int] = []

    async def create() -> None:
        made.append(
            (await kb.create_article(rt, data=ArticleCreate(slug="returns", title="Returns", body="Send it back."))).id
        )

    await check(rt, create, "kb.article.changed")
    await check(
        rt,
        lambda: kb.update_article(rt, article_id=made[0], data=ArticleUpdate(body="Send it back within 30 days.")),
        "kb.article.changed",
    )
    await check(
        rt,
        lambda: kb.record_feedback(rt, article_id=made[0], helpful=True, query="returns", source="agent"),
        "kb.feedback",
    )
    await check(rt, lambda: kb.delete_article(rt, article_id=made[0]), "kb.article.changed")


# --- the registry --------------------------------------------------------------------------------------------


def test_every_event_type_has_a_payload_model() -> None:
    """The core's event types, and every type an event-model test above exercises, have a model."""
    missing = {t.value for t in EventType} - EPHEMERAL_TYPES - set(EVENT_PAYLOADS)
    assert not missing


def test_every_registered_event_type_has_its_test_here() -> None:
    """Each registered event type (but this suite's own) is named by a ``check`` above, by its value or its
    ``EventType`` member: a type added with a model but no test fails here."""
    from pathlib import Path

    source = Path(__file__).read_text()
    by_value = {t.value: t.name for t in EventType}
    untested = [
        type_
        for type_, model in EVENT_PAYLOADS.items()
        if not model.__module__.startswith("tests.")
        and f'"{type_}"' not in source
        and f"EventType.{by_value.get(type_, '?')}" not in source
    ]
    assert not untested


async def test_an_unregistered_or_misshapen_payload_is_refused(rt: Runtime) -> None:
    """The suite refuses an event type without a model (``require_payload_models``, set in conftest), and
    any payload that disagrees with its model: a field missing, of the wrong type, or one the model lacks.
    Nothing is appended."""
    bad = [
        (NewEvent(type="made.up", payload={}), UnregisteredEvent),
        (NewEvent(type="canned.deleted", payload={}), InvalidEventPayload),
        (NewEvent(type="canned.deleted", payload={"id": "seven"}), InvalidEventPayload),
        (NewEvent(type="canned.deleted", payload={"id": 7, "extra": 1}), InvalidEventPayload),
    ]
    for event, error in bad:
        with pytest.raises(error):
            async with rt.write() as tx:
                tx.emit(event)
    async with rt.read() as conn:
        assert await events_after(conn, 0) == []


async def test_a_running_hub_checks_fields_and_appends_unregistered_types_with_a_warning(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside the suite's strict mode (a running hub, on the hot paths), a payload's fields are checked
    against its model's (a missing or unknown one is refused), and an event type without a model is appended
    with a warning rather than losing the change."""
    require_payload_models(False)
    try:
        for payload in ({}, {"id": 7, "extra": 1}):
            with pytest.raises(InvalidEventPayload):
                async with rt.write() as tx:
                    tx.emit(NewEvent(type="canned.deleted", payload=payload))
        async with rt.write() as tx:
            tx.emit(NewEvent(type="canned.deleted", payload={"id": 7}))
            tx.emit(NewEvent(type="not.modelled.yet", payload={"x": 1}))
    finally:
        require_payload_models(True)
    async with rt.read() as conn:
        assert [e.type for e in await events_after(conn, 0)] == ["canned.deleted", "not.modelled.yet"]
    assert "'not.modelled.yet' has no payload model" in caplog.text


def test_payload_models_parse_what_they_check() -> None:
    """A frame's ``data`` reads back as its model, with datetimes as datetimes."""
    parsed = parse_payload("agent.status", {"agent_id": 1, "status": "wrap_up", "wrap_up_until": "2026-01-01T00:00Z"})
    assert isinstance(parsed, te.AgentStatusChanged) and isinstance(parsed.wrap_up_until, datetime)
