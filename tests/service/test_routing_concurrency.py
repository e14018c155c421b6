"""Routing's case opening under real concurrency: threads against the real database, no broker needed."""
import functools
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from deploy.migrations import migrate
from services.routing import domain, handlers
from services.routing.clock import CalendarClock, clock_for
from services.routing.store import CaseStore
from services.routing.usecases.cases import change_case, merge_cases
from shared.errors import IllegalTransition
from shared.events import Event
from shared.store import connect
from tests.unit.test_intake_domain import destination

HERE = (35.0610, 118.3160)


class SlowCaseStore(CaseStore):
    """The real store, with time between reading the cases nearby and writing: the window in which two
    reports of one problem used to open two cases. `meanwhile` runs once in that window."""

    def __init__(self, db, meanwhile=None):
        super().__init__(db)
        self.meanwhile = meanwhile

    def open_cases_near(self, *args, **kwargs):
        nearby = super().open_cases_near(*args, **kwargs)
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile(nearby)
        time.sleep(0.05)
        return nearby


@pytest.fixture
def store(mongo_url):
    db = connect(mongo_url, f"test_routing_{uuid.uuid4().hex[:10]}")
    case_store = SlowCaseStore(db)
    case_store.ensure_indexes()
    return case_store


def submitted(at: tuple[float, float], category: str = "traffic.parking") -> Event:
    report = {"id": uuid.uuid4().hex, "category": category, "location": {"lat": at[0], "lng": at[1]},
              "grid_id": "lanshan-01", "district": "lanshan", "description": "人行道上停放多辆机动车",
              "photo_ids": ["p1"]}
    return Event.new("report.submitted", "intake", report)


def route(store: CaseStore, event: Event) -> None:
    handlers.reports_submitted([event], store=store, clock_for=functools.partial(clock_for, calendar=None))


def test_reports_of_one_problem_arriving_at_once_end_in_one_case(store):
    events = [submitted(destination(*HERE, 20 * i, 45 * i)) for i in range(6)]
    start = threading.Barrier(len(events))
    failures = []

    def deliver(event):
        start.wait()
        try:
            route(store, event)
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            failures.append(exc)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    cases = list(store.cases.find())
    assert len(cases) == 1
    assert sorted(cases[0]["report_ids"]) == sorted(e.data["id"] for e in events)


