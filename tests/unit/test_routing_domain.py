"""Routing's case state machine (services/routing/domain.py): pure commands over plain dicts."""
from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.routing import domain
from services.routing.clock import CalendarClock
from services.routing.domain import (
    ACCEPTED,
    CLOSED,
    DISPATCHED,
    OPEN_STATUSES,
    PENDING_TRIAGE,
    RECTIFIED,
    REJECTED,
    STATUSES,
    Actor,
    Rule,
    Step,
    accept,
    case_events,
    check_rules,
    decide_extension,
    dispatch,
    dispute,
    join_case,
    mark_overdue,
    match_rule,
    nearest_open_case,
    open_case,
    rectify,
    reject,
    request_extension,
    route_report,
    verify,
)
from shared import geo
from shared.auth import Caller
from shared.errors import IllegalTransition, InvalidFields, NotVisible

NOW = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
OPENED_AT = NOW - 30 * HOUR
CLOCK = CalendarClock()
RULE = Rule(category="env.garbage", department="sanitation", deadline_hours=24)
HERE = (35.06, 118.315)

OFFICE = Actor(id="officer-1", role="office")
TRAFFIC = Actor(id="clerk-9", role="department", dept="traffic-police")
SYSTEM = "service:routing"


# --- builders ---------------------------------------------------------------------------------

def a_report(report_id: str = "r1") -> dict:
    return {"id": report_id, "category": "env.garbage", "grid_id": "lanshan-01", "district": "lanshan",
            "location": {"lat": HERE[0], "lng": HERE[1], "address": "金雀山路"},
            "description": "垃圾堆在路边", "photo_ids": ["p1", "p2"]}


def holder(case: dict) -> Actor:
    """The department holding the case; the office for a case no department holds."""
    return Actor(id="clerk-1", role="department", dept=case["department"]) if case["department"] else OFFICE


def who(actor: Actor) -> str:
    return f"{actor.role}:{actor.id}"


# What each status looks like on top of a case the rule dispatched at OPENED_AT (due 6 hours ago).
STATUS_FIELDS = {
    PENDING_TRIAGE: {"department": None, "dispatched_at": None, "due_at": None, "deadline_hours": None},
    DISPATCHED: {},
    ACCEPTED: {"accepted_at": OPENED_AT + HOUR},
    RECTIFIED: {"accepted_at": OPENED_AT + HOUR, "rectified_at": OPENED_AT + 2 * HOUR, "after_photo_ids": ["p8"]},
    CLOSED: {"accepted_at": OPENED_AT + HOUR, "rectified_at": OPENED_AT + 2 * HOUR, "after_photo_ids": ["p8"],
             "closed_at": OPENED_AT + 3 * HOUR},
    REJECTED: {"rejection": {"reason": "invalid", "note": "不属实"}, "closed_at": OPENED_AT + HOUR},
}


def a_case(status: str = DISPATCHED, **overrides) -> dict:
    case = open_case("c1", a_report(), RULE, CLOCK, OPENED_AT).case
    return case | {"status": status, "version": 3} | STATUS_FIELDS[status] | overrides


def waiting_extension(hours: float = 48) -> dict:
    return {"hours": hours, "reason": "材料采购", "status": "requested", "requested_at": NOW - 3 * HOUR,
            "requested_by": "clerk-1", "decided_at": None, "note": None}


def with_waiting_extension(case: dict) -> dict:
    return case | {"extension": waiting_extension()}


def unchanged(case: dict) -> dict:
    return case


# --- the transition table ---------------------------------------------------------------------

ILLEGAL, NOTHING = "IllegalTransition", "no actions, case unchanged"


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[dict, Actor], Step]
    actor: Callable[[dict], Actor]
    history_action: str
    event_action: str
    note: str
    allowed: dict[str, str]  # status before → status after
    prepare: Callable[[dict], dict] = unchanged
    otherwise: str = ILLEGAL

    def __str__(self) -> str:
        return self.name


def office(_case: dict) -> Actor:
    return OFFICE


def system(_case: dict) -> Actor:
    return Actor(id="routing", role="service")


