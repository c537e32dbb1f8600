"""The logged-in agents a process has loaded recently, so that a request does not read its agent from the
database every time (a busy console answers chats over the REST API many times a second).

An entry is the agent's ``Principal`` and password hash as the database last gave them. It goes stale when the
agent changes (deactivated, role, queues, password: ``agents.update_agent``); then:
- in this process it is dropped before the change's response is sent (``agent_changed``, run after commit);
- in other processes, when the change's ``agent.updated`` event reaches them through the event hub;
- whatever else changed the row (a script writing the database directly) is seen within ``TTL_SECONDS``.
"""

from __future__ import annotations

import time

from hub.events import EventRecord
from hub.runtime import Runtime
from ticketing.permissions import Principal

TTL_SECONDS = 5.0
# The events that change what a Principal holds, or whether the agent may log in at all.
CHANGES = frozenset({"agent.updated", "agent.created"})


class PrincipalCache:
    """Agent id -> (loaded at, principal, password hash), for one runtime."""

    def __init__(self, ttl_seconds: float = TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[int, tuple[float, Principal, str]] = {}

    def get(self, agent_id: int) -> tuple[Principal, str] | None:
        entry = self._entries.get(agent_id)
        if entry is None:
            return None
        loaded_at, principal, password_hash = entry
        if time.monotonic() - loaded_at > self.ttl_seconds:
            del self._entries[agent_id]
            return None
        return principal, password_hash

    def put(self, agent_id: int, principal: Principal, password_hash: str) -> None:
        self._entries[agent_id] = (time.monotonic(), principal, password_hash)

    def forget(self, agent_id: int | None) -> None:
        if agent_id is None:
            self._entries.clear()
        else:
            self._entries.pop(agent_id, None)

    def on_event(self, event: EventRecord, _text: str) -> None:
        """Event hub listener: an agent changed, in this process or another."""
        if event.type in CHANGES:
            self.forget(event.agent_id)


def principal_cache(rt: Runtime) -> PrincipalCache:
    """This runtime's cache, created (and subscribed to the event hub) on first use."""
    cache = rt.caches.get("principals")
    if not isinstance(cache, PrincipalCache):
        cache = rt.caches["principals"] = PrincipalCache()
        rt.events.listen(cache.on_event)
    return cache


def agent_changed(rt: Runtime, agent_id: int) -> None:
    """Drop the agent's entry in this process at once (other processes follow the change's event)."""
    cache = rt.caches.get("principals")
    if isinstance(cache, PrincipalCache):
        cache.forget(agent_id)
