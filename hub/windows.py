"""Messaging windows: whether, and how, an agent may answer a customer on a channel whose provider limits
replies to a time after the customer's last message (``hub.channels.WindowRule`` on the channel's spec).

Pure: ``window_state(channel, last_inbound_at, now)`` says which of three states a conversation is in:

- ``open``: within ``free`` of the customer's last message: any reply;
- ``tagged``: past ``free`` but within ``tagged`` (Messenger, Instagram: 7 days): a human agent's reply goes
  out with the provider's tag (``HUMAN_AGENT``);
- ``closed``: only an approved template (``templates``: WhatsApp), or nothing at all until the customer
  writes again.

The core refuses a free-text reply in a closed window before anything is stored or sent
(``ticketing.replies``), and the console shows the time left and, when closed, the templates to pick from.
Whichever channel package carries the name (Meta's Cloud API or Twilio for ``whatsapp``) gets the same rule.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from hub.channels import SPECS, WindowRule


class WindowStatus(StrEnum):
    NONE = "none"  # the channel has no window: answer any time
    OPEN = "open"
    TAGGED = "tagged"
    CLOSED = "closed"


class WindowState(BaseModel):
    """A conversation's messaging window now."""

    channel: str
    status: WindowStatus
    last_inbound_at: datetime | None = None
    closes_at: datetime | None = None  # when free text ends (open), or the tagged time ends (tagged)
    seconds_left: float | None = None  # until closes_at
    tag: str | None = None  # what a reply now carries (tagged)
    templates_allowed: bool = False  # closed, and templates may still be sent
    reason: str | None = None  # why free text is refused (closed)


# Where a template's variables go: {{1}}, {{2}}...
PLACEHOLDER = re.compile(r"\{\{\s*([1-9][0-9]?)\s*\}\}")


def variables_of(body: str) -> int:
    """How many values a template's body takes: its highest ``{{n}}``."""
    return max((int(n) for n in PLACEHOLDER.findall(body)), default=0)


def rule_of(channel: str) -> WindowRule | None:
    spec = SPECS.get(channel)
    return spec.window if spec is not None else None


def window_state(channel: str, last_inbound_at: datetime | None, now: datetime) -> WindowState:
    """The window of a conversation on ``channel`` whose customer last wrote at ``last_inbound_at`` (None: never,
    as when the business writes first)."""
    rule = rule_of(channel)
    if rule is None:
        return WindowState(channel=channel, status=WindowStatus.NONE)
    if last_inbound_at is not None:
        free_until = last_inbound_at + rule.free
        if now < free_until:
            return WindowState(
                channel=channel,
                status=WindowStatus.OPEN,
                last_inbound_at=last_inbound_at,
                closes_at=free_until,
                seconds_left=(free_until - now).total_seconds(),
            )
        if rule.tagged is not None and now < last_inbound_at + rule.tagged:
            tagged_until = last_inbound_at + rule.tagged
            return WindowState(
                channel=channel,
                status=WindowStatus.TAGGED,
                last_inbound_at=last_inbound_at,
                closes_at=tagged_until,
                seconds_left=(tagged_until - now).total_seconds(),
                tag=rule.tag,
            )
    hours = int(rule.free.total_seconds() // 3600)
    if rule.templates:
        reason = (
            f"the customer's {hours}-hour {channel} window is closed: only an approved template can be sent "
            "until they write again"
        )
    else:
        days = int(rule.tagged.total_seconds() // 86400) if rule.tagged else 0
        longest = f"{days} days for a human agent" if days else f"{hours} hours"
        reason = f"the customer's {channel} window ({longest}) is closed: nothing can be sent until they write again"
    return WindowState(
        channel=channel,
        status=WindowStatus.CLOSED,
        last_inbound_at=last_inbound_at,
        templates_allowed=rule.templates,
        reason=reason,
    )