COMMANDS = [
    Command("dispatch", lambda c, a: dispatch(c, a, "traffic-police", hours=12, basis="calendar", clock=CLOCK, now=NOW,
                                              note="改派交警"), office, "dispatched", "dispatched", "改派交警",
            {PENDING_TRIAGE: DISPATCHED, DISPATCHED: DISPATCHED, ACCEPTED: DISPATCHED}),
    Command("accept", lambda c, a: accept(c, a, NOW), holder, "accepted", "accepted", "",
            {DISPATCHED: ACCEPTED}),
    Command("dispute", lambda c, a: dispute(c, a, "不归我们管", NOW), holder, "disputed", "disputed", "不归我们管",
            {DISPATCHED: PENDING_TRIAGE, ACCEPTED: PENDING_TRIAGE}),
    Command("rectify", lambda c, a: rectify(c, a, "已清理", ["p9"], NOW), holder, "rectified", "rectified", "已清理",
            {ACCEPTED: RECTIFIED}),
    Command("verify_pass", lambda c, a: verify(c, a, True, note="合格", hours=None, clock=CLOCK, now=NOW), office,
            "verified_passed", "closed", "合格", {RECTIFIED: CLOSED}),
    Command("verify_fail", lambda c, a: verify(c, a, False, note="仍有垃圾", hours=12, clock=CLOCK, now=NOW), office,
            "verified_failed", "reopened", "仍有垃圾", {RECTIFIED: ACCEPTED}),
    Command("reject", lambda c, a: reject(c, a, "duplicate", "与 c0 重复", NOW), office,
            "rejected", "rejected", "duplicate: 与 c0 重复", {s: REJECTED for s in OPEN_STATUSES}),
    Command("request_extension", lambda c, a: request_extension(c, a, 48, "材料采购", NOW), holder,
            "extension_requested", "extension_requested", "材料采购", {DISPATCHED: DISPATCHED, ACCEPTED: ACCEPTED}),
    Command("approve_extension", lambda c, a: decide_extension(c, a, True, note="可以", clock=CLOCK, now=NOW), office,
            "extension_decided", "extension_decided", "同意延期：可以", {DISPATCHED: DISPATCHED, ACCEPTED: ACCEPTED},
            prepare=with_waiting_extension),
    Command("refuse_extension", lambda c, a: decide_extension(c, a, False, note=None, clock=CLOCK, now=NOW), office,
            "extension_decided", "extension_decided", "不同意延期", {DISPATCHED: DISPATCHED, ACCEPTED: ACCEPTED},
            prepare=with_waiting_extension),
    Command("mark_overdue", lambda c, a: mark_overdue(c, NOW), system, "overdue", "overdue", "超过整改期限，升级督办",
            {DISPATCHED: DISPATCHED, ACCEPTED: ACCEPTED}, otherwise=NOTHING),
]

EVERY_PAIR = list(itertools.product(COMMANDS, STATUSES))
ALLOWED_PAIRS = [(command, status) for command, status in EVERY_PAIR if status in command.allowed]


def expected_outcome(command: Command, status: str) -> str:
    return command.allowed.get(status, command.otherwise)


def run(command: Command, status: str) -> tuple[dict, Step]:
    case = command.prepare(a_case(status))
    return case, command.run(case, command.actor(case))


def test_the_table_covers_every_command_from_every_status():
    assert len(EVERY_PAIR) == 11 * 6
    assert set(STATUSES) == {PENDING_TRIAGE, DISPATCHED, ACCEPTED, RECTIFIED, CLOSED, REJECTED}


@pytest.mark.parametrize("command, status", EVERY_PAIR, ids=str)
def test_each_command_from_each_status_is_allowed_or_refused_as_the_table_says(command, status):
    case = command.prepare(a_case(status))
    before = copy.deepcopy(case)
    outcome = expected_outcome(command, status)
    if outcome == ILLEGAL:
        with pytest.raises(IllegalTransition):
            command.run(case, command.actor(case))
        assert case == before
        return
    step = command.run(case, command.actor(case))
    if outcome == NOTHING:
        assert step.actions == ()
        assert step.case == before
        return
    assert step.case["status"] == outcome
    assert step.actions == (command.event_action,)


@pytest.mark.parametrize("command, status", ALLOWED_PAIRS, ids=str)
def test_a_transition_returns_a_new_case_and_leaves_the_input_untouched(command, status):
    case = command.prepare(a_case(status))
    before = copy.deepcopy(case)
    step = command.run(case, command.actor(case))
    assert step.case is not case
    assert step.case["history"] is not case["history"]
    assert case == before


@pytest.mark.parametrize("command, status", ALLOWED_PAIRS, ids=str)
def test_a_transition_appends_exactly_one_history_entry_naming_actor_action_and_note(command, status):
    case, step = run(command, status)
    actor = command.actor(case)
    assert step.case["history"][:-1] == case["history"]
    assert step.case["history"][-1] == {"at": NOW, "actor": who(actor), "action": command.history_action,
                                        "note": command.note}


# --- opening a case ---------------------------------------------------------------------------

def test_open_case_with_a_rule_dispatches_to_its_department_due_after_its_hours():
    rule = Rule(category="env.garbage", department="sanitation", deadline_hours=36.5)
    step = open_case("c1", a_report(), rule, CLOCK, NOW)
    case = step.case
    assert step.actions == ("opened", "dispatched")
    assert (case["status"], case["department"]) == (DISPATCHED, "sanitation")
    assert case["due_at"] == NOW + timedelta(hours=36.5)
    assert (case["deadline_hours"], case["basis"], case["dispatched_at"]) == (36.5, "calendar", NOW)


