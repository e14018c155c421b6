"""Routing through HTTP with the real broker, beside intake: every report becomes a case that the
right department must close on time, and the report follows it."""
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from openpyxl import load_workbook

from services.routing.deadlines import OverdueWatch
from services.routing.domain import Rule
from services.routing.store import RULES_MAX_AGE_S
from shared import reference
from tests.conftest import bearer, run_service, settings_for_test
from tests.service.conftest import upload_photo
from tests.support import wait_for

OFFICE = bearer("office", "office-1")
POLICE = bearer("department", "police-1", dept="traffic-police")
SANITATION = bearer("department", "san-1", dept="sanitation")


@pytest.fixture(scope="module")
def city(amqp_url, mongo_url):
    intake = run_service(settings_for_test("intake", amqp_url, mongo_url))
    routing = run_service(settings_for_test("routing", amqp_url, mongo_url))
    yield intake, routing
    routing.stop()
    intake.stop()


@pytest.fixture
def police_tap(subscribe):
    """The traffic police's own system, bound to its cases."""
    return subscribe("case.*.traffic-police")


LAT, LNG = 35.0600, 118.3150


def report(city, category="traffic.parking", lat=LAT, lng=LNG, who=None) -> dict:
    intake, _ = city
    volunteer = who or bearer("volunteer")
    photo = upload_photo(intake.client, volunteer)["id"]
    response = intake.client.post("/v1/reports", headers=volunteer, json={
        "category": category, "description": "路口乱停车辆堵塞通道", "location": {"lat": lat, "lng": lng},
        "photo_ids": [photo]})
    assert response.status_code == 201, response.json
    return response.json


def _spots_far_apart() -> list[tuple[float, float]]:
    """Lattice points 0.003° apart (over 270 m, beyond the 250 m within which reports are one problem)
    that lie in the city's grid cells."""
    from services.intake.domain import GridMap
    from shared import reference
    from shared.geo import distance_m

    grids = GridMap(reference.load(None).grids)
    points = [(round(35.001 + 0.003 * row, 6), round(118.251 + 0.003 * column, 6))
              for row in range(60) for column in range(80)]
    # Not near the point the tests that name no spot report at (LAT, LNG).
    return [point for point in points if grids.locate(*point) is not None and distance_m(*point, LAT, LNG) > 600]


_spread = iter(_spots_far_apart())


def fresh_spot() -> tuple[float, float]:
    """A point far (> 250 m) from every other test's, so reports do not join each other's cases."""
    return next(_spread)


def case_for(city, report_id: str) -> dict:
    _, routing = city

    def found():
        items = routing.client.get("/v1/cases?limit=200", headers=OFFICE).json["items"]
        return next((c for c in items if report_id in c["report_ids"]), None)

    return wait_for(found, what=f"a case for report {report_id}")


def act(city, case_id: str, action: str, headers: dict, body: dict | None = None):
    _, routing = city
    return routing.client.post(f"/v1/cases/{case_id}/{action}", headers=headers, json=body or {})


def report_status(city, report_id: str) -> str:
    intake, _ = city
    return intake.client.get(f"/v1/reports/{report_id}", headers=OFFICE).json["status"]


def new_case(city, category="traffic.parking") -> tuple[dict, dict]:
    lat, lng = fresh_spot()
    submitted = report(city, category, lat, lng)
    return submitted, case_for(city, submitted["id"])


def test_a_report_becomes_a_dispatched_case_the_department_receives(city, police_tap):
    submitted, case = new_case(city)
    assert case["status"] == "dispatched" and case["department"] == "traffic-police"
    assert case["category"] == "traffic.parking" and case["grid_id"] == submitted["grid_id"]
    due = datetime.fromisoformat(case["due_at"].replace("Z", "+00:00"))
    opened = datetime.fromisoformat(case["opened_at"].replace("Z", "+00:00"))
    assert due - opened == timedelta(hours=24)
    received = wait_for(lambda: police_tap.events("case.dispatched.traffic-police",
                                                  lambda e: e["data"]["case_id"] == case["id"]),
                        what="case.dispatched at the department's subscriber")
    data = received[0]["data"]
    for field in ("case_id", "report_ids", "category", "department", "status", "due_at", "grid_id", "location",
                  "description", "photo_ids"):
        assert field in data, field
    assert data["report_ids"] == [submitted["id"]] and data["photo_ids"] == submitted["photo_ids"]
    wait_for(lambda: report_status(city, submitted["id"]) == "in_progress", what="the report in progress")


