"""What a channel adapter is. Each channel package (webchat, email, twilio, social) provides one object
that ``hub/app.py`` builds with the runtime and the ingest function, and that:

- verifies and parses what arrives (webhooks, IMAP, websockets) into ``hub.messages.InboundMessage`` and
  hands it to ``ingest`` (which returns once the message is committed);
- delivers ``OutboundMessage`` through ``send`` for each channel name it lists in ``senders``;
- runs its background work (pollers, listeners) between ``start`` and ``stop``.

Channels import ``hub`` only (and ``ivr_flows`` for the phone channel), never ``ticketing``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from hub.messages import Sender


class ChannelService(Protocol):
    """A channel's running part, started and stopped with the application."""

    @property
    def senders(self) -> Mapping[str, Sender]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
