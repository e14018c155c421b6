"""The app factory's guards against hostile requests, and the audit entry's shape: pure pieces."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from marshmallow import Schema, ValidationError

from shared.audit import audit_entry, object_of, outcome_of
from shared.config import Rate
from shared.ratelimit import EXPORT, READ, UPLOAD, WRITE, RateLimiter
from shared.schemas import Timestamp
from shared.web import REQUEST_ID, bounded_errors, json_depth_exceeds, request_kind, serves_export


def nested(depth: int):
    value: list | dict = []
    for level in range(depth - 1):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize("depth, deeper", [(1, False), (31, False), (32, False), (33, True), (5000, True)])
def test_json_deeper_than_the_bound_is_found_without_recursion(depth, deeper):
    assert json_depth_exceeds(nested(depth), 32) is deeper


def test_scalars_and_flat_bodies_are_not_deep():
    assert not json_depth_exceeds(None, 32)
    assert not json_depth_exceeds("text", 1)
    assert not json_depth_exceeds({f"k{i}": i for i in range(10_000)}, 2)


def test_an_error_list_is_bounded_in_fields_messages_and_length():
    errors = {f"unknown_{i}" + "x" * 1000: ["Unknown field."] * 10 for i in range(700)}
    shown, left_out = bounded_errors(errors)
    assert len(shown) == 20 and left_out == 680
    assert all(len(field) <= 300 and len(texts) == 3 for field, texts in shown.items())


def test_a_short_error_list_is_shown_whole():
    errors = {"description": ["Length must be between 5 and 2000."]}
    assert bounded_errors(errors) == (errors, 0)


class When(Schema):
    at = Timestamp(required=True)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
                                  "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z"])
def test_a_time_outside_the_programmes_years_is_invalid_not_an_overflow(text):
    with pytest.raises(ValidationError) as refused:
        When().load({"at": text})
    assert "between the years 1970 and 2999" in str(refused.value)


def test_a_time_with_an_offset_is_kept_in_utc():
    assert When().load({"at": "2026-11-23T08:30:00+08:00"})["at"] == datetime(2026, 11, 23, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("sent, kept", [
    ("6745a1c2e4b0f3a9d2c81e07", True), ("req-1.2:3_4", True), ("a" * 128, True), ("a" * 129, False),
    ("x\r\nSet-Cookie: a=b", False), ("", False), ("-leading-dash", False), ("空格 id", False),
])
def test_only_a_plain_request_id_is_taken_from_the_caller(sent, kept):
    assert bool(REQUEST_ID.fullmatch(sent)) is kept


def test_requests_count_as_writes_uploads_reads_or_exports():
    def view():
        pass

    def upload():
        pass

    upload._woodpecker_multipart = True
    pdf = serves_export(lambda: None)
    assert request_kind(view, "POST", None) == WRITE
    assert request_kind(upload, "POST", None) == UPLOAD
    assert request_kind(view, "GET", None) == READ
    assert request_kind(view, "GET", "xlsx") == EXPORT
    assert request_kind(pdf, "GET", None) == EXPORT


def test_reads_and_exports_count_against_the_address_read_limit_and_writes_against_the_write_one():
    limiter = RateLimiter(None, writes=Rate(60, "minute"), uploads=None, per_address=Rate(600, "minute"),
                          reads=Rate(600, "minute"), exports=Rate(30, "minute"), reads_per_address=Rate(3000, "minute"))
    assert [(q.limit, q.key) for q in limiter.quotas(kind=EXPORT, caller_id="vol-1", address="10.0.0.1")] == [
        ("exports", "caller:vol-1"), ("read_address", "address:10.0.0.1")]
    assert [(q.limit, q.key) for q in limiter.quotas(kind=READ, caller_id=None, address="10.0.0.1")] == [
        ("reads", "address:10.0.0.1"), ("read_address", "address:10.0.0.1")]
    assert [q.limit for q in limiter.quotas(kind=WRITE, caller_id="vol-1", address="10.0.0.1")] == [
        "writes", "address"]
    assert limiter.applies(kind=UPLOAD)  # the address's limit applies to uploads too


@pytest.mark.parametrize("path, view_args, created, expected", [
    ("/v1/cases/c1/accept", {"case_id": "c1"}, None, "cases/c1"),
    ("/v1/activities/a1/objections/o1/decision", {"activity_id": "a1", "objection_id": "o1"}, None,
     "activities/a1/objections/o1"),
    ("/v1/reports", {}, "r9", "reports/r9"),
    ("/v1/rules", {}, None, "rules"),
    ("/v1/subscriptions/department:sanitation", {"recipient": "department:sanitation"}, None,
     "subscriptions/department:sanitation"),
])
def test_the_object_of_a_request_is_what_its_path_names(path, view_args, created, expected):
    assert object_of(path, view_args, created) == expected


def test_an_object_is_cut_short_however_long_the_path():
    assert len(object_of("/v1/cases/" + "c" * 5000 + "/accept", {"case_id": "c" * 5000}, None)) == 300


@pytest.mark.parametrize("status, outcome", [(200, "succeeded"), (201, "succeeded"), (304, "succeeded"),
                                             (401, "refused"), (403, "refused"), (409, "refused"),
                                             (500, "failed")])
def test_outcomes(status, outcome):
    assert outcome_of(status) == outcome


def test_an_audit_entry_says_who_what_which_object_when_where_and_how_it_ended():
    at = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    entry = audit_entry(at=at, service="routing", method="POST", rule="/v1/cases/<case_id>/accept",
                        path="/v1/cases/c1/accept", view_args={"case_id": "c1"}, status=409, created_id=None,
                        actor="police-1", role="department", remote="10.0.0.7", request_id="r-1")
    assert {k: v for k, v in entry.items() if k != "_id"} == {
        "at": at, "service": "routing", "actor": "police-1", "role": "department",
        "action": "POST /v1/cases/<case_id>/accept", "object": "cases/c1", "outcome": "refused", "status": 409,
        "remote": "10.0.0.7", "request_id": "r-1"}
