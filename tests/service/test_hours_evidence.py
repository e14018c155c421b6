"""Evidence proportional to what it proves, through HTTP beside intake and routing with the real broker: one
report credits a bounded part of its patrol, a rejected or self-duplicate report takes its credit back, a
closed case counts once per reporter, and nobody confirms their own patrol."""
import uuid
from datetime import datetime, timedelta

import pytest

from shared.events import Event
from tests.conftest import bearer
from tests.service.conftest import upload_photo
from tests.service.test_hours import (
    ASSOCIATION,
    OFFICE,
    iso,
    ledger,
    now,
    patrol,
    register,
    spot_and_grid,
    summary,
)
from tests.support import publish_raw, wait_for


@pytest.fixture(scope="module")
def city(intake_routing_hours):
    return intake_routing_hours


def hours_store(city):
    return city["hours"].app.extensions["hours"].store


def day_total(city, volunteer_id: str, service_date: str) -> int:
    """What the volunteer's day holds, credited and waiting (centihours): what the daily cap is counted on."""
    return hours_store(city).days.find_one({"_id": f"{volunteer_id}|{service_date}"})["centihours"]


def throwaway_report(city, token: dict) -> dict:
    """The shortest report intake takes (5 characters), with one photo."""
    photo = upload_photo(city["intake"].client, token)["id"]
    (lat, lng), _ = spot_and_grid()
    response = city["intake"].client.post("/v1/reports", headers=token, json={
        "category": "traffic.parking", "description": "路边乱停车", "location": {"lat": lat, "lng": lng},
        "photo_ids": [photo]})
    assert response.status_code == 201, response.json
    wait_for(lambda: hours_store(city).reports.find_one({"_id": response.json["id"]}), what="hours hears the report")
    return response.json


def read_patrol(city, patrol_id: str, token=OFFICE) -> dict:
    response = city["hours"].client.get(f"/v1/patrols/{patrol_id}", headers=token)
    assert response.status_code == 200, response.json
    return response.json


def parts(found: dict) -> tuple:
    return found["credited_hours"], found["waiting_hours"], found["declined_hours"], found["status"]


def heard(amqp_url: str, event: Event) -> None:
    publish_raw(amqp_url, event.type, event.to_dict(), event.id)


def submitted(reporter_id: str, grid_id: str, at: datetime) -> Event:
    return Event.new("report.submitted", "intake", {"id": f"r-{uuid.uuid4().hex[:12]}", "reporter_id": reporter_id,
                                                    "grid_id": grid_id, "submitted_at": iso(at)})


# --- one throwaway report, and its rejection ----------------------------------------------------

def test_one_throwaway_report_credits_one_hour_of_a_working_day_and_its_rejection_takes_it_back(city, subscribe,
                                                                                                 amqp_url):
    rejections = subscribe("case.rejected.*")
    volunteer, token = register(city)
    report = throwaway_report(city, token)
    # The attack: a patrol from 7 h 58 min before the report to just after it.
    walked = patrol(city, token, report["grid_id"], now() - timedelta(hours=7, minutes=58),
                    now() + timedelta(minutes=1))
    assert walked.status_code == 201, walked.json
    assert walked.json["hours"] == 7.5 and walked.json["status"] == "awaiting_confirmation"
    assert parts(walked.json) == (1.0, 6.5, 0, "awaiting_confirmation")
    got = summary(city, volunteer["id"])
    assert (got["year_hours"], got["pending_hours"]) == (1.0, 6.5)
    day = walked.json["service_date"]
    assert day_total(city, volunteer["id"], day) == 750

    def case_of_report():
        items = city["routing"].client.get("/v1/cases?limit=200", headers=OFFICE).json["items"]
        return next((c for c in items if report["id"] in c["report_ids"]), None)

    case_id = wait_for(case_of_report, what="the report's case")["id"]
    rejected = city["routing"].client.post(f"/v1/cases/{case_id}/reject", headers=OFFICE,
                                           json={"reason": "invalid", "note": "无实质内容"})
    assert rejected.status_code == 200, rejected.json
    returned = wait_for(lambda: (found := read_patrol(city, walked.json["id"]))["credited_hours"] == 0 and found,
                        what="the credit taken back")
    # The time may still have been walked: it waits for a person again, and the day still holds it.
    assert parts(returned) == (0, 7.5, 0, "awaiting_confirmation")
    entries = ledger(city, volunteer["id"])
    assert [e["hours"] for e in entries] == [-1.0, 1.0]
    assert entries[0]["kind"] == "reversal" and entries[0]["reverses"] == entries[1]["id"]
    assert report["id"] in entries[0]["note"] and "invalid" in entries[0]["note"]
    got = summary(city, volunteer["id"])
    assert (got["year_hours"], got["pending_hours"]) == (0, 7.5)
    assert day_total(city, volunteer["id"], day) == 750
    # Heard again, the rejection takes back nothing twice.
    event = wait_for(lambda: rejections.events("case.rejected.traffic-police",
                                               lambda e: e["data"]["case_id"] == case_id), what="case.rejected")[0]
    publish_raw(amqp_url, event["type"], event, event["id"])
    probe = submitted(volunteer["id"], "hedong-03", now() - timedelta(days=3))
    heard(amqp_url, probe)
    wait_for(lambda: hours_store(city).reports.find_one({"_id": probe.data["id"]}), what="the probe heard")
    heard(amqp_url, Event.new("case.rejected.none", "routing", {
        "case_id": "case-probe", "report_ids": [probe.data["id"]], "reason": "invalid"}))
    wait_for(lambda: (hours_store(city).reports.find_one({"_id": probe.data["id"]}) or {}).get("withdrawn"),
             what="a later rejection handled after the copy")
    assert len(ledger(city, volunteer["id"])) == 2 and summary(city, volunteer["id"])["pending_hours"] == 7.5
    # A person confirms the time they believe was walked.
    confirmed = city["hours"].client.post(f"/v1/patrols/{walked.json['id']}/confirm", headers=ASSOCIATION,
                                          json={"note": "签到表核实"})
    assert parts(confirmed.json) == (7.5, 0, 0, "credited")
    assert day_total(city, volunteer["id"], day) == 750


