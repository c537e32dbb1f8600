"""The supervisor's live wallboard: every queue's and every agent's figures, kept up to date from the event
stream rather than by scanning tables on each change.

One ``Wallboard`` per process (``wallboard(rt)``): it loads its state from the database once at start
(``load``), then listens to every event of the process's hub (``hub.bus.EventHub.listen``; with Redis, every
process hears every event, so each one's wallboard is whole). Each event costs a few dictionary updates. The
changed rows are pushed to the supervisors connected to ``/ws/agent`` of this process as one ephemeral
``wallboard.update`` frame per ``PUSH_SECONDS`` (never to agents: the frame names agent id -1, which is
nobody's, so only viewers who see everything get it). A client that connects or reconnects reads the whole
board once from ``GET /api/supervisor/wallboard`` (``snapshot``).

Definitions (contact-center conventions, as Twilio TaskRouter's and Amazon Connect's real-time metrics):
- waiting: open tickets in the queue that no agent holds (offered ones included); longest wait: since the
  oldest of them entered the queue;
- answered: an agent took the ticket (accepted an offer, was assigned it) for the first time; its wait is
  from entering the queue to that moment; a call is answered when the agent's phone picks up (its
  ``answered_at``, which the phone channel stamps), not when they take it; ASA (average speed of answer) is
  the mean of those waits;
- abandoned: the ticket left the queue unanswered (solved or closed while waiting);
- service level = answered within T / (answered + abandoned after T), T the queue's
  ``service_level_seconds``; work abandoned within T counts on neither side. Over the last 30 minutes and
  today;
- abandonment = abandoned / queued (queued: tickets that entered the queue today);
- AHT (average handle time): from answer to solved or closed, over the agent's tickets finished today;
- occupancy: the share of the agents who are logged in (not offline) that hold work.

Alerts: a queue under its service-level target or past its longest-wait threshold, a ticket near its
first-response deadline, SLA breaches and escalations, and a channel account with a problem (the
``channel.health`` events of channels/social: an expired token, a silent webhook) until it is ok again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from hub.events import Event, EventRecord
from hub.hours import calendar_zone, local_midnight
from hub.runtime import Runtime
from ticketing import routing
from ticketing.tables import OPEN_STATUS_VALUES, agent_queues, agents, queues, tickets
from ticketing.tickets import ANSWERED_BY_CHANNEL

log = logging.getLogger(__name__)

WINDOW_SECONDS = 30 * 60
PUSH_SECONDS = 0.1
# Alerts: a waiting ticket this close to its first-response deadline.
DUE_WARNING_SECONDS = 15 * 60
# The frame is addressed to no agent and no queue the viewer has: only supervisors and admins see it.
NOBODY = -1
_OPEN = frozenset(OPEN_STATUS_VALUES)
_CACHE = "wallboard"
# The phone channel's tickets (channels/twilio): one held by an agent is a live call, which a supervisor may
# listen in on (POST /api/twilio/tickets/{id}/listen).
VOICE = "voice"
_events = Event.__table__  # type: ignore[attr-defined]


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return float(value.timestamp())


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(slots=True)
class Figures:
    """One queue's figures on one channel (the queue's total adds them up)."""

    waiting: dict[int, tuple[float, float | None]] = field(default_factory=dict)  # ticket -> (queued, due)
    queued: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_after: int = 0
    wait_sum: float = 0.0  # of the answered
    recent: deque[tuple[float, bool, bool]] = field(default_factory=deque)  # (at, answered, within T)

    def outcome(self, at: float, answered: bool, wait: float, threshold: float) -> None:
        within = wait <= threshold
        if answered:
            self.answered += 1
            self.answered_within += within
            self.wait_sum += wait
        else:
            self.abandoned += 1
            self.abandoned_after += not within
        self.recent.append((at, answered, within))

    def reset_day(self) -> None:
        self.queued = self.answered = self.answered_within = self.abandoned = self.abandoned_after = 0
        self.wait_sum = 0.0


def day_bounds(now: float, zone: ZoneInfo) -> tuple[float, float]:
    """The bounds (epoch seconds) of the calendar day in ``zone`` that holds ``now``: 23 or 25 hours long
    across a DST change."""
    day = datetime.fromtimestamp(now, zone).date()
    return local_midnight(day, zone).timestamp(), local_midnight(day + timedelta(days=1), zone).timestamp()


def service_level(answered_within: int, answered: int, abandoned_after: int) -> float | None:
    """Answered within T / (answered + abandoned after T); None when nothing counts yet."""
    total = answered + abandoned_after
    return None if total == 0 else answered_within / total


def summarize(parts: list[Figures], now: float) -> dict[str, Any]:
    """The figures of one or several (queue, channel) entries, as the wallboard shows them."""
    cutoff = now - WINDOW_SECONDS
    r_answered = r_within = r_abandoned_after = r_abandoned = 0
    waiting = 0
    oldest: float | None = None
    queued_sum = 0.0
    next_due: float | None = None
    next_due_ticket: int | None = None
    totals = Figures()
    for f in parts:
        while f.recent and f.recent[0][0] < cutoff:
            f.recent.popleft()
        for _, answered, within in f.recent:
            if answered:
                r_answered += 1
                r_within += within
            else:
                r_abandoned += 1
                r_abandoned_after += not within
        waiting += len(f.waiting)
        for ticket_id, (queued, due) in f.waiting.items():
            queued_sum += queued
            if oldest is None or queued < oldest:
                oldest = queued
            if due is not None and (next_due is None or due < next_due):
                next_due, next_due_ticket = due, ticket_id
        totals.queued += f.queued
        totals.answered += f.answered
        totals.answered_within += f.answered_within
        totals.abandoned += f.abandoned
        totals.abandoned_after += f.abandoned_after
        totals.wait_sum += f.wait_sum
    return {
        "waiting": waiting,
        "oldest_queued_at": _iso(oldest),
        "longest_wait": 0.0 if oldest is None else max(0.0, now - oldest),
        "average_wait": 0.0 if not waiting else max(0.0, now - queued_sum / waiting),
        "mean_queued_at": _iso(queued_sum / waiting) if waiting else None,
        "queued_today": totals.queued,
        "answered_today": totals.answered,
        "abandoned_today": totals.abandoned,
        "service_level_today": service_level(totals.answered_within, totals.answered, totals.abandoned_after),
        "service_level_30m": service_level(r_within, r_answered, r_abandoned_after),
        "answered_30m": r_answered,
        "abandoned_30m": r_abandoned,
        "abandonment_today": (totals.abandoned / totals.queued) if totals.queued else None,
        "asa_today": (totals.wait_sum / totals.answered) if totals.answered else None,
        "next_due_at": _iso(next_due),
        "next_due_ticket": next_due_ticket,
    }


@dataclass(slots=True)
class QueueInfo:
    id: int
    name: str
    channels: list[str]
    threshold: float
    target: int
    wait_alert: float
    # "Today" for this queue: the calendar day in its business hours' timezone (ZoneInfo: DST-correct).
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    day_start: float = 0.0
    day_end: float = 0.0
    counted: set[tuple[int, str]] = field(default_factory=set)  # (ticket, "q"/"o") counted today

    def set_day(self, now: float) -> None:
        self.day_start, self.day_end = day_bounds(now, self.zone)


@dataclass(slots=True)
class TicketState:
    queue_id: int | None
    channel: str
    assignee: int | None = None
    assigned_at: float | None = None
    queued_at: float | None = None  # while waiting
    answered: bool = False


@dataclass(slots=True)
class AgentState:
    id: int
    name: str
    role: str
    status: str
    since: float
    capacity: dict[str, int]
    queue_ids: list[int]
    active: bool = True
    load: dict[str, int] = field(default_factory=dict)
    calls: set[int] = field(default_factory=set)  # the voice tickets they hold: live calls a supervisor may join
    handled: int = 0
    handle_sum: float = 0.0

    @property
    def shown(self) -> bool:
        """On the board: agents, and supervisors or admins who are members of a queue (who take work)."""
        return self.role == "agent" or bool(self.queue_ids)

    def row(self) -> dict[str, Any]:
        channels = set(self.capacity) | set(self.load)
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "since": _iso(self.since),
            "queue_ids": self.queue_ids,
            "load": {c: self.load.get(c, 0) for c in sorted(channels) if self.load.get(c, 0) or c in self.capacity},
            "capacity": {
                c: self.capacity.get(c, routing.DEFAULT_CAPACITY.get(c, routing.FALLBACK_CAPACITY))
                for c in sorted(channels)
            },
            "calls": sorted(self.calls),
            "handled_today": self.handled,
            "aht_today": (self.handle_sum / self.handled) if self.handled else None,
            "busy": sum(self.load.values()) > 0,
        }


class Wallboard:
    """The wallboard's state in this process; see the module's docstring."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.zone = ZoneInfo(rt.settings.supervisor_timezone)
        self.queues: dict[int, QueueInfo] = {}
        self.figures: dict[tuple[int, str], Figures] = {}
        self.by_queue: dict[int, dict[str, Figures]] = {}  # the same figures, by queue then channel
        self.members: dict[int, set[int]] = {}  # queue -> its agents
        self.tickets: dict[int, TicketState] = {}
        self.agents: dict[int, AgentState] = {}
        # The agents' "today" (handled, AHT): the day in SWITCHBOARD_SUPERVISOR_TIMEZONE; each queue has its own.
        self.day_start = 0.0
        self.day_end = 0.0
        self.next_roll = 0.0  # the earliest end of a day, the board's or a queue's
        self.alerts: deque[dict[str, Any]] = deque(maxlen=50)  # breaches and escalations, newest last
        # Channel accounts with a problem (``channel.health`` events of channels/social: an expired token, a
        # silent webhook), by (channel, account); an account back to "ok" leaves.
        self.channel_alerts: dict[tuple[str, str], dict[str, Any]] = {}
        self._channels_dirty = False
        self._deleted: set[int] = set()  # queues deleted since the start (ids are not reused)
        self.loaded = False
        self.applied_seq = 0
        self._buffer: list[EventRecord] = []
        self._dirty_queues: set[int] = set()
        self._dirty_agents: set[int] = set()
        self._push: asyncio.TimerHandle | None = None
        self._reload: asyncio.Task[None] | None = None

    # --- loading ------------------------------------------------------------------------------------------

    def _set_day(self, now: float) -> None:
        self.day_start, self.day_end = day_bounds(now, self.zone)
        self.next_roll = min([self.day_end, *(q.day_end for q in self.queues.values())])

    def _roll_day(self, now: float) -> None:
        """Past midnight (the board's or a queue's own): that day's counts start again from zero."""
        if now < self.next_roll:
            return
        if now >= self.day_end:
            self.day_start, self.day_end = day_bounds(now, self.zone)
            for a in self.agents.values():
                a.handled, a.handle_sum = 0, 0.0
            self._dirty_agents.update(self.agents)
        for q in self.queues.values():
            if now >= q.day_end:
                q.set_day(now)
                q.counted.clear()
                for f in self.by_queue.get(q.id, {}).values():
                    f.reset_day()
                self._dirty_queues.add(q.id)
        self.next_roll = min([self.day_end, *(q.day_end for q in self.queues.values())])

    async def start(self) -> None:
        """Listen first (events during the load are kept and applied after it), then load."""
        self.rt.events.listen(self.on_event)
        await self.load()

    def stop(self) -> None:
        self.rt.events.unlisten(self.on_event)
        if self._push is not None:
            self._push.cancel()
        if self._reload is not None:
            self._reload.cancel()

    async def load(self) -> None:
        now = time.time()
        async with self.rt.read() as conn:
            queue_rows = (await conn.execute(select(queues).order_by(queues.c.id))).all()
        for q in queue_rows:
            self._queue_from_row(q, now)
        self._set_day(now)
        # the earliest "today" of any queue (a day starts up to 14 hours before UTC's)
        since = datetime.fromtimestamp(min([self.day_start, now - WINDOW_SECONDS, *self._day_starts()]), UTC)
        async with self.rt.read() as conn:
            agent_rows = (await conn.execute(select(agents).where(agents.c.active.is_(True)))).all()
            # The accounts' current health: their latest change still in the event log.
            health_rows = (
                await conn.execute(
                    select(_events.c.payload).where(_events.c.type == "channel.health").order_by(_events.c.seq)
                )
            ).all()
            members = (await conn.execute(select(agent_queues.c.agent_id, agent_queues.c.queue_id))).all()
            open_rows = (
                await conn.execute(
                    select(
                        tickets.c.id,
                        tickets.c.queue_id,
                        tickets.c.channel,
                        tickets.c.assignee_id,
                        tickets.c.queued_at,
                        tickets.c.created_at,
                        tickets.c.answered_at,
                        tickets.c.updated_at,
                        tickets.c.first_response_due_at,
                        tickets.c.first_response_at,
                    ).where(tickets.c.status.in_(OPEN_STATUS_VALUES))
                )
            ).all()
            done_rows = (
                await conn.execute(
                    select(
                        tickets.c.id,
                        tickets.c.queue_id,
                        tickets.c.channel,
                        tickets.c.assignee_id,
                        tickets.c.queued_at,
                        tickets.c.created_at,
                        tickets.c.answered_at,
                        tickets.c.abandoned_at,
                        tickets.c.solved_at,
                        tickets.c.closed_at,
                    ).where(
                        or_(
                            tickets.c.queued_at >= since,
                            tickets.c.answered_at >= since,
                            tickets.c.abandoned_at >= since,
                            tickets.c.solved_at >= since,
                        )
                    )
                )
            ).all()
        for (payload,) in health_rows:
            self._channel_health(payload or {})
        by_agent: dict[int, list[int]] = {}
        for a, q in members:
            by_agent.setdefault(a, []).append(q)
        for a in agent_rows:
            self.agents[a.id] = AgentState(
                id=a.id,
                name=a.display_name or a.username,
                role=a.role,
                status=a.status,
                since=_ts(a.status_changed_at) or now,
                capacity=dict(a.capacity or {}),
                queue_ids=sorted(by_agent.get(a.id, [])),
            )
            for qid in self.agents[a.id].queue_ids:
                self.members.setdefault(qid, set()).add(a.id)
        for r in done_rows:
            queued = _ts(r.queued_at) or _ts(r.created_at) or now
            key = self._key(r.queue_id, r.channel)
            if key is None:
                continue
            qi = self.queues[key[0]]
            if queued >= qi.day_start and (r.id, "q") not in qi.counted:
                qi.counted.add((r.id, "q"))
                self.figures[key].queued += 1
            answered = _ts(r.answered_at)
            abandoned = _ts(r.abandoned_at)
            for at, was_answered in ((answered, True), (abandoned, False)):
                if at is not None and at >= min(qi.day_start, now - WINDOW_SECONDS):
                    self._outcome(r.id, key, at, was_answered, max(0.0, at - min(queued, at)), now)
            finished = _ts(r.solved_at) or _ts(r.closed_at)
            agent = self.agents.get(r.assignee_id) if r.assignee_id is not None else None
            if agent is not None and finished is not None and finished >= self.day_start and answered is not None:
                agent.handled += 1
                agent.handle_sum += max(0.0, finished - answered)
        for r in open_rows:
            state = TicketState(queue_id=r.queue_id, channel=r.channel, answered=r.answered_at is not None)
            self.tickets[r.id] = state
            if r.assignee_id is not None:
                self._hold(r.id, state, r.assignee_id, _ts(r.answered_at) or _ts(r.updated_at) or now)
            else:
                due = _ts(r.first_response_due_at) if r.first_response_at is None else None
                self._wait(r.id, state, _ts(r.queued_at) or _ts(r.created_at) or now, due, count=False)
        self.loaded = True
        self.applied_seq = self.rt.events.last_seq
        buffered, self._buffer = self._buffer, []
        for event in buffered:
            self.apply(event)

    def _day_starts(self) -> list[float]:
        return [q.day_start for q in self.queues.values()]

    def _queue_from_row(self, q: Any, now: float) -> None:
        zone = ZoneInfo(calendar_zone(q.hours, self.rt.settings.supervisor_timezone))
        old = self.queues.get(q.id)
        info = QueueInfo(
            id=q.id,
            name=q.name,
            channels=list(q.channels or []),
            threshold=float(q.service_level_seconds),
            target=int(q.service_level_target),
            wait_alert=float(q.wait_alert_seconds),
            zone=zone,
        )
        if old is not None:
            info.counted = old.counted
        info.set_day(now)
        self.queues[q.id] = info
        self.next_roll = min(self.next_roll or info.day_end, info.day_end)
        self._dirty_queues.add(q.id)

    def _reload_soon(self) -> None:
        if self._reload is None or self._reload.done():
            with contextlib.suppress(RuntimeError):  # no running loop: a later event reloads
                self._reload = asyncio.get_running_loop().create_task(self._reload_queues())

    async def _reload_queues(self) -> None:
        async with self.rt.read() as conn:
            rows = (await conn.execute(select(queues).order_by(queues.c.id))).all()
        now = time.time()
        for q in rows:
            if q.id not in self._deleted:  # a reload read before the deletion was heard
                self._queue_from_row(q, now)
        for gone in set(self.queues) - {q.id for q in rows}:
            self._drop_queue(gone)
        self._schedule()

    # --- events -------------------------------------------------------------------------------------------

    def on_event(self, event: EventRecord, _text: str) -> None:
        """The hub's listener: cheap, never raises (the hub logs what does)."""
        if event.seq == 0:
            return  # ephemeral (typing, and this board's own frames)
        if not self.loaded:
            self._buffer.append(event)
            return
        self.apply(event)

    def apply(self, event: EventRecord) -> None:
        now = event.created_at.timestamp()
        self._roll_day(now)
        kind = event.type
        payload = event.payload
        if kind == "agent.status":
            agent = self.agents.get(event.agent_id or 0)
            if agent is not None:
                agent.status = str(payload.get("status", agent.status))
                agent.since = now
                self._agent_changed(agent)
        elif kind in ("agent.created", "agent.updated"):
            self._agent_from_payload(payload.get("agent") or {}, now)
        elif kind in ("queue.created", "queue.updated"):
            self._reload_soon()
        elif kind == "queue.deleted":
            self._drop_queue(int((payload.get("queue") or {}).get("id") or 0))
        elif kind == "channel.health":
            self._channel_health(payload)
        elif kind == "ticket.abandoned":
            ticket = payload.get("ticket") or {}
            key = self._key(ticket.get("queue_id"), ticket.get("channel"))
            if key is not None:
                self._outcome(int(ticket["id"]), key, now, False, float(payload.get("waited") or 0.0), now)
            self._observe(ticket, now)
        elif kind in ("sla.breached", "ticket.escalated"):
            self._alert(kind, event, now)
            ticket = payload.get("ticket")
            if ticket:
                self._observe(ticket, now)
        else:
            ticket = payload.get("ticket")
            if ticket and event.ticket_id is not None:
                self._observe(ticket, now)
        self.applied_seq = max(self.applied_seq, event.seq)
        self._schedule()

    def _key(self, queue_id: Any, channel: Any) -> tuple[int, str] | None:
        if queue_id is None or channel is None:
            return None
        if queue_id not in self.queues:
            # A queue this board has not read yet (its queue.created is being read): defaults until then.
            info = QueueInfo(int(queue_id), f"queue {queue_id}", [], 60.0, 80, 300.0, zone=self.zone)
            info.set_day(time.time())
            self.queues[int(queue_id)] = info
            self._reload_soon()
        key = (int(queue_id), str(channel))
        if key not in self.figures:
            self.figures[key] = self.by_queue.setdefault(key[0], {})[key[1]] = Figures()
        return key

    def _wait(self, ticket_id: int, state: TicketState, queued: float, due: float | None, *, count: bool) -> None:
        key = self._key(state.queue_id, state.channel)
        state.queued_at = queued
        if key is None:
            return
        self.figures[key].waiting[ticket_id] = (queued, due)
        q = self.queues[key[0]]
        if count and queued >= q.day_start and (ticket_id, "q") not in q.counted:
            q.counted.add((ticket_id, "q"))
            self.figures[key].queued += 1
        self._dirty_queues.add(key[0])

    def _unwait(self, ticket_id: int, state: TicketState) -> None:
        key = self._key(state.queue_id, state.channel)
        if key is not None:
            self.figures[key].waiting.pop(ticket_id, None)
            self._dirty_queues.add(key[0])
        state.queued_at = None

    def _hold(self, ticket_id: int, state: TicketState, agent_id: int, at: float) -> None:
        state.assignee, state.assigned_at = agent_id, at
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.load[state.channel] = agent.load.get(state.channel, 0) + 1
            if state.channel == VOICE:
                agent.calls.add(ticket_id)
            self._agent_changed(agent)

    def _release(self, ticket_id: int, state: TicketState, now: float, *, finished: bool) -> None:
        agent = self.agents.get(state.assignee or 0)
        if agent is not None:
            agent.load[state.channel] = max(0, agent.load.get(state.channel, 0) - 1)
            agent.calls.discard(ticket_id)
            if finished and state.assigned_at is not None:
                agent.handled += 1
                agent.handle_sum += max(0.0, now - state.assigned_at)
            self._agent_changed(agent)
        state.assignee = state.assigned_at = None

    def _outcome(
        self, ticket_id: int, key: tuple[int, str], at: float, answered: bool, wait: float, now: float
    ) -> None:
        q = self.queues[key[0]]
        if (ticket_id, "o") in q.counted:
            return
        q.counted.add((ticket_id, "o"))
        f = self.figures[key]
        threshold = q.threshold
        if at >= q.day_start:
            f.outcome(at, answered, wait, threshold)
        elif at >= now - WINDOW_SECONDS:  # yesterday, but within the last 30 minutes
            f.recent.append((at, answered, wait <= threshold))
        self._dirty_queues.add(key[0])

    def _observe(self, t: dict[str, Any], now: float) -> None:
        """A ticket's summary as an event carries it: move it between waiting, held and gone."""
        try:
            ticket_id = int(t["id"])
        except (KeyError, TypeError, ValueError):
            return
        is_open = t.get("status") in _OPEN
        queue_id, channel, assignee = t.get("queue_id"), str(t.get("channel") or ""), t.get("assignee_id")
        state = self.tickets.get(ticket_id)
        if state is None:
            if not is_open:
                return
            state = self.tickets[ticket_id] = TicketState(queue_id=queue_id, channel=channel)
        elif (state.queue_id, state.channel) != (queue_id, channel) and state.queued_at is not None:
            # Moved (transfer, overflow) while waiting: it waits in the new queue from now on.
            self._unwait(ticket_id, state)
            state.queue_id, state.channel = queue_id, channel
            state.queued_at = None
        state.queue_id, state.channel = queue_id, channel
        if not is_open:
            if state.queued_at is not None:
                self._unwait(ticket_id, state)
            if state.assignee is not None:
                self._release(ticket_id, state, now, finished=True)
            del self.tickets[ticket_id]
            return
        answered_by_channel = channel in ANSWERED_BY_CHANNEL
        if answered_by_channel and not state.answered and t.get("answered_at"):
            # A call is answered when the agent's phone picked up (its channel stamps answered_at), not when
            # they took it: its wait runs from entering the queue to that moment.
            key = self._key(queue_id, channel)
            at = _ts(t.get("answered_at")) or now
            entered = _ts(t.get("queued_at")) or _ts(t.get("created_at")) or at
            if key is not None:
                self._outcome(ticket_id, key, at, True, max(0.0, at - entered), now)
            state.answered = True
        if assignee != state.assignee:
            if state.assignee is not None:
                self._release(ticket_id, state, now, finished=False)
            if assignee is not None:
                if state.queued_at is not None:
                    key = self._key(queue_id, channel)
                    if key is not None and not state.answered and not answered_by_channel:
                        self._outcome(ticket_id, key, now, True, max(0.0, now - state.queued_at), now)
                    self._unwait(ticket_id, state)
                state.answered = state.answered or not answered_by_channel
                self._hold(ticket_id, state, int(assignee), now)
        if assignee is None:
            due = _ts(t.get("first_response_due_at")) if not t.get("first_response_at") else None
            if state.queued_at is None:
                self._wait(ticket_id, state, _ts(t.get("queued_at")) or now, due, count=True)
            else:
                key = self._key(queue_id, channel)
                if key is not None:
                    self.figures[key].waiting[ticket_id] = (state.queued_at, due)

    def _agent_from_payload(self, a: dict[str, Any], now: float) -> None:
        try:
            agent_id = int(a["id"])
        except (KeyError, TypeError, ValueError):
            return
        if not a.get("active", True):
            gone = self.agents.pop(agent_id, None)
            if gone is not None:
                for q in gone.queue_ids:
                    self.members.get(q, set()).discard(agent_id)
                self._dirty_agents.add(agent_id)
                self._dirty_queues.update(gone.queue_ids)
            return
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = AgentState(
                id=agent_id, name="", role="agent", status=str(a.get("status") or "offline"), since=now,
                capacity={}, queue_ids=[],
            )  # fmt: skip
        agent.name = str(a.get("display_name") or a.get("username") or agent.name)
        agent.role = str(a.get("role") or agent.role)
        agent.capacity = dict(a.get("capacity") or {})
        for q in agent.queue_ids:
            self.members.get(q, set()).discard(agent_id)
        agent.queue_ids = sorted(int(q) for q in a.get("queue_ids") or [])
        for q in agent.queue_ids:
            self.members.setdefault(q, set()).add(agent_id)
        self._agent_changed(agent)

    def _drop_queue(self, queue_id: int) -> None:
        """A deleted queue leaves the board (it held no open work: deletion refuses that)."""
        self._deleted.add(queue_id)
        if self.queues.pop(queue_id, None) is None:
            return
        for channel in self.by_queue.pop(queue_id, {}):
            self.figures.pop((queue_id, channel), None)
        self.members.pop(queue_id, None)
        for agent in self.agents.values():
            if queue_id in agent.queue_ids:
                agent.queue_ids = [q for q in agent.queue_ids if q != queue_id]
                self._dirty_agents.add(agent.id)
        self._dirty_queues.add(queue_id)

    def _channel_health(self, p: dict[str, Any]) -> None:
        key = (str(p.get("channel") or ""), str(p.get("account") or ""))
        if p.get("status") == "ok":
            if self.channel_alerts.pop(key, None) is None:
                return
        else:
            self.channel_alerts[key] = {
                "channel": key[0],
                "account": key[1],
                "queue": p.get("queue"),
                "status": p.get("status"),
                "detail": p.get("detail"),
                "since": p.get("since"),
            }
        self._channels_dirty = True

    def _agent_changed(self, agent: AgentState) -> None:
        self._dirty_agents.add(agent.id)
        self._dirty_queues.update(agent.queue_ids)

    def _alert(self, kind: str, event: EventRecord, now: float) -> None:
        p = event.payload
        ticket_id = event.ticket_id
        if kind == "sla.breached":
            text = f"ticket #{ticket_id} breached its {str(p.get('target', '')).replace('_', ' ')} target"
        else:
            text = f"ticket #{ticket_id} escalated to {(p.get('ticket') or {}).get('priority', '?')}"
        self.alerts.append(
            {"kind": kind, "ticket_id": ticket_id, "queue_id": event.queue_id, "text": text, "at": _iso(now)}
        )
        if event.queue_id is not None:
            self._dirty_queues.add(event.queue_id)

    # --- reading and pushing ------------------------------------------------------------------------------

    def queue_row(self, queue_id: int, now: float) -> dict[str, Any]:
        q = self.queues[queue_id]
        parts = self.by_queue.get(queue_id, {})
        total = summarize(list(parts.values()), now)
        counts = {"available": 0, "busy": 0, "away": 0, "wrap_up": 0, "offline": 0}
        for agent_id in self.members.get(queue_id, ()):
            a = self.agents.get(agent_id)
            if a is None:
                continue
            if a.status == "available":
                counts["busy" if any(a.load.values()) else "available"] += 1
            else:
                counts[a.status if a.status in counts else "away"] += 1
        return {
            "id": q.id,
            "name": q.name,
            "timezone": q.zone.key,
            "service_level_seconds": q.threshold,
            "service_level_target": q.target,
            "wait_alert_seconds": q.wait_alert,
            "agents": counts,
            **total,
            "channels": {ch: summarize([f], now) for ch, f in sorted(parts.items())},
            "alerts": self.queue_alerts(q, total, now),
        }

    @staticmethod
    def queue_alerts(q: QueueInfo, total: dict[str, Any], now: float) -> list[str]:
        out = []
        for span in ("30m", "today"):
            level = total[f"service_level_{span}"]
            if level is not None and level * 100 < q.target:
                out.append(f"service level ({span}) {level * 100:.0f} % is under the target of {q.target} %")
        if total["longest_wait"] > q.wait_alert:
            out.append(f"longest wait {int(total['longest_wait'])} s is over {int(q.wait_alert)} s")
        due = _ts(total["next_due_at"])
        if due is not None and due - now < DUE_WARNING_SECONDS:
            ticket = total["next_due_ticket"]
            late = now - due
            out.append(
                f"ticket #{ticket} is {int(late)} s past its first-response deadline"
                if late > 0
                else f"ticket #{ticket} is due for a first response in {int(-late)} s"
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        self._roll_day(now)
        agents_rows = [a.row() for a in sorted(self.agents.values(), key=lambda a: a.name.lower()) if a.shown]
        logged_in = [a for a in self.agents.values() if a.status != "offline"]
        return {
            "seq": self.applied_seq,
            "at": _iso(now),
            "timezone": self.rt.settings.supervisor_timezone,
            "queue_timezones": {str(q.id): q.zone.key for q in self.queues.values()},
            "window_seconds": WINDOW_SECONDS,
            "queues": [self.queue_row(q, now) for q in sorted(self.queues)],
            "agents": agents_rows,
            "occupancy": (sum(1 for a in logged_in if any(a.load.values())) / len(logged_in)) if logged_in else None,
            "alerts": list(self.alerts),
            "channel_alerts": list(self.channel_alerts.values()),
        }

    def _schedule(self) -> None:
        if self._push is not None or not (self._dirty_queues or self._dirty_agents or self._channels_dirty):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._push = loop.call_later(PUSH_SECONDS, self.push)

    def push(self) -> None:
        """Send the rows that changed since the last push to this process's supervisors."""
        self._push = None
        if self.rt.events.subscriber_count == 0:
            self._dirty_queues.clear()
            self._dirty_agents.clear()
            self._channels_dirty = False
            return
        now = time.time()
        queue_ids, agent_ids = self._dirty_queues, self._dirty_agents
        self._dirty_queues, self._dirty_agents = set(), set()
        logged_in = [a for a in self.agents.values() if a.status != "offline"]
        data = {
            "seq": self.applied_seq,
            "at": _iso(now),
            "queues": [self.queue_row(q, now) for q in sorted(queue_ids) if q in self.queues],
            "removed_queues": sorted(q for q in queue_ids if q not in self.queues),
            "agents": [self.agents[a].row() for a in sorted(agent_ids) if a in self.agents and self.agents[a].shown],
            "removed_agents": sorted(a for a in agent_ids if a not in self.agents or not self.agents[a].shown),
            "occupancy": (sum(1 for a in logged_in if any(a.load.values())) / len(logged_in)) if logged_in else None,
            "alerts": list(self.alerts)[-10:],
        }
        if self._channels_dirty:
            data["channel_alerts"] = list(self.channel_alerts.values())
            self._channels_dirty = False
        # Only this process's subscribers: every process keeps its own board from the same events.
        frame = EventRecord(seq=0, type="wallboard.update", payload=data, created_at=datetime.now(UTC), agent_id=NOBODY)
        self.rt.events.receive_ephemeral(frame.frame())


def wallboard(rt: Runtime) -> Wallboard | None:
    """This runtime's wallboard, if one was started."""
    board = rt.caches.get(_CACHE)
    return board if isinstance(board, Wallboard) else None


async def start_wallboard(rt: Runtime) -> Wallboard:
    board = Wallboard(rt)
    rt.caches[_CACHE] = board
    await board.start()
    return board
