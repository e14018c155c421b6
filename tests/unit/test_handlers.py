"""Each service's event handlers, with in-memory doubles of their stores (no database, no broker): what a
consumed event does to the service's state, and which events can never be handled."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.intake import domain as intake
from services.intake import handlers as intake_handlers
from services.notify.domain import Notice
from services.notify.notices import Heard, NoticeWriter
from services.notify.templates import SAMPLE_CONTEXTS, Templates
from services.routing import domain as routing
from services.routing import handlers as routing_handlers
from services.routing.clock import CalendarClock
from shared import reference
from shared.events import Event, MalformedEvent
from tests.unit.routing_store_double import CaseStoreDouble

HERE = (35.0600, 118.3150)
CITY = reference.load(None)


# --- routing ------------------------------------------------------------------------------------

def submitted(report_id: str = "r1", category: str = "env.garbage", at=HERE, **changes) -> Event:
    report = {"id": report_id, "category": category, "grid_id": "lanshan-01", "district": "lanshan",
              "location": {"lat": at[0], "lng": at[1]}, "description": "路边垃圾堆积", "photo_ids": ["p1"]}
    return Event.new("report.submitted", "intake", {**report, **changes}, correlation_id="c-1")


def route(store: CaseStoreDouble, event: Event) -> None:
    routing_handlers.reports_submitted([event], store=store, clock_for=lambda basis: CalendarClock())


@pytest.fixture
def cases():
    return CaseStoreDouble(routing.default_rules(CITY.categories.values()))


def test_a_report_with_a_rule_opens_a_case_dispatched_to_its_department(cases):
    route(cases, submitted())
    [case] = cases.cases.values()
    assert (case["id"], case["status"], case["department"], case["report_ids"]) == (
        "case-r1", "dispatched", "sanitation", ["r1"])
    assert timedelta(hours=23.9) < case["due_at"] - datetime.now(UTC) <= timedelta(hours=24)
    assert [e.type for e in cases.published] == ["case.opened.sanitation", "case.dispatched.sanitation"]
    assert {e.correlation_id for e in cases.published} == {"c-1"}


def test_a_report_without_a_rule_waits_for_triage(cases):
    route(cases, submitted(category="other"))
    assert cases.cases["case-r1"]["status"] == "pending_triage"
    assert [e.type for e in cases.published] == ["case.opened.none"]


def test_a_report_near_an_open_case_of_its_kind_joins_it_with_one_joined_event_and_no_opened(cases):
    route(cases, submitted("r1"))
    opening = len(cases.published)
    route(cases, submitted("r2", at=(HERE[0] + 0.001, HERE[1])))  # about 110 m north
    assert list(cases.cases) == ["case-r1"] and cases.cases["case-r1"]["report_ids"] == ["r1", "r2"]
    [joined] = cases.published[opening:]
    assert (joined.type, joined.data["report_id"], joined.data["report_ids"]) == (
        "case.joined.sanitation", "r2", ["r1", "r2"])
    assert [e.type for e in cases.published].count("case.opened.sanitation") == 1


@pytest.mark.parametrize("changes", [
    {"location": {"lng": HERE[1]}}, {"location": {"lat": "35.06", "lng": HERE[1]}},
    {"location": {"lat": 135.0, "lng": HERE[1]}}, {"location": None}, {"id": None}, {"photo_ids": "p1"},
])
def test_a_report_routing_cannot_work_with_is_malformed_and_changes_nothing(cases, changes):
    """Malformed events are parked at once; a KeyError used to be retried for a minute first."""
    with pytest.raises(MalformedEvent):
        route(cases, submitted(**changes))
    assert cases.cases == {}


# --- intake -------------------------------------------------------------------------------------

class ReportStoreDouble:
    """ReportStore's interface as the case-event handler uses it, over a dict."""

    def __init__(self, *reports: dict):
        self.reports = {r["id"]: r for r in reports}

    def apply_case_steps(self, follows) -> list[str]:
        for report_id, follow in follows:
            if report_id in self.reports and (changes := follow(self.reports[report_id])) is not None:
                self.reports[report_id] = {**self.reports[report_id], **changes}
        return sorted({report_id for report_id, _ in follows} - set(self.reports))


