"""Scripted conversations: a flow's unit tests, kept beside it (``demo.tests.yaml`` next to ``demo.yaml``).

Each conversation gives the caller's steps (keys, words, silence, a recorded message, hanging up), what the
caller must hear after each (substrings, compared without regard to case or line breaks), and how the call
must end (queued to a queue with skills, priority and metadata, voicemail, callback, transferred, hung up).
The world the pretend adapter answers from (clock, business hours, closed queues, the caller's contact and
open requests, the wait in queue, how an outside call ends) is set for the file and per conversation::

    flow: demo.yaml                   # optional: the flow beside this file with the same name
    world:                            # for every conversation
      now: 2026-03-04T15:00:00Z
      caller: "+14155550123"
    tests:
      - name: Spanish billing reaches the billing queue
        world: {wait_seconds: 45}     # this conversation only
        steps:
          - expect: For English, press 1          # the greeting
          - press: 2
            expect: Para facturación
          - say: factura              # speech (confidence: 0.9 unless given)
            confidence: 0.8
          - silence                   # no input until the timeout
          - press: "12345674"
          - record: 20                # a 20-second message at a voicemail
          - hangup
        outcome:
          queued: billing             # or voicemail: Q, callback: Q, transferred: NUMBER, hung_up: true,
          priority: high              #    caller_hung_up: true, waiting: NODE
          skills: {"language:es": 1}
          metadata: {language: es, vars: {account: "12345674"}}   # only the keys given are compared
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.hours import BusinessHours, HoursSpec
from ivr_flows.inputs import Digits, HangUp, Input, NoInput, RecordingDone, Speech, TicketSummary
from ivr_flows.lint import lint
from ivr_flows.loader import parse_flow
from ivr_flows.schema import Flow
from ivr_flows.simulator import Call, Outcome, World, describe
from ivr_flows.source import Finding, SourceMap, YamlError, data_path, errors, read_yaml
from ivr_flows.source import describe as describe_path


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorldSpec(_Model):
    """What the pretend adapter answers; every field optional (a conversation's world overrides the file's)."""

    caller: str | None = None
    called: str | None = None
    now: AwareDatetime | None = None
    hours: dict[str, HoursSpec | None] | None = None
    closed: list[str] | None = None  # queues closed whatever the clock says
    contact_name: str | None = None
    open_tickets: list[TicketSummary] | None = None
    wait_seconds: int | None = Field(default=None, ge=0)
    position: int | None = Field(default=None, ge=1)
    dial_status: Literal["completed", "busy", "no-answer", "failed", "canceled"] | None = None

    def apply(self, world: World) -> None:
        for name in ("caller", "called", "now", "contact_name", "wait_seconds", "position", "dial_status"):
            value = getattr(self, name)
            if value is not None:
                setattr(world, name, value)
        if self.open_tickets is not None:
            world.open_tickets = list(self.open_tickets)
        for queue, spec in (self.hours or {}).items():
            world.hours[queue] = BusinessHours.parse(spec)
        world.close(*(self.closed or []))


class Step(_Model):
    """One thing the caller does (at most one of press, say, silence, record, hangup) and what they must
    then hear (``expect``) or not hear (``expect_not``). A first step with no action checks the greeting."""

    press: str | None = Field(default=None, pattern=r"^[0-9*#]{1,64}$")
    say: str | None = Field(default=None, min_length=1, max_length=1000)
    confidence: float = Field(default=0.9, ge=0, le=1)
    silence: bool | None = None
    record: int | None = Field(default=None, ge=0, le=3600)
    hangup: bool | None = None
    expect: list[str] = []
    expect_not: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if value in ("silence", "hangup"):
            return {value: True}
        if isinstance(value, dict):
            value = dict(value)
            for name in ("expect", "expect_not"):
                if isinstance(value.get(name), str):
                    value[name] = [value[name]]
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if len(self.actions()) > 1:
            raise ValueError("a step does one of press, say, silence, record, hangup")
        return self

    def actions(self) -> list[str]:
        return [n for n in ("press", "say", "silence", "record", "hangup") if getattr(self, n) not in (None, False)]

    def input(self) -> Input | None:
        if self.press is not None:
            return Digits(digits=self.press)
        if self.say is not None:
            return Speech(text=self.say, confidence=self.confidence)
        if self.silence:
            return NoInput()
        if self.record is not None:
            url = "https://recordings.invalid/simulated.wav" if self.record else None
            return RecordingDone(url=url, duration_seconds=self.record, recording_id="RE-simulated")
        if self.hangup:
            return HangUp()
        return None

    def describe(self) -> str:
        if self.press is not None:
            return f"press {self.press}"
        if self.say is not None:
            return f"say {self.say!r}"
        if self.record is not None:
            return f"record {self.record} s"
        return self.actions()[0] if self.actions() else "the greeting"


class ExpectedOutcome(_Model):
    queued: str | None = None
    voicemail: str | None = None
    callback: str | None = None
    transferred: str | None = None
    hung_up: bool | None = None
    caller_hung_up: bool | None = None
    waiting: str | None = None
    skills: dict[str, int] | None = None
    priority: str | None = None
    in_line: bool | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ExpectedOutcome:
        if len(self.kinds()) != 1:
            raise ValueError(
                "an outcome is one of queued, voicemail, callback, transferred, hung_up, caller_hung_up, waiting"
            )
        return self

    def kinds(self) -> list[str]:
        names = ("queued", "voicemail", "callback", "transferred", "hung_up", "caller_hung_up", "waiting")
        return [n for n in names if getattr(self, n) not in (None, False)]

    def describe(self) -> str:
        kind = self.kinds()[0]
        value = getattr(self, kind)
        text = {
            "queued": f"queued to {value}",
            "voicemail": f"voicemail in {value}",
            "callback": f"callback in {value}",
            "transferred": f"transferred to {value}",
            "waiting": f"still in the menu, waiting at {value}",
        }.get(kind, kind.replace("_", " "))
        extras = []
        if self.skills is not None:
            extras.append("skills " + (", ".join(f"{k}={v}" for k, v in self.skills.items()) or "none"))
        if self.priority is not None:
            extras.append(f"priority {self.priority}")
        return text + (f" ({'; '.join(extras)})" if extras else "")


class Conversation(_Model):
    name: str = Field(min_length=1, max_length=200)
    world: WorldSpec | None = None
    steps: list[Step] = Field(min_length=1)
    outcome: ExpectedOutcome | None = None


class ConversationsFile(_Model):
    flow: str | None = None
    world: WorldSpec | None = None
    tests: list[Conversation] = Field(min_length=1)


@dataclass(slots=True)
class Result:
    """One conversation's run: passed when ``failures`` is empty; ``transcript`` is the call as it went."""

    name: str
    line: int | None
    failures: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class Suite:
    """A tests file as read: its conversations and flow (None when they cannot be used) and what is wrong
    with either, as ``file:line: error: ...`` lines."""

    path: Path
    flow_path: Path
    flow: Flow | None
    spec: ConversationsFile | None
    lines: SourceMap
    errors: list[str]

    def run(self, only: str | None = None) -> list[Result]:
        assert self.flow is not None and self.spec is not None
        out = []
        for i, conv in enumerate(self.spec.tests):
            if only is None or only.casefold() in conv.name.casefold():
                out.append(run_conversation(self.flow, conv, self.spec.world, self.lines, ("tests", i)))
        return out


