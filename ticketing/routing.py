"""Routing policy: which waiting work is offered to which agent, and why. Pure: snapshots in, decisions out.

The model follows Twilio TaskRouter: an agent (worker) has a status (activity), skills with levels and a
capacity per channel; a queue (task queue) has required skills, a priority, and overflow steps and a
maximum wait (its workflow); an offer (reservation) is one agent's exclusive chance to accept one item.

An agent is eligible for a work item when, checked in this order (the first failing check is the reason
reported for that agent):
1. its status is available (not away, offline or wrapping up);
2. it is a member of one of the item's queues (its own queue, plus any that overflow has widened it to);
3. it has every required skill at the level asked (``billing: 3`` needs billing 3 or more; a skill such
   as ``language:es`` is asked for at level 1);
4. it has free capacity on the item's channel (items in hand plus pending offers, per channel), and no
   work in hand on a channel that blocks this one (a call in hand blocks chats);
5. it has not just passed on this item (declined it or let the offer expire).

Work whose queue is outside its business hours is offered to nobody: it waits, "outside business hours".

Among eligible agents: the agent who last served this contact, then the longest idle (least recently
assigned; never assigned is idlest), then the fewest items in hand, then the lowest id (deterministic).

Waiting work is considered highest effective priority first, and first in, first out among equals.
Effective priority = base priority weight + the queue's priority + SLA urgency, where urgency grows by one
for each quarter of the first-response window used up, to at most two windows (an item that is late keeps
climbing for a while, then stays). The weights keep the base priority dominant: an urgent item outranks
a normal one that is badly late.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hub.channels import SPECS, CapacityClass, channels_of

# An agent's capacity per channel unless they have their own: by the channel's capacity class (hub.channels).
CLASS_CAPACITY: Mapping[CapacityClass, int] = {
    CapacityClass.VOICE: 1,
    CapacityClass.CHAT: 3,
    CapacityClass.MESSAGING: 3,
    CapacityClass.EMAIL: 5,
}
DEFAULT_CAPACITY: Mapping[str, int] = {name: CLASS_CAPACITY[spec.capacity_class] for name, spec in SPECS.items()}
FALLBACK_CAPACITY = 3
CHAT_CHANNELS = channels_of(CapacityClass.CHAT, CapacityClass.MESSAGING)
# Work in hand on the key channel blocks new offers on these channels: a call blocks chats and messaging.
BLOCKS: Mapping[str, frozenset[str]] = {name: CHAT_CHANNELS for name in channels_of(CapacityClass.VOICE)}
# Channels whose end (solved, closed) puts the agent in wrap-up: conversations, as against email.
WRAP_UP_CHANNELS = channels_of(CapacityClass.VOICE, CapacityClass.CHAT, CapacityClass.MESSAGING)


def freed_by(channel: str) -> frozenset[str]:
    """The channels an item of ``channel`` leaving an agent's hands may free capacity on: its own, and those
    its work in hand blocked."""
    return frozenset({channel}) | BLOCKS.get(channel, frozenset())


PRIORITY_WEIGHT = {"low": 0, "normal": 10, "high": 20, "urgent": 30}
URGENCY_STEPS = 4
MAX_URGENCY = 2 * URGENCY_STEPS
_NEVER = datetime.min.replace(tzinfo=UTC)
OUTSIDE_HOURS = "outside business hours"


@dataclass(slots=True)
class AgentSlot:
    """An agent as routing sees it; ``load`` counts open items in hand and pending offers per channel."""

    agent_id: int
    queue_ids: frozenset[int]
    capacity: dict[str, int] = field(default_factory=dict)
    load: dict[str, int] = field(default_factory=dict)
    last_assigned_at: datetime | None = None
    available: bool = True
    skills: Mapping[str, int] = field(default_factory=dict)
    status: str = "available"
    blocks: Mapping[str, frozenset[str]] = field(default_factory=lambda: BLOCKS)

    def limit(self, channel: str) -> int:
        return self.capacity.get(channel, DEFAULT_CAPACITY.get(channel, FALLBACK_CAPACITY))

    def blocked(self, channel: str) -> str | None:
        """The channel whose work in hand blocks ``channel``, if any."""
        for blocker, blocked in self.blocks.items():
            if channel in blocked and self.load.get(blocker, 0) > 0:
                return blocker
        return None

    def free(self, channel: str) -> int:
        if self.blocked(channel):
            return 0
        return max(0, self.limit(channel) - self.load.get(channel, 0))

    def take(self, channel: str, now: datetime) -> None:
        self.load[channel] = self.load.get(channel, 0) + 1
        self.last_assigned_at = now

    @property
    def open_items(self) -> int:
        return sum(self.load.values())


@dataclass(frozen=True, slots=True)
class OverflowStep:
    """After ``after_seconds`` of waiting: also offer to these queues' agents, and stop asking these skills."""

    after_seconds: int
    widen_to: frozenset[int] = frozenset()
    drop_skills: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """A queue as routing sees it. ``overflow`` steps are in order of ``after_seconds``."""

    queue_id: int
    name: str = ""
    required_skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0
    overflow: tuple[OverflowStep, ...] = ()
    max_wait_seconds: int | None = None
    overflow_queue_id: int | None = None

    def stage_after(self, waited_seconds: float) -> int:
        """How many overflow steps apply after waiting this long."""
        return sum(1 for s in self.overflow if waited_seconds >= s.after_seconds)

    def past_max_wait(self, waited_seconds: float) -> bool:
        return self.max_wait_seconds is not None and waited_seconds >= self.max_wait_seconds


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One waiting ticket. ``queue_ids`` (its queue plus any widened to) and ``required_skills`` are what
    ``requirements`` makes of its queue, its own skills and its overflow stage."""

    ticket_id: int
    queue_id: int | None
    channel: str
    previous_agent_id: int | None = None
    excluded: frozenset[int] = frozenset()
    queue_ids: frozenset[int] | None = None
    required_skills: Mapping[str, int] = field(default_factory=dict)
    priority: str = "normal"
    queue_priority: int = 0
    queued_at: datetime = _NEVER
    due_at: datetime | None = None
    # False while its queue is outside business hours: the item waits, whoever is free.
    queue_open: bool = True

    @property
    def serving_queues(self) -> frozenset[int]:
        if self.queue_ids is not None:
            return self.queue_ids
        return frozenset() if self.queue_id is None else frozenset({self.queue_id})


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one item: the agent it is offered to (None: it waits) and why, in words."""

    ticket_id: int
    agent_id: int | None
    reason: str