def test_the_whole_loop_closes_the_case_and_the_report(city):
    submitted, case = new_case(city)
    assert act(city, case["id"], "accept", POLICE).json["status"] == "accepted"
    after = upload_photo(city[0].client, POLICE)["id"]
    rectified = act(city, case["id"], "rectify", POLICE, {"note": "已拖移违停车辆", "photo_ids": [after]})
    assert rectified.status_code == 200 and rectified.json["after_photo_ids"] == [after]
    closed = act(city, case["id"], "verify", OFFICE, {"passed": True, "note": "现场核查已整改"})
    assert closed.json["status"] == "closed" and closed.json["closed_at"]
    wait_for(lambda: report_status(city, submitted["id"]) == "closed", what="the report closed")
    timeline = city[0].client.get(f"/v1/reports/{submitted['id']}", headers=OFFICE).json["timeline"]
    assert [s["status"] for s in timeline][-3:] == ["in_progress", "rectified", "closed"]
    assert [h["action"] for h in closed.json["history"]] == ["opened", "dispatched", "accepted", "rectified",
                                                              "verified_passed"]


def test_a_dispute_goes_back_to_triage_and_the_office_dispatches_elsewhere(city):
    _, case = new_case(city)
    disputed = act(city, case["id"], "dispute", POLICE, {"reason": "属于环卫职责"})
    assert disputed.json["status"] == "pending_triage" and disputed.json["department"] is None
    assert city[1].client.get(f"/v1/cases/{case['id']}", headers=POLICE).status_code == 404
    dispatched = act(city, case["id"], "dispatch", OFFICE, {"department": "sanitation", "deadline_hours": 12})
    assert dispatched.json["status"] == "dispatched" and dispatched.json["department"] == "sanitation"
    assert city[1].client.get(f"/v1/cases/{case['id']}", headers=SANITATION).status_code == 200


def test_a_failed_verification_sends_the_case_back_for_rework(city):
    _, case = new_case(city)
    act(city, case["id"], "accept", POLICE)
    photo = upload_photo(city[0].client, POLICE)["id"]
    act(city, case["id"], "rectify", POLICE, {"note": "已处理", "photo_ids": [photo]})
    failed = act(city, case["id"], "verify", OFFICE, {"passed": False, "note": "车辆仍在", "deadline_hours": 6})
    assert failed.json["status"] == "accepted" and failed.json["rework_count"] == 1
    due = datetime.fromisoformat(failed.json["due_at"].replace("Z", "+00:00"))
    assert timedelta(hours=5.9) < due - datetime.now(UTC) <= timedelta(hours=6)


@pytest.mark.parametrize("action, headers, body", [
    ("rectify", POLICE, {"note": "已处理", "photo_ids": ["k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Ha"]}),  # not accepted
    ("verify", OFFICE, {"passed": True, "note": "ok"}),          # not rectified yet
    ("extension/decision", OFFICE, {"approved": True}),          # nothing asked
])
def test_a_command_the_state_does_not_allow_is_409(city, action, headers, body):
    _, case = new_case(city)
    response = act(city, case["id"], action, headers, body)
    assert response.status_code == 409 and response.mimetype == "application/problem+json"


def test_concurrent_accepts_cannot_both_win(city):
    _, case = new_case(city)
    assert act(city, case["id"], "accept", POLICE).status_code == 200
    assert act(city, case["id"], "accept", POLICE).status_code == 409


