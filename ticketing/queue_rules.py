"""Queue-selection rules: which queue new work goes to. Pure: a validated rule set and a message's facts in,
the first matching rule out.

Configured without code, as YAML (``SWITCHBOARD_ROUTING_RULES``) or JSON through ``PUT /api/routing/rules``::

    rules:
      - name: vip
        when: {contact: {vip: true}}
        queue: vip
        priority: high
      - name: spanish
        when: {language: es}
        queue: soporte
        skills: {"language:es": 1}
      - name: billing words
        when: {keywords: [invoice, refund, charged]}
        queue: billing
      - name: sales line
        when: {recipient: "+14155550100", ivr_choice: "2"}
        queue: sales
      - name: email
        when: {channel: email}
        queue: support
    default_queue: support

Rules are tried in order; the first whose every condition holds wins (an empty ``when`` always holds).
Conditions: ``channel``, ``recipient`` (the address or number it came in on; case-insensitive),
``ivr_choice`` (``metadata["ivr_choice"]``), ``language`` (the contact's ``language`` attribute, else
``metadata["language"]``), ``contact`` (attribute equality), ``keywords`` (any of the words in the subject
or text, whole words, case-insensitive). A list means any of its values. A rule may also set the ticket's
priority and add required skills. Without a match: the adapter's queue (a mailbox's, an IVR's), then
``default_queue``, then the first queue that lists the channel, then the first queue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.channels import CHANNELS
from hub.inputs import DbInt, Input

PriorityName = Literal["low", "normal", "high", "urgent"]


class RulesInvalid(ValueError):
    """A rule set that does not validate; the message names each bad field, and ``errors`` holds each as
    ``(loc, msg)`` (``loc`` a path into the rule set: ``("rules", 2, "queue")``) for answers that place them."""

    def __init__(self, message: str, errors: list[tuple[tuple[str | int, ...], str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def _listify(value: Any) -> Any:
    if value is None or isinstance(value, list):
        return value
    return [value]


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: list[str] | None = None
    recipient: list[str] | None = None
    ivr_choice: list[str] | None = None
    language: list[str] | None = None
    contact: dict[str, Any] | None = None
    keywords: list[str] | None = Field(default=None, min_length=1)

    @field_validator("channel", "recipient", "ivr_choice", "language", "keywords", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        value = _listify(value)
        if isinstance(value, list):
            return [str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("channel")
    @classmethod
    def _known_channels(cls, value: list[str] | None) -> list[str] | None:
        for c in value or []:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r}; use one of {', '.join(CHANNELS)}")
        return value

    @field_validator("keywords")
    @classmethod
    def _real_words(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not w.strip() for w in value):
            raise ValueError("a keyword is empty")
        return value


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    when: Match = Match()
    queue: str = Field(min_length=1, max_length=100)
    priority: PriorityName | None = None
    skills: dict[str, DbInt] = {}

    @field_validator("skills")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        for skill, level in value.items():
            if level < 1:
                raise ValueError(f"skill {skill!r} needs a level of 1 or more")
        return value


class RuleSet(Input):
    """The whole configuration; validated as one (rule names are unique)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = []
    default_queue: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"two rules are named {r.name!r}")
            seen.add(r.name)
        return self

    def queue_names(self) -> set[str]:
        names = {r.queue for r in self.rules}
        if self.default_queue:
            names.add(self.default_queue)
        return names


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def parse_rules(data: Any, *, source: str = "rules") -> RuleSet:
    """Validate a rule set; RulesInvalid says which field is wrong and why."""
    if data is None:
        data = {}
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        errors = [(tuple(err["loc"]), err["msg"].removeprefix("Value error, ")) for err in exc.errors()]
        raise RulesInvalid(f"{source}: {_describe(exc)}", errors) from None