def requirements(
    policy: QueuePolicy | None, ticket_skills: Mapping[str, int] | None, stage: int
) -> tuple[frozenset[int], dict[str, int]]:
    """The queues whose agents may serve an item, and the skills asked, after ``stage`` overflow steps."""
    if policy is None:
        return frozenset(), dict(ticket_skills or {})
    queues = {policy.queue_id}
    skills = {**policy.required_skills, **(ticket_skills or {})}
    for step in policy.overflow[:stage]:
        queues |= step.widen_to
        for s in step.drop_skills:
            skills.pop(s, None)
    return frozenset(queues), {k: v for k, v in skills.items() if v > 0}


def overflow_summary(policy: QueuePolicy, stage: int, names: Mapping[int, str]) -> str:
    """Words for what overflow steps 1..stage did (for events and explanations)."""
    parts = []
    for step in policy.overflow[:stage]:
        if step.widen_to:
            parts.append("widened to " + ", ".join(sorted(names.get(q, f"#{q}") for q in step.widen_to)))
        if step.drop_skills:
            parts.append("dropped skill " + ", ".join(sorted(step.drop_skills)))
    return "; ".join(parts) or "no change"


def urgency(queued_at: datetime, due_at: datetime | None, now: datetime) -> int:
    """0 when there is no deadline; +1 per quarter of the window from queued to due that has passed."""
    if due_at is None:
        return 0
    window = (due_at - queued_at).total_seconds()
    if window <= 0:
        return MAX_URGENCY
    used = (now - queued_at).total_seconds() / window
    return max(0, min(MAX_URGENCY, int(used * URGENCY_STEPS)))


def effective_priority(item: WorkItem, now: datetime) -> int:
    return (
        PRIORITY_WEIGHT.get(item.priority, PRIORITY_WEIGHT["normal"])
        + item.queue_priority
        + urgency(item.queued_at, item.due_at, now)
    )


def order_key(item: WorkItem, now: datetime) -> tuple[int, datetime, int]:
    """Sort key for waiting work: highest effective priority first, then first in, first out."""
    return (-effective_priority(item, now), item.queued_at, item.ticket_id)


def ineligibility(agent: AgentSlot, item: WorkItem) -> str | None:
    """Why ``agent`` may not be offered ``item`` (None: it may). Checks in the order of the module docstring."""
    if not agent.available:
        return f"status {agent.status}"
    if not (agent.queue_ids & item.serving_queues):
        return "not in the queue"
    for skill, level in item.required_skills.items():
        if agent.skills.get(skill, 0) < level:
            return f"lacks skill {skill}" + (f" at level {level}" if level > 1 else "")
    blocker = agent.blocked(item.channel)
    if blocker:
        return f"busy on {blocker}"
    if agent.free(item.channel) <= 0:
        return f"at capacity on {item.channel}"
    if agent.agent_id in item.excluded:
        return "passed on this item"
    return None


def decide(item: WorkItem, agents: Iterable[AgentSlot]) -> Decision:
    """The best eligible agent for ``item`` with the reason, or a waiting decision saying why."""
    if not item.queue_open:
        return Decision(item.ticket_id, None, OUTSIDE_HOURS)
    candidates = list(agents)
    eligible = [a for a in candidates if ineligibility(a, item) is None]
    if not eligible:
        return Decision(item.ticket_id, None, explain_waiting(item, candidates))
    return _best(item, eligible)


