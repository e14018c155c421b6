"""What every service answers to hostile requests (bodies, nesting, times, request ids), and the audit log of who
asked for what: through HTTP, on intake and routing, the real broker and database."""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.audit import COLLECTION, AuditLog, drop_expired
from shared.errors import PROBLEM_MEDIA_TYPE
from shared.store import connect
from tests.conftest import bearer, run_service, settings_for_test
from tests.service.conftest import LANSHAN_01, upload_photo
from tests.support import wait_for


@pytest.fixture(scope="module")
def routing(amqp_url, mongo_url):
    service = run_service(settings_for_test("routing", amqp_url, mongo_url))
    yield service
    service.stop()


def report_body(photo_id: str, **fields) -> dict:
    return {"category": "traffic.parking", "description": "人行道上停放多辆机动车，影响通行", "location": LANSHAN_01,
            "photo_ids": [photo_id], **fields}


def assert_problem(response, status: int, says: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert response.json["status"] == status
    assert says in response.json["detail"], response.json


# --- bodies -------------------------------------------------------------------------------------------

def test_a_json_body_over_the_limit_is_a_413_problem(intake, volunteer):
    padding = "填" * (100 * 1024)  # 300 KiB of UTF-8
    response = intake.client.post("/v1/reports", headers=volunteer, json={"description": padding})
    assert_problem(response, 413, "A JSON body is at most 256 KiB")
    assert response.json["type"].endswith("/too-large")


def test_json_nested_fifty_thousand_deep_is_a_400_problem_not_a_500(intake, volunteer):
    body = "[" * 50_000 + "]" * 50_000
    response = intake.client.post("/v1/reports", headers=volunteer, data=body, content_type="application/json")
    assert_problem(response, 400, "nests more than 32 levels deep")


def test_json_nested_a_little_too_deep_is_refused_before_validation(intake, volunteer):
    body = {"category": "traffic.parking"}
    for _ in range(40):
        body = {"location": body}
    response = intake.client.post("/v1/reports", headers=volunteer, json=body)
    assert_problem(response, 400, "nests more than 32 levels deep")


def test_thousands_of_unknown_keys_get_a_small_422_listing_twenty(intake, volunteer):
    body = {f"unknown_field_{i}": 0 for i in range(20_000)}  # about 500 KiB before the limit: 10,000 fit
    body = dict(list(body.items())[:9_000])
    started = time.process_time()
    response = intake.client.post("/v1/reports", headers=volunteer, json=body)
    spent = time.process_time() - started
    assert_problem(response, 422, "more fields not listed")
    assert len(response.json["errors"]) == 20
    assert len(response.get_data()) < 8 * 1024
    assert spent < 5, f"{spent:.1f} s of CPU for one bad body"


def test_the_contracts_own_10_mib_photos_still_upload(intake, volunteer):
    assert upload_photo(intake.client, volunteer)["id"]


# --- times and request ids ----------------------------------------------------------------------------

@pytest.mark.parametrize("observed_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_at_the_ends_of_the_calendar_is_a_422_not_an_overflow(intake, volunteer, observed_at):
    photo = upload_photo(intake.client, volunteer)["id"]
    response = intake.client.post("/v1/reports", headers=volunteer, json=report_body(photo, observed_at=observed_at))
    assert_problem(response, 422, "invalid")
    assert "between the years" in json.dumps(response.json["errors"], ensure_ascii=False)


def test_a_plain_request_id_is_kept_and_any_other_replaced(intake):
    assert intake.client.get("/healthz", headers={"X-Request-Id": "gw-42.a"}).headers["X-Request-Id"] == "gw-42.a"
    forged = intake.client.get("/healthz", headers={"X-Request-Id": "x" * 500})
    assert forged.headers["X-Request-Id"] != "x" * 500 and len(forged.headers["X-Request-Id"]) == 32


# --- the audit log ------------------------------------------------------------------------------------

def audit(service, headers, **query) -> dict:
    response = service.client.get("/v1/audit", headers=headers, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def test_a_created_report_and_a_refused_one_are_both_in_intakes_audit_log(intake, volunteer, office):
    volunteer_id = f"vol-{uuid.uuid4().hex[:8]}"
    reporter = bearer("volunteer", volunteer_id)
    photo = upload_photo(intake.client, reporter)["id"]
    created = intake.client.post("/v1/reports", headers={**reporter, "X-Request-Id": "audit-1"},
                                 json=report_body(photo), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert created.status_code == 201
    mine = audit(intake, office, actor=volunteer_id)["items"]
    assert [(e["action"], e["outcome"], e["status"]) for e in mine] == [
        ("POST /v1/reports", "succeeded", 201), ("POST /v1/photos", "succeeded", 201)]
    entry = mine[0]
    assert entry["object"] == f"reports/{created.json['id']}"
    assert (entry["role"], entry["remote"], entry["request_id"], entry["service"]) == (
        "volunteer", "203.0.113.9", "audit-1", "intake")

    staff = f"office-{uuid.uuid4().hex[:8]}"
    refused = intake.client.post("/v1/reports", headers=bearer("office", staff), json=report_body(photo))
    assert refused.status_code == 403
    assert [(e["action"], e["outcome"], e["status"], e["role"]) for e in audit(intake, office, actor=staff)["items"]] \
        == [("POST /v1/reports", "refused", 403, "office")]


def test_a_request_without_a_valid_token_is_entered_without_an_actor(intake, office):
    target = f"reports-{uuid.uuid4().hex[:6]}"
    response = intake.client.post(f"/v1/reports?probe={target}", headers={"Authorization": "Bearer forged"},
                                  json={}, environ_base={"REMOTE_ADDR": "198.51.100.23"})
    assert response.status_code == 401
    entries = [e for e in audit(intake, office, object="reports")["items"] if e["remote"] == "198.51.100.23"]
    assert entries and entries[0]["actor"] is None and entries[0]["outcome"] == "refused"


def test_routing_audits_its_refusals_and_filters_by_object_and_time(routing, office):
    police = f"police-{uuid.uuid4().hex[:8]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    rules = routing.client.get("/v1/rules", headers=office).json
    refused = routing.client.put("/v1/rules", headers=bearer("department", police, dept="traffic-police"), json=rules)
    assert refused.status_code == 403
    missing = routing.client.post(f"/v1/cases/{uuid.uuid4().hex[:24]}/accept",
                                  headers=bearer("department", police, dept="traffic-police"))
    assert missing.status_code == 404
    entries = audit(routing, office, actor=police)["items"]
    assert [(e["action"], e["status"]) for e in entries] == [
        ("POST /v1/cases/<case_id>/accept", 404), ("PUT /v1/rules", 403)]
    assert audit(routing, office, actor=police, object="rules")["items"] == entries[1:]
    assert audit(routing, office, actor=police, **{"from": before.isoformat()})["items"] == entries
    assert audit(routing, office, actor=police, to=before.isoformat())["items"] == []


def test_the_audit_log_is_paged_by_cursor(intake, office):
    actor = f"vol-{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        intake.client.post("/v1/reports", headers=bearer("volunteer", actor), json={})
    first = audit(intake, office, actor=actor, limit=2)
    second = audit(intake, office, actor=actor, limit=2, cursor=first["next_cursor"])
    third = audit(intake, office, actor=actor, limit=2, cursor=second["next_cursor"])
    ids = [e["id"] for page in (first, second, third) for e in page["items"]]
    assert len(ids) == len(set(ids)) == 5 and third["next_cursor"] is None


@pytest.mark.parametrize("role", ["volunteer", "grid_leader", "department", "association"])
def test_only_the_office_reads_the_audit_log(intake, role):
    headers = bearer(role, dept="sanitation" if role == "department" else None,
                     grid="lanshan-01" if role == "grid_leader" else None)
    assert intake.client.get("/v1/audit", headers=headers).status_code == 403


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_nobody_edits_the_audit_log(intake, office, method):
    assert getattr(intake.client, method)("/v1/audit", headers=office, json={}).status_code == 405


def test_entries_are_written_in_batches_and_forgotten_after_the_retention(mongo_url):
    entries = connect(mongo_url, f"test_audit_{uuid.uuid4().hex[:8]}")[COLLECTION]
    log = AuditLog(entries, flush_every_s=0.2)
    now = datetime.now(UTC)
    for age_days in (0, 10, 200):
        log.record({"_id": uuid.uuid4().hex, "at": now - timedelta(days=age_days), "actor": "a", "object": "x"})
    assert entries.count_documents({}) == 0  # not yet: the process batches them
    wait_for(lambda: entries.count_documents({}) == 3, timeout=30, what="the batch written")
    assert drop_expired(entries, now, timedelta(days=180)) == 1
    assert entries.count_documents({}) == 2


def test_every_service_documents_its_audit_log(intake, routing):
    for service in (intake, routing):
        spec = service.client.get("/openapi.json").json
        assert set(spec["paths"]["/v1/audit"]) == {"get"}