def test_open_case_with_a_rule_records_opened_then_dispatched_by_the_service():
    history = open_case("c1", a_report(), RULE, CLOCK, NOW).case["history"]
    assert [(e["action"], e["actor"], e["at"]) for e in history] == [
        ("opened", SYSTEM, NOW), ("dispatched", SYSTEM, NOW)]


def test_open_case_takes_the_rules_basis():
    rule = Rule(category="env.garbage", department="sanitation", deadline_hours=8, basis="working")
    assert open_case("c1", a_report(), rule, CLOCK, NOW).case["basis"] == "working"


def test_open_case_without_a_rule_waits_in_triage_with_no_department_or_deadline():
    step = open_case("c1", a_report(), None, CLOCK, NOW)
    case = step.case
    assert step.actions == ("opened",)
    assert (case["status"], case["department"], case["due_at"]) == (PENDING_TRIAGE, None, None)
    assert [(e["action"], e["actor"]) for e in case["history"]] == [("opened", SYSTEM)]


def test_open_case_copies_the_reports_facts_and_starts_clean():
    report = a_report("r7")
    case = open_case("c1", report, None, CLOCK, NOW).case
    assert case["id"] == "c1" and case["report_ids"] == ["r7"]
    for field in ("category", "grid_id", "district", "location", "description", "photo_ids"):
        assert case[field] == report[field], field
    assert (case["opened_at"], case["version"], case["overdue"], case["escalation_level"], case["rework_count"],
            case["extension"], case["deferred"]) == (NOW, 0, False, 0, 0, None, False)


# --- the commands, one by one -----------------------------------------------------------------

def test_dispatch_from_triage_gives_the_department_a_deadline_from_now():
    step = dispatch(a_case(PENDING_TRIAGE), OFFICE, "sanitation", hours=12, basis="calendar", clock=CLOCK, now=NOW)
    case = step.case
    assert (case["department"], case["due_at"], case["deadline_hours"], case["dispatched_at"]) == (
        "sanitation", NOW + 12 * HOUR, 12, NOW)


def test_reassigning_keeps_the_first_dispatch_time_and_clears_overdue_escalation_and_extension():
    case = a_case(ACCEPTED, overdue=True, escalation_level=2, extension=waiting_extension())
    changed = dispatch(case, OFFICE, "traffic-police", hours=6, basis="working", clock=CLOCK, now=NOW).case
    assert (changed["department"], changed["due_at"], changed["basis"]) == ("traffic-police", NOW + 6 * HOUR, "working")
    assert changed["dispatched_at"] == OPENED_AT
    assert (changed["overdue"], changed["escalation_level"], changed["extension"]) == (False, 0, None)


def test_accept_records_when_the_department_took_the_case():
    case = a_case(DISPATCHED)
    assert accept(case, holder(case), NOW).case["accepted_at"] == NOW


@pytest.mark.parametrize("status", [DISPATCHED, ACCEPTED])
def test_dispute_sends_the_case_back_to_triage_without_department_deadline_or_escalation(status):
    case = a_case(status, overdue=True, escalation_level=1, extension=waiting_extension())
    changed = dispute(case, holder(case), "不归我们管", NOW).case
    assert (changed["status"], changed["department"], changed["due_at"]) == (PENDING_TRIAGE, None, None)
    assert (changed["overdue"], changed["escalation_level"], changed["extension"]) == (False, 0, None)


def test_rectify_records_the_after_photos_and_the_time():
    case = a_case(ACCEPTED)
    changed = rectify(case, holder(case), "已清理", ["p9", "p10"], NOW).case
    assert (changed["rectified_at"], changed["after_photo_ids"]) == (NOW, ["p9", "p10"])


def test_verify_pass_closes_the_case_at_now():
    changed = verify(a_case(RECTIFIED), OFFICE, True, note="合格", hours=None, clock=CLOCK, now=NOW).case
    assert (changed["status"], changed["closed_at"]) == (CLOSED, NOW)


def test_verify_fail_sends_the_case_back_for_rework_due_the_given_hours_from_now():
    case = a_case(RECTIFIED, overdue=True, escalation_level=1, rework_count=1)
    step = verify(case, OFFICE, False, note="仍有垃圾", hours=12, clock=CLOCK, now=NOW)
    changed = step.case
    assert step.actions == ("reopened",)
    assert (changed["status"], changed["rework_count"], changed["due_at"]) == (ACCEPTED, 2, NOW + 12 * HOUR)
    assert (changed["overdue"], changed["escalation_level"]) == (False, 0)


def test_verify_fail_without_hours_uses_the_cases_own_deadline_hours():
    case = a_case(RECTIFIED, deadline_hours=30)
    failed = verify(case, OFFICE, False, note="仍有垃圾", hours=None, clock=CLOCK, now=NOW)
    assert failed.case["due_at"] == NOW + 30 * HOUR


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_reject_keeps_the_reason_and_note_and_finishes_the_case(status):
    changed = reject(a_case(status), OFFICE, "out_of_scope", "不属于城管", NOW).case
    assert changed["status"] == REJECTED
    assert changed["rejection"] == {"reason": "out_of_scope", "note": "不属于城管"}
    assert changed["closed_at"] == NOW


