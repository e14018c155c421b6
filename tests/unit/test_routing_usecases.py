"""Routing's use cases (services/routing/usecases/) over an in-memory store: each step is stored with the events
the use case built for it, at the case's next version, and a step that lost a race is decided again over the
case as the winner left it."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.routing import domain
from services.routing.clock import CalendarClock
from services.routing.domain import Actor, Rule, Submitted
from services.routing.usecases.cases import RoutingBatch, act_on_case, change_case, merge_cases, route_reports
from shared.auth import Caller
from shared.errors import Conflict, IllegalTransition, NotFound
from shared.store import OPTIMISTIC_TRIES
from tests.unit.routing_store_double import CaseStoreDouble

NOW = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)
CLOCK = CalendarClock()
RULE = Rule(category="env.garbage", department="sanitation", deadline_hours=24)
HERE = (35.06, 118.315)
OFFICE = Actor(id="officer-1", role="office")
SANITATION = Actor(id="clerk-1", role="department", dept="sanitation")


def a_report(report_id: str, north_m: float = 0.0) -> dict:
    return {"id": report_id, "category": "env.garbage", "grid_id": "lanshan-01", "district": "lanshan",
            "location": {"lat": HERE[0] + north_m / 111_000, "lng": HERE[1]}, "description": "垃圾堆在路边",
            "photo_ids": [f"p-{report_id}"]}


def stored_case(store: CaseStoreDouble, report_id: str = "r1", rule: Rule | None = RULE, north_m: float = 0.0) -> dict:
    """A case the report opened (dispatched by `rule`, or waiting for triage), as stored at version 1."""
    case = domain.open_case(f"case-{report_id}", a_report(report_id, north_m), rule, CLOCK, NOW).case
    return store.add({**case, "version": 1})


def route(report: dict, nearby: list[dict]) -> domain.Step:
    return domain.route_report(report, nearby, RULE, CLOCK, NOW)


def accept(case: dict) -> domain.Step:
    return domain.accept(case, SANITATION, NOW)


@pytest.fixture
def store() -> CaseStoreDouble:
    return CaseStoreDouble([RULE])


# --- a command on a case ------------------------------------------------------------------------

def test_a_step_is_stored_at_the_next_version_with_the_events_the_use_case_built_for_it(store):
    case = stored_case(store)
    after = change_case(store, case["id"], accept, correlation_id="c-7")
    assert (after["status"], after["version"]) == ("accepted", 2)
    assert store.cases[case["id"]] == after
    [event] = store.published
    assert (event.type, event.correlation_id, event.data["case_version"], event.data["status"]) == (
        "case.accepted.sanitation", "c-7", 2, "accepted")


def test_a_step_without_actions_stores_nothing(store):
    case = stored_case(store)
    assert change_case(store, case["id"], lambda c: domain.Step(c, ()), correlation_id=None) == case
    assert (store.cases[case["id"]]["version"], store.published) == (1, [])


def test_a_command_on_an_unknown_case_is_not_found(store):
    with pytest.raises(NotFound):
        change_case(store, "case-nope", accept, correlation_id=None)


def test_a_step_that_lost_a_race_is_decided_again_over_the_case_as_the_winner_left_it(store):
    case = stored_case(store)
    store.meanwhile = lambda: change_case(store, case["id"], lambda c: domain.request_extension(
        c, SANITATION, 12, "施工中", NOW), correlation_id=None)
    read = []

    def accept_as_read(current: dict) -> domain.Step:
        read.append((current["version"], bool(current["extension"])))
        return accept(current)

    after = change_case(store, case["id"], accept_as_read, correlation_id=None)
    assert read == [(1, False), (2, True)]
    assert (after["version"], after["status"], after["extension"]["status"]) == (3, "accepted", "requested")
    assert [(e.type, e.data["case_version"]) for e in store.published] == [
        ("case.extension_requested.sanitation", 2), ("case.accepted.sanitation", 3)]


def test_a_step_that_loses_every_race_is_a_conflict(store):
    case = stored_case(store)
    decided = []

    def always_overtaken(current: dict) -> domain.Step:
        decided.append(current["version"])
        store.meanwhile = lambda: store.cases[case["id"]].update(version=store.cases[case["id"]]["version"] + 1)
        return accept(current)

    with pytest.raises(Conflict):
        change_case(store, case["id"], always_overtaken, correlation_id=None)
    assert len(decided) == OPTIMISTIC_TRIES and store.published == []


def test_a_caller_acts_only_on_a_case_they_may_see(store):
    case = stored_case(store)
    police = Caller("clerk-9", "department", dept="traffic-police")
    with pytest.raises(NotFound):
        act_on_case(store, police, case["id"], pytest.fail, correlation_id=None)
    own = Caller("clerk-1", "department", dept="sanitation")
    assert act_on_case(store, own, case["id"], accept, correlation_id=None)["status"] == "accepted"


# --- merging two cases --------------------------------------------------------------------------

def merge(source: dict, target: dict) -> domain.Merge:
    return domain.merge(source, target, OFFICE, "同一处", NOW)


def two_cases(store: CaseStoreDouble) -> tuple[dict, dict]:
    """A dispatched case (the target) and a case in triage 400 m from it (the duplicate)."""
    target = stored_case(store, "r1")
    return stored_case(store, "r2", rule=None, north_m=400), target


def test_a_merge_stores_both_sides_the_target_past_the_sources_end_with_their_events(store):
    source, target = two_cases(store)
    store.add({**target, "version": 5})
    ended = merge_cases(store, source["id"], target["id"], merge, correlation_id="c-8")
    grown = store.cases[target["id"]]
    assert (ended["status"], ended["version"], store.cases[source["id"]]) == ("rejected", 2, ended)
    assert (grown["report_ids"], grown["version"]) == (["r1", "r2"], 6)
    assert [(e.type, e.data["case_version"], e.correlation_id) for e in store.published] == [
        ("case.rejected.none", 2, "c-8"), ("case.joined.sanitation", 6, "c-8")]


def test_a_merge_into_an_unknown_case_is_not_found_and_stores_nothing(store):
    source, _ = two_cases(store)
    with pytest.raises(NotFound, match="to merge into"):
        merge_cases(store, source["id"], "case-nope", merge, correlation_id=None)
    assert store.cases[source["id"]] == source and store.published == []


def test_a_merge_that_lost_a_race_on_its_target_is_decided_again_and_leaves_no_half_merge(store):
    source, target = two_cases(store)
    store.meanwhile = lambda: change_case(store, target["id"], accept, correlation_id=None)
    read = []

    def merge_as_read(s: dict, t: dict) -> domain.Merge:
        read.append((s["version"], t["version"], t["status"]))
        return merge(s, t)

    merge_cases(store, source["id"], target["id"], merge_as_read, correlation_id=None)
    assert read == [(1, 1, "dispatched"), (1, 2, "accepted")]
    assert [(e.type, e.data["case_version"]) for e in store.published] == [
        ("case.accepted.sanitation", 2), ("case.rejected.none", 2), ("case.joined.sanitation", 3)]


def test_a_merge_the_domain_refuses_stores_nothing(store):
    source, target = two_cases(store)
    store.add({**source, "category": "traffic.parking"})
    with pytest.raises(IllegalTransition):
        merge_cases(store, source["id"], target["id"], merge, correlation_id=None)
    assert store.published == []


# --- routing reports into cases -----------------------------------------------------------------

def test_reports_routed_together_open_one_case_each_step_at_its_own_version_with_its_events(store):
    route_reports(store, [Submitted(a_report(f"r{i}", 30 * i), f"c-{i}") for i in range(1, 4)], route)
    [case] = store.cases.values()
    assert (case["report_ids"], case["version"]) == (["r1", "r2", "r3"], 3)
    assert [(e.type, e.data["case_version"], e.data["report_ids"], e.correlation_id) for e in store.published] == [
        ("case.opened.sanitation", 1, ["r1"], "c-1"), ("case.dispatched.sanitation", 1, ["r1"], "c-1"),
        ("case.joined.sanitation", 2, ["r1", "r2"], "c-2"), ("case.joined.sanitation", 3, ["r1", "r2", "r3"], "c-3")]


def test_a_report_joining_a_case_that_changed_meanwhile_is_routed_again_over_the_case_as_it_is(store):
    case = stored_case(store)
    store.meanwhile = lambda: change_case(store, case["id"], accept, correlation_id=None)
    route_reports(store, [Submitted(a_report("r2", 50), None)], route)
    joined = store.cases[case["id"]]
    assert (joined["status"], joined["report_ids"], joined["version"]) == ("accepted", ["r1", "r2"], 3)
    assert [e.type for e in store.published] == ["case.accepted.sanitation", "case.joined.sanitation"]


def test_a_report_redelivered_after_its_case_closed_opens_nothing_and_the_others_are_routed(store):
    case = stored_case(store)
    change_case(store, case["id"], lambda c: domain.reject(c, OFFICE, "invalid", "", NOW), correlation_id=None)
    store.published.clear()
    route_reports(store, [Submitted(a_report("r1"), None), Submitted(a_report("r9", 2_000), None)], route)
    assert sorted(store.cases) == ["case-r1", "case-r9"]
    assert [e.data["case_id"] for e in store.published] == ["case-r9", "case-r9"]
    route_reports(store, [Submitted(a_report("r1"), None)], route)
    assert len(store.published) == 2


def test_a_batch_offers_a_later_report_the_case_an_earlier_one_opened_and_the_stored_ones_as_it_left_them():
    batch = RoutingBatch()
    stored = {**domain.open_case("case-r0", a_report("r0", 100), RULE, CLOCK, NOW).case, "version": 1}
    batch.record(route(a_report("r1"), [stored]), [stored], None)
    assert [c["report_ids"] for c in batch.joinable_cases([stored], "env.garbage")] == [["r0", "r1"]]
    batch.record(route(a_report("r2", 2_000), []), [stored], None)
    assert [c["id"] for c in batch.joinable_cases([stored], "env.garbage")] == ["case-r0", "case-r2"]
    assert batch.joinable_cases([stored], "traffic.parking") == []
    [(before, after, events), (new, opened, _)] = batch.changed()
    assert (before, after["version"], [e.type for e in events]) == (stored, 2, ["case.joined.sanitation"])
    assert (new, opened["version"]) == (None, 1)
