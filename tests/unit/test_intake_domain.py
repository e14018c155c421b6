"""Intake's rules (services/intake/domain.py): pure functions over dicts and dataclasses."""
from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.intake import domain
from services.intake.domain import (
    CASE_ACTION_STATUS,
    CaseStep,
    GridMap,
    Week,
    check_new_report,
    follow_case,
    likely_duplicate,
    new_report,
    parse_case_routing_key,
    reports_following,
    weekly_summary,
)
from shared import geo, reference
from shared.errors import InvalidFields
from shared.events import MalformedEvent
from shared.geo import box_around, distance_m
from shared.reference import Category, Grid

NOW = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)  # a Wednesday, inside 2026-W47
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the demo city's time zone
URUMQI = ZoneInfo("Asia/Urumqi")  # a city two hours behind it (UTC+6)
HERE = (35.06, 118.315)  # the middle of lanshan-01


# --- builders ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grid_map() -> GridMap:
    return GridMap(reference.load().grids)


def a_grid(grid_id: str = "lanshan-01") -> Grid:
    square = {"type": "Polygon", "coordinates": [[[118.3, 35.04], [118.33, 35.04], [118.33, 35.08],
                                                  [118.3, 35.08], [118.3, 35.04]]]}
    return Grid(id=grid_id, name="金雀山街道一网格", district="lanshan", district_name="兰山区",
                leader_id="leader-1", geometry=square)


def a_category(code: str = "env.garbage", department: str | None = "sanitation") -> Category:
    return Category(code=code, name_zh="环境脏乱差", name_en="Garbage", department=department,
                    deadline_hours=24, urgent=False)


CATEGORIES = {c.code: c for c in (a_category(), a_category("traffic.parking", "traffic-police"))}


def north_of(lat: float, lng: float, metres: float) -> tuple[float, float]:
    return lat + math.degrees(metres / geo.EARTH_RADIUS_M), lng


