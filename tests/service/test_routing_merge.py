"""The office merges a duplicate case into another, through HTTP beside intake and hours with the real broker: the
reports move, each report shows its new case, a reporter's second report of the problem gives its credit back, and
a redelivered event changes nothing twice."""
import uuid
from datetime import timedelta

import pytest

from tests.conftest import bearer, run_service, settings_for_test
from tests.service.test_hours import GRIDS, ledger, now, patrol, register, report_by
from tests.service.test_routing import OFFICE, POLICE, fresh_spot
from tests.support import publish_raw, wait_for

VOLUNTEER = bearer("volunteer")


@pytest.fixture(scope="module")
def city(intake_routing_hours):
    return intake_routing_hours


@pytest.fixture(scope="module")
def notify(amqp_url, mongo_url):
    service = run_service(settings_for_test("notify", amqp_url, mongo_url))
    yield service
    service.stop()


def case_of(city, report_id: str) -> dict:
    def found():
        items = city["routing"].client.get("/v1/cases?limit=200", headers=OFFICE).json["items"]
        return next((c for c in items if report_id in c["report_ids"]), None)

    return wait_for(found, what=f"the case of report {report_id}")


def merge(city, source_id: str, into: str, headers=OFFICE, note: str | None = "同一处违停"):
    return city["routing"].client.post(f"/v1/cases/{source_id}/merge", headers=headers,
                                       json={"into": into, **({"note": note} if note else {})})


def report_of(city, report_id: str) -> dict:
    return city["intake"].client.get(f"/v1/reports/{report_id}", headers=OFFICE).json


def two_spots_in_one_grid() -> tuple[tuple[float, float], tuple[float, float]]:
    """Two points of one grid cell farther apart than the duplicate radius: two cases, not one."""
    first = fresh_spot()
    while True:
        second = fresh_spot()
        if GRIDS.locate(*second).id == GRIDS.locate(*first).id:
            return first, second
        first = second


def two_cases(city, token=None) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """(report, case) twice: two cases of one category, of one reporter."""
    token = token or VOLUNTEER
    spots = two_spots_in_one_grid()
    reports = [report_by(city, token, spot) for spot in spots]
    return tuple((report, case_of(city, report["id"])) for report in reports)


def test_a_merge_moves_the_reports_and_photos_and_ends_the_duplicate(city, subscribe):
    tap = subscribe("case.*.*")
    (kept_report, kept), (moved_report, source) = two_cases(city)
    assert kept["id"] != source["id"]
    # The duplicate has gone further than the case it joins: its version is ahead of the target's.
    accepted = city["routing"].client.post(f"/v1/cases/{source['id']}/accept", headers=POLICE)
    assert accepted.status_code == 200, accepted.json
    wait_for(lambda: any("已受理" in line["note"] for line in report_of(city, moved_report["id"])["timeline"]),
             what="intake follows the accept")
    answered = merge(city, source["id"], kept["id"])
    assert answered.status_code == 200, answered.json
    ended = answered.json
    assert (ended["status"], ended["merged_into"], ended["report_ids"], ended["merged_report_ids"]) == (
        "rejected", kept["id"], [], [moved_report["id"]])
    assert ended["history"][-1]["action"] == "merged_into" and kept["id"] in ended["history"][-1]["note"]
    target = city["routing"].client.get(f"/v1/cases/{kept['id']}", headers=OFFICE).json
    assert target["report_ids"] == [kept_report["id"], moved_report["id"]]
    assert target["photo_ids"] == [*kept["photo_ids"], *source["photo_ids"]]
    assert (target["status"], target["history"][-1]["action"]) == ("dispatched", "merged_from")
    joined = wait_for(lambda: tap.events("case.joined.traffic-police", lambda e: e["data"]["case_id"] == kept["id"]),
                      what="case.joined of the target")
    assert [(e["data"]["report_id"], e["data"]["merged_from"]) for e in joined] == [(moved_report["id"], source["id"])]
    rejected = wait_for(lambda: tap.events("case.rejected.traffic-police",
                                           lambda e: e["data"]["case_id"] == source["id"]), what="the source's end")
    assert (rejected[0]["data"]["merged_into"], rejected[0]["data"]["reason"]) == (kept["id"], "duplicate")
    # The moved reports' readers take the target's steps as newer than anything of the case they left.
    assert joined[0]["data"]["case_version"] > rejected[0]["data"]["case_version"]
    # The moved report now follows the case it joined: it is in progress there, not refused as a duplicate.
    shown = wait_for(lambda: (r := report_of(city, moved_report["id"]))["case_id"] == kept["id"] and r,
                     what="the moved report pointing at its new case")
    assert shown["status"] == "in_progress"
    assert any(source["id"] in line["note"] and kept["id"] in line["note"] for line in shown["timeline"])
    # Both are links the case page follows.
    assert city["routing"].client.get(f"/v1/cases/{source['id']}", headers=OFFICE).json["merged_into"] == kept["id"]


