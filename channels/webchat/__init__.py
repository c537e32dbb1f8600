"""The website chat channel: an embeddable widget (``/widget.js``) speaking ``/ws/chat`` to the hub.

::

    service.py  visitor tokens, the /ws/chat protocol, the sender of agents' replies, attachments
    views.py    /api/chat/..., /widget.js, /ws/chat; CORS for the sites that embed the widget
    channel.py  WebchatChannel: the channels.base.Channel the hub runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels.base import Channel
    from hub.config import Settings


def create_channel(settings: Settings) -> Channel:
    """The chat channel (``hub/app.py``'s registry builds it through this)."""
    from channels.webchat.channel import WebchatChannel

    return WebchatChannel(settings)
