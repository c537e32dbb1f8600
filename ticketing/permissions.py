"""Who may see and do what. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from hub.events import Viewer
from ticketing.exceptions import AdminOnly, SupervisorOnly
from ticketing.models import Role


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
