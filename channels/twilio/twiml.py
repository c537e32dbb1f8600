"""The IVR engine's actions (``ivr_flows.actions``) as TwiML, built with twilio's ``VoiceResponse`` only.

``Lookup``, ``Enqueue``, ``Voicemail`` and ``Callback`` are the adapter's own work (``voice.py``) and render
nothing. ``Hold`` puts the caller in the call's conference room, where the agent routing chose is dialled in
(``startConferenceOnEnter=false``: hold music from the wait URL until the agent joins)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twilio.twiml.voice_response import Gather as TwimlGather
from twilio.twiml.voice_response import VoiceResponse

from ivr_flows.actions import Action, Dial, Gather, Hangup, Hold, Play, Record, Say


@dataclass(frozen=True, slots=True)
class Urls:
    """Where Twilio reports back for one call at one step (absolute, under SWITCHBOARD_PUBLIC_URL)."""

    gather: str
    record: str
    dial: str
    wait: str
    left: str  # the caller left the conference room (the dial around it ended)


def room(call_sid: str) -> str:
    """The conference room a waiting caller sits in (the agent is dialled into the same one)."""
    return f"switchboard-{call_sid}"


def _speak(target: VoiceResponse | TwimlGather, item: Say | Play) -> None:
    if isinstance(item, Say):
        target.say(item.text, language=item.language, voice=item.voice)
    else:
        target.play(item.url)


def render(actions: Sequence[Action], urls: Urls, *, call_sid: str, hold_music: str | None = None) -> str:
    """The TwiML for one step's actions, in order."""
    vr = VoiceResponse()
    for action in actions:
        if isinstance(action, Say | Play):
            _speak(vr, action)
        elif isinstance(action, Gather):
            g = vr.gather(
                input=" ".join(action.input),
                action=urls.gather,
                method="POST",
                timeout=action.timeout,
                num_digits=action.num_digits,
                finish_on_key=action.finish_on_key,
                hints=", ".join(action.hints) or None,
                language=action.language,
                speech_timeout="auto" if "speech" in action.input else None,
                action_on_empty_result=True,
            )
            for prompt in action.prompts:
                _speak(g, prompt)
        elif isinstance(action, Record):
            vr.record(
                action=urls.record,
                method="POST",
                max_length=action.max_seconds,
                finish_on_key=action.finish_on_key,
                play_beep=action.beep,
                transcribe=action.transcribe,
            )
        elif isinstance(action, Hold):
            dial = vr.dial(action=urls.left, method="POST")
            dial.conference(
                room(call_sid),
                start_conference_on_enter=False,
                end_conference_on_exit=True,
                wait_url=urls.wait,
                wait_method="POST",
                beep=False,
            )
        elif isinstance(action, Dial):
            if action.number:
                vr.dial(action.number, action=urls.dial, method="POST", timeout=action.timeout)
        elif isinstance(action, Hangup):
            vr.hangup()
    return str(vr)


def goodbye(text: str = "Thank you for calling. Goodbye.", language: str = "en-US") -> str:
    """A polite end for a webhook about a call we do not know (or that has ended)."""
    vr = VoiceResponse()
    vr.say(text, language=language)
    vr.hangup()
    return str(vr)


def hold_music(*, language: str, music_url: str, text: str | None) -> str:
    """A waiting caller's loop (the conference's wait URL): their place in line, then music; Twilio requests
    it again when it ends."""
    vr = VoiceResponse()
    if text:
        vr.say(text, language=language)
    vr.play(music_url)
    return str(vr)


def connected(text: str) -> str:
    vr = VoiceResponse()
    vr.say(text, language="en-US")
    return str(vr)


def join_room(call_sid: str, *, greeting: str | None = None) -> str:
    """What an agent's leg (or a called-back customer's) runs: into the caller's room, starting it."""
    vr = VoiceResponse()
    if greeting:
        vr.say(greeting, language="en-US")
    dial = vr.dial()
    dial.conference(room(call_sid), start_conference_on_enter=True, end_conference_on_exit=True, beep=False)
    return str(vr)


def empty() -> str:
    return str(VoiceResponse())
