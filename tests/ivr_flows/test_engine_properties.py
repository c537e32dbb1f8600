"""Properties of the engine on random flows that pass lint, fed random inputs (the caller's, the adapter's,
stray and repeated ones): a call that has not ended always gets an action to take, the last of which waits or
ends the call; an ended call has an outcome; the state stays valid JSON and the input state is never changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hub.hours import DAYS, BusinessHours
from ivr_flows.actions import BLOCKING, FINAL, Action, Dial, Enqueue, Gather, Lookup, Record
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
from ivr_flows.lint import lint
from ivr_flows.loader import ParsedFlow
from ivr_flows.schema import Flow
from ivr_flows.source import SourceMap, errors
from ivr_flows.state import CallState

WORDS = ["billing", "support", "sales", "agent", "yes", "no", "español", "English", "hold", "1", "2"]
TYPES = [
    "say", "menu", "language", "collect", "hours", "branch", "set", "lookup",
    "transfer", "hold", "voicemail", "callback", "dial", "hangup",
]  # fmt: skip


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    n = draw(st.integers(min_value=2, max_value=10))
    ids = [f"n{i}" for i in range(n)]
    langs = draw(st.sampled_from([["en"], ["en", "es"]]))
    target = st.sampled_from(ids)
    maybe_target = st.none() | target

    def prompt(text: str) -> Any:
        return text if langs == ["en"] else {"en": text, "es": f"{text} (es)"}

    def menu_choices(with_next: bool) -> list[dict[str, Any]]:
        count = draw(st.integers(min_value=1, max_value=3))
        keys = draw(st.lists(st.sampled_from("0123456789*#"), min_size=count, max_size=count, unique=True))
        words = draw(st.lists(st.sampled_from(WORDS[:8]), min_size=count, max_size=count, unique=True))
        out = []
        for key, word in zip(keys, words, strict=True):
            choice: dict[str, Any] = {"key": key, "words": [word]}
            if with_next:
                choice["next"] = draw(target)
            out.append(choice)
        return out

    nodes: dict[str, dict[str, Any]] = {}
    for nid in ids:
        kind = draw(st.sampled_from(TYPES))
        node: dict[str, Any] = {"type": kind}
        if kind == "say":
            node.update(prompt=prompt(f"Hello from {nid}, {{caller.number}}."), next=draw(target))
        elif kind == "menu":
            node.update(
                prompt=prompt("Choose."),
                choices=menu_choices(True),
                retries=draw(st.integers(0, 2)),
                on_fail=draw(maybe_target),
            )
        elif kind == "language":
            choices = [{"key": "1", "language": "en", "words": ["English"]}]
            if "es" in langs:
                choices.append({"key": "2", "language": "es", "words": ["español"]})
            node.update(prompt=prompt("Language?"), choices=choices, next=draw(target), on_fail=draw(maybe_target))
        elif kind == "collect":
            low = draw(st.integers(1, 4))
            node.update(
                prompt=prompt("Digits?"),
                var="v",
                min_length=low,
                max_length=draw(st.integers(low, 5)),
                check=draw(st.sampled_from([None, "luhn"])),
                confirm=draw(st.sampled_from([None, prompt("You said {v:digits}.")])),
                next=draw(target),
                on_fail=draw(maybe_target),
            )
        elif kind == "hours":
            inline = draw(st.booleans())
            if inline:
                node["hours"] = {"timezone": "Europe/Madrid", "weekly": {"mon": ["09:00-17:00"]}}
            else:
                node["queue"] = "q"
            node.update(open=draw(target), closed=draw(target))
        elif kind == "branch":
            cond = draw(st.sampled_from([{"var": "tickets.open", "gt": 0}, {"var": "queue.position", "is_set": True}]))
            node.update(cases=[{"when": cond, "next": draw(target)}], **{"else": draw(target)})
        elif kind == "set":
            node.update(
                queue=draw(st.sampled_from([None, "q", "r"])),
                priority=draw(st.sampled_from([None, "high"])),
                language=draw(st.sampled_from([None, *langs])),
                next=draw(target),
            )
        elif kind == "lookup":
            node["next"] = draw(target)
        elif kind == "transfer":
            if draw(st.booleans()):
                node["long_wait"] = {"over_seconds": draw(st.integers(0, 300)), "next": draw(target)}
        elif kind in ("voicemail", "callback"):
            node["prompt"] = prompt("Message." if kind == "voicemail" else "We call back.")
        elif kind == "dial":
            node.update(number="+14155550100", on_fail=draw(maybe_target))
        nodes[nid] = {k: v for k, v in node.items() if v is not None}
    flow = Flow.model_validate(
        {"name": "random", "start": ids[0], "queue": "q", "languages": {lang: {} for lang in langs}, "nodes": nodes}
    )
    findings = lint(ParsedFlow("<random>", flow, SourceMap(), []))
    assume(not errors(findings))
    return flow


@st.composite
def inputs(draw: st.DrawFn) -> Input | None:
    """None: the input the adapter or a cooperative caller would give next; else a random one."""
    return draw(
        st.one_of(
            st.none(),
            st.none(),
            st.builds(Digits, digits=st.text("0123456789*#", max_size=6)),
            st.builds(Speech, text=st.sampled_from(WORDS + ["", "billing please"]), confidence=st.floats(0, 1)),
            st.just(NoInput()),
            st.builds(
                RecordingDone,
                url=st.sampled_from([None, "https://x/RE1"]),
                duration_seconds=st.integers(0, 30),
            ),
            st.builds(
                LookupResult,
                contact_name=st.sampled_from([None, "Maria"]),
                open_tickets=st.lists(st.builds(TicketSummary, id=st.integers(1, 99)), max_size=2),
            ),
            st.builds(
                Queued,
                estimated_wait_seconds=st.none() | st.integers(0, 900),
                position=st.none() | st.integers(1, 20),
            ),
            st.builds(DialDone, status=st.sampled_from(["completed", "busy", "no-answer", "failed"])),
            st.just(CallStarted()),
            st.just(HangUp()) if draw(st.integers(0, 9)) == 0 else st.just(NoInput()),
        )
    )


def cooperative(last: Action, draw_key: str) -> Input:
    if isinstance(last, Gather):
        return Digits(digits=draw_key) if last.input else NoInput()
    if isinstance(last, Record):
        return RecordingDone(url="https://x/RE1", duration_seconds=5)
    if isinstance(last, Lookup):
        return LookupResult(open_tickets=[TicketSummary(id=3)])
    if isinstance(last, Enqueue):
        return Queued(estimated_wait_seconds=200, position=4)
    if isinstance(last, Dial):
        return DialDone(status="busy")
    return NoInput()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    flow=flows(),
    events=st.lists(inputs(), min_size=1, max_size=25),
    keys=st.lists(st.sampled_from("0123456789#"), min_size=25, max_size=25),
    minutes=st.integers(0, 7 * 24 * 60),
    q_open=st.booleans(),
)
def test_no_flow_that_passes_lint_reaches_a_state_with_no_action(
    flow: Flow, events: list[Input | None], keys: list[str], minutes: int, q_open: bool
) -> None:
    always = BusinessHours.parse({"weekly": {d: ["00:00-24:00"] for d in DAYS}})
    never = BusinessHours.parse({"weekly": {"mon": ["00:00-00:01"]}, "holidays": []})
    now = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(minutes=minutes)
    context = Context(now=now, hours={"q": always if q_open else never, "r": None})
    state = new_call(flow)
    state, actions = step(flow, state, CallStarted(caller="+14155550123"), context)
    check(flow, state, actions, CallStarted())
    for i, event in enumerate(events):
        if state.ended:
            break
        chosen = event if event is not None else cooperative(actions[-1], keys[i])
        before = state.model_dump_json()
        new_state, actions = step(flow, state, chosen, context)
        assert state.model_dump_json() == before, "step changed the state it was given"
        state = new_state
        check(flow, state, actions, chosen)


def check(flow: Flow, state: CallState, actions: list[Action], event: Input) -> None:
    assert CallState.model_validate_json(state.model_dump_json()) == state
    if isinstance(event, HangUp):
        assert actions == [] and state.ended and state.outcome is not None
        return
    assert actions, f"no action in {state}"
    assert isinstance(actions[-1], BLOCKING), f"last action {actions[-1]} does not wait nor end the call"
    assert all(not isinstance(a, BLOCKING) for a in actions[:-1]), actions
    if state.ended:
        # "runaway": a loop lint only warns about, ended by the engine; "error" would mean lint missed something
        outcomes = ("hold", "voicemail", "callback", "dialed", "hangup", "runaway")
        assert isinstance(actions[-1], FINAL) and state.outcome in outcomes
    else:
        assert state.node in flow.nodes and state.phase != ""
        assert not isinstance(actions[-1], FINAL)
