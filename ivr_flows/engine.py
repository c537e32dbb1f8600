"""The engine: ``step(flow, state, input, context) -> (new_state, actions)``, pure.

No clock, no database, no network, no Twilio: the caller gives the time and the queues' business hours in a
``Context``, the engine answers the new state (the input state is never changed) and the actions to take.
What the engine needs from the world (the caller's contact, a place in a queue) it asks for with an action
(``Lookup``, ``Enqueue``) and is told with the next input (``LookupResult``, ``Queued``).

Invariants (``tests/ivr_flows/test_engine_properties.py`` checks them on random flows that pass lint):

- A step on a call that has not ended answers at least one action, and the last is blocking
  (``actions.BLOCKING``): it waits for an input or ends the engine's part of the call.
- A step that ends the call sets ``state.ended`` and ``state.outcome``; an ended call answers no actions.
- A step visits at most ``MAX_HOPS`` nodes: a flow that loops without waiting for the caller ends the call
  (outcome ``runaway``) instead of spinning.
- An input the current node does not expect (a stray or repeated webhook) answers the node's waiting action
  again and changes nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, TypedDict

from hub.hours import BusinessHours
from ivr_flows import speech
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
)
from ivr_flows.schema import (
    TEMPLATE,
    Audio,
    BranchNode,
    CallbackNode,
    CollectNode,
    Condition,
    DialNode,
    Flow,
    HangupNode,
    HoldNode,
    HoursNode,
    LanguageNode,
    LookupNode,
    MenuNode,
    Prompt,
    SayNode,
    SetNode,
    TransferNode,
    VoicemailNode,
)
from ivr_flows.state import MAX_PATH, MAX_VARS, CallState, Outcome

MAX_HOPS = 100
MAX_VAR_CHARS = 200


class _Handoff(TypedDict):
    queue: str
    skills: dict[str, int]
    priority: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What the engine is told about the world for one step: the time, and business hours by queue name
    (a queue missing from the mapping, or mapped to None, is always open — as in ticketing)."""

    now: datetime
    hours: Mapping[str, BusinessHours | None] = field(default_factory=dict)


def new_call(flow: Flow) -> CallState:
    """The state of a call that has not started: the flow's first language and default queue."""
    return CallState(language=flow.default_language, queue=flow.queue, skills=dict(flow.skills), priority=flow.priority)


def step(flow: Flow, state: CallState, event: Input, context: Context) -> tuple[CallState, list[Action]]:
    """Advance one call by one input. ``flow`` should have passed lint (``load_flow`` guarantees it)."""
    # The state's only mutable fields are these three containers (their items are strings and ints); copying
    # them is five times cheaper than a deep copy, the largest cost of a step.
    own = state.model_copy(update={"skills": dict(state.skills), "vars": dict(state.vars), "path": list(state.path)})
    run = _Step(flow, own, context)
    run.handle(event)
    return run.state, run.actions