def test_reject_without_a_note_records_just_the_reason():
    changed = reject(a_case(DISPATCHED), OFFICE, "invalid", "", NOW).case
    assert changed["history"][-1]["note"] == "invalid"
    assert changed["rejection"] == {"reason": "invalid", "note": ""}


@pytest.mark.parametrize("status", [DISPATCHED, ACCEPTED])
def test_request_extension_records_a_waiting_request_and_leaves_the_deadline(status):
    case = a_case(status)
    actor = holder(case)
    changed = request_extension(case, actor, 48, "材料采购", NOW).case
    assert changed["extension"] == {"hours": 48, "reason": "材料采购", "status": "requested", "requested_at": NOW,
                                    "requested_by": actor.id, "decided_at": None, "note": None}
    assert changed["due_at"] == case["due_at"]


def test_a_second_extension_request_while_one_waits_is_illegal():
    case = with_waiting_extension(a_case(DISPATCHED))
    with pytest.raises(IllegalTransition):
        request_extension(case, holder(case), 24, "还要更久", NOW)


@pytest.mark.parametrize("verdict", ["approved", "refused"])
def test_a_new_extension_request_after_a_decision_is_allowed(verdict):
    case = a_case(DISPATCHED, extension=waiting_extension() | {"status": verdict, "decided_at": NOW - HOUR})
    assert request_extension(case, holder(case), 24, "还要更久", NOW).case["extension"]["status"] == "requested"


def test_approving_an_extension_moves_the_deadline_by_its_hours_and_marks_the_case_deferred():
    due = NOW + 5 * HOUR
    case = a_case(ACCEPTED, due_at=due, extension=waiting_extension(hours=48))
    changed = decide_extension(case, OFFICE, True, note="可以", clock=CLOCK, now=NOW).case
    assert changed["due_at"] == due + 48 * HOUR
    assert changed["deferred"] is True
    assert changed["extension"] == waiting_extension(hours=48) | {"status": "approved", "decided_at": NOW,
                                                                  "note": "可以"}


def test_refusing_an_extension_leaves_the_deadline():
    due = NOW + 5 * HOUR
    case = a_case(ACCEPTED, due_at=due, extension=waiting_extension())
    changed = decide_extension(case, OFFICE, False, note="不行", clock=CLOCK, now=NOW).case
    assert (changed["due_at"], changed["deferred"]) == (due, False)
    assert (changed["extension"]["status"], changed["extension"]["decided_at"]) == ("refused", NOW)


def test_an_approved_extension_that_moves_the_deadline_past_now_lifts_the_overdue_flag():
    case = a_case(DISPATCHED, due_at=NOW - HOUR, overdue=True, escalation_level=1, extension=waiting_extension(48))
    assert decide_extension(case, OFFICE, True, note=None, clock=CLOCK, now=NOW).case["overdue"] is False


def test_an_approved_extension_too_short_to_reach_now_leaves_the_case_overdue():
    case = a_case(DISPATCHED, due_at=NOW - 10 * HOUR, overdue=True, extension=waiting_extension(4))
    assert decide_extension(case, OFFICE, True, note=None, clock=CLOCK, now=NOW).case["overdue"] is True


@pytest.mark.parametrize("extension", [None, waiting_extension() | {"status": "approved", "decided_at": NOW},
                                       waiting_extension() | {"status": "refused", "decided_at": NOW}],
                         ids=["none", "approved", "refused"])
@pytest.mark.parametrize("status", [DISPATCHED, ACCEPTED])
def test_deciding_an_extension_with_none_waiting_is_illegal(status, extension):
    with pytest.raises(IllegalTransition):
        decide_extension(a_case(status, extension=extension), OFFICE, True, note=None, clock=CLOCK, now=NOW)


@pytest.mark.parametrize("status", [DISPATCHED, ACCEPTED])
def test_mark_overdue_at_the_deadline_flags_escalates_and_announces(status):
    step = mark_overdue(a_case(status, due_at=NOW, escalation_level=1), NOW)
    assert step.actions == ("overdue",)
    assert (step.case["overdue"], step.case["escalation_level"]) == (True, 2)


def test_mark_overdue_fires_once_per_deadline():
    first = mark_overdue(a_case(DISPATCHED, due_at=NOW - HOUR), NOW)
    second = mark_overdue(first.case, NOW + HOUR)
    assert second.actions == ()
    assert second.case == first.case


@pytest.mark.parametrize("due_at", [NOW + timedelta(seconds=1), None], ids=["not-yet-due", "no-deadline"])
def test_mark_overdue_before_the_deadline_does_nothing(due_at):
    case = a_case(DISPATCHED, due_at=due_at)
    before = copy.deepcopy(case)
    step = mark_overdue(case, NOW)
    assert step.actions == ()
    assert step.case == before


