"""The annual-minimum reminder: from the jurisdiction's date (1 October by default), once a week, every
volunteer still under the yearly minimum (20 hours) gets `volunteer.minimum_at_risk`.

Once per volunteer per week however many hours processes run: the reminder is a conditional write that
marks the volunteer's document with the week, and carries the event in the same write (the outbox). A pass
that went through everyone records the week, so later passes of the same week cost one read.
"""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from shared.events import Event
from shared.reference import ServiceHoursRules

from . import domain
from .store import HoursStore

BATCH = 500


def reminder_week(today: date, rules: ServiceHoursRules) -> str | None:
    """The ISO week whose reminders are due on `today`, or None before the reminders start for the year."""
    month, day = rules.minimum_reminders_from
    if today < date(today.year, month, day):
        return None
    iso_year, week, _ = today.isocalendar()
    return f"{iso_year}-W{week:02d}"


def at_risk_event(volunteer_id: str, year: int, year_centihours: int, week: str, rules: ServiceHoursRules) -> Event:
    year_hours = domain.hours_of(year_centihours)
    return Event.new("volunteer.minimum_at_risk", "hours", {
        "volunteer_id": volunteer_id, "year": year, "year_hours": year_hours,
        "minimum_hours": rules.annual_minimum_hours,
        "hours_short": round(rules.annual_minimum_hours - year_hours, 2), "week": week}, None)


class MinimumReminder:
    def __init__(self, store: HoursStore, zone: ZoneInfo):
        self.store = store
        self.zone = zone

    def check(self, now: datetime) -> int:
        """Remind whoever is due this week and was not yet reminded; returns how many this pass reminded."""
        rules = self.store.rules
        today = domain.local_today(now, self.zone)
        week = reminder_week(today, rules)
        if week is None or self.store.reminders_done(week):
            return 0
        year, minimum = today.year, domain.centihours(rules.annual_minimum_hours)
        year_field = f"totals.years.{year}"
        reminded, batch = 0, []
        # A weekly pass over every volunteer: a scan, deliberately (see the module's docstring).
        for volunteer in self.store.volunteers.find({"reminded_week": {"$ne": week}}, {year_field: 1}):
            so_far = volunteer.get("totals", {}).get("years", {}).get(str(year), 0)
            if so_far >= minimum:
                continue
            batch.append((volunteer["_id"], at_risk_event(volunteer["_id"], year, so_far, week, rules)))
            if len(batch) >= BATCH:
                reminded += self.store.remind(week, year, minimum, batch)
                batch = []
        if batch:
            reminded += self.store.remind(week, year, minimum, batch)
        self.store.record_reminders_done(week, now)
        return reminded