class _Step:
    def __init__(self, flow: Flow, state: CallState, context: Context) -> None:
        self.flow = flow
        self.state = state
        self.context = context
        self.actions: list[Action] = []

    # -- dispatch -------------------------------------------------------------------------------------------

    def handle(self, event: Input) -> None:
        st = self.state
        if st.ended:
            return
        if isinstance(event, HangUp):
            self._end("caller_hung_up")
            return
        if st.node is None:  # not started: whatever comes first starts the call
            if isinstance(event, CallStarted):
                if event.caller:
                    st.vars["caller.number"] = event.caller
                if event.called:
                    st.vars["called.number"] = event.called
            st.vars["call.language"] = st.language
            self._enter(self.flow.start)
            return
        node = self.flow.nodes.get(st.node)
        if isinstance(event, Digits | Speech | NoInput) and st.phase in ("ask", "confirm"):
            if st.phase == "confirm" and isinstance(node, CollectNode):
                self._answer_confirm(node, event)
            elif st.phase == "ask" and isinstance(node, MenuNode):
                self._answer_menu(node, event)
            elif st.phase == "ask" and isinstance(node, LanguageNode):
                self._answer_language(node, event)
            elif st.phase == "ask" and isinstance(node, CollectNode):
                self._answer_collect(node, event)
            else:
                self._resume()
        elif st.phase == "record" and isinstance(node, VoicemailNode) and isinstance(event, RecordingDone | NoInput):
            self._answer_recording(node, event)
        elif st.phase == "lookup" and isinstance(node, LookupNode) and isinstance(event, LookupResult):
            self._answer_lookup(node, event)
        elif st.phase == "queued" and isinstance(node, TransferNode | HoldNode) and isinstance(event, Queued):
            self._answer_queued(node, event)
        elif st.phase == "dial" and isinstance(node, DialNode) and isinstance(event, DialDone):
            self._answer_dial(node, event)
        else:
            self._resume()

    def _resume(self) -> None:
        """Answer the current node's waiting action again (a stray or repeated input)."""
        st = self.state
        node = self.flow.nodes.get(st.node or "")
        if node is None:
            self._fail_hard()
        elif st.phase == "confirm" and isinstance(node, CollectNode) and node.confirm is not None:
            self._gather_confirm(node, [])
        elif st.phase == "ask" and isinstance(node, MenuNode | LanguageNode | CollectNode):
            self._gather(node, [])
        elif st.phase == "record" and isinstance(node, VoicemailNode):
            self.actions.append(_record(node))
        elif st.phase == "lookup":
            self.actions.append(Lookup())
        elif st.phase == "queued" and isinstance(node, TransferNode | HoldNode):
            self._enqueue(node)
        elif st.phase == "dial" and isinstance(node, DialNode):
            self.actions.append(Dial(number=node.number, number_name=node.number_name, timeout=node.timeout))
        else:
            self._fail_hard()

    # -- walking the graph ----------------------------------------------------------------------------------

    def _enter(self, node_id: str) -> None:
        """Run nodes from ``node_id`` until one waits or ends the call."""
        st = self.state
        for _ in range(MAX_HOPS):
            node = self.flow.nodes.get(node_id)
            if node is None:
                self._fail_hard()
                return
            st.node, st.phase, st.tries = node_id, "", 0
            _remember(st.path, node_id)
            if isinstance(node, SayNode):
                self._say(node.prompt, voice=node.voice)
                node_id = node.next
            elif isinstance(node, SetNode):
                self._set(node)
                node_id = node.next
            elif isinstance(node, BranchNode):
                node_id = next((c.next for c in node.cases if all(_holds(w, st.vars) for w in c.when)), node.else_)
            elif isinstance(node, HoursNode):
                is_open = self._is_open(node)
                st.path[-1] = f"{node_id}:{'open' if is_open else 'closed'}"
                node_id = node.open if is_open else node.closed
            elif isinstance(node, MenuNode | LanguageNode | CollectNode):
                st.phase = "ask"
                self._gather(node, [])
                return
            elif isinstance(node, LookupNode):
                st.phase = "lookup"
                self.actions.append(Lookup())
                return
            elif isinstance(node, TransferNode):
                self._say(node.prompt)
                st.phase = "queued"
                self._enqueue(node)
                return
            elif isinstance(node, HoldNode):
                if st.queued is None:  # lint forbids this; join the call's queue, then hold
                    st.phase = "queued"
                    self._enqueue(node)
                    return
                self._hold(node.prompt, st.queued)
                return
            elif isinstance(node, VoicemailNode):
                self._say(node.prompt)
                st.phase = "record"
                self.actions.append(_record(node))
                return
            elif isinstance(node, CallbackNode):
                queue = node.queue or st.queued or st.queue
                if queue is None:
                    self._fail_hard()
                    return
                in_line = st.queued is not None and queue == st.queued
                self.actions.append(Callback(**self._handoff(queue, node.skills, node.priority), in_line=in_line))
                self._say(node.prompt)
                self._hang_up("callback")
                return
            elif isinstance(node, DialNode):
                self._say(node.prompt)
                st.phase = "dial"
                self.actions.append(Dial(number=node.number, number_name=node.number_name, timeout=node.timeout))
                return
            elif isinstance(node, HangupNode):
                self._say(node.prompt)
                self._hang_up("hangup")
                return
        self._end("runaway")
        self.actions.append(Hangup())

    def _set(self, node: SetNode) -> None:
        st = self.state
        if node.queue is not None:
            st.queue = node.queue
        if node.skills:
            st.skills.update(node.skills)
        if node.priority is not None:
            st.priority = node.priority
        if node.language is not None and node.language in self.flow.languages:
            st.language = node.language
            st.vars["call.language"] = node.language
        for name, value in (node.vars or {}).items():
            _set_var(st.vars, name, render(value, st.vars))

    def _is_open(self, node: HoursNode) -> bool:
        if node.hours is not None:
            hours = _inline_hours(node)
        else:
            queue = node.queue or self.state.queue
            hours = self.context.hours.get(queue) if queue else None
        return hours is None or hours.is_open(self.context.now)

    # -- answers to asking nodes ------------------------------------------------------------------------------

    def _answer_menu(self, node: MenuNode, event: Digits | Speech | NoInput) -> None:
        st = self.state
        index: int | None = None
        silent = isinstance(event, NoInput) or (isinstance(event, Digits) and not event.digits)
        if isinstance(event, Digits) and event.digits:
            index = next((i for i, c in enumerate(node.choices) if c.key == event.digits[0]), None)
        elif isinstance(event, Speech):
            index = self._match_speech(node, event, node.min_confidence, node.threshold)
            silent = not event.text.strip()
        if index is None:
            self._retry(node, silent)
            return
        choice = node.choices[index]
        name = choice.name()
        st.path[-1] = f"{st.node}:{name}"
        st.choice = name
        self._enter(choice.next)

    def _answer_language(self, node: LanguageNode, event: Digits | Speech | NoInput) -> None:
        st = self.state
        index: int | None = None
        silent = isinstance(event, NoInput) or (isinstance(event, Digits) and not event.digits)
        if isinstance(event, Digits) and event.digits:
            index = next((i for i, c in enumerate(node.choices) if c.key == event.digits[0]), None)
        elif isinstance(event, Speech):
            index = self._match_speech(node, event, None, None)
            silent = not event.text.strip()
        if index is None:
            self._retry(node, silent)
            return
        choice = node.choices[index]
        if choice.language in self.flow.languages:
            st.language = choice.language
            st.vars["call.language"] = choice.language
        st.path[-1] = f"{st.node}:{choice.language}"
        self._enter(node.next)

    def _answer_collect(self, node: CollectNode, event: Digits | Speech | NoInput) -> None:
        st = self.state
        value: str | None = None
        silent = isinstance(event, NoInput)
        if isinstance(event, Digits):
            value = event.digits.rstrip("#*") if node.finish_on_key else event.digits
            silent = not value
        elif isinstance(event, Speech):
            value = speech.spoken_digits(event.text) if event.confidence >= self._min_confidence(None) else None
            silent = not event.text.strip()
        if not value or not valid_digits(node, value):
            self._retry(node, silent)
            return
        _set_var(st.vars, node.var, value)
        if node.confirm is not None:
            st.phase = "confirm"
            self._gather_confirm(node, [])
        else:
            self._enter(node.next)

    def _answer_confirm(self, node: CollectNode, event: Digits | Speech | NoInput) -> None:
        st = self.state
        answer: bool | None = None
        if isinstance(event, Digits) and event.digits:
            answer = {"1": True, "2": False}.get(event.digits[0])
        elif isinstance(event, Speech) and event.confidence >= self._min_confidence(None):
            found = speech.match(event.text, _yes_no(self._locale()), threshold=self.flow.speech.threshold)
            answer = None if found is None else bool(found)
        if answer is True:
            self._enter(node.next)
        elif answer is False:  # the caller corrects a mistake: ask for the number again, not a failed try
            st.phase = "ask"
            self._gather(node, [])
        else:
            st.tries += 1
            if st.tries > node.retries:
                self._give_up(node)
            else:
                self._gather_confirm(node, self._prompt(self._message(node, isinstance(event, NoInput))))

    def _match_speech(
        self, node: MenuNode | LanguageNode, event: Speech, min_confidence: float | None, threshold: int | None
    ) -> int | None:
        if event.confidence < self._min_confidence(min_confidence):
            return None
        keys = [c.key for c in node.choices]
        key = speech.spoken_key(event.text, keys)
        if key is not None:
            return keys.index(key)
        candidates = _phrases(node, self.state.language)
        return speech.match(event.text, candidates, threshold=threshold or self.flow.speech.threshold)

    def _min_confidence(self, own: float | None) -> float:
        return self.flow.speech.min_confidence if own is None else own

    def _retry(self, node: MenuNode | LanguageNode | CollectNode, silent: bool) -> None:
        st = self.state
        st.tries += 1
        if st.tries > node.retries:
            self._give_up(node)
            return
        self._gather(node, self._prompt(self._message(node, silent)))

    def _message(self, node: MenuNode | LanguageNode | CollectNode, silent: bool) -> Prompt | None:
        if silent:
            return node.no_input or self.flow.messages.no_input
        return node.invalid or self.flow.messages.invalid

    def _give_up(self, node: MenuNode | LanguageNode | CollectNode) -> None:
        """After the last retry: ``on_fail``, else (a language node) go on in the current language, else say
        goodbye and hang up."""
        st = self.state
        if node.on_fail is not None:
            st.path[-1] = f"{st.node}:failed"
            self._enter(node.on_fail)
        elif isinstance(node, LanguageNode):
            self._enter(node.next)
        else:
            self._goodbye()

    # -- answers from the adapter ---------------------------------------------------------------------------

    def _answer_recording(self, node: VoicemailNode, event: RecordingDone | NoInput) -> None:
        st = self.state
        if isinstance(event, RecordingDone) and event.url and event.duration_seconds > 0:
            queue = node.queue or st.queue
            if queue is None:
                self._fail_hard()
                return
            st.vars["recording.seconds"] = str(event.duration_seconds)
            self.actions.append(
                Voicemail(
                    **self._handoff(queue, node.skills, node.priority),
                    recording_url=event.url,
                    recording_id=event.recording_id,
                    duration_seconds=event.duration_seconds,
                )
            )
            self._say(node.thanks)
            self._hang_up("voicemail")
        else:
            self._goodbye()

    def _answer_lookup(self, node: LookupNode, event: LookupResult) -> None:
        v = self.state.vars
        v["contact.name"] = (event.contact_name or "")[:MAX_VAR_CHARS]
        v["tickets.open"] = str(len(event.open_tickets))
        first = event.open_tickets[0] if event.open_tickets else None
        v["ticket.id"] = str(first.id) if first else ""
        v["ticket.subject"] = first.subject[:MAX_VAR_CHARS] if first else ""
        v["ticket.status"] = first.status if first else ""
        self._enter(node.next)

    def _answer_queued(self, node: TransferNode | HoldNode, event: Queued) -> None:
        st = self.state
        st.queued = st.queue
        v = st.vars
        v["queue.name"] = st.queue or ""
        v["queue.position"] = "" if event.position is None else str(event.position)
        wait = event.estimated_wait_seconds
        v["queue.wait_seconds"] = "" if wait is None else str(wait)
        v["queue.wait_minutes"] = "" if wait is None else str(max(1, math.ceil(wait / 60)))
        if isinstance(node, TransferNode):
            if node.long_wait and wait is not None and wait >= node.long_wait.over_seconds:
                st.path[-1] = f"{st.node}:long_wait"
                self._enter(node.long_wait.next)
                return
            self._hold(node.hold_prompt, st.queued)
        else:
            self._hold(node.prompt, st.queued)

    def _answer_dial(self, node: DialNode, event: DialDone) -> None:
        if event.status in ("completed", "answered"):
            self.actions.append(Hangup())
            self._end("dialed")
        elif node.on_fail is not None:
            self.state.path[-1] = f"{self.state.node}:{event.status}"
            self._enter(node.on_fail)
        else:
            self._goodbye()

    # -- emitting ---------------------------------------------------------------------------------------------

    def _handoff(self, queue: str, skills: Mapping[str, int] | None, priority: str | None) -> _Handoff:
        st = self.state
        return {
            "queue": queue,
            "skills": {**st.skills, **(skills or {})},
            "priority": priority or st.priority,
            "metadata": {
                "flow": self.flow.name,
                "language": st.language,
                "ivr_path": list(st.path),
                "ivr_choice": st.choice,
                "vars": {k: val for k, val in st.vars.items() if "." not in k},
            },
        }

    def _enqueue(self, node: TransferNode | HoldNode) -> None:
        st = self.state
        skills = node.skills if isinstance(node, TransferNode) else None
        priority = node.priority if isinstance(node, TransferNode) else None
        queue = (node.queue if isinstance(node, TransferNode) else None) or st.queue
        if queue is None:
            self._fail_hard()
            return
        st.queue = queue
        if skills:
            st.skills.update(skills)
        if priority:
            st.priority = priority
        self.actions.append(Enqueue(**self._handoff(queue, None, None)))

    def _hold(self, prompt: Prompt | None, queue: str | None) -> None:
        if queue is None:
            self._fail_hard()
            return
        self._say(prompt)
        self.actions.append(Hold(queue=queue))
        self._end("hold")

    def _gather(self, node: MenuNode | LanguageNode | CollectNode, before: list[Say | Play]) -> None:
        lang = self.flow.languages[self.state.language]
        if isinstance(node, LanguageNode):
            prompts = before + self._every_language(node.prompt)
        else:
            prompts = before + self._prompt(node.prompt)
        if isinstance(node, CollectNode):
            fixed = node.min_length == node.max_length
            self.actions.append(
                Gather(
                    prompts=prompts,
                    input=["dtmf"],
                    timeout=node.timeout,
                    language=lang.locale,
                    num_digits=node.max_length if fixed else None,
                    finish_on_key=node.finish_on_key,
                )
            )
            return
        listens = (not isinstance(node, MenuNode) or node.speech) and any(c.words for c in node.choices)
        hints = _hints(node, self.state.language) if listens else []
        self.actions.append(
            Gather(
                prompts=prompts,
                input=["dtmf", "speech"] if listens else ["dtmf"],
                timeout=node.timeout,
                language=lang.locale,
                num_digits=1,
                finish_on_key="",  # "#" and "*" may be choices: no key ends the gather early
                hints=hints,
            )
        )

    def _gather_confirm(self, node: CollectNode, before: list[Say | Play]) -> None:
        assert node.confirm is not None
        locale = self._locale()
        self.actions.append(
            Gather(
                prompts=before + self._prompt(node.confirm),
                input=["dtmf", "speech"],
                timeout=node.timeout,
                language=locale,
                num_digits=1,
                finish_on_key="",
                hints=list(_yes_no_hints(locale)),
            )
        )

    def _locale(self) -> str:
        return self.flow.languages[self.state.language].locale

    def _prompt(self, prompt: Prompt | None, voice: str | None = None) -> list[Say | Play]:
        """A prompt in the call's language (else the text given without a language, else the first
        language's), with its variables filled in."""
        if prompt is None:
            return []
        parts = prompt.parts
        lang = self.state.language
        if lang in parts:
            part, spoken_in = parts[lang], lang
        elif "" in parts:
            part, spoken_in = parts[""], self.flow.default_language
        else:
            spoken_in = next((code for code in self.flow.languages if code in parts), next(iter(parts)))
            part = parts[spoken_in]
        return [self._speak(part, spoken_in, voice)]

    def _every_language(self, prompt: Prompt | None) -> list[Say | Play]:
        """A language menu's prompt: each language's part in its own voice, in the flow's order."""
        if prompt is None:
            return []
        out = [self._speak(prompt.parts[""], self.flow.default_language, None)] if "" in prompt.parts else []
        out += [self._speak(prompt.parts[code], code, None) for code in self.flow.languages if code in prompt.parts]
        return out

    def _speak(self, part: str | Audio, lang_code: str, voice: str | None) -> Say | Play:
        if isinstance(part, Audio):
            return Play(url=part.play)
        lang = self.flow.languages.get(lang_code) or self.flow.languages[self.flow.default_language]
        return Say(text=render(part, self.state.vars), language=lang.locale, voice=voice or lang.voice)

    def _say(self, prompt: Prompt | None, voice: str | None = None) -> None:
        self.actions.extend(self._prompt(prompt, voice))

    def _goodbye(self) -> None:
        self._say(self.flow.messages.goodbye)
        self._hang_up("hangup")

    def _hang_up(self, outcome: Outcome) -> None:
        self.actions.append(Hangup())
        self._end(outcome)

    def _fail_hard(self) -> None:
        """The flow cannot go on (a node or queue that lint would have refused): end the call politely."""
        self._say(self.flow.messages.goodbye)
        self._hang_up("error")

    def _end(self, outcome: Outcome) -> None:
        st = self.state
        st.ended, st.outcome, st.phase = True, outcome, ""


