"""SLA clocks. Pure: no database, no wall clock (``now`` is always passed in).

Deadlines count only a queue's open time (business hours, ``hub.hours``): a first-response target of one hour
for a message arriving at 17:30 on a Friday, with hours 09:00-18:00 on weekdays, falls due at 09:30 on Monday.
Intervals are local wall-clock times, so a deadline follows daylight-saving changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hub.hours import DAYS, BusinessHours, HoursSpec, is_open, parse_interval

__all__ = ["DAYS", "BusinessHours", "HoursSpec", "due_at", "is_open", "parse_interval"]


def due_at(hours: BusinessHours | None, start: datetime, target_seconds: int | None) -> datetime | None:
    """When a target of ``target_seconds`` of business time, counted from ``start``, falls due."""
    if target_seconds is None:
        return None
    if hours is None:
        return start + timedelta(seconds=target_seconds)
    return hours.add_open_time(start, target_seconds)
