"""Deadline clocks: when a case's time limit runs out, counted in calendar or in working hours.

Pure: instants in and out are timezone-aware UTC datetimes; the city's local time is used only
inside, to decide which moments are working time.
"""
from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from shared.reference import WorkCalendar

CALENDAR, WORKING = "calendar", "working"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class DeadlineClock(Protocol):
    def add(self, start: datetime, hours: float) -> datetime: ...

    def hours_between(self, start: datetime, end: datetime) -> float: ...


class CalendarClock:
    """Every hour counts, nights and holidays included."""

    def add(self, start: datetime, hours: float) -> datetime:
        return _utc(start) + _duration(hours)

    def hours_between(self, start: datetime, end: datetime) -> float:
        return max(_utc(end) - _utc(start), timedelta(0)) / HOUR


class WorkingHoursClock:
    """Only office hours count: the calendar's periods on working days, in the calendar's time zone."""

    def __init__(self, calendar: WorkCalendar):
        # Without working periods no deadline would ever come: `add` would search forever.
        if not calendar.periods:
            raise ValueError("a working-hours clock needs at least one working period a day")
        self._calendar = calendar
        self._zone = ZoneInfo(calendar.timezone)

    def is_working_day(self, day: date) -> bool:
        return self._calendar.is_working_day(day)

    def add(self, start: datetime, hours: float) -> datetime:
        start, remaining = _utc(start), _duration(hours)
        # Zero hours have run out at the start itself, wherever it falls.
        if not remaining:
            return start
        day = start.astimezone(self._zone).date()
        # Terminates: there are working periods and holidays are finite, so working time always comes round.
        while True:
            for opens, closes in self._working_spans(day):
                opens = max(opens, start)
                if closes <= opens:
                    continue
                # `<=` so that hours running out exactly at a period's end give that end, not the next opening.
                if remaining <= closes - opens:
                    return opens + remaining
                remaining -= closes - opens
            day += DAY

    def hours_between(self, start: datetime, end: datetime) -> float:
        start, end = _utc(start), _utc(end)
        worked = timedelta(0)
        day, last = start.astimezone(self._zone).date(), end.astimezone(self._zone).date()
        while day <= last:
            for opens, closes in self._working_spans(day):
                worked += max(min(closes, end) - max(opens, start), timedelta(0))
            day += DAY
        return worked / HOUR

    def _working_spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working periods as UTC instants; none on a day off."""
        if not self.is_working_day(day):
            return []
        return [(self._instant(day, opens), self._instant(day, closes)) for opens, closes in self._calendar.periods]

    def _instant(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self._zone).astimezone(UTC)


def clock_for(basis: str, calendar: WorkCalendar) -> DeadlineClock:
    if basis == CALENDAR:
        return CalendarClock()
    if basis == WORKING:
        return WorkingHoursClock(calendar)
    raise ValueError(f"unknown deadline basis {basis!r}: expected {CALENDAR!r} or {WORKING!r}")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a deadline instant must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _duration(hours: float) -> timedelta:
    if not math.isfinite(hours) or hours < 0:
        raise ValueError(f"deadline hours must be a finite number >= 0, got {hours}")
    return timedelta(hours=hours)