def _record(node: VoicemailNode) -> Record:
    return Record(max_seconds=node.max_seconds, finish_on_key=node.finish_on_key, transcribe=node.transcribe)


def valid_digits(node: CollectNode, value: str) -> bool:
    """Whether collected digits pass the node's length, pattern and checksum."""
    if not value.isdigit() or not node.min_length <= len(value) <= node.max_length:
        return False
    if node.regex is not None and not node.regex.fullmatch(value):
        return False
    return node.check != "luhn" or luhn_valid(value)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum (card, account and order numbers): the last digit checks the others."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def render(text: str, variables: Mapping[str, str]) -> str:
    """Fill ``{name}`` and ``{name:digits}`` (digits spaced out, so they are read one by one); an unset
    variable is empty; ``{{`` and ``}}`` are literal braces."""
    if "{" not in text and "}" not in text:
        return text

    def fill(m: re.Match[str]) -> str:
        whole = m.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        value = variables.get(m.group(1), "")
        return " ".join(value) if m.group(2) == "digits" else value

    return TEMPLATE.sub(fill, text)


def _holds(cond: Condition, variables: Mapping[str, str]) -> bool:
    value = variables.get(cond.var)
    if cond.is_set is not None:
        return bool(value) == cond.is_set
    if cond.equals is not None:
        return value == cond.equals
    if cond.not_equals is not None:
        return value != cond.not_equals
    if cond.in_ is not None:
        return value in cond.in_
    try:
        number = float(value) if value else math.nan
    except ValueError:
        return False
    if math.isnan(number):
        return False
    if cond.gt is not None:
        return number > cond.gt
    if cond.ge is not None:
        return number >= cond.ge
    if cond.lt is not None:
        return number < cond.lt
    if cond.le is not None:
        return number <= cond.le
    return False


