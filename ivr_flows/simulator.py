"""A pretend phone line around the engine, for ``ivr simulate``, ``ivr test``, the benchmark and the tests.

``Call`` plays the phone adapter's part with a ``World`` standing in for Twilio and the database: it steps the
engine, answers ``Lookup``, ``Enqueue`` and ``Dial`` from the world at once (as the adapter does within one
webhook), and keeps a transcript of what the caller heard and what happened. The caller's part (keys,
words, silence, a recorded message, hanging up) is given to ``Call.feed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from hub.hours import BusinessHours
from ivr_flows.actions import (
    Action,
    Callback,
    Dial,
    Enqueue,
    Gather,
    Hangup,
    Hold,
    Lookup,
    Play,
    Record,
    Say,
    Voicemail,
)
from ivr_flows.engine import Context, new_call, step
from ivr_flows.inputs import (
    CallStarted,
    DialDone,
    Digits,
    HangUp,
    Input,
    LookupResult,
    NoInput,
    Queued,
    RecordingDone,
    Speech,
    TicketSummary,
)
from ivr_flows.schema import Flow
from ivr_flows.state import CallState


@dataclass(slots=True)
class World:
    """What the pretend adapter answers for: the numbers, the clock and queues' hours, the caller's contact
    and open requests, the wait in queue, and how an outside call ends."""

    caller: str = "+15555550100"
    called: str = "+15555550199"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    hours: dict[str, BusinessHours | None] = field(default_factory=dict)
    contact_name: str | None = None
    open_tickets: list[TicketSummary] = field(default_factory=list)
    wait_seconds: int | None = 30
    position: int | None = 1
    dial_status: Literal["completed", "busy", "no-answer", "failed", "canceled"] = "completed"

    def close(self, *queues: str) -> None:
        """Make these queues closed whatever the clock says."""
        for q in queues:
            self.hours[q] = _never_open()


def _never_open() -> BusinessHours:
    """A calendar with no open time at all."""
    return BusinessHours(ZoneInfo("UTC"), tuple(() for _ in range(7)), frozenset())


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a call's transcript: something the engine did, or an input (the caller's or the
    pretend adapter's)."""

    who: Literal["engine", "caller", "adapter"]
    item: Action | Input


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended up, from the actions it produced."""

    kind: Literal[
        "queued", "voicemail", "callback", "transferred", "hung_up", "caller_hung_up", "waiting", "runaway", "error"
    ]
    queue: str | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    number: str | None = None  # transferred: the number or number name dialled
    in_line: bool | None = None  # callback: kept its place in line
    node: str | None = None  # waiting: where

    def describe(self) -> str:
        if self.kind == "queued":
            text = f"queued to {self.queue}"
        elif self.kind == "voicemail":
            text = f"voicemail in {self.queue}"
        elif self.kind == "callback":
            text = f"callback in {self.queue}"
        elif self.kind == "transferred":
            text = f"transferred to {self.number}"
        elif self.kind == "waiting":
            text = f"still in the menu, waiting at {self.node}"
        else:
            text = self.kind.replace("_", " ")
        extras = ["kept its place in line"] if self.in_line else []
        if self.skills:
            extras.append("skills " + ", ".join(f"{k}={v}" for k, v in self.skills.items()))
        if self.priority:
            extras.append(f"priority {self.priority}")
        return text + (f" ({'; '.join(extras)})" if extras else "")


class Call:
    """One pretend call through a flow."""

    def __init__(self, flow: Flow, world: World | None = None) -> None:
        self.flow = flow
        self.world = world or World()
        self.state: CallState = new_call(flow)
        self.transcript: list[Entry] = []
        self._last_handoff: Enqueue | None = None
        self._outcome: Outcome | None = None

    @property
    def ended(self) -> bool:
        return self.state.ended

    def start(self) -> list[Entry]:
        return self.feed(CallStarted(caller=self.world.caller, called=self.world.called))

    def feed(self, event: Input) -> list[Entry]:
        """The caller's input; answers the transcript entries it produced (the engine's actions and the
        pretend adapter's answers to lookups, hand-offs and outside calls)."""
        first = len(self.transcript)
        who: Literal["caller", "adapter"] = "caller"
        pending: Input | None = event
        while pending is not None:
            self.transcript.append(Entry(who, pending))
            if isinstance(pending, HangUp) and not self.state.ended:
                self._outcome = Outcome("caller_hung_up", node=self.state.node)
            self.state, actions = step(self.flow, self.state, pending, self._context())
            self.transcript.extend(Entry("engine", a) for a in actions)
            pending, who = self._answer(actions), "adapter"
        return self.transcript[first:]

    def _context(self) -> Context:
        return Context(now=self.world.now, hours=self.world.hours)

    def _answer(self, actions: list[Action]) -> Input | None:
        """What the adapter feeds back at once for the last action, as the phone adapter will."""
        if not actions:
            return None
        last = actions[-1]
        w = self.world
        for action in actions:
            self._note(action)
        if isinstance(last, Lookup):
            return LookupResult(contact_name=w.contact_name, open_tickets=w.open_tickets)
        if isinstance(last, Enqueue):
            self._last_handoff = last
            return Queued(estimated_wait_seconds=w.wait_seconds, position=w.position)
        if isinstance(last, Dial):
            return DialDone(status=w.dial_status)
        return None

    def _note(self, action: Action) -> None:
        """Keep the outcome the call's actions add up to."""
        if isinstance(action, Hold):
            h = self._last_handoff
            self._outcome = Outcome(
                "queued",
                queue=action.queue,
                skills=h.skills if h else {},
                priority=h.priority if h else None,
                metadata=h.metadata if h else {},
            )
        elif isinstance(action, Voicemail | Callback):
            kind: Literal["voicemail", "callback"] = "voicemail" if isinstance(action, Voicemail) else "callback"
            self._outcome = Outcome(
                kind,
                queue=action.queue,
                skills=action.skills,
                priority=action.priority,
                metadata=action.metadata,
                in_line=action.in_line if isinstance(action, Callback) else None,
            )
        elif isinstance(action, Hangup) and self._outcome is None:
            st = self.state
            if st.outcome == "dialed":
                node = self.flow.nodes.get(st.node or "")
                number = getattr(node, "number", None) or getattr(node, "number_name", None)
                self._outcome = Outcome("transferred", number=number, node=st.node)
            elif st.outcome == "runaway" or st.outcome == "error":
                self._outcome = Outcome(st.outcome, node=st.node)
            else:
                self._outcome = Outcome("hung_up", node=st.node)

    @property
    def outcome(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        return Outcome("waiting", node=self.state.node)

    def heard(self, entries: list[Entry] | None = None) -> list[str]:
        """What the caller heard in these entries (default: the whole call), one prompt a line; audio as
        ``[audio URL]``."""
        out: list[str] = []
        for e in self.transcript if entries is None else entries:
            if isinstance(e.item, Say | Play):
                out.append(_heard(e.item))
            elif isinstance(e.item, Gather):
                out.extend(_heard(p) for p in e.item.prompts)
        return out


def _heard(item: Say | Play) -> str:
    return item.text if isinstance(item, Say) else f"[audio {item.url}]"


def describe(entry: Entry) -> list[str]:
    """A transcript entry for the terminal."""
    item = entry.item
    if entry.who == "caller":
        if isinstance(item, Digits):
            return [f"caller presses {item.digits}"]
        if isinstance(item, Speech):
            return [f"caller says {item.text!r} (confidence {item.confidence:g})"]
        if isinstance(item, NoInput):
            return ["caller says nothing"]
        if isinstance(item, RecordingDone):
            return [f"caller records a {item.duration_seconds} s message"]
        if isinstance(item, HangUp):
            return ["caller hangs up"]
        if isinstance(item, CallStarted):
            return [f"call from {item.caller} to {item.called}"]
        return [f"caller: {item.kind}"]
    if entry.who == "adapter":
        if isinstance(item, LookupResult):
            name = item.contact_name or "unknown caller"
            return [f"  [lookup: {name}, {len(item.open_tickets)} open request(s)]"]
        if isinstance(item, Queued):
            wait = "unknown" if item.estimated_wait_seconds is None else f"{item.estimated_wait_seconds} s"
            return [f"  [in line: estimated wait {wait}, position {item.position or '?'}]"]
        if isinstance(item, DialDone):
            return [f"  [the outside call ends: {item.status}]"]
        return [f"  [adapter: {item.kind}]"]
    if isinstance(item, Say):
        return [f"  says ({item.language}): {item.text}"]
    if isinstance(item, Play):
        return [f"  plays {item.url}"]
    if isinstance(item, Gather):
        lines = [f"  says ({p.language}): {p.text}" if isinstance(p, Say) else f"  plays {p.url}" for p in item.prompts]
        how = "keys or words" if "speech" in item.input else "keys"
        return [*lines, f"  (waits {item.timeout} s for {how})"]
    if isinstance(item, Record):
        return [f"  (beep: records up to {item.max_seconds} s; /record SECONDS or /silence)"]
    if isinstance(item, Lookup):
        return ["  [looks up the caller]"]
    if isinstance(item, Enqueue):
        extra = f", skills {item.skills}" if item.skills else ""
        extra += f", priority {item.priority}" if item.priority else ""
        return [f"  [hands the call to queue {item.queue}{extra}]"]
    if isinstance(item, Hold):
        return [f"  [the caller holds for an agent of {item.queue}]"]
    if isinstance(item, Voicemail):
        return [f"  [voicemail: a ticket in {item.queue} with the {item.duration_seconds} s recording]"]
    if isinstance(item, Callback):
        kept = ", keeping its place in line" if item.in_line else ""
        return [f"  [callback requested in {item.queue}{kept}]"]
    if isinstance(item, Dial):
        return [f"  [dials {item.number or item.number_name}]"]
    if isinstance(item, Hangup):
        return ["  [hangs up]"]
    return [f"  [{item.kind}]"]
