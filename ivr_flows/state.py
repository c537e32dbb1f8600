"""A call's place in its flow: small, and JSON-serializable so the phone adapter can keep it per CallSid in the
database between webhooks (``state.model_dump_json()`` / ``CallState.model_validate_json(text)``).

Example (a caller in the Spanish main menu after one wrong key)::

    {"v": 1, "node": "main_menu", "phase": "ask", "tries": 1, "language": "es", "queue": "support",
     "skills": {}, "priority": null, "vars": {"caller.number": "+14155550123"},
     "path": ["welcome", "choose_language:2", "main_menu"], "choice": "2", "queued": null,
     "ended": false, "outcome": null}

``phase`` says what the node waits for: ``ask`` (a gather), ``confirm`` (a collect's read-back), ``record``,
``lookup``, ``queued`` (the wait estimate after an Enqueue), ``dial``; ``""`` before the call starts and after
it ends. ``queued`` names the queue the call joined at a transfer (a later callback keeps that place in line).
``outcome`` says how the engine's part ended: ``hold``, ``voicemail``, ``callback``, ``dialed``, ``hangup``
(the flow hung up), ``caller_hung_up``, ``runaway`` (a loop that never waited for the caller; lint warns of
those) or ``error`` (a node or queue that lint would have refused).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STATE_VERSION = 1
MAX_PATH = 100  # the IVR path keeps its first step and the latest ones
MAX_VARS = 100

Phase = Literal["", "ask", "confirm", "record", "lookup", "queued", "dial"]
Outcome = Literal["hold", "voicemail", "callback", "dialed", "hangup", "caller_hung_up", "runaway", "error"]


class CallState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: int = STATE_VERSION
    node: str | None = None
    phase: Phase = ""
    tries: int = 0
    language: str
    queue: str | None = None
    skills: dict[str, int] = Field(default_factory=dict)
    priority: str | None = None
    vars: dict[str, str] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)
    choice: str | None = None  # the last menu choice (handed to routing as ivr_choice)
    queued: str | None = None
    ended: bool = False
    outcome: Outcome | None = None
