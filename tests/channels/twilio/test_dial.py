"""A flow's transfer to an outside number named in the configuration, through the voice service itself (no
HTTP): the name resolves to the number dialled; an unknown name is a failed dial (the node's on_fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from channels.twilio.rest import Rest
from channels.twilio.voice import VoiceService
from hub.messages import InboundMessage, IngestResult
from hub.runtime import Runtime

FLOW = """
name: transfer
start: to_warehouse
nodes:
  to_warehouse:
    type: dial
    prompt: Connecting you to the warehouse.
    number_name: warehouse
    on_fail: sorry
  sorry:
    type: hangup
    prompt: Sorry, the warehouse cannot take your call.
"""


async def no_ingest(message: InboundMessage, *, also: Any = None) -> IngestResult:
    raise AssertionError("a transfer stores nothing")


def service(rt: Runtime, tmp_path: Path, numbers: dict[str, str]) -> VoiceService:
    (tmp_path / "transfer.yaml").write_text(FLOW)
    settings = rt.settings.model_copy(
        update={"twilio_flows_dir": tmp_path, "twilio_default_flow": "transfer", "twilio_dial_numbers": numbers}
    )
    return VoiceService(rt, no_ingest, settings, Rest(settings))


PARAMS = {"CallSid": "CA" + "d" * 32, "From": "+14155550142", "To": "+14155550100", "CallStatus": "ringing"}


async def test_a_named_number_is_dialled(rt: Runtime, tmp_path: Path) -> None:
    text = await service(rt, tmp_path, {"warehouse": "+14155550111"}).incoming(PARAMS, "k1")
    assert "Connecting you to the warehouse." in text
    assert ">+14155550111</Dial>" in text and "/webhooks/twilio/voice/dial?s=1" in text


async def test_an_unknown_name_is_a_failed_dial(rt: Runtime, tmp_path: Path) -> None:
    text = await service(rt, tmp_path, {}).incoming(dict(PARAMS, CallSid="CA" + "e" * 32), "k2")
    assert "<Dial" not in text
    assert "Sorry, the warehouse cannot take your call." in text and "<Hangup />" in text
