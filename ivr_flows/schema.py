"""A flow file's models: the flow, its languages and messages, and one model per node type.

A flow is a mapping of named nodes; each node says what the caller hears and where the call goes next. Nodes
name each other, queues and settings by name only (never a database id or a Twilio SID), so one file serves a
laptop, staging and production. What the models cannot check alone (targets that exist, reachability,
translations, loops) is ``lint.py``'s work. README's "Phone menus (IVR)" section documents every field.

Each node answers, for the linter, the graph and the engine: ``edges()`` (where it may go, with a label),
``prompts()`` (what it may say), ``queue_refs()`` (queues it names) and ``can_end`` (whether it may end the
call or hand it off, which is a way out of any loop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from hub.hours import HoursSpec

NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
# Variables a flow sets itself (collect, set) are plain names; dotted names belong to the engine (caller.number,
# ticket.subject, queue.wait_minutes...), see BUILTIN_VARS.
VarName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
LangCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
DtmfKey = Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")]
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Priority = Literal["low", "normal", "high", "urgent"]
Path = tuple[str | int, ...]

# The variables the engine sets; a prompt or condition may use them without the flow setting them.
BUILTIN_VARS = frozenset(
    {
        "caller.number",  # the caller's number as the adapter gave it
        "called.number",  # the number they called
        "call.language",  # the call's language code (en, es...)
        "contact.name",  # lookup: the caller's contact's name, "" when unknown
        "tickets.open",  # lookup: how many open requests the caller has
        "ticket.id",  # lookup: the caller's most recent open request
        "ticket.subject",
        "ticket.status",
        "queue.name",  # transfer: the queue the call joined
        "queue.position",  # transfer: the caller's place in line (1 = next), "" when unknown
        "queue.wait_seconds",  # transfer: the estimated wait, "" when unknown
        "queue.wait_minutes",  # the same rounded up to whole minutes
        "recording.seconds",  # voicemail: the message's length
    }
)
# {name} or {name:digits} in prompt text and set values; {{ and }} are literal braces.
TEMPLATE = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_.]*)(?::(digits))?\}")
MAX_TEXT = 4000  # Twilio's <Say> takes 4,096 characters


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Audio(_Model):
    """An audio file to play instead of speaking text."""

    play: str = Field(pattern=r"^(https?://|/)\S+$", max_length=2000)


Part = str | Audio


class Prompt(_Model):
    """What the caller hears: text to speak or ``{play: URL}``, the same for every language or one per
    language (``{en: "...", es: "..."}``). The key ``""`` holds a part given without a language: text in the
    flow's first language, or audio for everyone."""

    parts: dict[str, Part]

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str | Audio):
            return {"parts": {"": _part(value)}}
        if isinstance(value, dict) and "parts" not in value:
            if set(value) == {"play"}:
                return {"parts": {"": _part(value)}}
            if not value:
                raise ValueError("a prompt needs text, {play: URL}, or text per language")
            return {"parts": {str(k): _part(v) for k, v in value.items()}}
        return value

    @field_validator("parts")
    @classmethod
    def _languages(cls, parts: dict[str, Part]) -> dict[str, Part]:
        pattern = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
        for lang in parts:
            if lang and not pattern.match(lang):
                raise ValueError(f"{lang!r} is not a language code (such as en or es-MX)")
        return parts


def _part(value: Any) -> Part:
    if isinstance(value, Audio):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("a prompt's text is empty")
        if len(value) > MAX_TEXT:
            raise ValueError(f"a prompt's text is longer than {MAX_TEXT} characters")
        return value
    if isinstance(value, dict) and set(value) == {"play"}:
        return Audio.model_validate(value)
    raise ValueError("a prompt is text, {play: URL}, or text per language such as {en: ..., es: ...}")


