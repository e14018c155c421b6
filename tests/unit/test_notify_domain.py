"""Who hears what, and on which channels, without I/O."""
from datetime import UTC, datetime

import pytest

from services.notify import domain
from services.notify.domain import Notice
from shared import reference
from shared.auth import Caller

CITY = reference.load(None)
LINKS = domain.Links("https://linyi.example/")
CASE = {"case_id": "c1", "report_ids": ["r1", "r2"], "category": "traffic.parking", "department": "traffic-police",
        "status": "dispatched", "grid_id": "lanshan-01", "description": "违停", "overdue": False,
        "escalation_level": 0, "note": ""}


def notices(action, department="traffic-police", reporters=None, **data):
    return domain.case_notices(action, department, f"case.{action}.{department or 'none'}", {**CASE, **data},
                               reporters if reporters is not None else {"r1": "u1", "r2": "u2"}, CITY,
                               CITY.timezone, LINKS, datetime(2026, 11, 25, 0, 31, tzinfo=UTC))


@pytest.mark.parametrize("action, kind", [("dispatched", "report.dispatched"), ("rectified", "report.rectified"),
                                          ("closed", "report.closed"), ("rejected", "report.rejected")])
def test_every_reporter_of_the_case_hears_its_outcome(action, kind):
    heard = [(n.recipient, n.kind) for n in notices(action) if n.recipient.startswith("volunteer:")]
    assert heard == [("volunteer:u1", kind), ("volunteer:u2", kind)]


def test_a_report_joining_a_case_under_way_hears_that_and_the_others_do_not():
    joined = notices("opened", report_ids=["r2"], attached=True)
    assert [(n.recipient, n.kind) for n in joined if n.recipient.startswith("volunteer:")] == [
        ("volunteer:u2", "report.joined")]
    assert not [n for n in notices("opened") if n.recipient.startswith("volunteer:")]


def test_the_department_hears_its_case_and_the_office_what_needs_it():
    assert {(n.recipient, n.kind) for n in notices("accepted")} == {("department:traffic-police", "case.event")}
    overdue = {(n.recipient, n.kind) for n in notices("overdue", overdue=True, escalation_level=1)}
    assert overdue == {("department:traffic-police", "case.event"), ("office", "office.overdue")}
    assert ("office", "office.disputed") in {(n.recipient, n.kind) for n in notices("disputed", department=None)}


def test_a_notice_carries_local_times_and_links_for_people():
    dispatched = next(n for n in notices("dispatched") if n.recipient == "volunteer:u1")
    assert dispatched.context["due_at"] == "2026-11-25 08:31"  # Linyi's time
    assert dispatched.context["link"] == "https://linyi.example/reports/r1"
    assert dispatched.context["department_name"] == CITY.departments["traffic-police"].name_zh


def test_hours_reach_the_volunteer_they_concern():
    heard = domain.volunteer_notices("hours.credited", {"volunteer_id": "v9", "hours": 2}, LINKS)
    assert [(n.recipient, n.kind) for n in heard] == [("volunteer:v9", "hours.credited")]
    assert domain.volunteer_notices("volunteer.registered", {"volunteer_id": "v9"}, LINKS) == []


OUTCOME = Notice("volunteer:u1", "report.closed", "case.closed.traffic-police")
CREDIT = Notice("volunteer:u1", "hours.credited", "hours.credited")


def test_without_a_subscription_everything_goes_to_the_inbox_only():
    assert domain.channels_for(CREDIT, None) == ["inbox"]


def test_a_subscription_adds_email_and_webhook_for_the_events_it_asks_for():
    subscription = {"email": "a@b.example", "webhook_url": "https://h.example/x", "events": ["hours.*"]}
    assert domain.channels_for(CREDIT, subscription) == ["inbox", "email", "webhook"]
    assert domain.channels_for(OUTCOME, subscription) == ["inbox"]  # case events not asked for


def test_a_muted_kind_is_silent_but_an_outcome_always_reaches_the_inbox():
    muted = {"preferences": {"hours.credited": {"muted": True}, "report.closed": {"muted": True}},
             "webhook_url": "https://h.example/x"}
    assert domain.channels_for(CREDIT, muted) == []
    assert domain.channels_for(OUTCOME, muted) == ["inbox", "webhook"]


def test_an_empty_channel_list_means_none_and_no_preference_means_all():
    subscription = {"webhook_url": "https://h.example/x", "preferences": {"hours.credited": {"channels": []}}}
    assert domain.channels_for(CREDIT, subscription) == []
    assert domain.channels_for(Notice("volunteer:u1", "hours.reversed", "hours.reversed"), subscription) == [
        "inbox", "webhook"]


@pytest.mark.parametrize("caller, recipients", [
    (Caller("u1", "volunteer"), ["volunteer:u1"]),
    (Caller("l1", "grid_leader", grid="lanshan-01"), ["volunteer:l1", "grid:lanshan-01"]),
    (Caller("p1", "department", dept="traffic-police"), ["department:traffic-police"]),
    (Caller("o1", "office"), ["office"]),
])
def test_whose_inbox_a_caller_reads(caller, recipients):
    assert domain.recipients_of(caller) == recipients


def test_back_off_doubles_with_jitter_and_gives_up_after_the_window():
    assert domain.retry_delay_s(1, 0.0) == 1.0 and domain.retry_delay_s(1, 0.999) < 2.0
    assert domain.retry_delay_s(5, 0.0) == 16.0 and domain.retry_delay_s(30, 0.5) <= domain.LONGEST_RETRY_S
    created = datetime(2026, 11, 24, tzinfo=UTC)
    young = domain.after_attempt({"created_at": created, "attempt_count": 0}, False, False,
                                 datetime(2026, 11, 24, 1, tzinfo=UTC), 86400, 0.5)
    assert young["status"] == "pending" and young["next_attempt_at"] > datetime(2026, 11, 24, 1, tzinfo=UTC)
    old = domain.after_attempt({"created_at": created, "attempt_count": 9}, False, False,
                               datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC), 86400, 0.5)
    assert old["status"] == "failed"
    assert domain.after_attempt({"created_at": created}, False, True, created, 86400, 0.5)["status"] == "failed"
