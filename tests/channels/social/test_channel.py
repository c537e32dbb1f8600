"""The social package as a channel: what names it brings."""

from __future__ import annotations

from channels.base import build_channel, names
from channels.social import create_channel
from hub.config import Settings
from tests.channels.social.conftest import with_social


def test_whatsapp_is_brought_only_with_a_cloud_api_number(settings: Settings) -> None:
    """Without SWITCHBOARD_WHATSAPP_NUMBERS the name is left to another channel (Twilio's WhatsApp)."""
    assert names(build_channel(create_channel, settings)) == ("messenger", "instagram", "telegram", "comments")
    configured = with_social(settings, "http://127.0.0.1:9")
    assert names(build_channel(create_channel, configured)) == (
        "whatsapp",
        "messenger",
        "instagram",
        "telegram",
        "comments",
    )