def a_report(report_id: str = "r1") -> dict:
    grid = CITY.grids["lanshan-01"]
    fields = {"category": "env.garbage", "description": "路边垃圾堆积", "location": {"lat": HERE[0], "lng": HERE[1]},
              "photo_ids": ["p1"]}
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    return intake.new_report(report_id, "v1", fields, grid, duplicate_of=None, now=an_hour_ago)


def case_event(action: str, department: str = "sanitation", version: int = 2, **data) -> Event:
    payload = {"case_id": "case-r1", "report_ids": ["r1"], "status": action, "case_version": version,
               "due_at": "2026-11-25T02:00:00.000Z", **data}
    return Event.new(f"case.{action}.{department}", "routing", payload)


def follow(store: ReportStoreDouble, *events: Event, city: reference.ReferenceData = CITY) -> None:
    intake_handlers.cases_changed(list(events), store=store, reference=city)


def test_a_dispatch_puts_the_report_in_progress_with_its_department_named_to_the_reporter():
    store = ReportStoreDouble(a_report())
    follow(store, case_event("dispatched"))
    report = store.reports["r1"]
    assert (report["status"], report["department"], report["case_id"]) == ("in_progress", "sanitation", "case-r1")
    assert report["timeline"][-1]["note"].startswith(f"已派遣至{CITY.departments['sanitation'].name_zh}")


@pytest.mark.parametrize("zone, local_due", [("Asia/Shanghai", "2026-11-25 10:00"),
                                              ("Asia/Urumqi", "2026-11-25 08:00")])
def test_the_reporter_reads_the_deadline_in_the_citys_time_zone(zone, local_due):
    store = ReportStoreDouble(a_report())
    follow(store, case_event("dispatched"), city=replace(CITY, timezone=ZoneInfo(zone)))  # due 02:00Z
    assert f"整改期限 {local_due}" in store.reports["r1"]["timeline"][-1]["note"]


def test_events_that_arrive_together_are_applied_in_their_order():
    store = ReportStoreDouble(a_report())
    follow(store, case_event("opened", version=1, status="dispatched"), case_event("dispatched", version=1))
    report = store.reports["r1"]
    assert (report["status"], report["department"]) == ("in_progress", "sanitation")
    assert [entry["event"] for entry in report["timeline"][1:]] == ["case.opened", "case.dispatched"]


def test_a_redelivered_case_event_changes_nothing_more():
    store = ReportStoreDouble(a_report())
    event = case_event("dispatched")
    follow(store, event)
    once = store.reports["r1"]
    follow(store, event)
    assert store.reports["r1"] == once


def test_an_older_step_arriving_late_is_shown_but_does_not_set_the_status():
    store = ReportStoreDouble(a_report())
    follow(store, case_event("rectified", version=4, after_photo_ids=["a1"]))
    follow(store, case_event("accepted", version=3))
    report = store.reports["r1"]
    assert report["status"] == "rectified" and report["after_photo_ids"] == ["a1"]
    assert sorted(entry["event"] for entry in report["timeline"][1:]) == ["case.accepted", "case.rectified"]


def joined_event(case_status: str = "dispatched", version: int = 3) -> Event:
    return case_event("joined", version=version, status=case_status, report_ids=["r1", "r2"], report_id="r2")


def test_a_report_that_joins_a_case_under_way_takes_up_its_status_and_case():
    store = ReportStoreDouble(a_report("r2"))
    follow(store, joined_event("dispatched"))
    report = store.reports["r2"]
    assert (report["status"], report["case_id"], report["department"]) == ("in_progress", "case-r1", "sanitation")
    assert (report["timeline"][-1]["note"], report["timeline"][-1]["event"]) == ("已并入同一问题的案卷", "case.joined")


