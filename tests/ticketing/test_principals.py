"""The per-process cache of logged-in agents: what drops an entry."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.events import EventRecord
from hub.principals import Principal, PrincipalCache

ANN = Principal(agent_id=7, username="ann", display_name="Ann", role="agent", queue_ids=frozenset({1}))


def event(type_: str, agent_id: int | None) -> EventRecord:
    return EventRecord(seq=1, type=type_, payload={}, created_at=datetime.now(UTC), agent_id=agent_id)


def test_an_agent_event_drops_that_agent_only() -> None:
    """``agent.updated`` (from this process or another) drops the agent it names; other events drop nothing."""
    cache = PrincipalCache()
    cache.put(7, ANN, "hash")
    cache.put(8, ANN, "hash")
    cache.on_event(event("message.created", 7), "")
    cache.on_event(event("agent.status", 7), "")
    assert cache.get(7) == (ANN, "hash")
    cache.on_event(event("agent.updated", 7), "")
    assert cache.get(7) is None
    assert cache.get(8) == (ANN, "hash")


def test_entries_expire() -> None:
    """An entry older than the cache's lifetime is read again from the database."""
    cache = PrincipalCache(ttl_seconds=-1.0)  # already older than that, whatever the clock
    cache.put(7, ANN, "hash")
    assert cache.get(7) is None