# --- scope: a department acts on its own cases only -------------------------------------------

SCOPED = [
    ("accept", DISPATCHED, lambda c, a: accept(c, a, NOW)),
    ("dispute", DISPATCHED, lambda c, a: dispute(c, a, "不归我们管", NOW)),
    ("rectify", ACCEPTED, lambda c, a: rectify(c, a, "已清理", ["p9"], NOW)),
    ("request_extension", ACCEPTED, lambda c, a: request_extension(c, a, 48, "材料采购", NOW)),
]


@pytest.mark.parametrize("name, status, command", SCOPED, ids=[s[0] for s in SCOPED])
def test_another_department_cannot_see_the_case(name, status, command):
    case = a_case(status)
    before = copy.deepcopy(case)
    with pytest.raises(NotVisible):
        command(case, TRAFFIC)
    assert case == before


@pytest.mark.parametrize("name, status, command", SCOPED, ids=[s[0] for s in SCOPED])
def test_the_holding_department_may_act_on_the_case(name, status, command):
    case = a_case(status)
    assert command(case, Actor(id="clerk-1", role="department", dept="sanitation")).actions


@pytest.mark.parametrize("name, status, command", SCOPED, ids=[s[0] for s in SCOPED])
def test_another_department_gets_not_visible_even_where_the_status_forbids_the_command(name, status, command):
    with pytest.raises(NotVisible):
        command(a_case(CLOSED), TRAFFIC)


def test_a_department_cannot_see_a_case_waiting_in_triage():
    with pytest.raises(NotVisible):
        accept(a_case(PENDING_TRIAGE), Actor(id="clerk-1", role="department", dept="sanitation"), NOW)


# --- a duplicate report joining a case ----------------------------------------------------------

def test_a_report_joins_a_case_once_as_a_joined_step_about_that_report():
    case = a_case(DISPATCHED)
    before = copy.deepcopy(case)
    step = join_case(case, "r2")
    assert step.case["report_ids"] == ["r1", "r2"]
    assert (step.actions, step.joined_report_id) == (("joined",), "r2")
    assert case == before


def test_joining_the_same_report_again_does_nothing():
    once = join_case(a_case(DISPATCHED), "r2").case
    again = join_case(once, "r2")
    assert again.actions == ()
    assert again.case["report_ids"] == ["r1", "r2"]


@pytest.mark.parametrize("status", [CLOSED, REJECTED])
def test_a_report_cannot_join_a_case_that_is_over(status):
    with pytest.raises(IllegalTransition):
        join_case(a_case(status), "r2")


def test_a_report_near_an_open_case_joins_it_and_opens_none():
    report = a_report("r2")
    step = route_report(report, [a_case(DISPATCHED) | {"location": report["location"]}], RULE, CLOCK, NOW)
    assert (step.case["id"], step.actions, step.joined_report_id) == ("c1", ("joined",), "r2")


def test_a_report_with_no_open_case_near_opens_one():
    step = route_report(a_report("r2"), [], RULE, CLOCK, NOW)
    assert (step.case["id"], step.actions, step.joined_report_id) == ("case-r2", ("opened", "dispatched"), None)


# --- rules ------------------------------------------------------------------------------------

CITY_WIDE = Rule(category="env.garbage", department="sanitation", deadline_hours=24)
LANSHAN = Rule(category="env.garbage", department="lanshan-sanitation", deadline_hours=12, district="lanshan")
PARKING = Rule(category="traffic.parking", department="traffic-police", deadline_hours=2, district="hedong")
RULES = [CITY_WIDE, LANSHAN, PARKING]


def test_a_districts_own_rule_wins_over_the_city_wide_rule():
    assert match_rule(RULES, "env.garbage", "lanshan") == LANSHAN
    assert match_rule(list(reversed(RULES)), "env.garbage", "lanshan") == LANSHAN


@pytest.mark.parametrize("district", ["hedong", None])
def test_another_district_falls_back_to_the_city_wide_rule(district):
    assert match_rule(RULES, "env.garbage", district) == CITY_WIDE


def test_no_rule_for_the_category_matches_nothing():
    assert match_rule(RULES, "noise", "lanshan") is None


def test_a_district_only_rule_does_not_serve_other_districts():
    assert match_rule(RULES, "traffic.parking", "lanshan") is None


OFFICER = Caller(id="officer-1", role="office")


@pytest.mark.parametrize("status", [PENDING_TRIAGE, DISPATCHED, ACCEPTED])
def test_the_office_is_shown_the_rule_a_dispatchable_case_matches(status):
    assert domain.suggestion(a_case(status), RULES, OFFICER) == {"department": "lanshan-sanitation",
                                                                  "deadline_hours": 12}


