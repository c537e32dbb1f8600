"""What the engine is fed: one input per step, typed. The phone adapter turns each webhook into one of these
(and the simulator and the scripted tests build them directly).

| input | when | Twilio parameters (for the adapter) |
|---|---|---|
| ``CallStarted`` | the call is answered | the voice webhook: ``From``, ``To`` |
| ``Digits`` | the caller pressed keys | Gather's ``Digits`` |
| ``Speech`` | the caller spoke | Gather's ``SpeechResult``, ``Confidence`` |
| ``NoInput`` | silence until the timeout | Gather's action called with neither (``actionOnEmptyResult``) |
| ``RecordingDone`` | a recording ended | Record's ``RecordingUrl``, ``RecordingSid``, ``RecordingDuration`` |
| ``LookupResult`` | answer to a ``Lookup`` action | the adapter's own query, fed back in the same request |
| ``Queued`` | answer to an ``Enqueue`` action | routing's estimate, fed back in the same request |
| ``DialDone`` | an outside call ended | Dial's ``DialCallStatus`` |
| ``HangUp`` | the caller hung up | status callback ``CallStatus=completed`` (or ``canceled``...) |
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallStarted(_Input):
    kind: Literal["start"] = "start"
    caller: str | None = Field(default=None, max_length=64)
    called: str | None = Field(default=None, max_length=64)


class Digits(_Input):
    kind: Literal["digits"] = "digits"
    digits: str = Field(pattern=r"^[0-9*#]{0,64}$")  # "" counts as no input


class Speech(_Input):
    kind: Literal["speech"] = "speech"
    text: str = Field(max_length=1000)
    confidence: float = Field(default=1.0, ge=0, le=1)


class NoInput(_Input):
    kind: Literal["no_input"] = "no_input"


class RecordingDone(_Input):
    kind: Literal["recording"] = "recording"
    url: str | None = Field(default=None, max_length=2000)  # None or 0 seconds: nothing was recorded
    duration_seconds: int = Field(default=0, ge=0)
    recording_id: str | None = Field(default=None, max_length=64)


class TicketSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    subject: str = Field(default="", max_length=500)
    status: str = Field(default="open", max_length=20)


class LookupResult(_Input):
    """The caller's contact (None: unknown number) and open requests, most recent first."""

    kind: Literal["lookup"] = "lookup"
    contact_name: str | None = Field(default=None, max_length=200)
    open_tickets: list[TicketSummary] = Field(default_factory=list, max_length=100)


class Queued(_Input):
    """The call is waiting in its queue: routing's estimate of the wait and the caller's place in line (None
    when unknown)."""

    kind: Literal["queued"] = "queued"
    estimated_wait_seconds: int | None = Field(default=None, ge=0)
    position: int | None = Field(default=None, ge=1)


class DialDone(_Input):
    kind: Literal["dial"] = "dial"
    status: Literal["completed", "answered", "busy", "no-answer", "failed", "canceled"]


class HangUp(_Input):
    kind: Literal["hangup"] = "hangup"


Input = Annotated[
    CallStarted | Digits | Speech | NoInput | RecordingDone | LookupResult | Queued | DialDone | HangUp,
    Field(discriminator="kind"),
]