def tests_path_for(flow_path: Path) -> Path:
    """Where a flow's conversations live: ``demo.yaml`` → ``demo.tests.yaml``."""
    return flow_path.with_name(flow_path.name.removesuffix(flow_path.suffix) + ".tests" + flow_path.suffix)


def load_suite(path: str | Path, *, flow_path: str | Path | None = None) -> Suite:
    """Read a tests file (or the one beside a flow file) and its flow, linted."""
    path = Path(path)
    if not path.name.endswith((".tests.yaml", ".tests.yml")) and flow_path is None:
        flow_path, path = path, tests_path_for(path)
    findings: list[Finding] = []
    lines = SourceMap()
    spec: ConversationsFile | None = None
    try:
        data, lines, findings = read_yaml(path.read_text(encoding="utf-8"))
        spec = ConversationsFile.model_validate(data)
    except (OSError, UnicodeDecodeError) as exc:
        findings.append(Finding("error", "file", f"cannot read the conversations: {exc}"))
    except YamlError as exc:
        findings.append(exc.finding)
    except ValidationError as exc:
        for err in exc.errors():
            loc = data_path(err["loc"], data)
            msg = str(err["msg"]).removeprefix("Value error, ")
            findings.append(Finding("error", "tests", f"{describe_path(loc) or 'the file'}: {msg}", lines.line(*loc)))
    if flow_path is None:
        if spec is not None and spec.flow:
            flow_path = path.parent / spec.flow
        else:
            flow_path = path.with_name(path.name.replace(".tests.", ".", 1))
    flow_path = Path(flow_path)
    problems = [f.format(str(path)) for f in errors(findings)]
    flow: Flow | None = None
    try:
        parsed = parse_flow(flow_path.read_text(encoding="utf-8"), source=str(flow_path))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{flow_path}: error: cannot read the flow: {exc} [file]")
    else:
        flow_errors = errors(lint(parsed))
        problems += [f.format(str(flow_path)) for f in flow_errors]
        if not flow_errors:
            flow = parsed.flow
    return Suite(path, flow_path, flow, spec, lines, problems)