@pytest.mark.parametrize("status", [RECTIFIED, CLOSED, REJECTED])
def test_no_suggestion_once_the_case_cannot_be_dispatched(status):
    assert domain.suggestion(a_case(status), RULES, OFFICER) is None


@pytest.mark.parametrize("caller", [Caller("clerk-1", "department", dept="sanitation"),
                                    Caller("leader-1", "grid_leader", grid="lanshan-01"),
                                    Caller("assoc-1", "association")])
def test_only_those_who_may_read_the_rules_are_shown_a_suggestion(caller):
    assert domain.suggestion(a_case(PENDING_TRIAGE), RULES, caller) is None


def test_no_suggestion_for_a_case_no_rule_covers():
    assert domain.suggestion(a_case(PENDING_TRIAGE, category="other"), RULES, OFFICER) is None


CATEGORY_CODES = {"env.garbage", "traffic.parking"}
DEPARTMENT_IDS = {"sanitation", "lanshan-sanitation", "traffic-police"}


def rule_errors(rules: list[Rule]) -> dict:
    with pytest.raises(InvalidFields) as caught:
        check_rules(rules, CATEGORY_CODES, DEPARTMENT_IDS)
    return caught.value.errors


def test_a_valid_rule_table_passes():
    check_rules(RULES + [Rule("traffic.parking", "traffic-police", 8760, basis="working")],
                CATEGORY_CODES, DEPARTMENT_IDS)  # raises nothing


@pytest.mark.parametrize("bad, words", [
    (Rule("noise", "sanitation", 24), "unknown category"),
    (Rule("env.garbage", "parks", 24, district="hedong"), "unknown department"),
    (Rule("env.garbage", "sanitation", 0, district="hedong"), "deadline_hours"),
    (Rule("env.garbage", "sanitation", -5, district="hedong"), "deadline_hours"),
    (Rule("env.garbage", "sanitation", math.nan, district="hedong"), "deadline_hours"),
    (Rule("env.garbage", "sanitation", 24, district="hedong", basis="lunar"), "basis"),
    (Rule("env.garbage", "sanitation", 48), "same category and district"),
], ids=["category", "department", "zero-hours", "negative-hours", "nan-hours", "basis", "duplicate"])
def test_an_invalid_rule_is_reported_under_its_index(bad, words):
    errors = rule_errors([CITY_WIDE, bad])
    assert set(errors) == {"items.1"}
    assert any(words in problem for problem in errors["items.1"]), errors


def test_every_invalid_rule_is_reported_not_just_the_first():
    errors = rule_errors([Rule("noise", "sanitation", 24), CITY_WIDE, Rule("env.garbage", "parks", 0, "x")])
    assert set(errors) == {"items.0", "items.2"}
    assert len(errors["items.2"]) == 2


def test_the_same_category_in_different_districts_is_not_a_duplicate():
    check_rules([CITY_WIDE, LANSHAN, Rule("env.garbage", "sanitation", 12, district="hedong")],
                CATEGORY_CODES, DEPARTMENT_IDS)


def test_an_empty_district_is_city_wide_so_a_second_such_rule_is_a_duplicate():
    assert match_rule([Rule("env.garbage", "sanitation", 24, district="")], "env.garbage", "hedong") is not None
    errors = rule_errors([CITY_WIDE, Rule("env.garbage", "lanshan-sanitation", 12, district="")])
    assert set(errors) == {"items.1"}


# --- the nearest open case --------------------------------------------------------------------

def north_of(metres: float) -> dict:
    return {"lat": HERE[0] + math.degrees(metres / geo.EARTH_RADIUS_M), "lng": HERE[1]}


def placed(case_id: str, metres: float, status: str = DISPATCHED) -> dict:
    return {"id": case_id, "status": status, "location": north_of(metres)}


def test_the_nearest_open_case_within_250_m_is_found():
    candidates = [placed("200m", 200), placed("40m", 40), placed("120m", 120)]
    assert nearest_open_case(*HERE, candidates)["id"] == "40m"


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_a_case_in_any_open_status_can_be_the_nearest(status):
    assert nearest_open_case(*HERE, [placed("open", 10, status)])["id"] == "open"


@pytest.mark.parametrize("status", [CLOSED, REJECTED])
def test_finished_cases_are_ignored_however_near(status):
    assert nearest_open_case(*HERE, [placed("done", 5, status), placed("open", 100)])["id"] == "open"
    assert nearest_open_case(*HERE, [placed("done", 5, status)]) is None


def test_a_case_beyond_250_m_is_not_near():
    assert nearest_open_case(*HERE, [placed("far", 260)]) is None
    assert nearest_open_case(*HERE, [placed("edge", 249)])["id"] == "edge"


# --- events -----------------------------------------------------------------------------------

def keys(step: Step) -> list[str]:
    return [event.routing_key for event in case_events(step, None)]


def only_event(step: Step) -> dict:
    [event] = case_events(step, None)
    return event.data


