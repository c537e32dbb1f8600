"""Messaging windows (``hub.windows``), pure: each channel's rule on both sides of its boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.windows import WindowStatus, window_state

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY = timedelta(hours=24)


def test_whatsapp_is_open_for_24_hours_then_templates_only() -> None:
    open_ = window_state("whatsapp", NOW - DAY + SECOND, NOW)
    assert open_.status == WindowStatus.OPEN and open_.seconds_left == 1.0
    closed = window_state("whatsapp", NOW - DAY, NOW)
    assert closed.status == WindowStatus.CLOSED and closed.templates_allowed
    assert closed.reason is not None and "template" in closed.reason
    assert window_state("whatsapp", None, NOW).status == WindowStatus.CLOSED  # the business writes first


def test_messenger_and_instagram_tag_human_agents_up_to_7_days() -> None:
    for channel in ("messenger", "instagram"):
        assert window_state(channel, NOW - DAY + SECOND, NOW).status == WindowStatus.OPEN
        tagged = window_state(channel, NOW - DAY, NOW)
        assert tagged.status == WindowStatus.TAGGED and tagged.tag == "HUMAN_AGENT"
        assert tagged.seconds_left == timedelta(days=6).total_seconds()
        assert window_state(channel, NOW - timedelta(days=7) + SECOND, NOW).status == WindowStatus.TAGGED
        closed = window_state(channel, NOW - timedelta(days=7), NOW)
        assert closed.status == WindowStatus.CLOSED and not closed.templates_allowed


def test_channels_without_a_window_answer_any_time() -> None:
    for channel in ("email", "webchat", "telegram", "sms", "comments", "no-such-channel"):
        assert window_state(channel, NOW - timedelta(days=400), NOW).status == WindowStatus.NONE