def _remember(path: list[str], entry: str) -> None:
    if len(path) >= MAX_PATH:
        del path[1]  # keep where the call began and the latest steps
    path.append(entry)


def _set_var(variables: dict[str, str], name: str, value: str) -> None:
    if name in variables or len(variables) < MAX_VARS:
        variables[name] = value[:MAX_VAR_CHARS]


def _phrases(node: MenuNode | LanguageNode, language: str) -> tuple[speech.Phrase, ...]:
    """The choices' words in the call's language and those given for every language, normalized once per
    node and language."""
    key = f"phrases:{language}"
    found = node.cache.get(key)
    if found is None:
        words: list[tuple[int, list[str]]] = []
        for i, c in enumerate(node.choices):
            if c.words is not None:
                words.append((i, c.words.by_language.get(language, []) + c.words.by_language.get("", [])))
        found = node.cache[key] = speech.phrases(words)
    return found  # type: ignore[no-any-return]


def _hints(node: MenuNode | LanguageNode, language: str) -> list[str]:
    """The words to expect, as written (speech recognition takes them as hints)."""
    key = f"hints:{language}"
    found = node.cache.get(key)
    if found is None:
        words: dict[str, None] = {}
        for c in node.choices:
            if c.words is not None:
                words.update(dict.fromkeys(c.words.by_language.get(language, []) + c.words.by_language.get("", [])))
        found = node.cache[key] = list(words)
    return list(found)


@lru_cache(maxsize=64)
def _yes_no(locale: str) -> tuple[speech.Phrase, ...]:
    return speech.yes_no_phrases(locale)


@lru_cache(maxsize=64)
def _yes_no_hints(locale: str) -> tuple[str, ...]:
    return speech.yes_no_words(locale)


def _inline_hours(node: HoursNode) -> BusinessHours | None:
    if "hours" not in node.cache:
        node.cache["hours"] = BusinessHours.parse(node.hours)
    return node.cache["hours"]  # type: ignore[no-any-return]