def destination(lat: float, lng: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """The point `metres` away along the great circle leaving at `bearing_deg`."""
    d, theta = metres / geo.EARTH_RADIUS_M, math.radians(bearing_deg)
    phi1, lmb1 = math.radians(lat), math.radians(lng)
    phi2 = math.asin(math.sin(phi1) * math.cos(d) + math.cos(phi1) * math.sin(d) * math.cos(theta))
    lmb2 = lmb1 + math.atan2(math.sin(theta) * math.sin(d) * math.cos(phi1),
                             math.cos(d) - math.sin(phi1) * math.sin(phi2))
    return math.degrees(phi2), math.degrees(lmb2)


def candidate(report_id: str, at: tuple[float, float], status: str = domain.SUBMITTED) -> dict:
    return {"id": report_id, "status": status, "location": {"lat": at[0], "lng": at[1]}}


def report_fields(**overrides) -> dict:
    fields = {"category": "env.garbage", "description": "  垃圾堆在路边  ",
              "location": {"lat": HERE[0], "lng": HERE[1], "address": None},
              "photo_ids": ["p1", "p2"], "observed_at": NOW - timedelta(hours=1), "patrol_id": None}
    return fields | overrides


def invalid_fields_of(call) -> dict:
    with pytest.raises(InvalidFields) as caught:
        call()
    return caught.value.errors


def a_report(status: str = domain.SUBMITTED, **overrides) -> dict:
    report = new_report("r1", "volunteer-1", report_fields(), a_grid(), duplicate_of=None, now=NOW)
    report["status"] = status
    return report | overrides


def step(action: str, event_id: str = "e1", at: datetime = NOW + timedelta(hours=1),
         department: str | None = "sanitation", **data) -> CaseStep:
    return CaseStep(event_id=event_id, action=action, department=department, occurred_at=at,
                    data={"case_id": "c1", **data})


def applied(report: dict, changes: dict) -> dict:
    return report | changes


# --- GridMap.locate ---------------------------------------------------------------------------

@pytest.mark.parametrize("lat, lng, grid_id", [
    (35.06, 118.315, "lanshan-01"),
    (35.06, 118.345, "lanshan-02"),
    (35.10, 118.315, "lanshan-03"),
    (35.10, 118.345, "lanshan-04"),
    (35.06, 118.395, "hedong-01"),
    (35.10, 118.425, "hedong-04"),
])
def test_locate_finds_the_grid_cell_holding_the_point(grid_map, lat, lng, grid_id):
    assert grid_map.locate(lat, lng).id == grid_id


def test_locate_returns_the_cells_district(grid_map):
    grid = grid_map.locate(35.06, 118.425)
    assert (grid.id, grid.district) == ("hedong-02", "hedong")


def test_locate_returns_none_in_the_gap_between_districts(grid_map):
    assert grid_map.locate(35.06, 118.37) is None


def test_locate_returns_none_far_away(grid_map):
    assert grid_map.locate(39.9, 116.4) is None


def test_locate_uses_the_polygon_not_its_bounding_box(grid_map):
    # lanshan-01's southern edge dips from 35.04 to 35.038 at 118.315; near its corner the point is outside.
    assert grid_map.locate(35.0385, 118.302) is None
    assert grid_map.locate(35.0385, 118.315).id == "lanshan-01"


# --- distance and the pre-filter box ----------------------------------------------------------

def test_distance_of_a_thousandth_degree_of_latitude_is_about_111_m():
    assert distance_m(35.0, 118.0, 35.001, 118.0) == pytest.approx(111.195, abs=0.01)


def test_distance_shrinks_with_latitude_along_a_parallel():
    assert distance_m(60.0, 118.0, 60.0, 118.001) == pytest.approx(111.195 / 2, abs=0.01)


def test_distance_is_symmetric_and_zero_to_itself():
    there = (35.07, 118.33)
    assert distance_m(*HERE, *there) == distance_m(*there, *HERE)
    assert distance_m(*HERE, *HERE) == 0


@pytest.mark.parametrize("bearing", [0, 90, 180, 270])
def test_box_around_holds_the_points_at_exactly_the_radius(bearing):
    radius = geo.DUPLICATE_RADIUS_M
    lat, lng = destination(*HERE, radius, bearing)
    assert distance_m(*HERE, lat, lng) == pytest.approx(radius, rel=1e-9)
    box = box_around(*HERE, radius)
    eps = 1e-9  # degrees, about 0.1 mm: rounding of the two formulas, nothing more
    assert box.min_lat - eps <= lat <= box.max_lat + eps
    assert box.min_lng - eps <= lng <= box.max_lng + eps


def test_box_around_is_not_much_larger_than_the_circle():
    box = box_around(*HERE, 250)
    assert distance_m(*HERE, box.max_lat, HERE[1]) == pytest.approx(250, rel=1e-6)
    assert distance_m(HERE[0], box.min_lng, HERE[0], HERE[1]) == pytest.approx(250, rel=1e-3)


@pytest.mark.parametrize("latitude", [18.2, 35.06, 45.8, 59.9])
def test_two_points_within_the_radius_always_share_a_neighbourhood_cell(latitude):
    """The rule routing's opening locks rest on, tried on many pairs at the edge of the radius."""
    rng = random.Random(latitude)
    for _ in range(3000):
        here = (latitude + rng.uniform(-0.05, 0.05), 118.3 + rng.uniform(-0.05, 0.05))
        there = destination(*here, rng.uniform(0.9, 1.0) * geo.DUPLICATE_RADIUS_M, rng.uniform(0, 360))
        assert set(geo.neighbourhood_cells(*here)) & set(geo.neighbourhood_cells(*there)), (here, there)


@pytest.mark.parametrize("latitude", [-33.9, 18.2, 35.06, 45.8, 59.9])
def test_a_point_within_the_radius_always_lies_in_a_cell_around_another(latitude):
    """The rule every nearby lookup rests on, tried on many pairs at the edge of the radius."""
    rng = random.Random(latitude)
    for _ in range(3000):
        here = (latitude + rng.uniform(-0.05, 0.05), 118.3 + rng.uniform(-0.05, 0.05))
        there = destination(*here, rng.uniform(0.9, 1.0) * geo.DUPLICATE_RADIUS_M, rng.uniform(0, 360))
        assert geo.cell_of(*there) in geo.cells_around(*here), (here, there)


def test_the_cells_around_a_point_reach_not_much_beyond_the_radius():
    """Nearby lookups read few candidates: nothing 1 km away, in any direction."""
    for bearing in range(0, 360, 15):
        assert geo.cell_of(*destination(*HERE, 1_000, bearing)) not in geo.cells_around(*HERE)


def test_points_far_apart_share_no_neighbourhood_cell():
    """Cells are small enough that distant reports never wait for each other."""
    there = destination(*HERE, 2_000, 45)
    assert not set(geo.neighbourhood_cells(*HERE)) & set(geo.neighbourhood_cells(*there))


# --- likely duplicates ------------------------------------------------------------------------

def test_an_open_report_within_250_m_is_the_likely_duplicate():
    assert likely_duplicate(*HERE, [candidate("near", north_of(*HERE, 249))]) == "near"


def test_an_open_report_260_m_away_is_not_a_duplicate():
    assert likely_duplicate(*HERE, [candidate("far", north_of(*HERE, 260))]) is None


@pytest.mark.parametrize("status", [domain.CLOSED, domain.REJECTED, domain.DUPLICATE])
def test_a_report_no_longer_open_is_never_the_duplicate(status):
    assert likely_duplicate(*HERE, [candidate("old", north_of(*HERE, 10), status)]) is None


@pytest.mark.parametrize("status", [domain.SUBMITTED, domain.IN_PROGRESS, domain.RECTIFIED])
def test_a_report_in_any_open_status_can_be_the_duplicate(status):
    assert likely_duplicate(*HERE, [candidate("open", north_of(*HERE, 10), status)]) == "open"


def test_the_nearest_of_two_open_reports_is_the_duplicate():
    candidates = [candidate("200m", north_of(*HERE, 200)), candidate("50m", north_of(*HERE, 50)),
                  candidate("120m", north_of(*HERE, 120))]
    assert likely_duplicate(*HERE, candidates) == "50m"


def test_a_nearer_closed_report_does_not_hide_an_open_one():
    candidates = [candidate("closed", north_of(*HERE, 5), domain.CLOSED), candidate("open", north_of(*HERE, 100))]
    assert likely_duplicate(*HERE, candidates) == "open"


def test_no_candidates_means_no_duplicate():
    assert likely_duplicate(*HERE, []) is None


# --- checking a new report --------------------------------------------------------------------

GRID = a_grid()


def check(fields: dict | None = None, grid: Grid | None = GRID, not_theirs: tuple[str, ...] = ()):
    return lambda: check_new_report(fields or report_fields(), CATEGORIES, grid, list(not_theirs), NOW)


def test_a_valid_report_passes_the_check():
    check()()  # raises nothing


def test_a_report_observed_just_within_the_clock_skew_passes():
    check(report_fields(observed_at=NOW + timedelta(minutes=4)))()


def test_a_report_without_observed_at_passes():
    check(report_fields(observed_at=None))()


def test_an_unknown_category_is_an_error_on_category():
    errors = invalid_fields_of(check(report_fields(category="noise")))
    assert set(errors) == {"category"}


def test_a_location_outside_every_grid_is_an_error_on_location():
    errors = invalid_fields_of(check(grid=None))
    assert set(errors) == {"location"}


def test_a_photo_the_reporter_did_not_upload_is_an_error_on_photo_ids():
    errors = invalid_fields_of(check(not_theirs=("p2",)))
    assert set(errors) == {"photo_ids"}
    assert "p2" in errors["photo_ids"][0]


def test_a_photo_listed_twice_is_an_error_on_photo_ids():
    errors = invalid_fields_of(check(report_fields(photo_ids=["p1", "p1"])))
    assert set(errors) == {"photo_ids"}
    assert len(errors["photo_ids"]) == 1


def test_an_observation_more_than_5_minutes_in_the_future_is_an_error_on_observed_at():
    errors = invalid_fields_of(check(report_fields(observed_at=NOW + timedelta(minutes=6))))
    assert set(errors) == {"observed_at"}


def test_every_problem_is_reported_at_once():
    fields = report_fields(category="noise", photo_ids=["x", "x"], observed_at=NOW + timedelta(days=1))
    errors = invalid_fields_of(check(fields, grid=None, not_theirs=("x", "x")))
    assert set(errors) == {"category", "location", "photo_ids", "observed_at"}
    assert len(errors["photo_ids"]) == 2  # not yours, and listed twice


# --- a new report -----------------------------------------------------------------------------

def test_a_new_report_is_submitted_with_one_timeline_entry():
    report = new_report("r1", "volunteer-1", report_fields(), a_grid(), duplicate_of=None, now=NOW)
    assert report["status"] == domain.SUBMITTED
    assert len(report["timeline"]) == 1
    assert report["timeline"][0]["status"] == domain.SUBMITTED
    assert report["timeline"][0]["at"] == NOW
    assert report["duplicate_of"] is None
    assert "重复" not in report["timeline"][0]["note"]


def test_a_new_report_takes_grid_and_district_from_the_grid_and_trims_the_description():
    report = new_report("r1", "volunteer-1", report_fields(), a_grid("lanshan-07"), duplicate_of=None, now=NOW)
    assert (report["grid_id"], report["district"]) == ("lanshan-07", "lanshan")
    assert report["description"] == "垃圾堆在路边"
    assert (report["id"], report["reporter_id"], report["submitted_at"]) == ("r1", "volunteer-1", NOW)
    assert report["case_id"] is None and report["applied_events"] == [] and report["case_version"] == 0


def test_a_new_report_without_observed_at_was_observed_when_submitted():
    report = new_report("r1", "volunteer-1", report_fields(observed_at=None), a_grid(), duplicate_of=None, now=NOW)
    assert report["observed_at"] == NOW


def test_a_likely_duplicate_is_linked_and_named_in_the_timeline_note():
    report = new_report("r2", "volunteer-1", report_fields(), a_grid(), duplicate_of="r1", now=NOW)
    assert report["duplicate_of"] == "r1"
    assert report["status"] == domain.SUBMITTED
    assert "r1" in report["timeline"][0]["note"]


# --- case routing keys ------------------------------------------------------------------------

def test_a_case_routing_key_gives_action_and_department():
    assert parse_case_routing_key("case.dispatched.traffic-police") == ("dispatched", "traffic-police")


def test_the_none_department_parses_as_none():
    assert parse_case_routing_key("case.opened.none") == ("opened", None)


def test_a_joined_key_parses_like_the_other_case_actions():
    assert parse_case_routing_key("case.joined.none") == ("joined", None)


def test_a_joined_step_changes_only_the_report_that_joined():
    assert reports_following("joined", {"report_ids": ["r1", "r2", "r3"], "report_id": "r3"}) == ["r3"]


@pytest.mark.parametrize("action", ["opened", "dispatched", "closed"])
def test_every_other_step_changes_every_report_of_the_case(action):
    assert reports_following(action, {"report_ids": ["r1", "r2"], "report_id": "r2"}) == ["r1", "r2"]


@pytest.mark.parametrize("data", [{"report_ids": ["r1", "r2"]}, {"report_ids": ["r1"], "report_id": "r2"},
                                  {"report_ids": ["r1"], "report_id": ["r1"]}, {"report_id": "r1"}])
def test_a_joined_step_that_does_not_name_one_of_its_reports_is_malformed(data):
    with pytest.raises(MalformedEvent):
        reports_following("joined", data)


@pytest.mark.parametrize("key", ["case.dispatched", "case.exploded.sanitation", "report.dispatched.sanitation",
                                 "case.dispatched.sanitation.extra", "", "case"])
def test_a_key_that_is_not_a_case_event_raises_value_error(key):
    with pytest.raises(ValueError):
        parse_case_routing_key(key)


def test_a_key_with_an_empty_department_raises_value_error():
    with pytest.raises(ValueError):
        parse_case_routing_key("case.dispatched.")


# --- the report follows its case --------------------------------------------------------------

EXPECTED_STATUS = {  # None: the status stays as it was
    "opened": None, "joined": None, "dispatched": "in_progress", "accepted": "in_progress", "disputed": "in_progress",
    "rectified": "rectified", "closed": "closed", "reopened": "in_progress", "rejected": "rejected",
    "overdue": None, "extension_requested": None, "extension_decided": None,
}


def test_every_case_action_has_an_expected_status():
    assert set(EXPECTED_STATUS) == set(CASE_ACTION_STATUS)


@pytest.mark.parametrize("action", sorted(EXPECTED_STATUS))
def test_each_case_action_moves_the_report_to_its_status(action):
    report = a_report(domain.SUBMITTED)
    changes = follow_case(report, step(action, reason="invalid"), "环卫处", None, SHANGHAI)
    expected = EXPECTED_STATUS[action]
    if expected is None:
        assert "status" not in changes
    else:
        assert changes["status"] == expected
    entry = changes["timeline"][-1]
    assert entry["status"] == (expected or domain.SUBMITTED)
    assert entry["event"] == f"case.{action}"
    assert entry["note"]
    assert len(changes["timeline"]) == 2
    assert changes["applied_events"] == ["e1"]
    assert changes["case_id"] == "c1"


def test_a_case_rejected_as_duplicate_makes_the_report_duplicate():
    changes = follow_case(a_report(), step("rejected", reason="duplicate"), None, None, SHANGHAI)
    assert changes["status"] == domain.DUPLICATE
    assert "重复上报" in changes["timeline"][-1]["note"]


def test_a_case_rejected_for_another_reason_makes_the_report_rejected():
    changes = follow_case(a_report(), step("rejected", reason="out_of_scope"), None, None, SHANGHAI)
    assert changes["status"] == domain.REJECTED


def test_the_same_event_applied_twice_changes_nothing_the_second_time():
    report = a_report()
    first = follow_case(report, step("dispatched", event_id="e7"), "环卫处", None, SHANGHAI)
    assert first is not None
    assert follow_case(applied(report, first), step("dispatched", event_id="e7"), "环卫处", None, SHANGHAI) is None


def test_an_older_case_version_does_not_change_the_status_but_joins_the_timeline_in_time_order():
    t0 = NOW
    report = a_report(domain.IN_PROGRESS, case_version=2)
    report = applied(report, follow_case(report, step("dispatched", "e2", t0 + timedelta(hours=2), case_version=4),
                                         "环卫处", None, SHANGHAI))
    assert report["case_version"] == 4 and report["status"] == domain.IN_PROGRESS
    report = applied(report, follow_case(report, step("rectified", "e3", t0 + timedelta(hours=5), case_version=5),
                                         "环卫处", None, SHANGHAI))
    late = follow_case(report, step("accepted", "e4", t0 + timedelta(hours=3), case_version=3,
                                    department="urban-management"), "城市管理局", None, SHANGHAI)
    assert "status" not in late
    assert "case_version" not in late
    assert "department" not in late
    assert [e["at"] for e in late["timeline"]] == sorted(e["at"] for e in late["timeline"])
    assert [e.get("event") for e in late["timeline"]] == [None, "case.dispatched", "case.accepted", "case.rectified"]
    assert late["applied_events"] == ["e2", "e3", "e4"]


def test_a_newer_case_version_is_recorded_and_moves_the_status():
    report = a_report(domain.IN_PROGRESS, case_version=3)
    changes = follow_case(report, step("rectified", case_version=4), None, None, SHANGHAI)
    assert (changes["status"], changes["case_version"]) == (domain.RECTIFIED, 4)


def test_without_a_case_version_steps_apply_in_arrival_order():
    report = a_report(domain.RECTIFIED, case_version=3)
    changes = follow_case(report, step("closed"), None, None, SHANGHAI)
    assert changes["status"] == domain.CLOSED
    assert "case_version" not in changes


def test_a_dispatch_records_the_department():
    changes = follow_case(a_report(), step("dispatched", department="traffic-police"), "交警支队", None, SHANGHAI)
    assert changes["department"] == "traffic-police"


def test_a_dispute_clears_the_department():
    report = a_report(domain.IN_PROGRESS, department="sanitation")
    changes = follow_case(report, step("disputed", department=None), None, None, SHANGHAI)
    assert changes["department"] is None


def test_rectified_sets_the_after_photos():
    changes = follow_case(a_report(domain.IN_PROGRESS), step("rectified", after_photo_ids=["a1", "a2"], note="已清理"),
                          "环卫处", None, SHANGHAI)
    assert changes["after_photo_ids"] == ["a1", "a2"]
    assert "已清理" in changes["timeline"][-1]["note"]


def test_closed_sets_closed_at_to_when_the_case_closed():
    closed_at = NOW + timedelta(days=1)
    changes = follow_case(a_report(domain.RECTIFIED), step("closed", at=closed_at), None, None, SHANGHAI)
    assert changes["closed_at"] == closed_at


def test_reopened_clears_closed_at():
    report = a_report(domain.CLOSED, closed_at=NOW)
    changes = follow_case(report, step("reopened", at=NOW + timedelta(hours=2)), None, None, SHANGHAI)
    assert (changes["status"], changes["closed_at"]) == (domain.IN_PROGRESS, None)


def test_the_dispatch_note_names_the_department_and_the_local_due_time():
    due_at = datetime(2026, 11, 19, 4, 30, tzinfo=UTC)  # 12:30 in Asia/Shanghai
    changes = follow_case(a_report(), step("dispatched"), "环卫处", due_at, SHANGHAI)
    note = changes["timeline"][-1]["note"]
    assert "环卫处" in note
    assert "2026-11-19 12:30" in note


def test_the_dispatch_note_gives_the_due_time_in_the_citys_own_time_zone():
    due_at = datetime(2026, 11, 19, 4, 30, tzinfo=UTC)
    note = follow_case(a_report(), step("dispatched"), "环卫处", due_at, URUMQI)["timeline"][-1]["note"]
    assert "2026-11-19 10:30" in note


# --- weeks ------------------------------------------------------------------------------------

def test_week_parse_starts_on_monday_midnight_in_shanghai():
    week = Week.parse("2026-W47", SHANGHAI)
    assert week.start == datetime(2026, 11, 15, 16, 0, tzinfo=UTC)
    assert week.start.astimezone(SHANGHAI).weekday() == 0
    assert week.end == week.start + timedelta(days=7)
    assert week.label == "2026-W47"


def test_week_parse_accepts_a_lower_case_w_and_the_53rd_week_of_a_long_year():
    assert Week.parse("2026-w47", SHANGHAI) == Week(2026, 47, SHANGHAI)
    assert Week.parse("2026-W53", SHANGHAI) == Week(2026, 53, SHANGHAI)  # 2026 starts on a Thursday: 53 ISO weeks


@pytest.mark.parametrize("text", ["2026-W60", "2025-W53", "2026-W00", "nonsense", "2026-47", "", "2026-W", "W47"])
def test_week_parse_refuses_what_is_not_an_iso_week(text):
    errors = invalid_fields_of(lambda: Week.parse(text, SHANGHAI))
    assert set(errors) == {"week"}


@pytest.mark.parametrize("text", ["0001-W01", "9999-W52"])
def test_week_parse_refuses_weeks_at_the_edge_of_the_calendar(text):
    with pytest.raises(InvalidFields):
        Week.parse(text, SHANGHAI)


def test_a_moment_late_sunday_utc_but_monday_in_shanghai_belongs_to_the_next_week():
    sunday_utc = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # Monday 01:00 in Shanghai
    assert Week.containing(sunday_utc, SHANGHAI) == Week(2026, 48, SHANGHAI)


def test_a_moment_just_before_monday_in_shanghai_belongs_to_the_week_ending():
    assert Week.containing(datetime(2026, 11, 22, 15, 59, tzinfo=UTC), SHANGHAI) == Week(2026, 47, SHANGHAI)


def test_a_city_in_another_time_zone_has_its_own_week_boundaries():
    week = Week.parse("2026-W47", URUMQI)
    assert week.start == datetime(2026, 11, 15, 18, 0, tzinfo=UTC)  # Monday 00:00 in Urumqi
    assert week.start.astimezone(URUMQI).weekday() == 0
    assert week != Week.parse("2026-W47", SHANGHAI)
    sunday_night = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # Monday 01:00 in Shanghai, Sunday 23:00 in Urumqi
    assert Week.containing(sunday_night, URUMQI) == week
    assert Week.containing(sunday_night, SHANGHAI) == Week(2026, 48, SHANGHAI)


def test_week_containing_its_own_start_is_that_week():
    week = Week.parse("2026-W47", SHANGHAI)
    assert Week.containing(week.start, SHANGHAI) == week
    assert Week.containing(week.end, SHANGHAI) == Week(2026, 48, SHANGHAI)


# --- the weekly summary -----------------------------------------------------------------------

WEEK = Week(2026, 47, SHANGHAI)  # 2026-11-15T16:00Z .. 2026-11-22T16:00Z


def week_report(report_id: str, submitted_at: datetime, status: str = domain.SUBMITTED,
                category: str = "env.garbage", closed_at: datetime | None = None) -> dict:
    return {"id": report_id, "category": category, "status": status, "submitted_at": submitted_at,
            "closed_at": closed_at}


def test_weekly_summary_counts_by_category_and_status_only_the_weeks_reports():
    in_week = WEEK.start + timedelta(days=1)
    reports = [
        week_report("a", in_week, domain.SUBMITTED),
        week_report("b", in_week + timedelta(hours=1), domain.CLOSED, closed_at=in_week + timedelta(hours=5)),
        week_report("c", in_week + timedelta(minutes=30), domain.IN_PROGRESS, category="traffic.parking"),
        week_report("older", WEEK.start - timedelta(seconds=1), domain.SUBMITTED),
    ]
    summary = weekly_summary(a_grid(), WEEK, reports, CATEGORIES)
    assert summary["submitted"] == 3
    assert summary["by_status"] == {"submitted": 1, "in_progress": 1, "rectified": 0, "closed": 1,
                                    "rejected": 0, "duplicate": 0}
    rows = {row["category"]: row for row in summary["by_category"]}
    assert list(rows) == ["env.garbage", "traffic.parking"]
    assert (rows["env.garbage"]["submitted"], rows["env.garbage"]["closed"], rows["env.garbage"]["total"]) == (1, 1, 2)
    assert (rows["traffic.parking"]["in_progress"], rows["traffic.parking"]["total"]) == (1, 1)
    assert rows["env.garbage"]["category_name"] == CATEGORIES["env.garbage"].name_zh
    assert [r["id"] for r in summary["reports"]] == ["a", "c", "b"]  # by submission time


def test_weekly_summary_lists_open_reports_including_older_ones():
    reports = [week_report("old-open", WEEK.start - timedelta(days=30), domain.RECTIFIED),
               week_report("new-open", WEEK.start + timedelta(days=2), domain.IN_PROGRESS),
               week_report("rejected", WEEK.start + timedelta(days=1), domain.REJECTED)]
    summary = weekly_summary(a_grid(), WEEK, reports, CATEGORIES)
    assert [r["id"] for r in summary["open"]] == ["old-open", "new-open"]


def test_weekly_summary_lists_as_fixed_only_reports_closed_within_the_week():
    reports = [
        week_report("fixed", WEEK.start - timedelta(days=3), domain.CLOSED, closed_at=WEEK.start + timedelta(days=1)),
        week_report("fixed-last-week", WEEK.start - timedelta(days=9), domain.CLOSED,
                    closed_at=WEEK.start - timedelta(seconds=1)),
        week_report("fixed-next-week", WEEK.start + timedelta(days=6), domain.CLOSED, closed_at=WEEK.end),
    ]
    summary = weekly_summary(a_grid(), WEEK, reports, CATEGORIES)
    assert [r["id"] for r in summary["fixed"]] == ["fixed"]


def test_weekly_summary_describes_the_grid_and_the_week():
    summary = weekly_summary(a_grid(), WEEK, [], CATEGORIES)
    assert (summary["grid_id"], summary["district"], summary["week"]) == ("lanshan-01", "lanshan", "2026-W47")
    assert (summary["from"], summary["to"]) == (WEEK.start, WEEK.end)
    assert summary["submitted"] == 0 and summary["by_category"] == [] and summary["open"] == []
    assert set(summary["by_status"].values()) == {0}


def test_weekly_summary_totals_match_the_reports_of_the_week():
    reports = [week_report(str(i), WEEK.start + timedelta(hours=i), status)
               for i, status in enumerate([domain.SUBMITTED, domain.CLOSED, domain.CLOSED, domain.DUPLICATE])]
    summary = weekly_summary(a_grid(), WEEK, reports, CATEGORIES)
    assert summary["submitted"] == len(summary["reports"]) == 4
    assert sum(summary["by_status"].values()) == 4
    assert sum(row["total"] for row in summary["by_category"]) == 4


@pytest.mark.parametrize("case_status, report_status", [
    ("pending_triage", domain.SUBMITTED), ("dispatched", domain.IN_PROGRESS), ("accepted", domain.IN_PROGRESS),
    ("rectified", domain.RECTIFIED), ("closed", domain.CLOSED)])
def test_a_report_joining_a_case_under_way_takes_up_its_status(case_status, report_status):
    changes = follow_case(a_report(domain.SUBMITTED), step("joined", status=case_status, report_id="r1"),
                          department_name=None, due_at=None, zone=SHANGHAI)
    assert changes.get("status", domain.SUBMITTED) == report_status
    assert changes["timeline"][-1]["note"] == "已并入同一问题的案卷"


def test_the_opened_step_of_a_new_case_reads_as_opened_to_its_reporter():
    changes = follow_case(a_report(domain.SUBMITTED), step("opened", status="pending_triage"),
                          department_name=None, due_at=None, zone=SHANGHAI)
    assert changes["timeline"][-1]["note"] == "已立案"


def test_a_new_case_opened_and_dispatched_at_once_leaves_the_opened_step_submitted():
    changes = follow_case(a_report(domain.SUBMITTED), step("opened", status="dispatched"),
                          department_name=None, due_at=None, zone=SHANGHAI)
    assert changes.get("status", domain.SUBMITTED) == domain.SUBMITTED


def test_events_of_one_routing_step_share_a_version_and_both_apply():
    report = a_report(domain.SUBMITTED)
    opened = follow_case(report, step("opened", "e1", case_version=1), department_name=None, due_at=None,
                         zone=SHANGHAI)
    dispatched = follow_case(applied(report, opened), step("dispatched", "e2", case_version=1),
                             department_name="交警支队", due_at=None, zone=SHANGHAI)
    assert dispatched["status"] == domain.IN_PROGRESS


# --- a case merged into another ---------------------------------------------------------------

def merged_join(event_id: str = "e9", case_version: int = 2, status: str = "dispatched") -> CaseStep:
    return CaseStep(event_id=event_id, action="joined", department="sanitation", occurred_at=NOW + timedelta(hours=2),
                    data={"case_id": "c9", "report_ids": ["r0", "r1"], "report_id": "r1", "merged_from": "c1",
                          "status": status, "case_version": case_version})


def follow(report: dict, case_step: CaseStep) -> dict | None:
    return follow_case(report, case_step, department_name="环卫处", due_at=None, zone=SHANGHAI)


def test_the_end_of_a_merged_case_changes_none_of_its_reports():
    assert reports_following("rejected", {"report_ids": ["r1"], "reason": "duplicate", "merged_into": "c9"}) == []
    assert reports_following("rejected", {"report_ids": ["r1"], "reason": "duplicate"}) == ["r1"]


def test_a_report_merged_into_another_case_follows_it_whatever_the_versions():
    report = a_report(domain.IN_PROGRESS, case_id="c1", case_version=7)
    changes = follow(report, merged_join(case_version=2, status="pending_triage"))
    assert (changes["case_id"], changes["case_version"], changes["status"]) == ("c9", 2, domain.SUBMITTED)
    assert changes["left_cases"] == ["c1"]
    assert "c1" in changes["timeline"][-1]["note"] and "c9" in changes["timeline"][-1]["note"]
    moved = applied(report, changes)
    later = follow(moved, CaseStep(event_id="e10", action="accepted", department="sanitation",
                                   occurred_at=NOW + timedelta(hours=3), data={"case_id": "c9", "case_version": 3,
                                                                              "report_ids": ["r0", "r1"]}))
    assert later["status"] == domain.IN_PROGRESS


def test_a_late_step_of_the_case_a_report_left_and_a_redelivered_merge_change_nothing():
    moved = applied(a_report(domain.IN_PROGRESS, case_id="c1", case_version=7), follow(
        a_report(domain.IN_PROGRESS, case_id="c1", case_version=7), merged_join()))
    assert follow(moved, step("accepted", "e-late", case_version=8)) is None  # c1's, delivered late
    assert follow(moved, merged_join()) is None