def _idleness(a: AgentSlot) -> tuple[datetime, int, int]:
    return (a.last_assigned_at or _NEVER, a.open_items, a.agent_id)


def _best(item: WorkItem, eligible: list[AgentSlot]) -> Decision:
    """The decision among agents all eligible for ``item`` (at least one)."""
    n = len(eligible)
    for a in eligible:
        if a.agent_id == item.previous_agent_id:
            return Decision(item.ticket_id, a.agent_id, "served this contact before")
    best = min(eligible, key=_idleness)
    if n == 1:
        return Decision(item.ticket_id, best.agent_id, "the only eligible agent")
    runner_up = min((a for a in eligible if a is not best), key=_idleness)
    if (best.last_assigned_at or _NEVER) != (runner_up.last_assigned_at or _NEVER):
        reason = f"longest idle of {n} eligible agents"
    elif best.open_items != runner_up.open_items:
        reason = f"fewest open items of {n} equally idle eligible agents"
    else:
        reason = f"lowest id of {n} equally idle, equally busy eligible agents"
    return Decision(item.ticket_id, best.agent_id, reason)


def explain_waiting(item: WorkItem, agents: Iterable[AgentSlot]) -> str:
    """Why no agent can take ``item`` now, counted by reason over the agents of its queues."""
    if item.queue_id is None:
        return "no queue"
    counts: dict[str, int] = {}
    for a in agents:
        why = ineligibility(a, item)
        if why is not None and why != "not in the queue":
            counts[why] = counts.get(why, 0) + 1
    if not counts:
        return "no agent is a member of the queue"
    parts = [f"{n} {why}" for why, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "no eligible agent: " + ", ".join(parts)


def route(
    items: Sequence[WorkItem], agents: Iterable[AgentSlot], now: datetime, *, explain: Container[int] | None = None
) -> list[Decision]:
    """Decide every item, highest priority first; each offer takes a unit of the chosen agent's capacity, so
    the decisions together never put an agent over capacity. Items that wait come back with the reason
    (only those in ``explain``, when given: counting reasons over every agent costs time)."""
    by_queue: dict[int, list[AgentSlot]] = {}
    for a in agents:
        for q in a.queue_ids:
            by_queue.setdefault(q, []).append(a)
    out = []
    # Within a pass, agents only ever lose capacity (each offer takes a unit; nothing frees one), and nothing
    # else about them changes. So for each kind of item (same queues, channel, skills, exclusions):
    # - the agents eligible for it are found once, then only re-checked for room on the channel: an agent
    #   once ineligible stays so, and a kind that found nobody finds nobody for the rest of the pass;
    # - the reason it waits stays the same until an offer changes the load of one of its queues' agents:
    #   a burst of arrivals into full queues is explained once per kind.
    pools: dict[tuple[object, ...], dict[int, AgentSlot]] = {}
    reasons: dict[tuple[object, ...], tuple[str, dict[int, AgentSlot]]] = {}
    for item in sorted(items, key=lambda i: order_key(i, now)):
        if not item.queue_open:
            out.append(Decision(item.ticket_id, None, OUTSIDE_HOURS))
            continue
        channel = item.channel
        key = (item.serving_queues, channel, tuple(sorted(item.required_skills.items())), item.excluded)
        pool = pools.get(key)
        if pool is None:
            pool = pools[key] = {
                a.agent_id: a for a in _members(item, by_queue).values() if ineligibility(a, item) is None
            }
        if pool:
            decision = _best(item, list(pool.values()))
            chosen = pool[decision.agent_id]  # type: ignore[index]
            chosen.take(channel, now)
            # Only the chosen agent changed: out of the pools of the channels it has no more room on.
            for (_, pool_channel, *_), other in pools.items():
                if chosen.agent_id in other and chosen.free(pool_channel) <= 0:  # type: ignore[arg-type]
                    del other[chosen.agent_id]
            for k in [k for k, (_, members) in reasons.items() if chosen.agent_id in members]:
                del reasons[k]
            out.append(decision)
            continue
        reason = ""
        if explain is None or item.ticket_id in explain:
            if key not in reasons:
                members = _members(item, by_queue)
                reasons[key] = (explain_waiting(item, members.values()), members)
            reason = reasons[key][0]
        out.append(Decision(item.ticket_id, None, reason))
    return out


def _members(item: WorkItem, by_queue: Mapping[int, list[AgentSlot]]) -> dict[int, AgentSlot]:
    """The agents of the item's queues, each once."""
    members: dict[int, AgentSlot] = {}
    for q in item.serving_queues:
        for a in by_queue.get(q, ()):
            members[a.agent_id] = a
    return members
