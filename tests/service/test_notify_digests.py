"""The weekly grid digest against the real store and broker: last week's reports of a grid, once per grid per
week, from the events notify has seen."""
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pika
import pytest

from services.notify.digests import GridDigest, due_week
from services.notify.domain import Links
from services.notify.handlers import SUBSCRIPTIONS
from services.notify.notices import NoticeWriter
from services.notify.templates import Templates
from shared import reference
from shared.events import Event, rfc3339
from tests.conftest import bearer, run_service, settings_for_test
from tests.support import publish_raw, wait_for
from tests.unit.test_notify_digests import next_monday_morning

CITY = reference.load(None)
ZONE = CITY.timezone
LEADER = bearer("grid_leader", "leader-2", grid="lanshan-02")


@pytest.fixture
def notify(amqp_url, mongo_url):
    """A notify of its own, starting from empty queues: reports other modules' services published while no
    notify ran would otherwise land in this digest."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    for queue, _, _ in SUBSCRIPTIONS:
        connection.channel().queue_purge(queue)
    connection.close()
    service = run_service(settings_for_test("notify", amqp_url, mongo_url))
    yield service
    service.stop()


def publish(amqp_url, event: Event) -> None:
    publish_raw(amqp_url, event.routing_key, event.to_dict(), message_id=event.id)


def submitted(amqp_url, grid_id: str) -> str:
    report_id = uuid.uuid4().hex
    publish(amqp_url, Event.new("report.submitted", "intake", {
        "id": report_id, "reporter_id": "u1", "grid_id": grid_id, "category": "env.garbage",
        "submitted_at": rfc3339(datetime.now(UTC))}))
    return report_id


def case_event(amqp_url, action: str, report_id: str, status: str, version: int, overdue: bool = False) -> None:
    publish(amqp_url, Event.new(f"case.{action}.sanitation", "routing", {
        "case_id": f"case-{report_id}", "report_ids": [report_id], "category": "env.garbage",
        "department": "sanitation", "status": status, "due_at": None, "grid_id": "lanshan-02",
        "location": {"lat": 35.05, "lng": 118.3}, "description": "垃圾堆放", "photo_ids": [], "overdue": overdue,
        "escalation_level": int(overdue), "case_version": version}))


def digest(notify) -> GridDigest:
    """A digest job over the notify service's store, as its worker builds one."""
    store = notify.app.extensions["notify"].store
    return GridDigest(store, NoticeWriter(store, Templates()), CITY, Links("https://linyi.example"))


def test_the_grid_leader_gets_last_weeks_digest_once(notify, amqp_url):
    open_one, overdue_one, closed_one = (submitted(amqp_url, "lanshan-02") for _ in range(3))
    elsewhere = submitted(amqp_url, "hedong-01")
    case_event(amqp_url, "overdue", overdue_one, "dispatched", 2, overdue=True)
    case_event(amqp_url, "closed", closed_one, "closed", 3)
    store = notify.app.extensions["notify"].store
    wait_for(lambda: store.reports.find_one({"_id": closed_one, "status": "closed"})
             and store.reports.find_one({"_id": overdue_one, "overdue": True})
             and store.reports.find_one({"_id": elsewhere}), what="notify following the reports")
    monday = next_monday_morning()
    job = digest(notify)
    assert job.check(monday) == len(CITY.grids)
    items = notify.client.get("/v1/inbox", headers=LEADER).json["items"]
    digests = [i for i in items if i["kind"] == "grid.digest"]
    assert len(digests) == 1
    body = digests[0]["body"]
    assert "新增 3 条" in body and "办结 1 条" in body and "未办结 2 条" in body and "逾期 1 条" in body
    assert open_one in body and overdue_one in body and closed_one not in body and elsewhere not in body
    assert job.check(monday) == 0 and job.check(monday + timedelta(days=2)) == 0  # once per grid per week


def test_several_workers_write_each_grids_digest_once(notify):
    monday = next_monday_morning() + timedelta(days=7)
    with ThreadPoolExecutor(4) as pool:
        written = sum(pool.map(lambda _: digest(notify).check(monday), range(4)))
    assert written == len(CITY.grids)
    week, _ = due_week(monday, ZONE)
    count = notify.app.extensions["notify"].store.inbox.count_documents({"event_id": {"$regex": f":{week}$"}})
    assert count == len(CITY.grids)


def test_a_reports_steps_that_come_together_leave_it_at_the_newest(notify, amqp_url):
    report_id = submitted(amqp_url, "lanshan-02")
    store = notify.app.extensions["notify"].store
    wait_for(lambda: store.reports.find_one({"_id": report_id}), what="notify hearing of the report")
    # The newest step first, an older one after it: the report ends at the newest, closed and no longer overdue.
    case_event(amqp_url, "overdue", report_id, "dispatched", 2, overdue=True)
    case_event(amqp_url, "closed", report_id, "closed", 3)
    case_event(amqp_url, "opened", report_id, "dispatched", 1)
    wait_for(lambda: store.reports.find_one({"_id": report_id, "case_version": 3}), what="the closing step")
    marker = submitted(amqp_url, "lanshan-02")
    wait_for(lambda: store.reports.find_one({"_id": marker}), what="notify hearing of a second report")
    case_event(amqp_url, "overdue", report_id, "dispatched", 2, overdue=True)  # late, and older: changes nothing
    # The same queue, in order: once the second report's step is applied, the late one has been handled.
    case_event(amqp_url, "opened", marker, "dispatched", 1)
    wait_for(lambda: store.reports.find_one({"_id": marker, "case_version": 1}), what="the step after the late one")
    report = store.reports.find_one({"_id": report_id})
    assert (report["status"], report["open"], report["overdue"], report["case_version"]) == ("closed", False, False, 3)
    assert report["closed_at"] is not None


def test_steps_read_before_another_writer_changed_the_report_are_applied_in_order(notify):
    store = notify.app.extensions["notify"].store
    report_id = uuid.uuid4().hex
    store.remember_reports([{"id": report_id, "reporter_id": "u1", "grid_id": "lanshan-02", "category": None,
                             "submitted_at": datetime.now(UTC), "status": "submitted"}])
    heard = store.heard_reports([report_id])
    # Meanwhile another worker applies version 2; what this one read says version none.
    store.follow_cases([([report_id], {"status": "dispatched", "overdue": True}, 2)], store.heard_reports([report_id]))
    store.follow_cases([([report_id], {"status": "submitted", "overdue": False}, 1),
                        ([report_id], {"status": "closed", "open": False}, 3)], heard)
    report = store.reports.find_one({"_id": report_id})
    # Version 1 is older than what the other wrote, so it changes nothing: overdue stays as version 2 left it.
    assert (report["status"], report["open"], report["overdue"], report["case_version"]) == ("closed", False, True, 3)