def test_the_reporters_second_report_merged_into_their_own_case_gives_its_credit_back_once(city, amqp_url, subscribe):
    tap = subscribe("case.*.*")
    volunteer, token = register(city, grid_id="lanshan-01")
    (first, kept), (second, source) = two_cases(city, token)
    hours = city["hours"].app.extensions["hours"].store
    for report in (first, second):
        wait_for(lambda r=report: hours.reports.find_one({"_id": r["id"]}), what="hours hears the report")
    walked = patrol(city, token, first["grid_id"], now() - timedelta(hours=3), now() + timedelta(minutes=1))
    assert walked.status_code == 201 and walked.json["credited_hours"] == 2.0, walked.json
    assert merge(city, source["id"], kept["id"]).status_code == 200

    def credited() -> float:
        return city["hours"].client.get(f"/v1/patrols/{walked.json['id']}", headers=OFFICE).json["credited_hours"]

    wait_for(lambda: credited() == 1.0, what="the second report's credit taken back")
    reversal = ledger(city, volunteer["id"])[0]
    assert reversal["hours"] == -1.0 and second["id"] in reversal["note"] and kept["id"] in reversal["note"]
    # Redelivered, neither the joins nor the end change anything again, in hours or in intake.
    timeline = wait_for(lambda: (r := report_of(city, second["id"]))["case_id"] == kept["id"] and r["timeline"],
                        what="intake moves the report")
    events = wait_for(lambda: [*tap.events("case.joined.traffic-police",
                                           lambda e: e["data"].get("merged_from") == source["id"]),
                               *tap.events("case.rejected.traffic-police",
                                           lambda e: e["data"]["case_id"] == source["id"])],
                      what="the merge's events")
    assert len(events) == 2
    for event in events:
        publish_raw(amqp_url, event["type"], event, event["id"])
    # A later merge (another reporter's two reports), on the same queues, is handled after the copies.
    (_, probe_kept), (probe, probe_source) = two_cases(city)
    wait_for(lambda: hours.reports.find_one({"_id": probe["id"]}), what="hours hears the probe")
    assert merge(city, probe_source["id"], probe_kept["id"]).status_code == 200
    wait_for(lambda: (hours.reports.find_one({"_id": probe["id"]}) or {}).get("withdrawn"), what="the probe in hours")
    wait_for(lambda: report_of(city, probe["id"])["case_id"] == probe_kept["id"], what="the probe in intake")
    assert [e["hours"] for e in ledger(city, volunteer["id"])].count(-1.0) == 1
    assert credited() == 1.0
    assert report_of(city, second["id"])["timeline"] == timeline
    assert report_of(city, second["id"])["case_id"] == kept["id"]


@pytest.mark.parametrize("who", ["department", "volunteer", "grid_leader"])
def test_only_the_office_merges(city, who):
    (_, kept), (_, source) = two_cases(city)
    headers = {"department": POLICE, "volunteer": VOLUNTEER,
               "grid_leader": bearer("grid_leader", grid=kept["grid_id"])}[who]
    assert merge(city, source["id"], kept["id"], headers).status_code == 403
    assert city["routing"].client.get(f"/v1/cases/{source['id']}", headers=OFFICE).json["status"] == "dispatched"