def load_rules_file(path: str | Path) -> RuleSet:
    """Read and validate a YAML rules file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesInvalid(f"{p}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RulesInvalid(f"{p}: not valid YAML: {exc}") from None
    return parse_rules(data, source=str(p))


@dataclass(frozen=True, slots=True)
class Facts:
    """What rules may look at, taken from the message and its contact."""

    channel: str
    recipient: str | None = None
    ivr_choice: str | None = None
    language: str | None = None
    contact: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""


def facts(
    *,
    channel: str,
    recipient: str | None,
    metadata: Mapping[str, Any],
    subject: str | None,
    text: str,
    contact_attributes: Mapping[str, Any] | None,
) -> Facts:
    attrs = dict(contact_attributes or {})
    ivr = metadata.get("ivr_choice")
    language = attrs.get("language") or metadata.get("language")
    return Facts(
        channel=channel,
        recipient=recipient,
        ivr_choice=None if ivr is None else str(ivr),
        language=None if language is None else str(language),
        contact=attrs,
        text=f"{subject or ''}\n{text}",
    )


def _word_in(word: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text, re.IGNORECASE) is not None


def matches(rule: Rule, f: Facts) -> bool:
    w = rule.when
    if w.channel is not None and f.channel not in w.channel:
        return False
    if w.recipient is not None and (f.recipient or "").lower() not in {r.lower() for r in w.recipient}:
        return False
    if w.ivr_choice is not None and f.ivr_choice not in w.ivr_choice:
        return False
    if w.language is not None and (f.language or "").lower() not in {x.lower() for x in w.language}:
        return False
    if w.contact is not None and any(f.contact.get(k) != v for k, v in w.contact.items()):
        return False
    return w.keywords is None or any(_word_in(k, f.text) for k in w.keywords)


def first_match(rules: RuleSet, f: Facts, known_queues: Mapping[str, int]) -> Rule | None:
    """The first rule that matches and names a queue that exists (a stale name is skipped, not fatal)."""
    for rule in rules.rules:
        if rule.queue in known_queues and matches(rule, f):
            return rule
    return None


# How ``pick_queue`` chose, in its order of preference.
BY_RULE, BY_ADAPTER, BY_DEFAULT = "rule", "adapter", "default"
BY_CHANNEL, BY_FIRST, NO_QUEUE = "channel", "first", "none"


def pick_queue(
    rules: RuleSet,
    by_name: Mapping[str, int],
    queues: Sequence[Any],
    *,
    channel: str,
    recipient: str | None,
    metadata: Mapping[str, Any],
    subject: str | None,
    text: str,
    adapter_queue: str | None,
    contact_attributes: Mapping[str, Any] | None,
) -> tuple[int | None, Rule | None, str]:
    """The queue for new work, the rule that chose it, and how it was chosen (``BY_RULE`` ...): the first
    matching rule, else the adapter's queue (a mailbox's, an IVR's), the default queue, the first queue that
    lists the channel, the first queue. ``queues`` are rows with ``id`` and ``channels``, in id order."""
    if rules.rules:
        f = facts(
            channel=channel,
            recipient=recipient,
            metadata=metadata,
            subject=subject,
            text=text,
            contact_attributes=contact_attributes,
        )
        rule = first_match(rules, f, by_name)
        if rule is not None:
            return by_name[rule.queue], rule, BY_RULE
    if adapter_queue and adapter_queue in by_name:
        return by_name[adapter_queue], None, BY_ADAPTER
    if rules.default_queue and rules.default_queue in by_name:
        return by_name[rules.default_queue], None, BY_DEFAULT
    for q in queues:
        if channel in (q.channels or []):
            return int(q.id), None, BY_CHANNEL
    return (int(queues[0].id) if queues else None), None, (BY_FIRST if queues else NO_QUEUE)


def why_not(rule: Rule, f: Facts, known_queues: Mapping[str, int]) -> str | None:
    """Why ``rule`` does not take a message with these facts (None: it does); the first condition that fails."""
    if rule.queue not in known_queues:
        return f"its queue {rule.queue!r} does not exist"
    w = rule.when
    if w.channel is not None and f.channel not in w.channel:
        return f"the channel is {f.channel}, not {' or '.join(w.channel)}"
    if w.recipient is not None and (f.recipient or "").lower() not in {r.lower() for r in w.recipient}:
        return f"it came in on {f.recipient or 'no address'}, not {' or '.join(w.recipient)}"
    if w.ivr_choice is not None and f.ivr_choice not in w.ivr_choice:
        return f"the phone menu choice is {f.ivr_choice or 'none'}, not {' or '.join(w.ivr_choice)}"
    if w.language is not None and (f.language or "").lower() not in {x.lower() for x in w.language}:
        return f"the language is {f.language or 'unknown'}, not {' or '.join(w.language)}"
    for k, v in (w.contact or {}).items():
        if f.contact.get(k) != v:
            return f"the contact's {k} is {f.contact.get(k)!r}, not {v!r}"
    if w.keywords is not None and not any(_word_in(k, f.text) for k in w.keywords):
        return f"none of the words {', '.join(w.keywords)} is in the subject or text"
    return None


def why_matched(rule: Rule, f: Facts) -> str:
    """The conditions of a matching ``rule`` that held, in words."""
    w = rule.when
    held = []
    if w.channel is not None:
        held.append(f"the channel is {f.channel}")
    if w.recipient is not None:
        held.append(f"it came in on {f.recipient}")
    if w.ivr_choice is not None:
        held.append(f"the phone menu choice is {f.ivr_choice}")
    if w.language is not None:
        held.append(f"the language is {f.language}")
    for k, v in (w.contact or {}).items():
        held.append(f"the contact's {k} is {v!r}")
    if w.keywords is not None:
        found = [k for k in w.keywords if _word_in(k, f.text)]
        held.append(f"the words {', '.join(found)} are in the subject or text")
    return " and ".join(held) if held else "it has no conditions"


# --- the dry run's API schemas (POST /api/routing/dry-run) ------------------------------------------------


class DryRunMessage(Input):
    """A message as routing sees it when it opens a ticket."""

    channel: str = Field(min_length=1, max_length=20)
    recipient: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=500)
    text: str = Field(default="", max_length=100_000)
    ivr_choice: str | None = Field(default=None, max_length=20)
    language: str | None = Field(default=None, max_length=20)
    contact: dict[str, Any] = {}
    queue: str | None = Field(default=None, max_length=100, description="the adapter's queue (a mailbox's)")

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"unknown channel {value!r}; use one of {', '.join(CHANNELS)}")
        return value


class DryRunRequest(Input):
    """``rules``: a draft rule set to try (the body of ``PUT /api/routing/rules``); left out, the rules in force."""

    message: DryRunMessage
    rules: dict[str, Any] | None = None


class DryRunStep(BaseModel):
    rule: str
    matched: bool
    reason: str


class DryRunAnswer(BaseModel):
    """Where the message would go (``queue``), which rule sent it there, and why, rule by rule."""

    queue_id: int | None
    queue: str | None
    rule: str | None
    priority: str | None
    skills: dict[str, int]
    reason: str
    steps: list[DryRunStep]