def test_a_report_joining_a_case_in_triage_stays_submitted():
    store = ReportStoreDouble(a_report("r2"))
    follow(store, case_event("joined", department="none", version=1, status="pending_triage",
                             report_ids=["r1", "r2"], report_id="r2"))
    report = store.reports["r2"]
    assert (report["status"], report["case_id"], report["department"]) == ("submitted", "case-r1", None)


def test_a_join_leaves_the_cases_other_reports_as_they_were():
    store = ReportStoreDouble(a_report("r1"), a_report("r2"))
    follow(store, case_event("opened", version=1, status="dispatched"), case_event("dispatched", version=1))
    first = store.reports["r1"]
    follow(store, joined_event("dispatched", version=2))
    assert store.reports["r1"] == first
    assert store.reports["r2"]["status"] == "in_progress"


def test_a_redelivered_joined_event_changes_nothing_more():
    store = ReportStoreDouble(a_report("r2"))
    event = joined_event()
    follow(store, event)
    once = store.reports["r2"]
    follow(store, event)
    assert store.reports["r2"] == once


def test_a_case_event_for_a_report_intake_does_not_have_is_not_an_error():
    follow(ReportStoreDouble(), case_event("dispatched"))  # logged; the event is done with


@pytest.mark.parametrize("event", [
    Event.new("case.teleported.sanitation", "routing", {"report_ids": ["r1"]}),
    Event.new("case.dispatched.sanitation", "routing", {"case_id": "c"}),
    Event.new("case.dispatched.sanitation", "routing", {"report_ids": []}),
    Event.new("case.dispatched.sanitation", "routing", {"report_ids": ["r1"], "due_at": "next tuesday"}),
    Event.new("case.joined.sanitation", "routing", {"report_ids": ["r1"]}),
    Event.new("case.joined.sanitation", "routing", {"report_ids": ["r2"], "report_id": "r1"}),
])
def test_a_case_event_intake_cannot_understand_is_malformed(event):
    store = ReportStoreDouble(a_report())
    with pytest.raises(MalformedEvent):
        intake_handlers.cases_changed([event], store=store, reference=CITY)
    assert store.reports["r1"]["status"] == "submitted"


# --- notify -------------------------------------------------------------------------------------

class NotifyStoreDouble:
    """NotifyStore's interface as the notice writer uses it, over lists."""

    def __init__(self, subscriptions: dict[str, dict]):
        self.subscriptions = subscriptions
        self.inbox: list[dict] = []
        self.deliveries: list[dict] = []

    def subscriptions_of(self, recipients: set[str]) -> dict[str, dict]:
        return {r: {"recipient": r, **s} for r, s in self.subscriptions.items() if r in recipients}

    def add_notices(self, inbox: list[dict], deliveries: list[dict]) -> int:
        self.inbox += inbox
        self.deliveries += deliveries
        return len(inbox)


def dispatch_notice(recipient: str, report_id: str) -> Notice:
    return Notice(recipient, "case.event", "case.dispatched.traffic-police",
                  {**SAMPLE_CONTEXTS["case.event"], "report_id": report_id})


def test_the_notice_writer_wakes_the_dispatcher_when_it_stores_deliveries_and_only_then():
    store = NotifyStoreDouble({"department:traffic-police": {"webhook_url": "https://police.example/hook",
                                                            "secret": "s", "suspended": []}})
    woken = []
    writer = NoticeWriter(store, Templates(), on_deliveries=lambda: woken.append(1))
    writer.write([dispatch_notice("office", "r1")], "e1", "case.dispatched.traffic-police", "2026-12-03T00:00:00Z",
                 datetime.now(UTC))
    assert (len(store.inbox), store.deliveries, woken) == (1, [], [])
    writer.write_all([Heard([dispatch_notice("department:traffic-police", "r2")], "e2",
                            "case.dispatched.traffic-police", "2026-12-03T00:00:00Z")], datetime.now(UTC))
    assert [d["channel"] for d in store.deliveries] == ["webhook"] and woken == [1]
