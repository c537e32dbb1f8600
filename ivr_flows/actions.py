"""What the engine asks for: a small typed vocabulary that the phone adapter turns, one for one, into TwiML
(``twilio.twiml.voice_response.VoiceResponse``) or into work of its own.

Every step answers a list of actions whose last one is *blocking*: it waits for the caller or the adapter, or
ends the engine's part of the call (``BLOCKING``). The ones before it are said or done in order.

- ``Say`` → ``response.say(text, language=, voice=)``.
- ``Play`` → ``response.play(url)``.
- ``Gather`` (blocking) → ``response.gather(input=, action=, timeout=, num_digits=, finish_on_key=, hints=,
  language=, speech_timeout="auto", action_on_empty_result=True)`` with the prompts nested inside (so the
  caller may answer while they play). The answer is ``Digits``, ``Speech`` or ``NoInput``.
- ``Record`` (blocking) → ``response.record(action=, max_length=, finish_on_key=, play_beep=, transcribe=)``.
  The answer is ``RecordingDone``.
- ``Lookup`` (blocking) → no TwiML: the adapter looks up the caller's contact and open tickets and steps again
  at once with ``LookupResult``, keeping the actions it had so far.
- ``Enqueue`` (blocking) → no TwiML: the adapter hands the call to routing (work waiting in the queue, with the
  skills, priority and metadata; idempotent per call) and steps again at once with ``Queued``.
- ``Hold`` (final) → the caller waits for an agent in the call's room (``<Dial><Conference>``, hold music,
  position announcements). The engine's part of the call is over.
- ``Voicemail`` → no TwiML: store the recording as a ticket in the queue, with the metadata.
- ``Callback`` → no TwiML: turn the call's waiting work into a callback to the caller's number (``in_line``:
  it keeps its place in that queue) or queue a new callback.
- ``Dial`` (blocking) → ``response.dial(number, timeout=, action=)``; ``number_name`` is resolved from the
  adapter's configuration. The answer is ``DialDone``.
- ``Hangup`` (final) → ``response.hangup()``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Say(_Action):
    kind: Literal["say"] = "say"
    text: str
    language: str  # a locale such as en-US
    voice: str | None = None


class Play(_Action):
    kind: Literal["play"] = "play"
    url: str


class Gather(_Action):
    """Ask and wait: the prompts are played inside the gather, so the caller may answer before they end."""

    kind: Literal["gather"] = "gather"
    prompts: list[Say | Play]
    input: list[Literal["dtmf", "speech"]]
    timeout: int
    language: str  # locale for speech recognition
    num_digits: int | None = None  # the gather ends after this many keys
    finish_on_key: str | None = None  # or on this key ("" : none)
    hints: list[str] = []  # words to expect, for speech recognition


class Record(_Action):
    kind: Literal["record"] = "record"
    max_seconds: int
    finish_on_key: str
    beep: bool = True
    transcribe: bool = False


class Lookup(_Action):
    kind: Literal["lookup"] = "lookup"


class Handoff(_Action):
    """Where work goes: a queue by name, skills added to the queue's, a priority, and the metadata (flow name,
    language, the IVR path, the last menu choice as ``ivr_choice``, and the call's variables)."""

    queue: str
    skills: dict[str, int] = {}
    priority: str | None = None
    metadata: dict[str, Any] = {}


class Enqueue(Handoff):
    kind: Literal["enqueue"] = "enqueue"


class Hold(_Action):
    kind: Literal["hold"] = "hold"
    queue: str


class Voicemail(Handoff):
    kind: Literal["voicemail"] = "voicemail"
    recording_url: str
    recording_id: str | None = None
    duration_seconds: int


class Callback(Handoff):
    kind: Literal["callback"] = "callback"
    in_line: bool  # True: the call already waits in this queue and keeps its place


class Dial(_Action):
    kind: Literal["dial"] = "dial"
    number: str | None = None  # E.164
    number_name: str | None = None  # or a name the adapter resolves from its configuration
    timeout: int = 30


class Hangup(_Action):
    kind: Literal["hangup"] = "hangup"


Action = Annotated[
    Say | Play | Gather | Record | Lookup | Enqueue | Hold | Voicemail | Callback | Dial | Hangup,
    Field(discriminator="kind"),
]
BLOCKING = (Gather, Record, Lookup, Enqueue, Hold, Dial, Hangup)
FINAL = (Hold, Hangup)  # after these the engine has no more to do with the call