def test_an_unknown_case_is_404(city):
    (_, kept), _ = two_cases(city)
    assert merge(city, "case-nonexistent", kept["id"]).status_code == 404
    missing = merge(city, kept["id"], "case-nonexistent")
    assert missing.status_code == 404 and "case-nonexistent" in missing.json["detail"]


def test_a_merge_the_cases_do_not_allow_is_409_and_changes_nothing(city):
    (_, kept), (_, source) = two_cases(city)
    assert merge(city, source["id"], source["id"]).status_code == 409
    other = report_by(city, VOLUNTEER)
    other_case = case_of(city, other["id"])
    garbage = city["intake"].client.post("/v1/reports", headers=VOLUNTEER, json={
        "category": "env.garbage", "description": "路边垃圾堆放", "location": other["location"],
        "photo_ids": other["photo_ids"]})
    assert garbage.status_code == 201, garbage.json
    garbage_case = case_of(city, garbage.json["id"])
    mismatch = merge(city, garbage_case["id"], other_case["id"])
    assert mismatch.status_code == 409 and "category" in mismatch.json["detail"]
    rejected = city["routing"].client.post(f"/v1/cases/{other_case['id']}/reject", headers=OFFICE,
                                           json={"reason": "invalid"})
    assert rejected.status_code == 200
    assert merge(city, source["id"], other_case["id"]).status_code == 409  # into a case that is over
    assert merge(city, other_case["id"], kept["id"]).status_code == 409  # a case that is over
    assert merge(city, source["id"], kept["id"]).status_code == 200
    assert merge(city, source["id"], kept["id"]).status_code == 409  # merged already
    target = city["routing"].client.get(f"/v1/cases/{kept['id']}", headers=OFFICE).json
    assert len(target["report_ids"]) == 2


def test_two_merged_cases_each_keep_their_end(city):
    """A merged case holds no report; two of them must not collide on the one-case-per-report rule."""
    (_, kept), (_, first) = two_cases(city)
    (_, second), _ = two_cases(city)
    assert merge(city, first["id"], kept["id"]).status_code == 200
    assert merge(city, second["id"], kept["id"]).status_code == 200
    assert len(city["routing"].client.get(f"/v1/cases/{kept['id']}", headers=OFFICE).json["report_ids"]) == 3


def test_the_reporter_of_a_merged_case_hears_their_report_joined_the_other_case_not_a_refusal(city, notify):
    moved_token = bearer("volunteer", f"vol-merge-{uuid.uuid4().hex[:8]}")
    spots = two_spots_in_one_grid()
    kept_report = report_by(city, VOLUNTEER, spots[0])
    moved = report_by(city, moved_token, spots[1])
    kept, source = case_of(city, kept_report["id"]), case_of(city, moved["id"])

    def inbox() -> list[dict]:
        return notify.client.get("/v1/inbox", headers=moved_token, query_string={"limit": 200}).json["items"]

    wait_for(lambda: any(i["kind"] == "report.dispatched" for i in inbox()), what="the first dispatch heard")
    digest_copy = notify.app.extensions["notify"].store.reports
    assert city["routing"].client.post(f"/v1/cases/{source['id']}/accept", headers=POLICE).status_code == 200
    wait_for(lambda: (digest_copy.find_one({"_id": moved["id"]}) or {}).get("status") == "accepted",
             what="notify follows the duplicate ahead of the target")
    assert merge(city, source["id"], kept["id"]).status_code == 200
    joined = wait_for(lambda: [i for i in inbox() if i["kind"] == "report.joined"], what="the reporter told")
    assert f"原案卷 {source['id']} 已并入" in joined[0]["body"] and kept["id"] in joined[0]["body"]
    assert not [i for i in inbox() if i["kind"] == "report.rejected"]
    # The grid digests' copy of the report follows the case it joined.
    wait_for(lambda: (digest_copy.find_one({"_id": moved["id"]}) or {}).get("case_id") == kept["id"],
             what="notify's copy of the report in its new case")
    assert digest_copy.find_one({"_id": moved["id"]})["open"] is True