def test_a_rejected_report_evidences_no_patrol_recorded_later(city, amqp_url):
    volunteer, token = register(city)
    _, grid_id = spot_and_grid()
    event = submitted(volunteer["id"], grid_id, now() - timedelta(minutes=30))
    heard(amqp_url, event)
    heard(amqp_url, Event.new("case.rejected.none", "routing", {"case_id": f"case-{event.data['id']}",
                                                                "report_ids": [event.data["id"]],
                                                                "reason": "out_of_scope"}))
    wait_for(lambda: (hours_store(city).reports.find_one({"_id": event.data["id"]}) or {}).get("withdrawn"),
             what="the report withdrawn")
    walked = patrol(city, token, grid_id, now() - timedelta(hours=1), now())
    assert parts(walked.json) == (0, 1.0, 0, "awaiting_confirmation") and walked.json["evidence_report_id"] is None


# --- distinct evidence --------------------------------------------------------------------------

def joined(case_id: str, report_id: str, report_ids: list[str], grid_id: str) -> Event:
    """case.joined as routing publishes it from now on: the case's data, every report of it, and the one that
    joined."""
    return Event.new("case.joined.traffic-police", "routing", {
        "case_id": case_id, "report_ids": report_ids, "report_id": report_id, "category": "traffic.parking",
        "department": "traffic-police", "status": "dispatched", "grid_id": grid_id, "case_version": 3})


def test_a_report_joining_its_reporters_own_case_takes_back_its_credit_and_anothers_does_not(city, amqp_url):
    (volunteer, token), (neighbour, _) = register(city), register(city)
    _, grid_id = spot_and_grid()
    started = now() - timedelta(hours=3)
    walked = patrol(city, token, grid_id, started, now()).json
    assert walked["status"] == "awaiting_confirmation"
    first, again = (submitted(volunteer["id"], grid_id, started + timedelta(minutes=m)) for m in (30, 40))
    theirs = submitted(neighbour["id"], grid_id, started + timedelta(minutes=20))
    for event in (theirs, first, again):
        heard(amqp_url, event)
    wait_for(lambda: read_patrol(city, walked["id"])["credited_hours"] == 2.0, what="two reports' credit")
    case_id = f"case-{theirs.data['id']}"
    ids = [theirs.data["id"], first.data["id"]]
    # The volunteer's first report joins their neighbour's case: still distinct evidence of their own patrol.
    heard(amqp_url, joined(case_id, first.data["id"], ids, grid_id))
    # Their second report of the same problem joins a case where they already have a report: a self-duplicate.
    duplicate = joined(case_id, again.data["id"], [*ids, again.data["id"]], grid_id)
    heard(amqp_url, duplicate)
    returned = wait_for(lambda: (found := read_patrol(city, walked["id"]))["credited_hours"] == 1.0 and found,
                        what="the self-duplicate's credit taken back")
    assert parts(returned) == (1.0, 2.0, 0, "awaiting_confirmation")
    reversal = ledger(city, volunteer["id"])[0]
    assert reversal["hours"] == -1.0 and again.data["id"] in reversal["note"] and case_id in reversal["note"]
    heard(amqp_url, duplicate)  # delivered twice
    probe = submitted(volunteer["id"], "hedong-03", now() - timedelta(days=2))
    heard(amqp_url, probe)
    wait_for(lambda: hours_store(city).reports.find_one({"_id": probe.data["id"]}), what="the probe heard")
    heard(amqp_url, joined("case-probe", probe.data["id"], [first.data["id"], probe.data["id"]], "hedong-03"))
    wait_for(lambda: (hours_store(city).reports.find_one({"_id": probe.data["id"]}) or {}).get("withdrawn"),
             what="a later joined event handled after the copy")
    assert [e["hours"] for e in ledger(city, volunteer["id"])].count(-1.0) == 1
    assert summary(city, volunteer["id"])["year_hours"] == 1.0


