"""The SLA board's decisions (services/routing/sla.py): overdue, due soon on the case's own clock, hours left or
overdue by, counts and the per-department cap; and the months of a monthly series (services/routing/stats.py)."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.routing.clock import CALENDAR, WORKING, CalendarClock, WorkingHoursClock
from services.routing.sla import DUE_SOON, OVERDUE, board_entry, sla_board, standing
from services.routing.stats import months_between
from shared.errors import InvalidFields
from shared.reference import load_work_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = timedelta(hours=1)
_ids = itertools.count(1)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


WORKING_CLOCK = WorkingHoursClock(load_work_calendar())
CLOCKS = {CALENDAR: CalendarClock(), WORKING: WORKING_CLOCK}
# Friday 13 March 2026, 14:00 in the city: 24 working hours later is Wednesday 18 March, 15:30.
NOW = local(2026, 3, 13, 14)
HORIZONS = {CALENDAR: NOW + 24 * HOUR, WORKING: WORKING_CLOCK.add(NOW, 24)}


def a_case(due_at: datetime | None, department: str = "sanitation", basis: str = CALENDAR,
           status: str = "accepted", escalation_level: int = 0, extension: dict | None = None) -> dict:
    return {"id": f"case-{next(_ids):03d}", "category": "env.garbage", "department": department,
            "grid_id": "lanshan-01", "status": status, "due_at": due_at, "basis": basis,
            "escalation_level": escalation_level, "extension": extension}


def board(cases: list[dict], departments=("sanitation", "traffic-police"), cap: int = 20) -> list[dict]:
    return sla_board(cases, departments, CLOCKS.__getitem__, NOW, HORIZONS, cap)


# --- standing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("due_at, expected", [
    pytest.param(NOW - HOUR, OVERDUE, id="passed"),
    pytest.param(NOW, OVERDUE, id="at-the-deadline"),
    pytest.param(NOW + HOUR, DUE_SOON, id="within-the-window"),
    pytest.param(NOW + 24 * HOUR, DUE_SOON, id="at-the-window's-end"),
    pytest.param(NOW + 25 * HOUR, None, id="beyond-the-window"),
    pytest.param(None, None, id="no-deadline"),
])
def test_standing_against_now_and_the_horizon(due_at, expected):
    assert standing(due_at, NOW, NOW + 24 * HOUR) == expected


# --- one case on the board --------------------------------------------------------------------

def test_a_working_hours_case_due_next_tuesday_is_due_soon_on_a_friday_afternoon():
    case = a_case(local(2026, 3, 17, 10), basis=WORKING)  # 4 calendar days away, 12 working hours
    entry = board_entry(case, WORKING_CLOCK, NOW, HORIZONS[WORKING])
    assert entry["standing"] == DUE_SOON
    # Fri 14:00-17:30 3.5 h, Mon 7.5 h, Tue 08:30-10:00 1.5 h.
    assert entry["hours_left"] == 12.5
    assert entry["hours_overdue"] is None


def test_a_calendar_case_due_next_tuesday_is_not_on_the_board():
    case = a_case(local(2026, 3, 17, 10), basis=CALENDAR)
    assert board_entry(case, CalendarClock(), NOW, HORIZONS[CALENDAR]) is None


def test_hours_overdue_count_only_working_hours_for_a_working_hours_case():
    case = a_case(local(2026, 3, 12, 17, 30), basis=WORKING, escalation_level=1)  # Thursday's closing
    entry = board_entry(case, WORKING_CLOCK, NOW, HORIZONS[WORKING])
    # Friday 08:30-12:00 and 13:30-14:00 have been worked since: the night and the lunch break do not count.
    assert (entry["standing"], entry["hours_overdue"], entry["hours_left"]) == (OVERDUE, 4.0, None)
    assert entry["escalation_level"] == 1


def test_hours_overdue_on_the_calendar_clock_count_every_hour():
    entry = board_entry(a_case(NOW - 30 * HOUR), CalendarClock(), NOW, HORIZONS[CALENDAR])
    assert (entry["standing"], entry["hours_overdue"]) == (OVERDUE, 30.0)


@pytest.mark.parametrize("status", ["pending_triage", "rectified", "closed", "rejected"])
def test_a_case_whose_deadline_does_not_run_is_not_on_the_board(status):
    assert board_entry(a_case(NOW - HOUR, status=status), CalendarClock(), NOW, HORIZONS[CALENDAR]) is None


def test_a_waiting_extension_request_is_shown():
    requested = a_case(NOW + HOUR, extension={"status": "requested"})
    refused = a_case(NOW + HOUR, extension={"status": "refused"})
    assert board_entry(requested, CalendarClock(), NOW, HORIZONS[CALENDAR])["extension_requested"] is True
    assert board_entry(refused, CalendarClock(), NOW, HORIZONS[CALENDAR])["extension_requested"] is False


# --- the board --------------------------------------------------------------------------------

def test_counts_per_department_and_the_most_overdue_department_first():
    cases = [a_case(NOW - HOUR), a_case(NOW + HOUR), a_case(NOW + 2 * HOUR),
             a_case(NOW - 2 * HOUR, department="traffic-police"), a_case(NOW - 3 * HOUR, department="traffic-police"),
             a_case(NOW + 100 * HOUR)]
    rows = board(cases)
    assert [(r["department"], r["overdue"], r["due_soon"], r["truncated"]) for r in rows] == [
        ("traffic-police", 2, 0, False), ("sanitation", 1, 2, False)]


def test_a_department_with_nothing_near_has_an_empty_row():
    assert board([]) == [{"department": "sanitation", "overdue": 0, "due_soon": 0, "truncated": False, "cases": []},
                         {"department": "traffic-police", "overdue": 0, "due_soon": 0, "truncated": False,
                          "cases": []}]


def test_cases_of_departments_not_asked_for_are_left_out():
    rows = board([a_case(NOW - HOUR, department="traffic-police")], departments=("sanitation",))
    assert [(r["department"], r["overdue"]) for r in rows] == [("sanitation", 0)]


def test_the_longest_overdue_come_first_then_the_soonest_due():
    soon, later, overdue_a_little, overdue_long = (a_case(NOW + HOUR), a_case(NOW + 5 * HOUR), a_case(NOW - HOUR),
                                                   a_case(NOW - 50 * HOUR))
    listed = board([soon, later, overdue_a_little, overdue_long])[0]["cases"]
    assert [c["id"] for c in listed] == [overdue_long["id"], overdue_a_little["id"], soon["id"], later["id"]]


def test_the_cap_cuts_the_list_not_the_counts():
    cases = [a_case(NOW - (n + 1) * HOUR) for n in range(5)] + [a_case(NOW + HOUR) for _ in range(3)]
    row = board(cases, departments=("sanitation",), cap=4)[0]
    assert (row["overdue"], row["due_soon"], row["truncated"], len(row["cases"])) == (5, 3, True, 4)
    assert all(c["standing"] == OVERDUE for c in row["cases"])


def test_each_case_is_judged_on_its_own_clock():
    monday_noon = local(2026, 3, 16, 12)  # within 24 working hours, beyond 24 calendar hours
    rows = board([a_case(monday_noon, basis=WORKING), a_case(monday_noon, basis=CALENDAR)],
                 departments=("sanitation",))
    assert [(c["basis"], c["standing"]) for c in rows[0]["cases"]] == [(WORKING, DUE_SOON)]


# --- the months of a monthly series -----------------------------------------------------------

def test_months_between_across_a_new_year():
    assert months_between("2025-11", "2026-02", 12) == ["2025-11", "2025-12", "2026-01", "2026-02"]


def test_one_month():
    assert months_between("2026-11", "2026-11", 12) == ["2026-11"]


def test_twelve_months_are_allowed_thirteen_are_not():
    assert len(months_between("2026-01", "2026-12", 12)) == 12
    with pytest.raises(InvalidFields) as raised:
        months_between("2026-01", "2027-01", 12)
    assert "to_month" in raised.value.errors


@pytest.mark.parametrize("first, last, field", [
    ("2026-05", "2026-04", "to_month"), ("2026-13", "2026-12", "from_month"), ("１２３４-01", "2026-01", "from_month"),
    ("2026-01", "1999-12", "to_month"),
])
def test_months_between_refuses_what_is_not_a_range(first, last, field):
    with pytest.raises(InvalidFields) as raised:
        months_between(first, last, 12)
    assert field in raised.value.errors