class Words(_Model):
    """Speech that selects a choice: a list for every language, or a list per language."""

    by_language: dict[str, list[str]]

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return {"by_language": {"": value}}
        if isinstance(value, dict) and "by_language" not in value:
            return {"by_language": {k: [v] if isinstance(v, str) else v for k, v in value.items()}}
        return value

    @field_validator("by_language")
    @classmethod
    def _not_blank(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for words in value.values():
            for w in words:
                if not w.strip() or len(w) > 200:
                    raise ValueError("speech words are 1 to 200 characters")
        return value

    def all(self) -> list[str]:
        return [w for ws in self.by_language.values() for w in ws]


class Language(_Model):
    """A language callers may use: its text-to-speech and speech-recognition locale, and the voice."""

    locale: str = Field(default="en-US", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    voice: str | None = Field(default=None, max_length=100)


class Messages(_Model):
    """The flow's defaults for what menus and collects say; a node's own prompt wins."""

    invalid: Prompt | None = None  # after input that matches no choice, before asking again
    no_input: Prompt | None = None  # after silence, before asking again
    goodbye: Prompt | None = None  # before hanging up when a node has no way on (last retry, empty voicemail)


class Speech(_Model):
    """How tolerant speech matching is: Twilio's confidence below ``min_confidence`` counts as not understood;
    a choice matches when one of its words scores at least ``threshold`` (0-100, rapidfuzz) against the
    caller's words and no other choice scores as well."""

    min_confidence: float = Field(default=0.3, ge=0, le=1)
    threshold: int = Field(default=80, ge=50, le=100)


@dataclass(frozen=True, slots=True)
class Edge:
    """A way from one node to another, for the linter and the diagram."""

    target: str
    label: str
    path: Path  # of the field naming the target, relative to the node


class _Node(_Model):
    # What the engine derives from a node once (normalized speech words, parsed hours), by name.
    _cache: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def cache(self) -> dict[str, Any]:
        return self._cache

    def edges(self) -> list[Edge]:
        return []

    def prompts(self) -> list[tuple[Path, Prompt]]:
        found: list[tuple[Path, Prompt]] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Prompt):
                found.append(((name,), value))
        return found

    def queue_refs(self) -> list[tuple[Path, str]]:
        queue = getattr(self, "queue", None)
        return [(("queue",), queue)] if isinstance(queue, str) else []

    @property
    def needs_prompt(self) -> bool:
        """Whether the node is pointless or confusing without a prompt (say, menus, collect, voicemail...)."""
        return False

    @property
    def can_end(self) -> bool:
        """Whether this node may end the call or hand it off (a way out of any loop)."""
        return False

    @property
    def waits_for_caller(self) -> bool:
        """Whether the caller must act (press, speak, record) before the call moves on from here."""
        return False

    @property
    def needs_queue(self) -> bool:
        """Whether this node hands work to a queue (its own ``queue``, else the call's)."""
        return False


class SayNode(_Node):
    """Speak text (or play audio), then go on."""

    type: Literal["say"]
    prompt: Prompt | None = None  # required (lint: missing-prompt)
    voice: str | None = Field(default=None, max_length=100)  # overrides the language's voice
    next: NodeId

    def edges(self) -> list[Edge]:
        return [Edge(self.next, "", ("next",))]

    @property
    def needs_prompt(self) -> bool:
        return True


class _Asking(_Node):
    """Fields shared by the nodes that ask the caller and wait (menu, language, collect)."""

    prompt: Prompt | None = None  # required (lint: missing-prompt)
    timeout: int = Field(default=5, ge=1, le=60)  # seconds of silence before no_input
    retries: int = Field(default=2, ge=0, le=10)  # asks again this often after invalid input or silence
    invalid: Prompt | None = None
    no_input: Prompt | None = None

    @property
    def waits_for_caller(self) -> bool:
        return True

    @property
    def needs_prompt(self) -> bool:
        return True


class _Selectable(_Model):
    """A choice the caller makes by pressing ``key`` or saying one of ``words``."""

    key: DtmfKey | None = None
    words: Words | None = None

    @model_validator(mode="after")
    def _selectable(self) -> _Selectable:
        if self.key is None and (self.words is None or not self.words.all()):
            raise ValueError("a choice needs a key, words, or both")
        return self


class Choice(_Selectable):
    """One menu option: a key to press and/or words to say, and where it leads."""

    label: str | None = Field(default=None, max_length=100)  # for the diagram and the IVR path
    next: NodeId

    def name(self) -> str:
        """How the choice is recorded in the IVR path and shown in the diagram."""
        if self.key is not None:
            return self.key
        if self.label:
            return self.label
        assert self.words is not None
        return self.words.all()[0]


class MenuNode(_Asking):
    """Offer choices by key and by speech; after ``retries`` failed attempts go to ``on_fail`` (default: say
    goodbye and hang up)."""

    type: Literal["menu"]
    choices: list[Choice] = Field(min_length=1, max_length=12)
    on_fail: NodeId | None = None
    speech: bool = True  # listen for the choices' words too
    min_confidence: float | None = Field(default=None, ge=0, le=1)  # overrides the flow's speech settings
    threshold: int | None = Field(default=None, ge=50, le=100)

    def edges(self) -> list[Edge]:
        out = [Edge(c.next, _choice_label(c), ("choices", i, "next")) for i, c in enumerate(self.choices)]
        if self.on_fail:
            out.append(Edge(self.on_fail, "no valid answer", ("on_fail",)))
        return out

    @property
    def can_end(self) -> bool:
        return self.on_fail is None


class LanguageChoice(_Selectable):
    language: LangCode


class LanguageNode(_Asking):
    """Let the caller pick a language. The prompt is spoken in every language it has, each in its own voice;
    a caller who picks none after the retries goes on in the current language (or to ``on_fail``)."""

    type: Literal["language"]
    choices: list[LanguageChoice] = Field(min_length=1, max_length=12)
    next: NodeId
    on_fail: NodeId | None = None
    timeout: int = Field(default=4, ge=1, le=60)
    retries: int = Field(default=1, ge=0, le=10)

    def edges(self) -> list[Edge]:
        out = [Edge(self.next, "chosen", ("next",))]
        if self.on_fail:
            out.append(Edge(self.on_fail, "no valid answer", ("on_fail",)))
        return out


class CollectNode(_Asking):
    """Collect digits into a variable, validated by length, pattern and checksum, optionally read back for
    confirmation (1 = yes, 2 = no and ask again; or said)."""

    type: Literal["collect"]
    var: VarName
    min_length: int = Field(default=1, ge=1, le=64)
    max_length: int = Field(default=20, ge=1, le=64)
    pattern: str | None = Field(default=None, max_length=200)  # a regular expression the digits must match whole
    check: Literal["luhn"] | None = None
    finish_on_key: Literal["#", "*", ""] = "#"
    confirm: Prompt | None = None  # e.g. "You entered {order:digits}. Press 1 if that is right, 2 to try again."
    next: NodeId
    on_fail: NodeId | None = None
    timeout: int = Field(default=6, ge=1, le=60)
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _lengths(self) -> CollectNode:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is more than max_length {self.max_length}")
        if self.finish_on_key == "" and self.min_length != self.max_length:
            raise ValueError("without a finish_on_key the number must have a fixed length (min_length = max_length)")
        self._regex = re.compile(self.pattern) if self.pattern else None
        return self

    @property
    def regex(self) -> re.Pattern[str] | None:
        return self._regex

    def edges(self) -> list[Edge]:
        out = [Edge(self.next, "valid", ("next",))]
        if self.on_fail:
            out.append(Edge(self.on_fail, "no valid answer", ("on_fail",)))
        return out

    @property
    def can_end(self) -> bool:
        return self.on_fail is None


class HoursNode(_Node):
    """Branch on whether a queue is open now (its business hours, given to the engine by its caller), or on
    hours written here."""

    type: Literal["hours"]
    queue: QueueName | None = None  # default: the call's queue
    hours: HoursSpec | None = None
    open: NodeId
    closed: NodeId

    @model_validator(mode="after")
    def _one_calendar(self) -> HoursNode:
        if self.queue is not None and self.hours is not None:
            raise ValueError("give a queue or hours, not both")
        return self

    def edges(self) -> list[Edge]:
        return [Edge(self.open, "open", ("open",)), Edge(self.closed, "closed", ("closed",))]

    @property
    def needs_queue(self) -> bool:
        return self.hours is None


class Condition(_Model):
    """A test of one variable. Exactly one operator: ``equals``, ``not_equals``, ``in``, ``gt``, ``ge``, ``lt``,
    ``le`` (numbers; a variable that is not a number fails them) or ``is_set``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    var: str = Field(pattern=r"^[a-z][a-z0-9_.]*$")
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    is_set: bool | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [n for n in _OPERATORS if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of equals, not_equals, in, gt, ge, lt, le, is_set")
        return self

    def describe(self) -> str:
        for name in _OPERATORS:
            value = getattr(self, name)
            if value is not None:
                shown = ", ".join(value) if isinstance(value, list) else value
                if isinstance(shown, float) and shown.is_integer():
                    shown = int(shown)
                return f"{self.var} {_SYMBOLS[name]} {shown}"
        return self.var  # unreachable: validated


_OPERATORS = ("equals", "not_equals", "in_", "gt", "ge", "lt", "le", "is_set")
_SYMBOLS = {"equals": "=", "not_equals": "≠", "in_": "in", "gt": ">", "ge": "≥", "lt": "<", "le": "≤", "is_set": "set:"}


class Case(_Model):
    when: list[Condition]  # every condition must hold
    next: NodeId

    @field_validator("when", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class BranchNode(_Node):
    """Go to the first case whose conditions hold, else to ``else``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["branch"]
    cases: list[Case] = Field(min_length=1, max_length=20)
    else_: NodeId = Field(alias="else")

    def edges(self) -> list[Edge]:
        out = [
            Edge(c.next, " and ".join(w.describe() for w in c.when), ("cases", i, "next"))
            for i, c in enumerate(self.cases)
        ]
        out.append(Edge(self.else_, "else", ("else",)))
        return out


class SetNode(_Node):
    """Set the call's queue, skills (added to those set before), priority, language or variables."""

    type: Literal["set"]
    queue: QueueName | None = None
    skills: dict[str, int] | None = None
    priority: Priority | None = None
    language: LangCode | None = None
    vars: dict[VarName, str] | None = None  # values may use {variables}
    next: NodeId

    def edges(self) -> list[Edge]:
        return [Edge(self.next, "", ("next",))]


class LookupNode(_Node):
    """Ask the adapter for the caller's contact and open requests (it answers with a lookup result); sets
    ``contact.name``, ``tickets.open``, ``ticket.id``, ``ticket.subject``, ``ticket.status``."""

    type: Literal["lookup"]
    next: NodeId

    def edges(self) -> list[Edge]:
        return [Edge(self.next, "", ("next",))]


class LongWait(_Model):
    over_seconds: int = Field(ge=0, le=86_400)
    next: NodeId


class TransferNode(_Node):
    """Hand the call to routing: the queue (default: the call's), skills and priority, with the IVR path and
    the collected variables as metadata. The adapter answers with the estimated wait: when it is at least
    ``long_wait.over_seconds`` the call goes to ``long_wait.next`` (typically a menu offering a callback,
    whose other choice is a ``hold`` node); otherwise the caller holds for an agent."""

    type: Literal["transfer"]
    queue: QueueName | None = None
    skills: dict[str, int] | None = None
    priority: Priority | None = None
    prompt: Prompt | None = None  # said before the hand-off
    hold_prompt: Prompt | None = None  # said once the wait is known, e.g. "You are number {queue.position}..."
    long_wait: LongWait | None = None

    def edges(self) -> list[Edge]:
        if self.long_wait:
            return [Edge(self.long_wait.next, f"wait ≥ {self.long_wait.over_seconds} s", ("long_wait", "next"))]
        return []

    @property
    def can_end(self) -> bool:
        return True

    @property
    def needs_queue(self) -> bool:
        return True


class HoldNode(_Node):
    """Keep waiting for an agent in the queue the call joined at a transfer (the other answer to a callback
    offer)."""

    type: Literal["hold"]
    prompt: Prompt | None = None

    @property
    def can_end(self) -> bool:
        return True


class VoicemailNode(_Node):
    """Record a message; the recording becomes a ticket in the queue (default: the call's). Then say
    ``thanks`` and hang up. An empty recording says the flow's goodbye and hangs up."""

    type: Literal["voicemail"]
    prompt: Prompt | None = None  # required (lint: missing-prompt)
    thanks: Prompt | None = None
    queue: QueueName | None = None
    skills: dict[str, int] | None = None
    priority: Priority | None = None
    max_seconds: int = Field(default=120, ge=1, le=3600)
    finish_on_key: Literal["#", "*", "0", "1", ""] = "#"
    transcribe: bool = False

    @property
    def can_end(self) -> bool:
        return True

    @property
    def waits_for_caller(self) -> bool:
        return True

    @property
    def needs_queue(self) -> bool:
        return True

    @property
    def needs_prompt(self) -> bool:
        return True


class CallbackNode(_Node):
    """The caller asks to be called back and hangs up. After a transfer the callback keeps the caller's place
    in that queue; otherwise it joins the queue (default: the call's) now."""

    type: Literal["callback"]
    # Required (lint: missing-prompt), e.g. "We will call you back at this number when it is your turn. Goodbye."
    prompt: Prompt | None = None
    queue: QueueName | None = None
    skills: dict[str, int] | None = None
    priority: Priority | None = None

    @property
    def can_end(self) -> bool:
        return True

    @property
    def needs_queue(self) -> bool:
        return True

    @property
    def needs_prompt(self) -> bool:
        return True


class DialNode(_Node):
    """Transfer to an outside number: written out (E.164) or named (``number_name``, which the phone adapter
    resolves from its configuration). When the number is busy, does not answer or fails, the call goes to
    ``on_fail`` (default: goodbye and hang up); after a completed call it ends."""

    type: Literal["dial"]
    number: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    number_name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    prompt: Prompt | None = None
    timeout: int = Field(default=30, ge=5, le=600)  # seconds of ringing
    on_fail: NodeId | None = None

    @model_validator(mode="after")
    def _one_number(self) -> DialNode:
        if (self.number is None) == (self.number_name is None):
            raise ValueError("give number (such as +14155550100) or number_name, not both")
        return self

    def edges(self) -> list[Edge]:
        return [Edge(self.on_fail, "busy / no answer", ("on_fail",))] if self.on_fail else []

    @property
    def can_end(self) -> bool:
        return True


class HangupNode(_Node):
    type: Literal["hangup"]
    prompt: Prompt | None = None

    @property
    def can_end(self) -> bool:
        return True


Node = Annotated[
    SayNode
    | MenuNode
    | LanguageNode
    | CollectNode
    | HoursNode
    | BranchNode
    | SetNode
    | LookupNode
    | TransferNode
    | HoldNode
    | VoicemailNode
    | CallbackNode
    | DialNode
    | HangupNode,
    Field(discriminator="type"),
]
NODE_TYPES = (
    "say",
    "menu",
    "language",
    "collect",
    "hours",
    "branch",
    "set",
    "lookup",
    "transfer",
    "hold",
    "voicemail",
    "callback",
    "dial",
    "hangup",
)


class Flow(_Model):
    """A phone menu: where calls start, the languages offered (the first is the default), the defaults for
    queue, skills and priority, shared messages and speech settings, and the nodes by name."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    start: NodeId
    languages: dict[LangCode, Language] = Field(default_factory=lambda: {"en": Language()}, min_length=1)
    queue: QueueName | None = None
    skills: dict[str, int] = {}
    priority: Priority | None = None
    messages: Messages = Messages()
    speech: Speech = Speech()
    nodes: dict[NodeId, Node] = Field(min_length=1, max_length=500)

    @property
    def default_language(self) -> str:
        return next(iter(self.languages))

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]


def _choice_label(choice: Choice) -> str:
    parts = []
    if choice.key is not None:
        parts.append(choice.key)
    if choice.label:
        parts.append(choice.label)
    elif choice.words is not None:
        words = choice.words.all()
        if words:
            parts.append(words[0])
    return " ".join(parts)


def template_vars(text: str) -> list[str]:
    """The variables a text uses (``{order}``, ``{ticket.subject}``, ``{order:digits}``)."""
    return [m.group(1) for m in TEMPLATE.finditer(text) if m.group(1)]
