"""Who is asking: the logged-in agent (``Principal``), the permission checks every package shares, and the
per-process cache of logged-in agents. Any package may authenticate through ``hub.deps.CurrentAgent``; the
agents themselves are stored by the ticketing core, which loads them through the ``AgentPort``
(``hub.ports``).

The cache spares a request reading its agent from the database every time (a busy console answers chats over
the REST API many times a second). An entry is the agent's ``Principal`` and password hash as the database
last gave them. It goes stale when the agent changes (deactivated, role, queues, password); then:
- in the process that made the change it is dropped before the change's response is sent
  (``forget_principal``, run after commit);
- in other processes, when the change's ``agent.updated`` event reaches them through the event hub;
- whatever else changed the row (a script writing the database directly) is seen within ``TTL_SECONDS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from hub.errors import PermissionDenied
from hub.events import EventRecord, Viewer

if TYPE_CHECKING:
    from hub.runtime import Runtime


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class AdminOnly(PermissionDenied):
    code = "admin_only"


class SupervisorOnly(PermissionDenied):
    code = "supervisor_only"


@dataclass(frozen=True, slots=True)
class Principal:
    """The logged-in agent, with what permission checks need."""

    agent_id: int
    username: str
    display_name: str
    role: str
    queue_ids: frozenset[int]

    @property
    def sees_all(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)

    @property
    def viewer(self) -> Viewer:
        return Viewer(agent_id=self.agent_id, sees_all=self.sees_all, queue_ids=self.queue_ids)

    def can_see_ticket(self, *, queue_id: int | None, assignee_id: int | None, offered_agent_id: int | None) -> bool:
        """Supervisors see all; an agent sees their queues' tickets and any ticket assigned or offered to them."""
        if self.sees_all:
            return True
        if self.agent_id in (assignee_id, offered_agent_id):
            return True
        return queue_id is not None and queue_id in self.queue_ids

    def require_admin(self) -> None:
        if self.role != Role.ADMIN:
            raise AdminOnly("only an admin may do this")

    def require_supervisor(self) -> None:
        if not self.sees_all:
            raise SupervisorOnly("only a supervisor or admin may do this")


# --- the per-process cache ------------------------------------------------------------------------------------

TTL_SECONDS = 5.0
# The events that change what a Principal holds, or whether the agent may log in at all.
CHANGES = frozenset({"agent.updated", "agent.created"})
_CACHE = "principals"  # its ``Runtime.caches`` key


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
    cache = rt.caches.get(_CACHE)
    if not isinstance(cache, PrincipalCache):
        cache = rt.caches[_CACHE] = PrincipalCache()
        rt.events.listen(cache.on_event)
    return cache


def forget_principal(rt: Runtime, agent_id: int) -> None:
    """Drop the agent's entry in this process at once (other processes follow the change's event)."""
    cache = rt.caches.get(_CACHE)
    if isinstance(cache, PrincipalCache):
        cache.forget(agent_id)