def test_a_department_cannot_see_or_act_on_another_departments_case(city):
    _, case = new_case(city)
    assert city[1].client.get(f"/v1/cases/{case['id']}", headers=SANITATION).status_code == 404
    assert act(city, case["id"], "accept", SANITATION).status_code == 404
    listed = city[1].client.get("/v1/cases?limit=200", headers=SANITATION).json["items"]
    assert case["id"] not in [c["id"] for c in listed]
    assert all(c["department"] == "sanitation" for c in listed)


@pytest.mark.parametrize("action, headers", [("dispatch", POLICE), ("accept", OFFICE), ("verify", POLICE)])
def test_each_command_checks_the_role(city, action, headers):
    _, case = new_case(city)
    assert act(city, case["id"], action, headers, {"department": "sanitation", "passed": True,
                                                   "note": "x"}).status_code == 403


def test_volunteers_cannot_list_cases(city):
    assert city[1].client.get("/v1/cases", headers=bearer("volunteer")).status_code == 403


def test_an_approved_extension_moves_the_deadline_and_counts_as_deferred(city):
    _, case = new_case(city)
    asked = act(city, case["id"], "extension", POLICE, {"hours": 24, "reason": "需协调拖车"})
    assert asked.json["extension"]["status"] == "requested"
    assert act(city, case["id"], "extension", POLICE, {"hours": 24, "reason": "again"}).status_code == 409
    decided = act(city, case["id"], "extension/decision", OFFICE, {"approved": True, "note": "同意"})
    assert decided.json["deferred"] is True and decided.json["extension"]["status"] == "approved"
    before = datetime.fromisoformat(case["due_at"].replace("Z", "+00:00"))
    after = datetime.fromisoformat(decided.json["due_at"].replace("Z", "+00:00"))
    assert after - before == timedelta(hours=24)


@pytest.mark.parametrize("reason, status", [("duplicate", "duplicate"), ("invalid", "rejected")])
def test_a_rejected_case_rejects_its_report(city, reason, status):
    submitted, case = new_case(city)
    rejected = act(city, case["id"], "reject", OFFICE, {"reason": reason, "note": "核实"})
    assert rejected.json["status"] == "rejected"
    wait_for(lambda: report_status(city, submitted["id"]) == status, what="the report rejected")


def test_a_nearby_report_of_the_same_kind_joins_the_open_case(city):
    lat, lng = fresh_spot()
    first = report(city, "infra.damaged", lat, lng)
    case = case_for(city, first["id"])
    second = report(city, "infra.damaged", lat + 0.001, lng)  # ~111 m away
    joined = wait_for(lambda: len(city[1].client.get(f"/v1/cases/{case['id']}", headers=OFFICE)
                                  .json["report_ids"]) == 2, what="the second report joining the case")
    assert joined
    wait_for(lambda: report_status(city, second["id"]) == "in_progress", what="the joined report in progress")


def test_two_reports_of_one_problem_publish_one_opened_and_one_joined(city, subscribe):
    everything = subscribe("case.*.*")
    lat, lng = fresh_spot()
    first = report(city, "traffic.parking", lat, lng)
    case = case_for(city, first["id"])
    second = report(city, "traffic.parking", lat + 0.001, lng)  # ~111 m away
    of_the_case = lambda: everything.events(where=lambda e: e["data"]["case_id"] == case["id"])  # noqa: E731
    published = wait_for(lambda: len(of_the_case()) >= 3 and of_the_case(), what="the case's three events")
    assert sorted(e["type"] for e in published) == [
        "case.dispatched.traffic-police", "case.joined.traffic-police", "case.opened.traffic-police"]
    [joined] = [e["data"] for e in published if e["type"] == "case.joined.traffic-police"]
    assert (joined["report_id"], joined["report_ids"], joined["status"]) == (
        second["id"], [first["id"], second["id"]], "dispatched")
    assert "attached" not in joined


