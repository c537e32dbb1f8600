"""Twilio's action-URL parameters (Gather, Record, Dial) as the IVR engine's inputs (``ivr_flows.inputs``)."""

from __future__ import annotations

from pydantic import ValidationError

from channels.twilio.signatures import BadParameters
from ivr_flows.inputs import DialDone, Digits, Input, NoInput, RecordingDone, Speech


def engine_input(kind: str, params: dict[str, str]) -> Input:
    """The engine's input from an action URL's parameters; malformed ones (keys that are no keys, a recording
    URL of kilobytes) raise ``BadParameters`` (400)."""
    try:
        return _engine_input(kind, params)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else kind
        raise BadParameters(f"malformed {kind} parameters ({where})") from None


def _engine_input(kind: str, params: dict[str, str]) -> Input:
    if kind == "gather":
        digits = params.get("Digits", "")
        said = params.get("SpeechResult", "").strip()
        if digits:
            return Digits(digits=digits)
        if said:
            try:
                confidence = float(params.get("Confidence", "1") or 1)
            except ValueError:
                confidence = 0.0
            return Speech(text=said[:1000], confidence=min(1.0, max(0.0, confidence)))
        return NoInput()
    if kind == "record":
        url = params.get("RecordingUrl") or None
        try:
            seconds = max(0, int(params.get("RecordingDuration", "0") or 0))
        except ValueError:
            seconds = 0
        return RecordingDone(url=url, duration_seconds=seconds, recording_id=params.get("RecordingSid") or None)
    status = params.get("DialCallStatus", "failed")
    return DialDone(status=status if status in ("completed", "answered", "busy", "no-answer", "canceled") else "failed")  # type: ignore[arg-type]
