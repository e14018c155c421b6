"""The map's rules: how a case's deadline stands (overdue, due within 24 working hours, running, none) and the
counts per grid cell."""
from datetime import UTC, datetime, time, timedelta

import pytest

from services.routing import domain
from services.routing.clock import WorkingHoursClock
from shared.errors import InvalidFields
from shared.reference import WorkCalendar

# Monday 2026-11-23 10:00 in Shanghai; offices work 9–12 and 13–17 on weekdays.
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
WORKING = WorkingHoursClock(WorkCalendar(timezone="Asia/Shanghai", periods=((time(9), time(12)), (time(13), time(17))),
                                         holidays=frozenset(), working_weekend_days=frozenset()))


def case(status="dispatched", due_in_hours: float | None = 10, overdue=False, grid="g1") -> dict:
    return {"id": "case-1", "status": status, "category": "traffic.parking", "department": "traffic-police",
            "grid_id": grid, "location": {"lat": 35.06, "lng": 118.31}, "overdue": overdue,
            "due_at": None if due_in_hours is None else NOW + timedelta(hours=due_in_hours)}


def test_due_soon_is_24_working_hours_ahead_not_24_calendar_hours():
    # 6 hours left on Monday, 7 on Tuesday, 7 on Wednesday, and 4 of Thursday: 14:00 there.
    assert domain.due_soon_before(NOW, WORKING) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize("status, due_in_hours, overdue, state", [
    ("dispatched", 10, False, "due_soon"),
    ("accepted", 24 * 3 - 1, False, "due_soon"),
    ("dispatched", 24 * 4, False, "running"),
    ("accepted", -1, False, "overdue"),
    ("dispatched", 5, True, "overdue"),
    ("pending_triage", None, False, "none"),
    ("rectified", 5, False, "none"),
    ("rectified", -5, True, "overdue"),
    ("closed", -5, True, "none"),
])
def test_the_deadline_state_of_a_case(status, due_in_hours, overdue, state):
    soon = domain.due_soon_before(NOW, WORKING)
    point = domain.map_point(case(status, due_in_hours, overdue), NOW, soon)
    assert point["deadline"] == state
    assert point["overdue"] == (state == "overdue") and point["due_soon"] == (state == "due_soon")


def test_a_point_carries_where_what_and_whose():
    point = domain.map_point(case(), NOW, domain.due_soon_before(NOW, WORKING))
    assert {k: point[k] for k in ("id", "lat", "lng", "status", "category", "department", "grid_id")} == {
        "id": "case-1", "lat": 35.06, "lng": 118.31, "status": "dispatched", "category": "traffic.parking",
        "department": "traffic-police", "grid_id": "g1"}


def test_grid_counts_count_each_cell_with_its_overdue_and_due_soon():
    soon = domain.due_soon_before(NOW, WORKING)
    points = [domain.map_point(c, NOW, soon) for c in
              (case(grid="g2", due_in_hours=-1), case(grid="g1"), case(grid="g2", due_in_hours=200), case(grid="g2"))]
    assert domain.grid_counts(points) == [{"grid_id": "g1", "count": 1, "overdue": 0, "due_soon": 1},
                                          {"grid_id": "g2", "count": 3, "overdue": 1, "due_soon": 1}]


def test_finished_cases_need_a_bounded_period():
    domain.check_map_period(None, None, None)
    domain.check_map_period("closed", NOW - timedelta(days=30), NOW)
    with pytest.raises(InvalidFields):
        domain.check_map_period("closed", None, NOW)
    with pytest.raises(InvalidFields):
        domain.check_map_period("rejected", NOW - timedelta(days=domain.MAX_HISTORY_PERIOD_DAYS + 1), NOW)
    with pytest.raises(InvalidFields):
        domain.check_map_period(None, NOW, NOW - timedelta(days=1))


def test_the_points_json_is_what_the_documented_schema_dumps():
    import json

    from services.routing import schemas

    soon = domain.due_soon_before(NOW, WORKING)
    points = [domain.map_point(c, NOW, soon) for c in (case(), case(status="pending_triage", due_in_hours=None))]
    answer = {"items": points, "truncated": True, "grid_counts": domain.grid_counts(points), "due_soon_before": soon}
    assert json.loads(schemas.points_json(answer)) == schemas.MapPointsSchema().dump(answer)
