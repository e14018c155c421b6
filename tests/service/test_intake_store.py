"""Intake's store against the real database: the consumer's conditional write of a report."""
import uuid
from datetime import UTC, datetime

import pytest

from services.intake.domain import report_submitted
from services.intake.store import ReportStore
from shared.store import connect, if_unchanged_since


@pytest.fixture
def store(mongo_url):
    report_store = ReportStore.prepared(connect(mongo_url, f"test_intake_{uuid.uuid4().hex[:10]}"))
    yield report_store
    report_store.db.client.drop_database(report_store.db.name)


def a_report(store: ReportStore) -> str:
    now = datetime.now(UTC)
    report = {"id": uuid.uuid4().hex[:24], "reporter_id": "vol-1", "category": "traffic.parking",
              "description": "人行道上停放多辆机动车", "location": {"lat": 35.061, "lng": 118.316},
              "grid_id": "lanshan-01", "district": "lanshan", "photo_ids": ["p1"], "observed_at": now,
              "submitted_at": now, "patrol_id": None, "status": "submitted", "case_id": None, "department": None,
              "duplicate_of": None, "closed_at": None, "after_photo_ids": [], "timeline": [], "case_version": 0,
              "applied_events": []}
    store.add_report(report, report_submitted(report, None), None, "fingerprint")
    return report["id"]


def test_a_conditional_write_at_an_old_revision_leaves_the_document_as_it_is(store):
    report_id = a_report(store)
    stale = store.reports.update_one({"_id": report_id}, if_unchanged_since(
        {"$set": {"status": "closed"}, "$unset": {"outbox": ""}}, "revision", 7))
    assert (stale.matched_count, stale.modified_count) == (1, 0)
    document = store.reports.find_one({"_id": report_id})
    assert document["status"] == "submitted" and document["revision"] == 0 and len(document["outbox"]) == 1

    current = store.reports.update_one({"_id": report_id}, if_unchanged_since(
        {"$set": {"status": "closed", "note": "$status"}, "$unset": {"outbox": ""}}, "revision", 0))
    assert current.modified_count == 1
    document = store.reports.find_one({"_id": report_id})
    assert (document["status"], document["note"], document["revision"]) == ("closed", "$status", 1)
    assert "outbox" not in document


def test_a_case_step_written_meanwhile_is_kept_and_the_later_writer_applies_its_own_over_it(store):
    report_id = a_report(store)
    meanwhile = [lambda report: {"timeline": [*report["timeline"], "written meanwhile"]}]

    def first(report: dict) -> dict:
        if meanwhile:  # between this writer's read and its write, another consumer writes the report
            store.apply_case_steps([(report_id, meanwhile.pop())])
        return {"timeline": [*report["timeline"], "first"]}

    assert store.apply_case_steps([(report_id, first)]) == []
    document = store.reports.find_one({"_id": report_id})
    assert document["timeline"] == ["written meanwhile", "first"]
    assert document["revision"] == 2
