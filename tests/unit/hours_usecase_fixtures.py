"""What hours' use-case unit tests share: the demo city's rules, hours over an in-memory store, and callers."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime

from services.hours.usecases import Hours
from shared import reference
from shared.auth import Caller
from shared.photo_ids import PhotoIds
from tests.unit.hours_store_double import HoursStoreDouble

RULES = reference.load_service_hours()
CITY = reference.load(None)
CALENDAR = reference.load_work_calendar(None)
ASSOCIATION = Caller("assoc-1", "association")
OFFICE = Caller("office-1", "office")
_ids = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


def hours_in_memory() -> Hours:
    return Hours(store=HoursStoreDouble(RULES), reference=CITY, rules=RULES, calendar=CALENDAR,
                 photo_ids=PhotoIds("a unit test's secret"))


def register(hours: Hours, grid_id: str = "lanshan-01") -> tuple[str, Caller]:
    """A registered volunteer's id, and the volunteer as a caller."""
    volunteer_id = f"v{next(_ids):023d}"
    hours.store.add_volunteer(volunteer_id, grid_id)
    return volunteer_id, Caller(volunteer_id, "volunteer")