def test_a_category_without_a_rule_waits_for_triage(city):
    lat, lng = fresh_spot()
    submitted = report(city, "other", lat, lng)
    case = case_for(city, submitted["id"])
    assert case["status"] == "pending_triage" and case["department"] is None and case["due_at"] is None


def test_overdue_fires_once_across_several_watchers(city, police_tap):
    _, routing = city
    _, case = new_case(city)
    act(city, case["id"], "dispatch", OFFICE, {"department": "traffic-police", "deadline_hours": 0.0001})
    store = routing.app.extensions["routing"].store
    later = datetime.now(UTC) + timedelta(seconds=5)
    watchers = [OverdueWatch(store), OverdueWatch(store)]
    flagged = sum(w.check(later) for w in watchers) + sum(w.check(later) for w in watchers)
    assert flagged == 1
    overdue = city[1].client.get(f"/v1/cases/{case['id']}", headers=OFFICE).json
    assert overdue["overdue"] is True and overdue["escalation_level"] == 1
    events = wait_for(lambda: police_tap.events("case.overdue.traffic-police",
                                                lambda e: e["data"]["case_id"] == case["id"]), what="overdue event")
    assert len(events) == 1
    listed = city[1].client.get("/v1/cases?overdue=true&limit=200", headers=POLICE).json["items"]
    assert case["id"] in [c["id"] for c in listed]


def test_a_watcher_that_lost_the_race_flags_nothing(city, police_tap, monkeypatch):
    _, routing = city
    _, case = new_case(city)
    act(city, case["id"], "dispatch", OFFICE, {"department": "traffic-police", "deadline_hours": 0.0001})
    store = routing.app.extensions["routing"].store
    later = datetime.now(UTC) + timedelta(seconds=5)
    stale = store.newly_overdue(later)  # what the slower watcher saw before the other one wrote
    assert OverdueWatch(store).check(later) >= 1
    monkeypatch.setattr(store, "newly_overdue", lambda now, limit=100: stale)
    assert OverdueWatch(store).check(later) == 0
    wait_for(lambda: police_tap.events("case.overdue.traffic-police", lambda e: e["data"]["case_id"] == case["id"]),
             what="overdue event")
    assert city[1].client.get(f"/v1/cases/{case['id']}", headers=OFFICE).json["escalation_level"] == 1


def test_rules_can_be_read_and_replaced_by_the_office(city):
    _, routing = city
    current = routing.client.get("/v1/rules", headers=OFFICE).json["items"]
    assert {"category": "traffic.parking", "district": None, "department": "traffic-police",
            "deadline_hours": 24.0, "basis": "calendar"} in current
    assert routing.client.get("/v1/rules", headers=POLICE).status_code == 403
    bad = routing.client.put("/v1/rules", headers=OFFICE, json={"items": [
        {"category": "nope", "department": "sanitation", "deadline_hours": 1}]})
    assert bad.status_code == 422 and "items.0" in bad.json["errors"]
    district_rule = {"category": "traffic.parking", "district": "hedong", "department": "urban-management",
                     "deadline_hours": 8, "basis": "working"}
    replaced = routing.client.put("/v1/rules", headers=OFFICE, json={"items": [*current, district_rule]})
    assert replaced.status_code == 200 and district_rule in replaced.json["items"]
    time.sleep(RULES_MAX_AGE_S)  # the documented bound: the worker may route by rules it read up to this long ago
    submitted = report(city, "traffic.parking", 35.100, 118.395)  # in hedong-03
    case = case_for(city, submitted["id"])
    assert case["department"] == "urban-management" and case["basis"] == "working"
    assert routing.client.put("/v1/rules", headers=OFFICE, json={"items": current}).status_code == 200
    time.sleep(RULES_MAX_AGE_S)  # the other tests' reports are routed by the city's rules again


def test_departments_are_listed(city):
    departments = city[1].client.get("/v1/departments", headers=bearer("volunteer")).json["items"]
    assert {d["code"] for d in departments} >= {"sanitation", "traffic-police", "community-affairs"}