def test_event_keys_name_the_action_and_the_holding_department():
    assert keys(open_case("c1", a_report(), RULE, CLOCK, NOW)) == ["case.opened.sanitation",
                                                                   "case.dispatched.sanitation"]
    case = a_case(DISPATCHED)
    assert keys(accept(case, holder(case), NOW)) == ["case.accepted.sanitation"]


def test_event_keys_say_none_for_a_case_no_department_holds():
    assert keys(open_case("c1", a_report(), None, CLOCK, NOW)) == ["case.opened.none"]
    case = a_case(DISPATCHED)
    assert keys(dispute(case, holder(case), "不归我们管", NOW)) == ["case.disputed.none"]


def test_event_data_carries_the_contract_fields_and_the_case_version():
    case = a_case(DISPATCHED, version=7)
    data = only_event(accept(case, holder(case), NOW))
    assert {k: data[k] for k in ("case_id", "report_ids", "category", "department", "status", "due_at", "grid_id",
                                 "location", "description", "photo_ids", "case_version")} == {
        "case_id": "c1", "report_ids": ["r1"], "category": "env.garbage", "department": "sanitation",
        "status": ACCEPTED, "due_at": case["due_at"], "grid_id": "lanshan-01", "location": case["location"],
        "description": "垃圾堆在路边", "photo_ids": ["p1", "p2"], "case_version": 7}


def test_a_plain_event_carries_none_of_the_extras():
    case = a_case(DISPATCHED)
    data = only_event(accept(case, holder(case), NOW))
    assert not {"after_photo_ids", "reason", "extension", "approved", "report_id"} & set(data)


def test_the_rectified_event_carries_the_after_photos():
    case = a_case(ACCEPTED)
    assert only_event(rectify(case, holder(case), "已清理", ["p9"], NOW))["after_photo_ids"] == ["p9"]


def test_the_rejected_event_carries_the_reason_and_the_note():
    data = only_event(reject(a_case(DISPATCHED), OFFICE, "duplicate", "与 c0 重复", NOW))
    assert (data["reason"], data["note"]) == ("duplicate", "与 c0 重复")


def test_the_extension_requested_event_carries_the_request_not_yet_approved():
    case = a_case(DISPATCHED)
    step = request_extension(case, holder(case), 48, "材料采购", NOW)
    data = only_event(step)
    assert (data["extension"], data["approved"]) == (step.case["extension"], False)


@pytest.mark.parametrize("approved", [True, False])
def test_the_extension_decided_event_says_whether_it_was_approved(approved):
    step = decide_extension(with_waiting_extension(a_case(DISPATCHED)), OFFICE, approved, note=None, clock=CLOCK,
                            now=NOW)
    data = only_event(step)
    assert (data["extension"], data["approved"]) == (step.case["extension"], approved)


def test_a_join_publishes_one_joined_event_with_the_report_that_joined_and_all_the_case_reports():
    case = a_case(DISPATCHED, version=4)
    [event] = case_events(join_case(case, "r2"), None)
    assert (event.routing_key, event.source) == ("case.joined.sanitation", "routing")
    assert (event.data["report_id"], event.data["report_ids"]) == ("r2", ["r1", "r2"])
    assert {k: event.data[k] for k in ("case_id", "category", "department", "status", "due_at", "grid_id",
                                       "location", "description", "photo_ids", "case_version")} == {
        "case_id": "c1", "category": "env.garbage", "department": "sanitation", "status": DISPATCHED,
        "due_at": case["due_at"], "grid_id": "lanshan-01", "location": case["location"],
        "description": "垃圾堆在路边", "photo_ids": ["p1", "p2"], "case_version": 4}
    assert "attached" not in event.data


def test_a_join_to_a_case_in_triage_is_published_for_no_department():
    assert keys(join_case(a_case(PENDING_TRIAGE), "r2")) == ["case.joined.none"]


def test_a_joined_event_carries_no_note_of_an_earlier_step():
    case = a_case(DISPATCHED)
    case["history"] = [{"at": NOW, "actor": "office:o1", "action": "dispatched", "note": "内部备注"}]
    assert only_event(join_case(case, "r2"))["note"] is None


def test_opening_a_case_publishes_one_opened_event_for_its_one_report():
    events = case_events(open_case("c1", a_report(), None, CLOCK, NOW), None)
    assert [event.routing_key for event in events] == ["case.opened.none"]
    assert events[0].data["report_ids"] == ["r1"]
    assert not {"attached", "report_id"} & set(events[0].data)


def test_a_step_without_actions_publishes_nothing():
    assert case_events(Step(a_case(DISPATCHED), ()), None) == []


def test_the_service_actor_is_the_one_the_domain_uses():
    assert who(domain.SYSTEM) == SYSTEM