def run_conversation(
    flow: Flow, conv: Conversation, base: WorldSpec | None, lines: SourceMap, at: tuple[str | int, ...]
) -> Result:
    world = World()
    if base is not None:
        base.apply(world)
    if conv.world is not None:
        conv.world.apply(world)
    call = Call(flow, world)
    result = Result(conv.name, lines.line(*at))
    entries = call.start()
    for j, s in enumerate(conv.steps):
        where = f"step {j + 1} ({s.describe()}), line {lines.line(*at, 'steps', j)}"
        event = s.input()
        if event is None:
            if j > 0:
                result.failures.append(f"{where}: only the first step may have no action")
                break
        else:
            if call.ended:
                result.failures.append(f"{where}: the call had already ended ({call.outcome.describe()})")
                break
            entries = call.feed(event)
        heard = " ".join(call.heard(entries))
        problems = [f'expected to hear "{e}"' for e in s.expect if _folded(e) not in _folded(heard)]
        problems += [f'expected not to hear "{e}"' for e in s.expect_not if _folded(e) in _folded(heard)]
        if problems:
            result.failures.extend(f"{where}: {p}" for p in problems)
            result.failures.append(f'  heard: "{heard}"' if heard else "  heard: nothing")
            break
    else:
        if conv.outcome is not None:
            result.failures.extend(_compare_outcome(conv.outcome, call.outcome, lines.line(*at, "outcome")))
    result.transcript = [line for entry in call.transcript for line in describe(entry)]
    return result


def _compare_outcome(expected: ExpectedOutcome, actual: Outcome, line: int | None) -> list[str]:
    diffs: list[str] = []
    kind = expected.kinds()[0]
    value = getattr(expected, kind)
    actual_value = {
        "queued": actual.queue,
        "voicemail": actual.queue,
        "callback": actual.queue,
        "transferred": actual.number,
        "waiting": actual.node,
    }.get(kind, True)
    if kind != actual.kind or value != actual_value:
        diffs.append("the call ended differently")
    if expected.skills is not None and dict(actual.skills) != expected.skills:
        diffs.append(f"skills: expected {expected.skills}, got {dict(actual.skills)}")
    if expected.priority is not None and actual.priority != expected.priority:
        diffs.append(f"priority: expected {expected.priority}, got {actual.priority}")
    if expected.in_line is not None and actual.in_line != expected.in_line:
        diffs.append(f"in_line: expected {expected.in_line}, got {actual.in_line}")
    if expected.metadata is not None:
        diffs.extend(_compare_subset(expected.metadata, dict(actual.metadata), "metadata"))
    if not diffs:
        return []
    return [
        f"outcome, line {line}:",
        f"  - expected: {expected.describe()}",
        f"  + actual:   {actual.describe()}",
        *(f"  {d}" for d in diffs if d != "the call ended differently"),
    ]


def _compare_subset(expected: Any, actual: Any, where: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            out.extend(_compare_subset(value, actual.get(key), f"{where}.{key}"))
        return out
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())