def test_department_league_counts_an_on_time_closure(city):
    _, routing = city
    _, case = new_case(city, "market.disorder")
    market = bearer("department", dept="market-regulation")
    act(city, case["id"], "accept", market)
    photo = upload_photo(city[0].client, market)["id"]
    act(city, case["id"], "rectify", market, {"note": "已整治", "photo_ids": [photo]})
    act(city, case["id"], "verify", OFFICE, {"passed": True, "note": "ok"})
    until = (datetime.now(UTC) + timedelta(days=4)).isoformat().replace("+00:00", "Z")
    league = routing.client.get(f"/v1/stats/departments?to={until}", headers=OFFICE).json
    row = next(r for r in league["items"] if r["department"] == "market-regulation")
    assert row["due"] == 1 and row["closed_on_time"] == 1 and row["on_time_rate"] == 1.0
    assert row["avg_hours_to_rectify"] is not None and row["rank"] >= 1
    sheet = routing.client.get(f"/v1/stats/departments?to={until}&format=xlsx", headers=OFFICE)
    assert sheet.status_code == 200
    assert "排名通报" in load_workbook(io.BytesIO(sheet.data)).sheetnames
    assert routing.client.get("/v1/stats/departments", headers=POLICE).status_code == 403


def test_grid_league_for_a_month(city):
    _, routing = city
    month = datetime.now(UTC).strftime("%Y-%m")
    league = routing.client.get(f"/v1/stats/grids?month={month}", headers=OFFICE).json
    assert {row["grid_id"] for row in league["items"]} >= {"lanshan-01", "hedong-03"}
    assert routing.client.get("/v1/stats/grids?month=2026-13", headers=OFFICE).status_code == 422


def test_a_worker_started_before_its_web_process_finds_the_city_rules_and_indexes(amqp_url, mongo_url):
    """A fresh system starts both processes at once; the first report must not miss the rules."""
    from services.routing.worker import background_work
    from shared.store import connect

    settings = settings_for_test("routing", amqp_url, mongo_url)
    db = connect(settings.mongo_url, settings.database)
    background_work(settings, db)
    rules = {rule["category"]: rule["department"] for rule in db["rules"].find()}
    assert rules["traffic.parking"] == "traffic-police" and "other" not in rules
    assert any(index["key"] == {"report_ids": 1} and index.get("unique") for index in db["cases"].list_indexes())


@pytest.mark.parametrize("whose", ["the reporter", "another department", "never issued", "tampered"])
def test_after_photos_must_be_the_departments_own(city, whose):
    """A department once attached any photo id, and the report's readers could then fetch it."""
    submitted, case = new_case(city)
    act(city, case["id"], "accept", POLICE)
    foreign = {
        "the reporter": lambda: submitted["photo_ids"][0],
        "another department": lambda: upload_photo(city[0].client, SANITATION)["id"],
        "never issued": lambda: "k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Ha",
        "tampered": lambda: upload_photo(city[0].client, POLICE)["id"][:-2] + "xx",
    }[whose]()
    refused = act(city, case["id"], "rectify", POLICE, {"note": "已处理", "photo_ids": [foreign]})
    assert refused.status_code == 422 and list(refused.json["errors"]) == ["photo_ids"]
    assert city[1].client.get(f"/v1/cases/{case['id']}", headers=POLICE).json["status"] == "accepted"


def test_a_colleague_in_the_same_department_may_use_the_departments_after_photos(city):
    _, case = new_case(city)
    act(city, case["id"], "accept", POLICE)
    colleague = bearer("department", "police-2", dept="traffic-police")
    photo = upload_photo(city[0].client, colleague)["id"]
    assert act(city, case["id"], "rectify", POLICE, {"note": "已处理", "photo_ids": [photo]}).status_code == 200


