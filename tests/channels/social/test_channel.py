"""The social package as a channel: what names it brings."""

from __future__ import annotations

from channels.base import build_channel, names
from channels.social import create_channel
from hub.config import Settings
from tests.channels.social.conftest import with_social


def test_whatsapp_is_brought_only_with_a_cloud_api_number(settings: Settings) -> None:
    """Without SWITCHBOARD_WHATSAPP_NUMBERS the name is left to Twilio's WhatsApp; with it, Twilio leaves it, and
    the hub starts with both channels registered."""
    assert names(build_channel(create_channel, settings)) == ("messenger", "instagram", "telegram", "comments")
    configured = with_social(settings, "http://127.0.0.1:9")
    assert names(build_channel(create_channel, configured)) == (
        "whatsapp",
        "messenger",
        "instagram",
        "telegram",
        "comments",
    )
    from channels.twilio import create_channel as create_twilio
    from hub.app import build_channels

    assert "whatsapp" in names(build_channel(create_twilio, settings))
    assert "whatsapp" not in names(build_channel(create_twilio, configured))
    brought = [n for channel in build_channels(configured) for n in names(channel)]
    assert brought.count("whatsapp") == 1
