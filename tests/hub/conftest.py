"""Fixtures shared by the hub's websocket tests."""

from __future__ import annotations

import pytest

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import make_agent, make_queue
from ticketing.ingest import ingest_batch


@pytest.fixture
async def world(rt: Runtime) -> dict[str, int]:
    """Two queues with an agent each and a ticket each. Tests list it before `server`, so the server
    starts after these events exist and does not replay them to new clients."""
    ids = {
        "support": await make_queue(rt, "support"),
        "billing": await make_queue(rt, "billing"),
        "alice": await make_agent(rt, "alice", queues=["support"]),
        "carol": await make_agent(rt, "carol", queues=["billing"]),
    }
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<s@x>",
                sender=Identity(kind="email", value="a@example.com"),
                text="one",
                queue="support",
            ),
            InboundMessage(
                channel="email",
                external_id="<b@x>",
                sender=Identity(kind="email", value="b@example.com"),
                text="two",
                queue="billing",
            ),
        ],
    )
    ids["support_ticket"] = results[0].ticket_id  # type: ignore[union-attr]
    ids["billing_ticket"] = results[1].ticket_id  # type: ignore[union-attr]
    return ids
