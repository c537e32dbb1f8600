"""Demo data for ``switchboard demo``: queues, people to log in as, and conversations on several channels."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from hub.db import utcnow
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
        data=QueueCreate(
            name="support",
            description="General questions",
            channels=["webchat", "email", "sms", "whatsapp", "telegram", "messenger", "voice"],
        ),
    )
    await create_queue(rt, data=QueueCreate(name="billing", description="Invoices and payments", channels=[]))
    # The demo phone flow (ivr_flows/flows/demo.yaml) routes to support, billing and sales.
    await create_queue(rt, data=QueueCreate(name="sales", description="New orders and quotes", channels=[]))
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
    return True


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
