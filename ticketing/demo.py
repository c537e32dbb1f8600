"""Demo data for ``switchboard demo``: queues, people to log in as, and conversations on several channels."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from hub.db import utcnow
from hub.hours import DAYS
from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from ticketing import tables
from ticketing.agents import create_agent
from ticketing.canned import CannedCreate, create_canned
from ticketing.ingest import ingest_batch
from ticketing.models import AgentCreate, AgentStatus, QueueCreate, Role
from ticketing.queues import create_queue
from ticketing.routing_service import set_agent_status

DEMO_LOGINS = [
    ("admin", "admin-demo", Role.ADMIN, "Ada Admin", ["support", "billing"]),
    ("supervisor", "supervisor-demo", Role.SUPERVISOR, "Sam Supervisor", ["support", "billing"]),
    ("alice", "agent-demo", Role.AGENT, "Alice Agent", ["support", "sales"]),
    ("bob", "agent-demo", Role.AGENT, "Bob Agent", ["support", "billing"]),
    ("carol", "agent-demo", Role.AGENT, "Carol Agent", ["billing"]),
]

# The agent who is available whenever the demo starts, so a chat opened on /demo reaches a person (log in as them
# at /console to answer) instead of always taking the "answer by email" path.
DEMO_AVAILABLE = ("alice", "agent-demo")

DEMO_CANNED = [
    ("hello", "Greeting", "Hi, thanks for reaching out! Let me look into this for you."),
    ("order", "Order status", "I have checked your order: it left our warehouse and should arrive within 2 days."),
    ("refund", "Refund issued", "I have issued the refund. It shows on your statement within 3 to 5 business days."),
    ("bye", "Closing", "Is there anything else I can help you with? Have a great day!"),
]


async def seed(rt: Runtime) -> bool:
    """Seed once: returns False when the database already has agents."""
    async with rt.read() as conn:
        if (await conn.execute(select(func.count()).select_from(tables.agents))).scalar_one():
            return False
    await create_queue(
        rt,
        data=QueueCreate.model_validate(
            {
                "name": "support",
                "description": "General questions",
                "channels": ["webchat", "email", "sms", "whatsapp", "telegram", "messenger", "instagram", "voice"],
                # Open around the clock, so a newcomer reaches an agent whenever they try the demo (weekday hours
                # here closed the chat and the phone's support line at night and at weekends); sales below has
                # weekday hours, so the phone's closed path can be tried. SLA tighter for urgent work; the
                # wallboard's service level: 80 % in 60 s.
                "hours": {"timezone": "UTC", "weekly": {d: ["00:00-24:00"] for d in DAYS}},
                "sla_first_response_seconds": 4 * 3600,
                "sla_resolution_seconds": 24 * 3600,
                "sla_policies": {"urgent": {"first_response_seconds": 900}, "high": {"first_response_seconds": 3600}},
                "service_level_seconds": 60,
                "service_level_target": 80,
                "wait_alert_seconds": 300,
            }
        ),
    )
    await create_queue(rt, data=QueueCreate(name="billing", description="Invoices and payments", channels=[]))
    # The demo phone flow (ivr_flows/flows/demo.yaml) routes to support, billing and sales.
    await create_queue(
        rt,
        data=QueueCreate.model_validate(
            {
                "name": "sales",
                "description": "New orders and quotes",
                "channels": [],
                "hours": {"timezone": "UTC", "weekly": {d: ["08:00-20:00"] for d in DAYS[:5]}},
            }
        ),
    )
    for username, password, role, name, queues in DEMO_LOGINS:
        await create_agent(
            rt, data=AgentCreate(username=username, password=password, role=role, display_name=name, queues=queues)
        )
    now = utcnow()
    samples = [
        InboundMessage(
            channel="email",
            external_id="<demo-1@example.com>",
            sender=Identity(kind="email", value="Maria.Garcia@example.com", name="Maria Garcia"),
            recipient="support@switchboard.local",
            subject="Where is my order #4411?",
            text="Hi, I ordered a kettle last week and it has not arrived. Can you check?",
            received_at=now - timedelta(hours=3),
        ),
        InboundMessage(
            channel="sms",
            external_id="SMdemo0001",
            sender=Identity(kind="phone", value="+14155550123", name="Maria Garcia"),
            recipient="+14155559999",
            text="Also: can I change the delivery address?",
            received_at=now - timedelta(hours=2),
        ),
        InboundMessage(
            channel="whatsapp",
            external_id="SMdemo0002",
            sender=Identity(kind="whatsapp", value="whatsapp:+14155550123", name="Maria"),
            recipient="whatsapp:+14155559999",
            text="Sending the photo of the label here",
            received_at=now - timedelta(hours=1),
        ),
        InboundMessage(
            channel="email",
            external_id="<demo-2@example.org>",
            queue="billing",
            sender=Identity(kind="email", value="li.wei@example.org", name="Li Wei"),
            recipient="billing@switchboard.local",
            subject="Charged twice in October",
            text="My card shows two charges of $49 on Oct 3. Please refund one.",
            received_at=now - timedelta(minutes=50),
        ),
        InboundMessage(
            channel="telegram",
            external_id="demo-tg-1",
            thread_key="demo-chat-77",
            sender=Identity(kind="telegram", value="77", name="Jonas"),
            text="Hallo! Do you ship to Germany?",
            received_at=now - timedelta(minutes=20),
        ),
    ]
    for shortcut, title, text in DEMO_CANNED:
        await create_canned(rt, data=CannedCreate(shortcut=shortcut, title=title, text=text))
    results = await ingest_batch(rt, samples)
    for r in results:
        if isinstance(r, Exception):
            raise r
    await seed_history(rt)
    return True


async def seed_history(rt: Runtime, days: int = 14) -> None:
    """Past conversations for the supervisor's wallboard, reports and forecast: chats and emails of the last
    ``days`` days (today's included), answered, solved, rated or abandoned, at seeded random times."""
    rng = random.Random(22)
    now = utcnow()
    agents = {
        r.username: r.id
        for r in (await _rows(rt, select(tables.agents.c.username, tables.agents.c.id)))
        if r.username in ("alice", "bob", "carol")
    }
    plan = []
    for day in range(days, -1, -1):
        for _ in range(rng.randint(6, 12) if day else 14):
            start = now - timedelta(days=day, seconds=rng.randint(600, 10 * 3600))
            if start > now - timedelta(minutes=5):
                continue
            plan.append((start, rng.choice(["webchat", "email", "webchat", "sms"]), rng.random()))
    messages = [
        InboundMessage(
            channel=channel,
            external_id=f"demo-history-{i}",
            thread_key=f"demo-history-{i}" if channel == "webchat" else None,
            sender=Identity(kind=IDENTITY_KINDS[channel], value=_sender(channel, i), name=_history_name(i)),
            recipient="support@switchboard.local" if channel == "email" else None,
            subject="Question about my order" if channel == "email" else None,
            text="Hello, I have a question about my order.",
            queue="support",
            received_at=start,
        )
        for i, (start, channel, _) in enumerate(plan)
    ]
    results = await ingest_batch(rt, messages)
    async with rt.write() as tx:
        for (start, _channel, luck), result in zip(plan, results, strict=True):
            if isinstance(result, Exception):
                raise result
            wait = timedelta(seconds=int(5 + 150 * luck**2))
            values: dict[str, object] = {"created_at": start, "queued_at": start, "updated_at": start + wait}
            values["last_message_at"] = start  # older than the sample conversations: they list first
            if luck > 0.9:  # gave up waiting
                values.update(status="closed", abandoned_at=start + wait, closed_at=start + wait)
            else:
                answered = start + wait
                solved = answered + timedelta(seconds=int(120 + 600 * luck))
                values.update(
                    status="solved",
                    answered_at=answered,
                    first_response_at=answered + timedelta(seconds=30),
                    solved_at=solved,
                    assignee_id=rng.choice(list(agents.values())) if agents else None,
                    rating=rng.choice([3, 4, 5, 5, 5]) if luck < 0.5 else None,
                )
            await tx.conn.execute(
                update(tables.tickets).where(tables.tickets.c.id == result.ticket_id).values(**values)
            )


IDENTITY_KINDS = {"webchat": "webchat", "email": "email", "sms": "phone"}

# Past customers' names: distinct, and no two alike enough for `contacts dedupe` (their addresses share a
# domain), so the demo's one duplicate to review stays Maria Garcia.
_FIRST = "Amara Bruno Chiara Dmitri Elif Farid Greta Hiroshi Ingrid Jonas Kemal Lucia Mateo Yusuf Oskar Priya".split()
_FIRST += ["Quentin", "Wanda", "Sven", "Beatrix"]
_LAST = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Kowalski", "Haddad", "Byrne", "Esposito", "Nakamura", "Van Dijk")


def _history_name(i: int) -> str:
    return f"{_FIRST[i % len(_FIRST)]} {_LAST[(i // len(_FIRST) + i) % len(_LAST)]}"


def _sender(channel: str, i: int) -> str:
    if channel == "email":
        return f"customer{i}@example.net"
    if channel == "sms":
        return f"+1415555{1000 + i:04d}"
    return f"demo-visitor-{i}"


async def _rows(rt: Runtime, stmt: Any) -> list[Any]:
    async with rt.read() as conn:
        return list((await conn.execute(stmt)).all())


async def make_available(rt: Runtime) -> tuple[str, str] | None:
    """Set the demo's available agent (``DEMO_AVAILABLE``) available; answers their login, or None when the
    database has no such active agent (a demo database someone changed)."""
    username = DEMO_AVAILABLE[0]
    async with rt.read() as conn:
        row = (
            await conn.execute(
                select(tables.agents.c.id).where(tables.agents.c.username == username, tables.agents.c.active.is_(True))
            )
        ).first()
    if row is None:
        return None
    await set_agent_status(rt, agent_id=row.id, status=AgentStatus.AVAILABLE)
    return DEMO_AVAILABLE