def test_a_report_evidences_one_patrol_only(city, amqp_url):
    volunteer, token = register(city)
    _, grid_id = spot_and_grid()
    start = now() - timedelta(hours=3)
    event = submitted(volunteer["id"], grid_id, start + timedelta(minutes=30))
    heard(amqp_url, event)
    wait_for(lambda: hours_store(city).reports.find_one({"_id": event.data["id"]}), what="the report heard")
    first = patrol(city, token, grid_id, start, start + timedelta(hours=2)).json
    assert parts(first) == (1.0, 1.0, 0, "awaiting_confirmation")
    declined = city["hours"].client.post(f"/v1/patrols/{first['id']}/decline", headers=ASSOCIATION,
                                         json={"note": "当日无巡访安排"})
    assert declined.status_code == 200, declined.json
    assert parts(declined.json) == (0, 0, 2.0, "declined")  # the automatic credit is taken back too
    assert [e["hours"] for e in ledger(city, volunteer["id"])] == [-1.0, 1.0]
    again = patrol(city, token, grid_id, start, start + timedelta(hours=2)).json  # its time is free again
    assert parts(again) == (0, 2.0, 0, "awaiting_confirmation") and again["evidence_report_id"] is None
    got = summary(city, volunteer["id"])
    assert (got["year_hours"], got["pending_hours"]) == (0, 2.0)


# --- verified reports ---------------------------------------------------------------------------

def test_twenty_reports_of_one_problem_count_one_verified_report(city, amqp_url):
    (volunteer, _), (other, _) = register(city), register(city)
    _, grid_id = spot_and_grid()
    reports = [submitted(volunteer["id"], grid_id, now() - timedelta(minutes=n)) for n in range(20)]
    reports.append(submitted(other["id"], grid_id, now()))
    for event in reports:
        heard(amqp_url, event)
    closed = Event.new("case.closed.traffic-police", "routing", {
        "case_id": f"case-{uuid.uuid4().hex[:8]}", "report_ids": [e.data["id"] for e in reports]})
    heard(amqp_url, closed)
    heard(amqp_url, closed)
    wait_for(lambda: summary(city, other["id"])["verified_reports"] == 1, what="the other reporter counted")
    probe = submitted(other["id"], grid_id, now())
    heard(amqp_url, probe)
    heard(amqp_url, Event.new("case.closed.traffic-police", "routing", {"case_id": "case-probe-2",
                                                                        "report_ids": [probe.data["id"]]}))
    wait_for(lambda: summary(city, other["id"])["verified_reports"] == 2, what="a later case counted")
    got = summary(city, volunteer["id"])
    assert (got["verified_reports"], got["year_verified_reports"]) == (1, 1)


# --- grid leaders -------------------------------------------------------------------------------

def test_a_grid_leader_records_patrols_and_their_own_grids_wait_for_the_association(city):
    volunteer, _ = register(city, grid_id="lanshan-03")
    leader = bearer("grid_leader", volunteer["id"], grid="lanshan-03")
    own = patrol(city, leader, "lanshan-03", now() - timedelta(hours=6), now() - timedelta(hours=5))
    assert own.status_code == 201, own.json
    assert own.json["status"] == "awaiting_approval" and own.json["recorded_by"] == f"grid_leader:{volunteer['id']}"
    elsewhere = patrol(city, leader, "lanshan-04", now() - timedelta(hours=4), now() - timedelta(hours=3)).json
    assert elsewhere["status"] == "awaiting_confirmation"
    # A grid leader sees their grid's patrols and their own, wherever they walked.
    listed = {p["id"] for p in city["hours"].client.get("/v1/patrols?limit=200", headers=leader).json["items"]}
    assert {own.json["id"], elsewhere["id"]} <= listed
    assert city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}/summary", headers=leader).status_code == 200
    co_leader = bearer("grid_leader", grid="lanshan-03")
    assert city["hours"].client.post(f"/v1/patrols/{own.json['id']}/confirm", headers=co_leader,
                                     json={}).status_code == 403
    assert city["hours"].client.post(f"/v1/patrols/{elsewhere['id']}/confirm",
                                     headers=bearer("grid_leader", grid="lanshan-04"), json={}).status_code == 200
    approved = city["hours"].client.post(f"/v1/patrols/{own.json['id']}/confirm", headers=ASSOCIATION, json={})
    assert approved.json["status"] == "credited" and summary(city, volunteer["id"])["year_hours"] == 2.0
    unregistered = patrol(city, bearer("grid_leader", grid="lanshan-03"), "lanshan-03", now() - timedelta(hours=1),
                          now())
    assert unregistered.status_code == 403 and "register" in unregistered.json["detail"]
