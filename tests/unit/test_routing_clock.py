"""Routing's deadline clocks and the work calendar they count in (2026, Asia/Shanghai)."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.routing.clock import CalendarClock, WorkingHoursClock, clock_for
from shared.reference import DEMO_DIR, ReferenceDataError, WorkCalendar, load_work_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The State Council's 2026 notice, written out independently of holidays.json.
DAYS_OFF_2026 = {
    *(date(2026, 1, d) for d in range(1, 4)), *(date(2026, 2, d) for d in range(15, 24)),
    *(date(2026, 4, d) for d in range(4, 7)), *(date(2026, 5, d) for d in range(1, 6)),
    *(date(2026, 6, d) for d in range(19, 22)), *(date(2026, 9, d) for d in range(25, 28)),
    *(date(2026, 10, d) for d in range(1, 8)),
}
WORKED_WEEKEND_DAYS_2026 = {date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9),
                            date(2026, 9, 20), date(2026, 10, 10)}


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time as the UTC instant the clocks take and give."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture(scope="module")
def clock() -> WorkingHoursClock:
    return WorkingHoursClock(load_work_calendar())


# --- working hours: an ordinary week (Mon 2026-03-09 .. Sun 2026-03-15) ------------------------

def test_a_deadline_inside_one_morning(clock):
    assert clock.add(local(2026, 3, 10, 9), 2) == local(2026, 3, 10, 11)


@pytest.mark.parametrize("start, utc_deadline", [
    pytest.param(local(2026, 3, 10, 9), datetime(2026, 3, 10, 3, 0, tzinfo=UTC), id="start-in-hours"),
    pytest.param(local(2026, 3, 10, 7), datetime(2026, 3, 10, 2, 30, tzinfo=UTC), id="start-before-opening"),
])
def test_the_result_is_a_utc_instant(clock, start, utc_deadline):
    deadline = clock.add(start, 2)
    assert deadline.tzinfo is UTC
    assert deadline == utc_deadline


def test_the_lunch_break_does_not_count(clock):
    assert clock.add(local(2026, 3, 10, 11), 2) == local(2026, 3, 10, 14, 30)


def test_a_start_during_lunch_counts_from_the_afternoon_opening(clock):
    assert clock.add(local(2026, 3, 10, 12, 30), 1) == local(2026, 3, 10, 14, 30)


def test_a_start_before_opening_counts_from_0830(clock):
    assert clock.add(local(2026, 3, 10, 7), 1) == local(2026, 3, 10, 9, 30)


def test_a_start_after_closing_counts_from_the_next_morning(clock):
    assert clock.add(local(2026, 3, 10, 18), 1) == local(2026, 3, 11, 9, 30)


def test_a_start_on_a_weekend_counts_from_monday_morning(clock):
    assert clock.add(local(2026, 3, 14, 10), 1) == local(2026, 3, 16, 9, 30)


def test_a_deadline_crossing_a_weekend_skips_saturday_and_sunday(clock):
    assert clock.add(local(2026, 3, 13, 16, 30), 2) == local(2026, 3, 16, 9, 30)


def test_24_working_hours_from_a_friday_afternoon_end_on_wednesday_afternoon(clock):
    # Fri 14:00-17:30 is 3.5 h, Mon and Tue 7.5 h each, Wed morning 3.5 h: 2 h are left for Wed afternoon.
    assert clock.add(local(2026, 3, 13, 14), 24) == local(2026, 3, 18, 15, 30)


@pytest.mark.parametrize("start, hours, end", [
    pytest.param(local(2026, 3, 10, 9), 3, local(2026, 3, 10, 12), id="morning-end"),
    pytest.param(local(2026, 3, 10, 13, 30), 4, local(2026, 3, 10, 17, 30), id="day-end"),
    pytest.param(local(2026, 3, 10, 8, 30), 7.5, local(2026, 3, 10, 17, 30), id="whole-day"),
    pytest.param(local(2026, 3, 13, 16, 30), 1, local(2026, 3, 13, 17, 30), id="friday-end"),
])
def test_hours_running_out_at_a_period_end_give_that_end_not_the_next_opening(clock, start, hours, end):
    assert clock.add(start, hours) == end


def test_zero_hours_run_out_at_the_start_even_outside_working_time(clock):
    assert clock.add(local(2026, 3, 14, 22), 0) == local(2026, 3, 14, 22)


# --- working hours: the 2026 holidays and make-up working days ---------------------------------

def test_a_deadline_runs_through_national_day_and_counts_saturday_10_october(clock):
    # Wed 30 Sep 14:00-17:30 is 3.5 h; 1-7 Oct are off; Thu 8 and Fri 9 Oct give 15 h; 1.5 h are left for Sat 10 Oct.
    assert clock.add(local(2026, 9, 30, 14), 20) == local(2026, 10, 10, 10)


def test_the_make_up_sunday_4_january_is_worked_after_new_year(clock):
    assert clock.add(local(2026, 1, 3, 12), 1) == local(2026, 1, 4, 9, 30)
    assert clock.hours_between(local(2026, 1, 4), local(2026, 1, 5)) == 7.5


def test_spring_festival_works_saturday_14_february_then_is_off_until_the_24th(clock):
    # Fri 13 Feb 17:00-17:30, Sat 14 Feb 7.5 h (a make-up day), 15-23 Feb off, back on Tue 24 Feb.
    assert clock.add(local(2026, 2, 13, 17), 9) == local(2026, 2, 24, 9, 30)
    assert clock.hours_between(local(2026, 2, 15), local(2026, 2, 24)) == 0


def test_every_day_of_the_notice_is_off_and_every_make_up_day_is_worked(clock):
    assert not any(clock.is_working_day(day) for day in DAYS_OFF_2026)
    assert all(clock.is_working_day(day) for day in WORKED_WEEKEND_DAYS_2026)
    assert clock.is_working_day(date(2026, 2, 27)) and not clock.is_working_day(date(2026, 3, 1))


def test_500_working_hours_cross_spring_festival_and_qingming(clock):
    # 500 h = 66 whole days + 5 h. Counting working days from Mon 5 Jan by hand: 20 in January, 16 in February
    # (with Sat 14 and Sat 28), 22 in March, and 1-3, 7-10, 13, 14 April: the 67th is Tue 14 April.
    assert clock.add(local(2026, 1, 5, 8, 30), 500) == local(2026, 4, 14, 15)


# --- working hours: counting between two instants ----------------------------------------------

def test_hours_between_leaves_out_lunch(clock):
    assert clock.hours_between(local(2026, 3, 10, 9), local(2026, 3, 10, 15)) == 4.5


def test_hours_between_leaves_out_nights_and_weekends(clock):
    assert clock.hours_between(local(2026, 3, 13, 17), local(2026, 3, 16, 9)) == 1


def test_hours_between_is_zero_when_the_end_is_not_after_the_start(clock):
    assert clock.hours_between(local(2026, 3, 10, 11), local(2026, 3, 10, 11)) == 0
    assert clock.hours_between(local(2026, 3, 10, 11), local(2026, 3, 10, 9)) == 0
    assert clock.hours_between(local(2026, 3, 12, 11), local(2026, 3, 10, 9)) == 0


STARTS = [local(2026, 3, 10, 9, 17), local(2026, 3, 10, 12, 15), local(2026, 3, 10, 7), local(2026, 3, 13, 20),
          local(2026, 3, 14, 11), local(2026, 2, 12, 16, 45), local(2026, 9, 29, 10), local(2026, 12, 31, 17)]
HOURS = [0.25, 1, 3.5, 4, 7.5, 11.75, 24, 48, 72, 500]


@pytest.mark.parametrize("start", STARTS, ids=lambda s: s.astimezone(SHANGHAI).strftime("%m-%d_%H%M"))
def test_hours_between_is_the_inverse_of_add(clock, start):
    for hours in HOURS:
        deadline = clock.add(start, hours)
        assert deadline > start
        assert clock.hours_between(start, deadline) == pytest.approx(hours, abs=1e-9), hours
        # No earlier instant would do: a minute before the deadline the hours have not yet run out.
        assert clock.hours_between(start, deadline - timedelta(minutes=1)) < hours


def test_add_of_hours_between_gives_back_an_end_inside_working_time(clock):
    start = local(2026, 9, 24, 16)
    for end in (local(2026, 9, 28, 10, 5), local(2026, 10, 10, 16, 59), local(2026, 11, 2, 13, 31)):
        assert abs(clock.add(start, clock.hours_between(start, end)) - end) < timedelta(milliseconds=1)


# --- working hours: another deployment's calendar ----------------------------------------------

def test_the_clock_uses_the_calendar_time_zone_and_periods():
    calendar = WorkCalendar(timezone="Europe/London", periods=((time(9), time(17)),),
                            holidays=frozenset({date(2026, 3, 11)}), working_weekend_days=frozenset())
    london = WorkingHoursClock(calendar)
    # Tue 10 March 16:00 GMT: 1 h that day, Wed 11 is off, 1 h into Thu 12 March.
    assert london.add(datetime(2026, 3, 10, 16, tzinfo=UTC), 2) == datetime(2026, 3, 12, 10, tzinfo=UTC)
    # Summer time: 09:00 BST is 08:00 UTC.
    assert london.add(datetime(2026, 7, 1, 6, tzinfo=UTC), 1) == datetime(2026, 7, 1, 9, tzinfo=UTC)


def test_a_calendar_without_working_periods_cannot_make_a_working_hours_clock():
    with pytest.raises(ValueError):
        WorkingHoursClock(WorkCalendar(timezone="Asia/Shanghai", periods=(), holidays=frozenset(),
                                       working_weekend_days=frozenset()))


# --- calendar hours and the choice of clock ----------------------------------------------------

def test_the_calendar_clock_counts_every_hour():
    evening = local(2026, 9, 30, 20)
    assert CalendarClock().add(evening, 24) == evening + timedelta(hours=24)
    assert CalendarClock().add(evening, 24).tzinfo is UTC
    assert CalendarClock().hours_between(evening, local(2026, 10, 2, 8)) == 36
    assert CalendarClock().hours_between(local(2026, 10, 2, 8), evening) == 0


def test_clock_for_picks_the_clock_of_the_basis():
    calendar = load_work_calendar()
    assert isinstance(clock_for("calendar", calendar), CalendarClock)
    assert isinstance(clock_for("working", calendar), WorkingHoursClock)
    with pytest.raises(ValueError, match="business"):
        clock_for("business", calendar)


@pytest.mark.parametrize("the_clock", [CalendarClock(), WorkingHoursClock(load_work_calendar())],
                         ids=["calendar", "working"])
def test_naive_datetimes_are_refused(the_clock):
    naive, aware = datetime(2026, 3, 10, 9), local(2026, 3, 10, 9)
    with pytest.raises(ValueError):
        the_clock.add(naive, 1)
    with pytest.raises(ValueError):
        the_clock.hours_between(naive, aware)
    with pytest.raises(ValueError):
        the_clock.hours_between(aware, naive)


def test_an_aware_non_utc_start_is_the_same_instant(clock):
    start = datetime(2026, 3, 10, 9, tzinfo=timezone(timedelta(hours=8)))
    assert clock.add(start, 2) == local(2026, 3, 10, 11)
    assert clock.add(start, 2).tzinfo is UTC


@pytest.mark.parametrize("hours", [-1, float("nan"), float("inf")])
def test_negative_or_non_finite_hours_are_refused(clock, hours):
    with pytest.raises(ValueError):
        clock.add(local(2026, 3, 10, 9), hours)
    with pytest.raises(ValueError):
        CalendarClock().add(local(2026, 3, 10, 9), hours)


# --- the work calendar file --------------------------------------------------------------------

def holidays_file(folder: Path, **overrides) -> str:
    raw = {"timezone": "Asia/Shanghai", "workday_periods": [["09:00", "12:00"], ["14:00", "18:00"]],
           "holidays": ["2027-01-01"], "working_weekend_days": ["2027-01-02"], "source": "test"}
    raw.update(overrides)
    (folder / "holidays.json").write_text(json.dumps(raw), encoding="utf-8")
    return str(folder)


def test_the_demo_calendar_is_the_2026_notice():
    calendar = load_work_calendar()
    assert calendar.timezone == "Asia/Shanghai"
    assert calendar.periods == ((time(8, 30), time(12)), (time(13, 30), time(17, 30)))
    assert calendar.holidays == DAYS_OFF_2026
    assert calendar.working_weekend_days == WORKED_WEEKEND_DAYS_2026


def test_the_demo_calendar_file_names_its_source():
    raw = json.loads((DEMO_DIR / "holidays.json").read_text(encoding="utf-8"))
    assert "国务院办公厅关于2026年部分节假日安排的通知" in raw["source"]


def test_a_reference_folder_with_its_own_calendar_replaces_the_demo_one(tmp_path):
    calendar = load_work_calendar(holidays_file(tmp_path))
    assert calendar.periods == ((time(9), time(12)), (time(14), time(18)))
    assert calendar.holidays == {date(2027, 1, 1)}
    assert calendar.working_weekend_days == {date(2027, 1, 2)}


def test_a_reference_folder_without_a_calendar_falls_back_to_the_demo_one(tmp_path):
    assert load_work_calendar(str(tmp_path)) == load_work_calendar()


@pytest.mark.parametrize("overrides", [
    pytest.param({"holidays": ["2027-01-02"], "working_weekend_days": ["2027-01-02"]}, id="off-and-worked"),
    pytest.param({"holidays": ["2027-02-30"]}, id="bad-date"),
    pytest.param({"working_weekend_days": ["next saturday"]}, id="not-a-date"),
    pytest.param({"working_weekend_days": ["2027-01-04"]}, id="make-up-day-on-a-weekday"),
    pytest.param({"workday_periods": [["13:30", "17:30"], ["08:30", "12:00"]]}, id="periods-out-of-order"),
    pytest.param({"workday_periods": [["08:30", "12:00"], ["11:00", "17:30"]]}, id="periods-overlapping"),
    pytest.param({"workday_periods": [["12:00", "08:30"]]}, id="period-ending-before-it-starts"),
    pytest.param({"workday_periods": [["08:30+08:00", "12:00+08:00"]]}, id="period-with-an-offset"),
    pytest.param({"workday_periods": []}, id="no-periods"),
    pytest.param({"workday_periods": [["25:00", "26:00"]]}, id="bad-time"),
    pytest.param({"timezone": "Asia/Atlantis"}, id="unknown-time-zone"),
    pytest.param({"holidays": None}, id="holidays-not-a-list"),
])
def test_a_bad_calendar_is_refused(tmp_path, overrides):
    with pytest.raises(ReferenceDataError):
        load_work_calendar(holidays_file(tmp_path, **overrides))


def test_a_calendar_missing_a_key_is_refused(tmp_path):
    folder = holidays_file(tmp_path)
    raw = json.loads((tmp_path / "holidays.json").read_text(encoding="utf-8"))
    del raw["working_weekend_days"]
    (tmp_path / "holidays.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="working_weekend_days"):
        load_work_calendar(folder)


def test_a_calendar_path_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(ReferenceDataError):
        load_work_calendar(str(tmp_path / "does-not-exist"))