def test_photos_of_a_case_are_seen_by_its_department_and_its_reporter_and_nobody_else(city):
    intake, _ = city
    reporter = bearer("volunteer")
    lat, lng = fresh_spot()
    submitted = report(city, lat=lat, lng=lng, who=reporter)
    case = case_for(city, submitted["id"])
    act(city, case["id"], "accept", POLICE)
    after = upload_photo(intake.client, POLICE)["id"]
    act(city, case["id"], "rectify", POLICE, {"note": "已处理", "photo_ids": [after]})
    wait_for(lambda: intake.client.get(f"/v1/reports/{submitted['id']}", headers=reporter).json["after_photo_ids"],
             what="the after-photo on the report")
    before = submitted["photo_ids"][0]
    seen = lambda photo, who: intake.client.get(f"/v1/photos/{photo}", headers=who).status_code  # noqa: E731
    assert (seen(before, POLICE), seen(after, reporter), seen(after, OFFICE)) == (200, 200, 200)
    elsewhere = "hedong-03" if submitted["grid_id"] != "hedong-03" else "lanshan-01"
    for outsider in (SANITATION, bearer("volunteer"), bearer("grid_leader", grid=elsewhere)):
        assert (seen(before, outsider), seen(after, outsider)) == (404, 404)


def test_routing_reads_its_rules_about_once_a_second_and_a_change_reaches_it_within_that(mongo_url, monkeypatch):
    import pymongo
    from pymongo import monitoring

    from services.routing import store as routing_store

    class RuleReads(monitoring.CommandListener):
        count = 0

        def started(self, event):
            if event.command_name == "find" and event.command.get("find") == "rules":
                RuleReads.count += 1

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    database = f"test_rules_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(mongo_url, event_listeners=[RuleReads()])
    worker = routing_store.CaseStore.prepared(client[database], reference.load(None))
    web = routing_store.CaseStore(client[database])
    RuleReads.count = 0
    before = [worker.rules_in_force() for _ in range(20)][-1]
    assert RuleReads.count == 1
    district_rule = Rule("traffic.parking", "urban-management", 8.0, "hedong", "working")
    web.replace_rules([*before, district_rule])
    assert district_rule in web.rules_in_force()  # the process that saved them routes by them at once
    assert district_rule not in worker.rules_in_force()  # another one, within RULES_MAX_AGE_S
    later = time.monotonic() + routing_store.RULES_MAX_AGE_S
    monkeypatch.setattr(routing_store, "time", SimpleNamespace(monotonic=lambda: later))
    assert district_rule in worker.rules_in_force()
    client.close()


def test_the_triage_queue_reads_oldest_first_page_by_page(city):
    _, routing = city
    mine = [case_for(city, report(city, "other", *fresh_spot())["id"])["id"] for _ in range(3)]
    walked, cursor = [], None
    while True:
        query = "/v1/cases?status=pending_triage&order=oldest&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = routing.client.get(query, headers=OFFICE).json
        walked += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    assert all(c["status"] == "pending_triage" for c in walked)
    opened = [(c["opened_at"], c["id"]) for c in walked]
    assert opened == sorted(opened) and len(set(opened)) == len(opened)
    assert [c["id"] for c in walked if c["id"] in mine] == mine


def test_the_office_is_shown_where_the_rules_would_send_a_case_and_a_department_is_not(city):
    _, routing = city
    _, case = new_case(city)
    as_office = routing.client.get(f"/v1/cases/{case['id']}", headers=OFFICE).json
    assert as_office["suggestion"] == {"department": "traffic-police", "deadline_hours": 24}
    assert routing.client.get(f"/v1/cases/{case['id']}", headers=POLICE).json["suggestion"] is None
    disputed = act(city, case["id"], "dispute", POLICE, {"reason": "不属于交警职责"})
    assert disputed.json["suggestion"] is None
    queue = routing.client.get("/v1/cases?status=pending_triage&limit=200", headers=OFFICE).json["items"]
    assert next(c for c in queue if c["id"] == case["id"])["suggestion"]["department"] == "traffic-police"
    _, unruled = new_case(city, "other")
    assert routing.client.get(f"/v1/cases/{unruled['id']}", headers=OFFICE).json["suggestion"] is None
