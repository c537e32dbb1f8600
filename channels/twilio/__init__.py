"""Phone, SMS and WhatsApp through Twilio: signed webhooks, the IVR flows on the phone, hand-off to agents.

::

    signatures.py  X-Twilio-Signature (twilio's RequestValidator) against SWITCHBOARD_PUBLIC_URL; the demo's token
    flows.py       which flow answers a number (SWITCHBOARD_TWILIO_NUMBERS, the admin API; demo: the demo flow)
    twiml.py       the IVR engine's actions → TwiML, with twilio's VoiceResponse only
    inputs.py      the flow's action URLs' parameters → the IVR engine's inputs
    phones.py      where an agent answers (browser: the Voice JavaScript SDK and its tokens, or their own number)
    voice.py       VoiceService: each call's state per CallSid, steps, tickets, the queue, voicemail, status
    rest.py        the Twilio REST client (calls to agents and callbacks, messages), capturable in tests
    messaging.py   SMS and WhatsApp: inbound webhook → InboundMessage, replies, receipts, WhatsApp's window
    views.py       /webhooks/twilio/..., the recordings proxy, the admin API of numbers, the demo phone's API
    channel.py     TwilioChannel: the channels.base.Channel the hub runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels.base import Channel
    from hub.config import Settings


def create_channel(settings: Settings) -> Channel:
    """The Twilio channel (``hub/app.py``'s registry builds it through this)."""
    from channels.twilio.channel import TwilioChannel

    return TwilioChannel(settings)
