"""Intake's events on the real broker: report.submitted exactly once; the report follows case events."""
import uuid

import pytest

from shared import deadletters
from shared.events import Event
from shared.outbox import consumer_first_s
from tests.conftest import bearer
from tests.service.conftest import outbox_empty, submit_report, upload_photo
from tests.support import publish_raw, wait_for

ENVELOPE_KEYS = {"id", "type", "occurred_at", "source", "version", "correlation_id", "data"}


def test_each_accepted_report_is_published_exactly_once(intake, tap, volunteer):
    photo = upload_photo(intake.client, volunteer)["id"]
    reports = [submit_report(intake.client, {**volunteer, "Idempotency-Key": f"k{i}"}, [photo]) for i in range(3)]
    submit_report(intake.client, {**volunteer, "Idempotency-Key": "k0"}, [photo])  # a client's retry
    ids = {r["id"] for r in reports}
    mine = lambda: [(p, e) for p, e in tap.drain() if e["data"]["id"] in ids]  # noqa: E731
    # Nobody sends case events here, so the relay pulls the events itself, after it has left that to them.
    wait_for(lambda: len(mine()) >= 3 and outbox_empty(intake), timeout=consumer_first_s() + 5,
             what="three events relayed")
    received = mine()
    assert sorted(e["data"]["id"] for _, e in received) == sorted(ids)
    for properties, envelope in received:
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["type"] == "report.submitted" and envelope["source"] == "intake"
        assert properties.message_id == envelope["id"]
        assert properties.content_type == "application/json" and properties.delivery_mode == 2
        report = next(r for r in reports if r["id"] == envelope["data"]["id"])
        assert envelope["data"] == report


def case_event(action: str, dept: str, report_ids: list[str], **data) -> Event:
    key = f"case.{action}.{dept}"
    return Event.new(key, "routing", {"case_id": "case-" + report_ids[0], "report_ids": report_ids,
                                      "department": None if dept == "none" else dept, **data})


def send(amqp_url: str, event: Event) -> None:
    publish_raw(amqp_url, event.type, event.to_dict(), event.id)


def report_of(intake, report_id):
    return intake.client.get(f"/v1/reports/{report_id}", headers=bearer("office")).json


def test_the_report_follows_its_case_through_the_loop(intake, amqp_url, volunteer):
    photo = upload_photo(intake.client, volunteer)["id"]
    report = submit_report(intake.client, volunteer, [photo])
    rid = report["id"]
    dept = bearer("department", dept="traffic-police")
    assert intake.client.get(f"/v1/reports/{rid}", headers=dept).status_code == 404
    steps = [("opened", "none", {}, "submitted"),
             ("dispatched", "traffic-police", {"due_at": "2026-11-24T02:00:00Z"}, "in_progress"),
             ("accepted", "traffic-police", {}, "in_progress"),
             ("rectified", "traffic-police", {"after_photo_ids": ["after-1"], "note": "已拖移"}, "rectified"),
             ("closed", "traffic-police", {}, "closed")]
    for version, (action, department, data, expected) in enumerate(steps, start=1):
        send(amqp_url, case_event(action, department, [rid], case_version=version, **data))
        wait_for(lambda expected=expected, steps_seen=version + 1: report_of(intake, rid)["status"] == expected
                 and len(report_of(intake, rid)["timeline"]) == steps_seen, what=f"{action} applied")
    final = report_of(intake, rid)
    assert final["case_id"] == f"case-{rid}" and final["department"] == "traffic-police"
    assert final["after_photo_ids"] == ["after-1"]
    assert [s["status"] for s in final["timeline"]] == ["submitted", "submitted", "in_progress", "in_progress",
                                                        "rectified", "closed"]
    assert "交警支队" in final["timeline"][2]["note"] and "2026-11-24 10:00" in final["timeline"][2]["note"]
    # The reporter sees every step; the department now sees the report of its case.
    assert intake.client.get(f"/v1/reports/{rid}", headers=volunteer).json == final
    assert intake.client.get(f"/v1/reports/{rid}", headers=dept).status_code == 200


