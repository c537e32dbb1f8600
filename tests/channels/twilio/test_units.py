"""The channel's pure parts: flows by number (a broken flow file keeps the running flow), TwiML from the
engine's actions, webhook parameters to engine inputs, the known signature vector."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from channels.twilio import twiml
from channels.twilio.flows import FlowBook, e164
from channels.twilio.inputs import engine_input
from channels.twilio.signatures import BadParameters, sign
from hub.config import Settings, TwilioNumberSettings
from ivr_flows.actions import Gather, Hangup, Hold, Record, Say
from ivr_flows.inputs import DialDone, Digits, NoInput, RecordingDone, Speech

DEMO = Path(__file__).parents[3] / "ivr_flows" / "flows" / "demo.yaml"


def test_the_known_signature_vector() -> None:
    """INTEGRATIONS.md's vector: twilio's RequestValidator, as the demo signer uses it."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_broken_flow_file_keeps_the_running_flow(tmp_path: Path) -> None:
    shutil.copy(DEMO, tmp_path / "line.yaml")
    book = FlowBook(Settings(twilio_flows_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    flow = book.get("line")
    assert flow is not None and book.names() == ["line"]
    (tmp_path / "line.yaml").write_text("name: line\nstart: nowhere\nnodes: {a: {type: hangup}}\n")
    import os

    os.utime(tmp_path / "line.yaml", (1, 1))
    assert book.get("line") is flow
    assert book.get("../etc/passwd") is None and book.get("missing") is None


def test_numbers_name_their_flows() -> None:
    settings = Settings(
        twilio_numbers=[TwilioNumberSettings(number="(415) 555-0199", flow="demo")],
        _env_file=None,  # type: ignore[call-arg]
    )
    book = FlowBook(settings)
    assert book.configured("+14155550199") == "demo" and book.configured("+14155550100") is None
    assert e164("whatsapp:+14155550142", "US") == "+14155550142" and e164("anonymous", "US") is None


def test_actions_render_with_voice_response() -> None:
    urls = twiml.Urls(gather="G", record="R", dial="D", wait="W", left="L")
    text = twiml.render(
        [
            Say(text="Hello & welcome", language="en-US", voice="Polly.Joanna"),
            Gather(
                prompts=[Say(text="Press 1", language="en-US")],
                input=["dtmf", "speech"],
                timeout=5,
                language="en-US",
                num_digits=1,
                finish_on_key="",
                hints=["billing", "sales"],
            ),
        ],
        urls,
        call_sid="CA1",
    )
    assert '<Say language="en-US" voice="Polly.Joanna">Hello &amp; welcome</Say>' in text
    assert 'actionOnEmptyResult="true"' in text and 'hints="billing, sales"' in text and 'action="G"' in text
    assert "<Record" in twiml.render([Record(max_seconds=60, finish_on_key="#")], urls, call_sid="CA1")
    held = twiml.render([Hold(queue="support")], urls, call_sid="CA1")
    assert '<Conference beep="false" endConferenceOnExit="true" startConferenceOnEnter="false"' in held
    assert "switchboard-CA1</Conference>" in held and 'action="L"' in held
    assert twiml.render([Hangup()], urls, call_sid="CA1").endswith("<Hangup /></Response>")


def test_parameters_become_engine_inputs() -> None:
    assert engine_input("gather", {"Digits": "12"}) == Digits(digits="12")
    assert engine_input("gather", {"SpeechResult": "billing", "Confidence": "0.4"}) == Speech(
        text="billing", confidence=0.4
    )
    assert engine_input("gather", {"SpeechResult": "x", "Confidence": "lots"}).confidence == 0.0  # type: ignore[union-attr]
    assert engine_input("gather", {}) == NoInput()
    assert engine_input("record", {"RecordingUrl": "u", "RecordingDuration": "x"}) == RecordingDone(url="u")
    assert engine_input("dial", {"DialCallStatus": "weird"}) == DialDone(status="failed")
    for kind, bad in (("gather", {"Digits": "12a"}), ("record", {"RecordingUrl": "u" * 3000})):
        with pytest.raises(BadParameters):
            engine_input(kind, bad)
