"""The map's points through HTTP: open cases in a box, as far as the caller may see, bounded and filtered."""
from datetime import datetime, timedelta

import pytest

from tests.conftest import bearer, run_service, settings_for_test
from tests.service.test_routing import OFFICE, POLICE, SANITATION, act, case_for, fresh_spot, report

MARGIN = 0.0005


@pytest.fixture(scope="module")
def city(amqp_url, mongo_url):
    intake = run_service(settings_for_test("intake", amqp_url, mongo_url))
    routing = run_service(settings_for_test("routing", amqp_url, mongo_url))
    yield intake, routing
    routing.stop()
    intake.stop()


def box_around(*spots: tuple[float, float]) -> str:
    lats, lngs = [lat for lat, _ in spots], [lng for _, lng in spots]
    return f"{min(lngs) - MARGIN},{min(lats) - MARGIN},{max(lngs) + MARGIN},{max(lats) + MARGIN}"


def points(city, headers: dict, **query) -> dict:
    _, routing = city
    response = routing.client.get("/v1/cases/points", headers=headers, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture(scope="module")
def two_cases(city):
    """A traffic police case and a sanitation case, each at a spot of its own; and a box holding both."""
    spots = [fresh_spot(), fresh_spot()]
    parking = case_for(city, report(city, "traffic.parking", *spots[0])["id"])
    garbage = case_for(city, report(city, "env.garbage", *spots[1])["id"])
    return parking, garbage, box_around(*spots)


def test_the_office_sees_every_open_case_in_the_box_as_a_light_point(city, two_cases):
    parking, garbage, box = two_cases
    answer = points(city, OFFICE, bbox=box)
    assert answer["truncated"] is False
    assert {p["id"] for p in answer["items"]} == {parking["id"], garbage["id"]}
    point = next(p for p in answer["items"] if p["id"] == parking["id"])
    assert point == {"id": parking["id"], "lat": parking["location"]["lat"], "lng": parking["location"]["lng"],
                     "status": "dispatched", "category": "traffic.parking", "department": "traffic-police",
                     "grid_id": parking["grid_id"], "due_at": parking["due_at"], "overdue": False,
                     "due_soon": True, "deadline": "due_soon"}  # 24 calendar hours are within 24 working hours
    counted = {row["grid_id"]: row["count"] for row in answer["grid_counts"]}
    assert sum(counted.values()) == 2 and parking["grid_id"] in counted


def test_a_department_sees_only_its_own_cases_points(city, two_cases):
    parking, garbage, box = two_cases
    assert [p["id"] for p in points(city, POLICE, bbox=box)["items"]] == [parking["id"]]
    assert [p["id"] for p in points(city, SANITATION, bbox=box)["items"]] == [garbage["id"]]
    # Asking for another department's cases by name yields nothing, not theirs.
    assert points(city, POLICE, bbox=box, department="sanitation")["items"] == []
    assert points(city, bearer("department", dept="market-regulation"), bbox=box)["items"] == []


def test_a_grid_leader_sees_only_the_grids_points(city, two_cases):
    parking, garbage, box = two_cases
    leader = bearer("grid_leader", grid=parking["grid_id"])
    shown = {p["id"] for p in points(city, leader, bbox=box)["items"]}
    assert parking["id"] in shown
    assert (garbage["id"] in shown) == (garbage["grid_id"] == parking["grid_id"])


def test_filters_narrow_the_points(city, two_cases):
    parking, garbage, box = two_cases
    assert [p["id"] for p in points(city, OFFICE, bbox=box, category="env.garbage")["items"]] == [garbage["id"]]
    assert [p["id"] for p in points(city, OFFICE, bbox=box, department="traffic-police")["items"]] == [parking["id"]]
    assert parking["id"] in {p["id"] for p in points(city, OFFICE, bbox=box, grid_id=parking["grid_id"])["items"]}
    assert points(city, OFFICE, bbox=box, status="accepted")["items"] == []
    assert points(city, OFFICE, bbox=box, to="2020-01-01T00:00:00Z")["items"] == []
    assert len(points(city, OFFICE, bbox=box, **{"from": "2020-01-01T00:00:00Z"})["items"]) == 2


def test_a_box_elsewhere_holds_none_of_them(city, two_cases):
    answer = points(city, OFFICE, bbox="100.0,20.0,100.5,20.5")
    assert answer == {"items": [], "truncated": False, "grid_counts": [], "due_soon_before": answer["due_soon_before"]}


def test_more_points_than_the_limit_are_cut_and_said_to_be(city, two_cases):
    answer = points(city, OFFICE, bbox=two_cases[2], limit=1)
    assert len(answer["items"]) == 1 and answer["truncated"] is True


def test_closed_cases_are_left_out_unless_asked_for_over_a_period(city):
    spot = fresh_spot()
    case = case_for(city, report(city, "traffic.parking", *spot)["id"])
    assert act(city, case["id"], "reject", OFFICE, {"reason": "invalid"}).status_code == 200
    box = box_around(spot)
    assert points(city, OFFICE, bbox=box)["items"] == []
    opened = datetime.fromisoformat(case["opened_at"].replace("Z", "+00:00"))
    period = {"from": (opened - timedelta(hours=1)).isoformat(), "to": (opened + timedelta(hours=1)).isoformat()}
    assert [p["id"] for p in points(city, OFFICE, bbox=box, status="rejected", **period)["items"]] == [case["id"]]
    assert points(city, OFFICE, bbox=box, status="rejected", **{"from": "2000-01-01T00:00:00Z"},
                  to="2000-02-01T00:00:00Z")["items"] == []


@pytest.mark.parametrize("bbox", [
    "118.2,35.0,118.4",                 # three numbers
    "118.2,35.0,118.4,35.2,1",          # five
    "east,35.0,118.4,35.2",
    "118.4,35.0,118.2,35.2",            # min above max
    "118.2,35.2,118.4,35.0",
    "118.2,35.0,118.2,35.2",            # no width
    "118.2,95.0,118.4,96.0",            # no such latitude
    "181.0,35.0,182.0,35.2",            # no such longitude
    "116.0,35.0,119.0,35.2",            # wider than the bound
    "118.2,33.0,118.4,35.5",            # higher than it
    "1e2,35.0,118.4,35.2",
    "",
])
def test_a_box_that_is_not_a_bounded_box_is_refused(city, bbox):
    _, routing = city
    response = routing.client.get("/v1/cases/points", headers=OFFICE, query_string={"bbox": bbox})
    assert response.status_code == 422
    assert response.content_type == "application/problem+json" and "bbox" in response.json["errors"]


@pytest.mark.parametrize("query", [{}, {"limit": 0}, {"limit": 10_001}, {"status": "lost"}, {"status": "closed"},
                                   {"status": "closed", "from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
                                   {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}])
def test_other_unbounded_or_invalid_queries_are_refused(city, query):
    _, routing = city
    response = routing.client.get("/v1/cases/points", headers=OFFICE,
                                  query_string={"bbox": "118.2,35.0,118.4,35.2", **query} if query else {})
    assert response.status_code == 422, response.json


def test_volunteers_get_no_points(city):
    _, routing = city
    response = routing.client.get("/v1/cases/points", headers=bearer("volunteer"),
                                  query_string={"bbox": "118.2,35.0,118.4,35.2"})
    assert response.status_code == 403
