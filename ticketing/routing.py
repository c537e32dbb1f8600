"""Routing policy: which available agent gets offered a piece of work. Pure: fed snapshots, returns choices.

This is the foundation's first version (issue: the full engine adds skills, priorities that age, overflow
and business hours). Rules, in order:
1. eligible: status available, member of the work's queue, free capacity on the work's channel, not
   excluded (an agent who just declined or let the offer expire);
2. the agent who last served this contact first;
3. then the longest idle (least recently assigned; never assigned counts as idlest);
4. then the fewest items in hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_CAPACITY = {
    "voice": 1,
    "webchat": 3,
    "messenger": 3,
    "instagram": 3,
    "telegram": 3,
    "whatsapp": 3,
    "sms": 3,
    "email": 5,
}
FALLBACK_CAPACITY = 3
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True)
class AgentSlot:
    """An agent as routing sees it; ``load`` counts assigned open items and pending offers per channel."""

    agent_id: int
    queue_ids: frozenset[int]
    capacity: dict[str, int] = field(default_factory=dict)
    load: dict[str, int] = field(default_factory=dict)
    last_assigned_at: datetime | None = None
    available: bool = True

    def limit(self, channel: str) -> int:
        return self.capacity.get(channel, DEFAULT_CAPACITY.get(channel, FALLBACK_CAPACITY))

    def free(self, channel: str) -> int:
        return self.limit(channel) - self.load.get(channel, 0)

    def take(self, channel: str, now: datetime) -> None:
        self.load[channel] = self.load.get(channel, 0) + 1
        self.last_assigned_at = now


@dataclass(frozen=True, slots=True)
class WorkItem:
    ticket_id: int
    queue_id: int | None
    channel: str
    previous_agent_id: int | None = None
    excluded: frozenset[int] = frozenset()


def choose_agent(item: WorkItem, agents: Iterable[AgentSlot]) -> AgentSlot | None:
    """The best eligible agent for ``item``, or None when it has to wait."""
    if item.queue_id is None:
        return None
    eligible = [
        a
        for a in agents
        if a.available and item.queue_id in a.queue_ids and a.agent_id not in item.excluded and a.free(item.channel) > 0
    ]
    if not eligible:
        return None
    for a in eligible:
        if a.agent_id == item.previous_agent_id:
            return a
    return min(
        eligible,
        key=lambda a: (a.last_assigned_at or _NEVER, sum(a.load.values()), a.agent_id),
    )