@pytest.mark.parametrize("fresh_deadline", [
    lambda case: dispatch(case, OFFICE, "sanitation", hours=24, basis="calendar", clock=CLOCK, now=NOW),
    lambda case: verify(case | {"status": RECTIFIED}, OFFICE, False, note="仍有垃圾", hours=12, clock=CLOCK, now=NOW),
    lambda case: dispute(case, holder(case), "不属于本部门", NOW),
], ids=["reassigned", "reworked", "disputed"])
def test_a_fresh_deadline_is_no_longer_deferred(fresh_deadline):
    """An approved extension defers one deadline; a new deadline is a new obligation (按期结案率)."""
    case = a_case(ACCEPTED, deferred=True)
    assert fresh_deadline(case).case["deferred"] is False



# --- the office merges a duplicate case into another ---------------------------------------------

def two_cases(source_status: str = DISPATCHED, target_status: str = PENDING_TRIAGE) -> tuple[dict, dict]:
    source = a_case(source_status, id="c2", report_ids=["r2", "r3"], photo_ids=["p1", "p3"])
    return source, a_case(target_status, id="c1", report_ids=["r1"], photo_ids=["p1", "p2"])


def test_a_merge_moves_the_reports_and_photos_and_ends_the_source_as_a_duplicate_merged_into_the_target():
    source, target = two_cases()
    before = copy.deepcopy((source, target))
    merged = domain.merge(source, target, OFFICE, "同一处", NOW)
    assert merged.target.case["report_ids"] == ["r1", "r2", "r3"]
    assert merged.target.case["photo_ids"] == ["p1", "p2", "p3"]
    assert merged.target.case["status"] == PENDING_TRIAGE
    ended = merged.source.case
    assert (ended["status"], ended["merged_into"], ended["report_ids"], ended["merged_report_ids"]) == (
        REJECTED, "c1", [], ["r2", "r3"])
    assert (ended["rejection"], ended["closed_at"]) == ({"reason": "duplicate", "note": "同一处"}, NOW)
    assert (source, target) == before


def test_both_histories_record_the_merge_naming_the_other_case():
    merged = domain.merge(*two_cases(), OFFICE, None, NOW)
    assert merged.source.case["history"][-1] == {"at": NOW, "actor": who(OFFICE), "action": "merged_into",
                                                 "note": "并入案卷 c1"}
    assert merged.target.case["history"][-1] == {"at": NOW, "actor": who(OFFICE), "action": "merged_from",
                                                 "note": "案卷 c2 并入本案卷"}


def test_a_merge_publishes_one_joined_per_moved_report_and_the_sources_rejection():
    merged = domain.merge(*two_cases(), OFFICE, None, NOW)
    joined = case_events(merged.target, None)
    assert [e.routing_key for e in joined] == ["case.joined.none", "case.joined.none"]
    # Each join names the reports up to the one that joined, as if they had joined one after the other.
    assert [(e.data["report_id"], e.data["report_ids"], e.data["merged_from"]) for e in joined] == [
        ("r2", ["r1", "r2"], "c2"), ("r3", ["r1", "r2", "r3"], "c2")]
    [ended] = case_events(merged.source, None)
    assert ended.routing_key == "case.rejected.sanitation"
    assert (ended.data["reason"], ended.data["merged_into"], ended.data["report_ids"]) == (
        "duplicate", "c1", ["r2", "r3"])


def test_a_plain_rejection_and_join_carry_no_merge_fields():
    assert "merged_into" not in only_event(reject(a_case(DISPATCHED), OFFICE, "duplicate", "", NOW))
    assert "merged_from" not in only_event(join_case(a_case(DISPATCHED), "r2"))


@pytest.mark.parametrize("source_status", OPEN_STATUSES)
@pytest.mark.parametrize("target_status", OPEN_STATUSES)
def test_any_open_case_merges_into_any_open_case(source_status, target_status):
    merged = domain.merge(*two_cases(source_status, target_status), OFFICE, None, NOW)
    assert merged.target.case["status"] == target_status


@pytest.mark.parametrize("source_status, target_status", [
    (CLOSED, DISPATCHED), (REJECTED, DISPATCHED), (DISPATCHED, CLOSED), (DISPATCHED, REJECTED)])
def test_a_case_that_is_over_cannot_be_merged_or_merged_into(source_status, target_status):
    with pytest.raises(IllegalTransition):
        domain.merge(*two_cases(source_status, target_status), OFFICE, None, NOW)


def test_a_case_cannot_be_merged_into_itself():
    case = a_case(DISPATCHED)
    with pytest.raises(IllegalTransition, match="itself"):
        domain.merge(case, case, OFFICE, None, NOW)


def test_a_case_cannot_be_merged_into_a_case_of_another_category():
    source, target = two_cases()
    with pytest.raises(IllegalTransition, match="category"):
        domain.merge(source, target | {"category": "traffic.parking"}, OFFICE, None, NOW)


def test_a_new_case_is_merged_into_nothing():
    case = open_case("c1", a_report(), None, CLOCK, NOW).case
    assert (case["merged_into"], case["merged_report_ids"]) == (None, [])
