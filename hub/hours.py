"""Business hours: a timezone, weekly opening intervals and holidays. Pure: no database, no wall clock
(``at`` is always passed in). Shared by ticketing (routing, SLA clocks, the chat widget) and ivr_flows (the
phone menu's opening-hours branch), which may import ``hub`` only::

    {"timezone": "Europe/Madrid",
     "weekly": {"mon": ["09:00-13:00", "14:00-18:00"], "tue": ["09:00-18:00"], "sat": ["10:00-14:00"]},
     "holidays": ["2026-12-25", "2027-01-01"]}

A day that is not listed, or is a holiday, is closed; ``"00:00-24:00"`` is a whole day. No hours at all
(``None``) means always open. Intervals are local wall-clock times, so opening follows daylight-saving changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead a deadline is looked for before the hours are judged to never open.
_HORIZON_DAYS = 800


def _minutes(text: str) -> int:
    hh, sep, mm = text.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"{text!r} is not a time like 09:30")
    value = int(hh) * 60 + int(mm)
    if int(mm) > 59 or value > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return value


def parse_interval(text: str) -> tuple[int, int]:
    """``"09:00-17:30"`` as minutes since midnight, (540, 1050); the end is after the start."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not an interval like 09:00-17:00")
    a, b = _minutes(start), _minutes(end)
    if a >= b:
        raise ValueError(f"interval {text!r} ends before it starts")
    return a, b


class HoursSpec(BaseModel):
    """Business hours as configured (queue API, YAML); validated when loaded."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    weekly: dict[str, list[str]] = {}
    holidays: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name such as Europe/Madrid)") from exc
        return value

    @field_validator("weekly")
    @classmethod
    def _valid_week(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, intervals in value.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
            spans = sorted(parse_interval(i) for i in intervals)
            for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
                if start < end:
                    raise ValueError(f"intervals of {day} overlap")
        return value


@dataclass(frozen=True, slots=True)
class BusinessHours:
    zone: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]  # seven days, Monday first
    holidays: frozenset[date]

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | HoursSpec | None) -> BusinessHours | None:
        """Hours from their configured form; None (always open) for no hours."""
        if not spec:
            return None
        hs = spec if isinstance(spec, HoursSpec) else HoursSpec.model_validate(spec)
        weekly = tuple(tuple(sorted(parse_interval(i) for i in hs.weekly.get(d, []))) for d in DAYS)
        return cls(ZoneInfo(hs.timezone), weekly, frozenset(hs.holidays))

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open spans of a local calendar day, in UTC."""
        if day in self.holidays:
            return []
        out = []
        for a, b in self.weekly[day.weekday()]:
            start = datetime.combine(day, time(a // 60, a % 60), tzinfo=self.zone)
            end = (
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
                if b == 24 * 60
                else datetime.combine(day, time(b // 60, b % 60), tzinfo=self.zone)
            )
            out.append((start.astimezone(UTC), end.astimezone(UTC)))
        return out

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.zone)
        return any(s <= at < e for s, e in self._spans(local.date()))

    def add_open_time(self, start: datetime, seconds: float) -> datetime | None:
        """The moment ``seconds`` of open time after ``start``; None if the hours never open."""
        remaining = timedelta(seconds=seconds)
        day = start.astimezone(self.zone).date() - timedelta(days=1)  # a span of yesterday may still run
        for _ in range(_HORIZON_DAYS):
            for s, e in self._spans(day):
                s = max(s, start)
                if e <= s:
                    continue
                if e - s >= remaining:
                    return s + remaining
                remaining -= e - s
            day += timedelta(days=1)
        return None

    def open_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of open time between ``start`` and ``end`` (0 when ``end`` is not after ``start``)."""
        if end <= start:
            return 0.0
        total = 0.0
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date()
        while day <= last:
            for s, e in self._spans(day):
                s, e = max(s, start), min(e, end)
                if e > s:
                    total += (e - s).total_seconds()
            day += timedelta(days=1)
        return total


def open_seconds(hours: BusinessHours | None, start: datetime, end: datetime) -> float:
    """Seconds of open time between two moments (no hours: all of it)."""
    if hours is None:
        return max(0.0, (end - start).total_seconds())
    return hours.open_seconds(start, end)


def is_open(hours: BusinessHours | None, at: datetime) -> bool:
    """Whether a queue with these hours is open at ``at`` (no hours: always)."""
    return hours is None or hours.is_open(at)


def calendar_zone(spec: Mapping[str, Any] | None, default: str) -> str:
    """The timezone of a queue's calendar days (its "today" on the wallboard, its days in reports): the one its
    business hours name, else ``default`` (``SWITCHBOARD_SUPERVISOR_TIMEZONE``)."""
    zone = (spec or {}).get("timezone")
    return zone if isinstance(zone, str) and zone else default


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC moment a local calendar day begins (23 or 25 hours before the next across a DST change); a
    midnight that does not exist locally (a DST jump at 00:00) is the moment of the jump: zoneinfo reads a
    time in the gap with the offset before it (fold 0)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