def test_reports_of_different_problems_at_once_each_open_their_own_case(store):
    events = [submitted(HERE, "traffic.parking"), submitted(HERE, "env.garbage"),
              submitted(destination(*HERE, 2_000, 90), "traffic.parking")]
    threads = [threading.Thread(target=route, args=(store, event)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(len(c["report_ids"]) for c in store.cases.find()) == [1, 1, 1]


def test_a_report_does_not_join_a_case_that_closes_while_it_is_being_routed(store):
    route(store, submitted(HERE))
    first = store.cases.find_one()

    def office_closes_it(nearby):
        assert [case["id"] for case in nearby] == [first["_id"]]
        reject = functools.partial(domain.reject, actor=domain.Actor("office-1", "office"), reason="invalid",
                                   note="", now=datetime.now(UTC))
        change_case(store, first["_id"], lambda case: reject(case), correlation_id=None)

    store.meanwhile = office_closes_it
    late = submitted(destination(*HERE, 30, 0))
    route(store, late)
    closed = store.case(first["_id"])
    assert closed["status"] == "rejected" and late.data["id"] not in closed["report_ids"]
    own = store.case_of_report(late.data["id"])
    assert own["id"] != first["_id"] and own["status"] in domain.OPEN_STATUSES


def test_a_redelivered_report_opens_nothing_new(store):
    event = submitted(HERE)
    route(store, event)
    route(store, event)
    assert [c["report_ids"] for c in store.cases.find()] == [[event.data["id"]]]


def test_a_redelivered_report_whose_case_has_closed_opens_nothing_new(store):
    event = submitted(HERE)
    route(store, event)
    case_id = store.case_of_report(event.data["id"])["id"]
    change_case(store, case_id, lambda case: domain.reject(case, domain.Actor("office-1", "office"), "invalid", "",
                                                           datetime.now(UTC)), correlation_id=None)
    route(store, event)
    assert store.cases.count_documents({}) == 1


def dispatched_case(store: CaseStore) -> dict:
    route(store, submitted(HERE))
    case = store.cases.find_one()
    office = domain.Actor("office-1", "office")
    change_case(store, case["_id"], lambda c: domain.dispatch(
        c, office, "traffic-police", hours=24, basis="calendar", clock=CalendarClock(), now=datetime.now(UTC)),
        correlation_id=None)
    return store.case(case["_id"])


def at_once(count: int, command) -> tuple[list, list[Exception]]:
    """Run `command` from `count` threads released together; (results, exceptions)."""
    start, results, failures = threading.Barrier(count), [], []

    def run():
        start.wait()
        try:
            results.append(command())
        except Exception as exc:  # counted below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results, failures


@pytest.mark.parametrize("command", ["accept", "extension"])
def test_of_concurrent_commands_on_one_case_exactly_one_wins(store, command):
    case = dispatched_case(store)
    police = domain.Actor("police-1", "department", "traffic-police")
    decide = {"accept": lambda c: domain.accept(c, police, datetime.now(UTC)),
              "extension": lambda c: domain.request_extension(c, police, 12, "施工中", datetime.now(UTC))}[command]
    results, failures = at_once(6, lambda: change_case(store, case["id"], decide, correlation_id=None))
    assert len(results) == 1 and len(failures) == 5
    assert all(isinstance(f, IllegalTransition) for f in failures), failures
    after = store.case(case["id"])
    action = {"accept": "accepted", "extension": "extension_requested"}[command]
    assert [h["action"] for h in after["history"]].count(action) == 1
    assert after["version"] == case["version"] + 1
    pending = store.cases.find_one({"_id": case["id"]})["outbox"]
    assert [e["type"] for e in pending].count(f"case.{action}.traffic-police") == 1


def route_together(store: CaseStore, *events: Event) -> None:
    handlers.reports_submitted(list(events), store=store, clock_for=functools.partial(clock_for, calendar=None))


def outbox_of(store: CaseStore, case_id: str) -> list[tuple[str, list[str], int]]:
    """The case's events waiting to be published, in the order they were stored (transactions keep theirs in the
    outbox collection, one document each)."""
    events = [e for document in store.outbox.find() for e in document["outbox"] if e["data"]["case_id"] == case_id]
    return sorted(((e["type"], e["data"]["report_ids"], e["data"]["case_version"]) for e in events),
                  key=lambda step: step[2])


def test_reports_of_one_problem_arriving_together_open_one_case_with_each_step_published(store):
    store.replace_rules([domain.Rule("traffic.parking", "traffic-police", 24)])
    first, second, third = (submitted(destination(*HERE, 30 * i, 90)) for i in range(3))
    route_together(store, first, second, third)
    [case] = list(store.cases.find())
    ids = [e.data["id"] for e in (first, second, third)]
    assert (case["report_ids"], case["version"], case["status"]) == (ids, 3, "dispatched")
    assert outbox_of(store, case["_id"]) == [
        ("case.opened.traffic-police", [ids[0]], 1), ("case.dispatched.traffic-police", [ids[0]], 1),
        ("case.joined.traffic-police", ids[:2], 2), ("case.joined.traffic-police", ids, 3)]


def test_reports_arriving_together_join_a_stored_case_each_step_at_its_own_version(store):
    route(store, submitted(HERE))
    later = [submitted(destination(*HERE, 40, 180)), submitted(destination(*HERE, 40, 0))]
    route_together(store, *later)
    [case] = list(store.cases.find())
    assert case["version"] == 3 and case["report_ids"][1:] == [e.data["id"] for e in later]
    assert [version for *_, version in outbox_of(store, case["_id"])] == [1, 2, 3]


def test_reports_arriving_together_apart_or_of_other_kinds_open_their_own_cases(store):
    route_together(store, submitted(HERE, "traffic.parking"), submitted(HERE, "env.garbage"),
                   submitted(destination(*HERE, 2_000, 90), "traffic.parking"))
    assert sorted(len(c["report_ids"]) for c in store.cases.find()) == [1, 1, 1]


def test_a_redelivered_report_among_new_ones_opens_nothing_and_the_new_ones_their_cases(store):
    again = submitted(HERE)
    route(store, again)
    case_id = store.case_of_report(again.data["id"])["id"]
    change_case(store, case_id, lambda case: domain.reject(case, domain.Actor("office-1", "office"), "invalid", "",
                                                           datetime.now(UTC)), correlation_id=None)
    new = submitted(destination(*HERE, 3_000, 0))
    route_together(store, again, new)
    assert store.cases.count_documents({"report_ids": again.data["id"]}) == 1
    assert store.case_of_report(new.data["id"])["report_ids"] == [new.data["id"]]


def test_a_case_stored_before_cases_carried_their_area_is_found_after_the_migration_gives_it_one(store):
    first = submitted(HERE)
    route(store, first)
    case_id = store.case_of_report(first.data["id"])["id"]
    store.cases.update_one({"_id": case_id}, {"$unset": {"area": ""}})
    migrate(store.db, "routing")
    near = submitted(destination(*HERE, 50, 90))
    route(store, near)
    assert store.case(case_id)["report_ids"] == [first.data["id"], near.data["id"]]


def test_the_migrations_drop_the_indexes_that_cases_and_opening_locks_no_longer_use(store):
    store.cases.create_index([("category", 1), ("open", 1), ("location.lat", 1)])
    store.opening_locks.create_index("at", expireAfterSeconds=3600)  # a TTL index: the embedded store stalled
    migrate(store.db, "routing")
    assert "category_1_open_1_location.lat_1" not in store.cases.index_information()
    assert list(store.opening_locks.index_information()) == ["_id_"]


def test_two_cases_merged_into_each_other_at_once_end_in_one(store):
    """A into B and B into A at once: one merge wins, the other finds its case over (409), and every report is in
    exactly one open case."""
    events = [submitted(destination(*HERE, 5_000 + 400 * i, 90)) for i in range(2)]
    for event in events:
        route(store, event)
    a, b = (store.case_of_report(event.data["id"]) for event in events)
    office = domain.Actor(id="office-1", role="office")
    start = threading.Barrier(2)
    won, refused = [], []

    def merge(source: dict, target: dict) -> None:
        start.wait()
        try:
            won.append(merge_cases(store, source["id"], target["id"], lambda s, t: domain.merge(
                s, t, office, None, datetime.now(UTC)), correlation_id=None))
        except IllegalTransition:
            refused.append(source["id"])

    threads = [threading.Thread(target=merge, args=pair) for pair in ((a, b), (b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(won), len(refused)) == (1, 1)
    kept = store.case(won[0]["merged_into"])
    assert kept["status"] != domain.REJECTED
    assert sorted(kept["report_ids"]) == sorted(event.data["id"] for event in events)
