"""Routing's SLA board (GET /v1/cases/sla) and monthly league tables (GET /v1/stats/*/monthly) through HTTP, with
reports submitted to intake and routed over the real broker."""
from datetime import UTC, datetime

from tests.conftest import bearer
from tests.service.test_routing import OFFICE, POLICE, SANITATION, act, city, new_case  # noqa: F401  (city: fixture)
from tests.support import wait_for


def board(city, headers: dict, query: str = "") -> dict:  # noqa: F811
    answer = city[1].client.get(f"/v1/cases/sla{query}", headers=headers)
    assert answer.status_code == 200, answer.json
    return answer.json


def listed(answer: dict, department: str) -> dict[str, dict]:
    row = next(r for r in answer["departments"] if r["department"] == department)
    return {c["id"]: c for c in row["cases"]}


def test_the_office_sees_a_case_due_soon_and_one_overdue_under_their_department(city):  # noqa: F811
    _, soon = new_case(city)  # the traffic police's rule: 24 calendar hours
    _, late = new_case(city)
    act(city, late["id"], "dispatch", OFFICE, {"department": "traffic-police", "deadline_hours": 0.0001})

    def both_shown() -> dict | None:
        cases = listed(board(city, OFFICE, "?limit=100"), "traffic-police")
        shown = cases.get(soon["id"]), cases.get(late["id"])
        return shown if all(shown) and shown[1]["standing"] == "overdue" else None

    due_soon, overdue = wait_for(both_shown, what="both cases on the board")
    assert due_soon["standing"] == "due_soon" and 23 < due_soon["hours_left"] <= 24
    assert due_soon["hours_overdue"] is None and due_soon["basis"] == "calendar"
    assert overdue["hours_overdue"] >= 0 and overdue["hours_left"] is None
    assert overdue["escalation_level"] == 0 and overdue["grid_id"] == late["grid_id"]
    answer = board(city, OFFICE)
    row = next(r for r in answer["departments"] if r["department"] == "traffic-police")
    assert row["department_name"] and row["overdue"] >= 1 and row["due_soon"] >= 1
    assert answer["within_hours"] == 24
    assert {r["department"] for r in answer["departments"]} >= {"traffic-police", "sanitation"}


def test_a_case_beyond_the_window_is_not_on_the_board(city):  # noqa: F811
    _, case = new_case(city)
    act(city, case["id"], "dispatch", OFFICE, {"department": "sanitation", "deadline_hours": 100})
    assert case["id"] not in listed(board(city, OFFICE, "?department=sanitation&limit=100"), "sanitation")
    assert case["id"] in listed(board(city, OFFICE, "?department=sanitation&limit=100&within_hours=168"),
                                "sanitation")


def test_a_department_sees_its_own_row_only(city):  # noqa: F811
    _, case = new_case(city)
    answer = board(city, POLICE, "?limit=100")
    assert [r["department"] for r in answer["departments"]] == ["traffic-police"]
    assert case["id"] in listed(answer, "traffic-police")
    assert [r["department"] for r in board(city, SANITATION)["departments"]] == ["sanitation"]
    refused = city[1].client.get("/v1/cases/sla?department=sanitation", headers=POLICE)
    assert refused.status_code == 403 and refused.headers["Content-Type"] == "application/problem+json"


def test_a_grid_leader_sees_the_grids_cases_only(city):  # noqa: F811
    _, case = new_case(city)
    theirs = bearer("grid_leader", grid=case["grid_id"])
    elsewhere = bearer("grid_leader", grid="no-such-grid")
    assert case["id"] in listed(board(city, theirs, "?limit=100"), "traffic-police")
    assert all(not row["cases"] and row["overdue"] == row["due_soon"] == 0
               for row in board(city, elsewhere)["departments"])


def test_every_parameter_is_bounded(city):  # noqa: F811
    client = city[1].client
    for query in ("within_hours=0", "within_hours=169", "limit=0", "limit=101", "department=nope",
                  "within_hours=soon"):
        answer = client.get(f"/v1/cases/sla?{query}", headers=OFFICE)
        assert answer.status_code == 422, query
        assert answer.headers["Content-Type"] == "application/problem+json"
    assert client.get("/v1/cases/sla", headers=bearer("volunteer")).status_code == 403


def test_the_monthly_league_tables_give_one_table_a_month(city):  # noqa: F811
    client = city[1].client
    this_month = datetime.now(UTC).strftime("%Y-%m")
    first = f"{int(this_month[:4]) - 1}{this_month[4:]}"
    answer = client.get(f"/v1/stats/departments/monthly?from_month={first}&to_month={this_month}", headers=OFFICE)
    assert answer.status_code == 422  # thirteen months
    answer = client.get(f"/v1/stats/departments/monthly?from_month={this_month}&to_month={this_month}",
                        headers=OFFICE)
    assert answer.status_code == 200, answer.json
    assert [m["month"] for m in answer.json["months"]] == [this_month]
    assert {r["department"] for r in answer.json["months"][0]["items"]} >= {"traffic-police", "sanitation"}
    grids = client.get("/v1/stats/grids/monthly?from_month=2026-01&to_month=2026-03", headers=OFFICE)
    assert [m["month"] for m in grids.json["months"]] == ["2026-01", "2026-02", "2026-03"]
    assert {r["grid_id"] for r in grids.json["months"][0]["items"]} >= {"lanshan-01"}
    assert client.get("/v1/stats/grids/monthly?from_month=2026-03&to_month=2026-01",
                      headers=OFFICE).status_code == 422
    assert client.get("/v1/stats/departments/monthly?from_month=2026-01&to_month=2026-01",
                      headers=POLICE).status_code == 403
