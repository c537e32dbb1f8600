"""The social channels: Meta's Messenger, Instagram and WhatsApp Cloud API, page comments, and Telegram bots.

::

    meta.py      Meta's webhooks, sans I/O: X-Hub-Signature-256, the parse of a batch into messages and receipts
    telegram.py  Telegram updates, sans I/O: the secret token, the parse of an update
    media.py     what Meta takes of a reply's files, sans I/O: WhatsApp's types and sizes, Messenger's types
    service.py   SocialService: webhooks in (one ingest batch), replies out over httpx, receipts
    health.py    each account's health (expired tokens, silent webhooks) and its ``channel.health`` events
    views.py     /webhooks/meta, /webhooks/telegram/{bot}, /api/social/...
    channel.py   SocialChannel: the channels.base.Channel the hub runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels.base import Channel
    from hub.config import Settings


def create_channel(settings: Settings) -> Channel:
    """The social channels (``hub/app.py``'s registry builds them through this)."""
    from channels.social.channel import SocialChannel

    return SocialChannel(settings)