def test_a_redelivered_case_event_changes_nothing_the_second_time(intake, amqp_url, volunteer):
    photo = upload_photo(intake.client, volunteer)["id"]
    rid = submit_report(intake.client, volunteer, [photo])["id"]
    dispatched = case_event("dispatched", "sanitation", [rid])
    send(amqp_url, dispatched)
    wait_for(lambda: report_of(intake, rid)["status"] == "in_progress", what="dispatch applied")
    before = report_of(intake, rid)
    send(amqp_url, dispatched)
    marker = case_event("accepted", "sanitation", [rid])
    send(amqp_url, marker)  # one queue, one consumer: once this is applied, the duplicate was seen
    wait_for(lambda: len(report_of(intake, rid)["timeline"]) == 3, what="accept applied")
    after = report_of(intake, rid)
    assert after["timeline"][:2] == before["timeline"]
    assert [s["note"] for s in after["timeline"]].count(before["timeline"][1]["note"]) == 1


def test_a_report_that_joins_a_case_under_way_shows_the_cases_status_and_the_others_stay(intake, amqp_url, volunteer):
    photo = upload_photo(intake.client, volunteer)["id"]
    first, second = (submit_report(intake.client, volunteer, [photo])["id"] for _ in range(2))
    send(amqp_url, case_event("opened", "traffic-police", [first], status="dispatched", case_version=1))
    send(amqp_url, case_event("dispatched", "traffic-police", [first], status="dispatched", case_version=1))
    wait_for(lambda: len(report_of(intake, first)["timeline"]) == 3, what="the case opened and dispatched")
    before = report_of(intake, first)
    send(amqp_url, case_event("joined", "traffic-police", [first, second], report_id=second, status="dispatched",
                              case_version=2))
    joined = wait_for(lambda: (r := report_of(intake, second))["status"] == "in_progress" and r,
                      what="the joining report in progress")
    assert (joined["case_id"], joined["department"]) == (f"case-{first}", "traffic-police")
    assert [(s["status"], s["note"]) for s in joined["timeline"][1:]] == [("in_progress", "已并入同一问题的案卷")]
    assert report_of(intake, first) == before


def test_a_late_older_case_event_does_not_undo_a_newer_status(intake, amqp_url, volunteer):
    photo = upload_photo(intake.client, volunteer)["id"]
    rid = submit_report(intake.client, volunteer, [photo])["id"]
    send(amqp_url, case_event("closed", "sanitation", [rid], case_version=5))
    send(amqp_url, case_event("accepted", "sanitation", [rid], case_version=3))
    wait_for(lambda: len(report_of(intake, rid)["timeline"]) == 3, what="both applied")
    assert report_of(intake, rid)["status"] == "closed"


def test_rejected_as_duplicate_marks_the_report_duplicate(intake, amqp_url, volunteer):
    photo = upload_photo(intake.client, volunteer)["id"]
    rid = submit_report(intake.client, volunteer, [photo])["id"]
    send(amqp_url, case_event("rejected", "none", [rid], reason="duplicate", note="同一地点已有案卷"))
    wait_for(lambda: report_of(intake, rid)["status"] == "duplicate", what="rejection applied")


@pytest.mark.parametrize("body", [b"{not json", b'{"id": "x", "type": "case.closed.sanitation"}'])
def test_a_poison_case_event_ends_in_the_dead_letter_queue(intake, amqp_url, body):
    marker = uuid.uuid4().hex
    publish_raw(amqp_url, "case.closed.sanitation", body, marker)
    parked = wait_for(lambda: [m for m in deadletters.peek(amqp_url, "intake.case-events", 1000)
                               if m["message_id"] == marker], what="poison parked")
    assert len(parked) == 1


def test_a_case_event_without_report_ids_is_parked(intake, amqp_url):
    event = Event.new("case.closed.sanitation", "routing", {"case_id": "c-1"})
    send(amqp_url, event)
    wait_for(lambda: [m for m in deadletters.peek(amqp_url, "intake.case-events", 1000)
                      if m["message_id"] == event.id], what="parked")
