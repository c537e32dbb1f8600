"""The payload model of the social channels' event (``hub.events.EventPayload``), registered as this module
loads (``channels.social.health`` imports it)."""

from __future__ import annotations

from datetime import datetime

from hub.events import EventPayload, EventType, event_payload


@event_payload(EventType.CHANNEL_HEALTH)
class ChannelHealthChanged(EventPayload):
    """A social account's health changed (``channels.social.health.AccountHealth``): ``status`` ok,
    token_expired, silent or failing, with what the provider said in ``detail``. Everyone sees it: the console's
    alert and the wallboard show it."""

    channel: str
    account: str
    queue: str
    status: str
    detail: str | None
    since: datetime | None
    last_webhook_at: datetime | None
    last_sent_at: datetime | None
