"""SLA clocks. Pure: no database, no wall clock (``now`` is always passed in).

Deadlines count only a queue's open time (business hours, ``hub.hours``): a first-response target of one hour
for a message arriving at 17:30 on a Friday, with hours 09:00-18:00 on weekdays, falls due at 09:30 on Monday.
Intervals are local wall-clock times, so a deadline follows daylight-saving changes.

Targets come from the queue: its ``sla_policies`` for the ticket's priority first, then the queue's own
``sla_first_response_seconds`` and ``sla_resolution_seconds``. While a ticket is pending on the customer its
clocks stop: when it comes back, each deadline moves on by the business time the pause took
(``resume_due``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.hours import DAYS, BusinessHours, HoursSpec, is_open, open_seconds, parse_interval

__all__ = [
    "DAYS",
    "BusinessHours",
    "HoursSpec",
    "due_at",
    "escalated",
    "is_open",
    "open_seconds",
    "parse_interval",
    "resume_due",
    "targets_for",
]

# Escalation raises a breached ticket's priority one step.
_NEXT_PRIORITY = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}


def due_at(hours: BusinessHours | None, start: datetime, target_seconds: int | None) -> datetime | None:
    """When a target of ``target_seconds`` of business time, counted from ``start``, falls due."""
    if target_seconds is None:
        return None
    if hours is None:
        return start + timedelta(seconds=target_seconds)
    return hours.add_open_time(start, target_seconds)


def targets_for(queue: Any, priority: str) -> tuple[int | None, int | None]:
    """(first-response, resolution) targets in seconds for a ticket of ``priority`` in ``queue`` (a queue row):
    the queue's policy for that priority, each target falling back to the queue's own."""
    policy = ((getattr(queue, "sla_policies", None) or {}).get(priority)) or {}
    first = policy.get("first_response_seconds") or queue.sla_first_response_seconds
    resolution = policy.get("resolution_seconds") or queue.sla_resolution_seconds
    return first, resolution


def resume_due(
    hours: BusinessHours | None, due: datetime | None, paused_at: datetime, now: datetime
) -> datetime | None:
    """A deadline after a pause from ``paused_at`` to ``now``: the business time that was left at the pause,
    counted again from ``now``. A deadline already past when the pause began stays where it was."""
    if due is None or due <= paused_at:
        return due
    left = open_seconds(hours, paused_at, due)
    return due_at(hours, now, int(round(left)))


def escalated(priority: str) -> str:
    """The priority one step up (urgent stays urgent)."""
    return _NEXT_PRIORITY.get(priority, "high")
