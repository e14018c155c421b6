"""The credit policy's table (docs/hours.md, "The credit policy"), a test per row, without I/O."""
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.hours import domain
from shared.auth import Caller
from shared.errors import Conflict, InvalidFields
from shared.reference import DEMO_DIR, ReferenceDataError, load_service_hours

RULES = load_service_hours()
ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def claim(hours: float, start: datetime = NOW - timedelta(hours=8)) -> domain.PatrolClaim:
    return domain.PatrolClaim("v1", "lanshan-01", start, start + timedelta(hours=hours), hours, start.date())


def recorded(hours: float = 7.5, reports: tuple[str, ...] = ("r1",), day: float = 0, by_its_grid_leader=False):
    return domain.new_patrol(claim(hours), list(reports), day_centihours=domain.centihours(day),
                             by_its_grid_leader=by_its_grid_leader, recorded_by="volunteer:v1", now=NOW, rules=RULES)


def parts(patrol: dict) -> tuple[float, float, float, str]:
    return patrol["credited_hours"], patrol["waiting_hours"], patrol["declined_hours"], patrol["status"]


# --- row "credited at once": a bounded part per distinct report ---------------------------------

def test_the_demo_city_credits_one_hour_per_distinct_report_under_a_new_rule_version():
    assert RULES.evidence_hours_per_report == 1.0 and RULES.rule_version == "linyi-2026.2"


@pytest.mark.parametrize("waiting, credited", [(750, 100), (100, 100), (50, 50), (0, 0)])
def test_one_report_credits_at_once_at_most_the_per_report_bound_of_what_waits(waiting, credited):
    assert domain.evidence_credit(waiting, RULES) == credited


def test_a_working_day_evidenced_by_one_throwaway_report_credits_one_hour_and_the_rest_waits():
    patrol, entries = recorded(7.5, ("r1",))
    assert parts(patrol) == (1.0, 6.5, 0, domain.AWAITING_CONFIRMATION)
    assert [(e["kind"], e["hours"], e["source"], e["source_id"], e["patrol_id"]) for e in entries] == [
        ("patrol", 1.0, "report", "r1", patrol["id"])]
    assert patrol["credits"][0]["report_id"] == "r1" and patrol["entry_id"] == entries[0]["id"]
    assert patrol["evidence_report_id"] == "r1" and entries[0]["recorded_by"] == domain.BY_EVIDENCE


def test_each_distinct_report_credits_its_part_until_the_patrol_is_all_credited():
    patrol, entries = recorded(2.5, ("r1", "r2", "r3", "r4"))
    assert parts(patrol) == (2.5, 0, 0, domain.CREDITED)
    assert [(e["source_id"], e["hours"]) for e in entries] == [("r1", 1.0), ("r2", 1.0), ("r3", 0.5)]


def test_a_patrol_without_evidence_waits_whole():
    patrol, entries = recorded(2, ())
    assert parts(patrol) == (0, 2.0, 0, domain.AWAITING_CONFIRMATION) and entries == []
    assert patrol["entry_id"] is None and patrol["evidence_report_id"] is None


def test_a_late_report_credits_its_part_of_a_waiting_patrol():
    patrol, _ = recorded(3, ())
    patrol, entry = domain.with_evidence(patrol, "r9", NOW, RULES)
    assert parts(patrol) == (1.0, 2.0, 0, domain.AWAITING_CONFIRMATION) and entry["source_id"] == "r9"
    done, _ = domain.confirmed(patrol, "association:a1", "", NOW, RULES)
    assert domain.with_evidence(done, "r10", NOW, RULES) is None  # nothing of it waits any more


# --- row "a day's hours" ------------------------------------------------------------------------

def test_beyond_the_daily_cap_nothing_is_credited_at_once_and_it_waits_for_the_association():
    patrol, entries = recorded(2, ("r1",), day=7)
    assert parts(patrol) == (0, 2.0, 0, domain.AWAITING_APPROVAL) and entries == []
    assert domain.with_evidence(patrol, "r2", NOW, RULES) is None


# --- row "who confirms" -------------------------------------------------------------------------

@pytest.mark.parametrize("beyond_cap, by_its_grid_leader, status", [
    (False, False, domain.AWAITING_CONFIRMATION), (True, False, domain.AWAITING_APPROVAL),
    (False, True, domain.AWAITING_APPROVAL), (True, True, domain.AWAITING_APPROVAL)])
def test_waiting_time_waits_for_the_association_beyond_the_cap_and_for_a_grid_leaders_own_patrol(
        beyond_cap, by_its_grid_leader, status):
    assert domain.waiting_status(beyond_cap, by_its_grid_leader) == status


def test_a_grid_leaders_own_patrol_in_their_grid_is_evidenced_as_anyones_and_waits_for_the_association():
    patrol, entries = recorded(3, ("r1",), by_its_grid_leader=True)
    assert parts(patrol) == (1.0, 2.0, 0, domain.AWAITING_APPROVAL) and len(entries) == 1


@pytest.mark.parametrize("caller, leader_id, walked", [
    (Caller("l1", "grid_leader", grid="lanshan-01"), None, True),
    (Caller("l1", "grid_leader", grid="lanshan-02"), None, False),
    (Caller("l1", "volunteer"), "l1", True),  # the grid's leader, with a volunteer's token
    (Caller("v1", "volunteer"), "l1", False)])
def test_a_patrol_is_the_grid_leaders_own_by_their_token_or_the_grids_leader(caller, leader_id, walked):
    assert domain.walked_by_its_grid_leader(caller, "lanshan-01", leader_id) is walked


# --- row "status" -------------------------------------------------------------------------------

@pytest.mark.parametrize("credited, waiting, status", [
    (1.0, 6.5, domain.AWAITING_CONFIRMATION), (7.5, 0, domain.CREDITED), (1.0, 0, domain.CREDITED),
    (0, 0, domain.DECLINED)])
def test_the_status_says_where_the_time_is(credited, waiting, status):
    patrol = {"credited_hours": credited, "waiting_hours": waiting, "beyond_daily_cap": False,
              "by_its_grid_leader": False}
    assert domain.patrol_status(patrol) == status
    assert domain.patrol_sessions(patrol) == (1 if credited else 0)


def test_a_patrol_stored_before_parts_reads_as_one_part():
    old = {"id": "p1", "hours": 2.0, "status": domain.AWAITING_APPROVAL}
    assert parts(domain.parted_patrol(old)) == (0, 2.0, 0, domain.AWAITING_APPROVAL)
    assert domain.parted_patrol(old)["beyond_daily_cap"] is True
    assert parts(domain.parted_patrol({**old, "status": domain.CREDITED})) == (2.0, 0, 0, domain.CREDITED)


# --- row "confirmed or declined by a person" ----------------------------------------------------

def test_a_confirmation_credits_the_waiting_time_in_one_entry_and_a_second_one_is_numbered():
    patrol, _ = recorded(7.5, ("r1",))
    patrol, entry = domain.confirmed(patrol, "grid_leader:l1", "已核对", NOW, RULES)
    assert parts(patrol) == (7.5, 0, 0, domain.CREDITED)
    assert (entry["hours"], entry["source"], entry["source_id"]) == (6.5, "patrol", patrol["id"])
    patrol, _ = domain.evidence_withdrawn(patrol, "r1", "所在案卷被驳回", NOW, RULES)
    patrol, again = domain.confirmed(patrol, "grid_leader:l1", "", NOW, RULES)
    assert again["source_id"] == f"{patrol['id']}/2" and parts(patrol) == (7.5, 0, 0, domain.CREDITED)


def test_a_decline_takes_back_what_reports_credited_at_once_but_not_what_a_person_confirmed():
    patrol, entries = recorded(3, ("r1",))
    declined, reversals = domain.declined(patrol, "grid_leader:l1", "当日无巡访安排", NOW, RULES)
    assert parts(declined) == (0, 0, 3.0, domain.DECLINED)
    assert [(r["hours"], r["reverses"], r["patrol_id"]) for r in reversals] == [(-1.0, entries[0]["id"], patrol["id"])]
    assert "当日无巡访安排" in reversals[0]["note"] and declined["credits"][0]["reversal_id"] == reversals[0]["id"]
    confirmed, _ = domain.confirmed(patrol, "association:a1", "", NOW, RULES)
    returned, _ = domain.evidence_withdrawn(confirmed, "r1", "所在案卷被驳回", NOW, RULES)
    declined, reversals = domain.declined(returned, "association:a1", "不符", NOW, RULES)
    assert parts(declined) == (2.0, 0, 1.0, domain.CREDITED) and reversals == []


# --- row "withdrawn evidence" -------------------------------------------------------------------

def test_a_withdrawn_report_takes_back_its_part_which_waits_for_a_person_again():
    patrol, entries = recorded(7.5, ("r1",))
    why = domain.rejection_reason("invalid")
    returned, reversal = domain.evidence_withdrawn(patrol, "r1", why, NOW, RULES)
    assert parts(returned) == (0, 7.5, 0, domain.AWAITING_CONFIRMATION)
    assert (reversal["hours"], reversal["reverses"], reversal["source_id"]) == (-1.0, entries[0]["id"],
                                                                                 entries[0]["id"])
    assert "r1" in reversal["note"] and "invalid" in reversal["note"]
    assert domain.evidence_withdrawn(returned, "r1", why, NOW, RULES) is None  # once
    assert domain.evidence_withdrawn(patrol, "r2", why, NOW, RULES) is None  # not its evidence


def test_a_grid_leaders_own_patrol_returns_its_time_to_the_association():
    patrol, _ = recorded(1, ("r1",), by_its_grid_leader=True)
    assert parts(patrol) == (1.0, 0, 0, domain.CREDITED)
    returned, _ = domain.evidence_withdrawn(patrol, "r1", "所在案卷被驳回", NOW, RULES)
    assert returned["status"] == domain.AWAITING_APPROVAL


def test_a_rejections_reason_is_said():
    assert domain.rejection_reason("duplicate") == "所在案卷被驳回（duplicate）"
    assert domain.rejection_reason(None) == "所在案卷被驳回"


# --- row "distinct evidence" --------------------------------------------------------------------

def report(report_id: str, reporter: str, minutes: int) -> dict:
    return {"id": report_id, "reporter_id": reporter, "submitted_at": NOW + timedelta(minutes=minutes),
            "year": 2026}


def test_a_report_joining_a_case_where_its_reporter_has_one_is_a_self_duplicate_of_the_first():
    others = [report("r1", "v2", 0), report("r2", "v1", 5), report("r3", "v1", 10)]
    assert domain.self_duplicate_of(report("r4", "v1", 20), [*others, report("r4", "v1", 20)]) == "r2"
    assert domain.self_duplicate_of(report("r4", "v3", 20), others) is None  # another reporter's case
    assert domain.self_duplicate_of(report("r2", "v1", 5), [report("r1", "v2", 0), report("r2", "v1", 5)]) is None
    assert "case-1" in domain.self_duplicate_reason("case-1", "r2") and "r2" in domain.self_duplicate_reason(
        "case-1", "r2")


# --- row "reversed by a person" -----------------------------------------------------------------

def test_an_entry_a_person_reverses_is_declined_in_its_patrol_not_returned_to_waiting():
    patrol, entries = recorded(3, ("r1",))
    original = {**entries[0], "kind": domain.PATROL}
    reversal = domain.reversal_of(original, "抽查不符", "office:o1", NOW, RULES)
    assert reversal["patrol_id"] == patrol["id"]
    after = domain.credit_reversed(patrol, reversal)
    assert parts(after) == (0, 2.0, 1.0, domain.AWAITING_CONFIRMATION)
    assert domain.credit_reversed(after, reversal) is None


# --- row "verified reports" ---------------------------------------------------------------------

def test_a_closed_case_counts_once_per_reporter_in_the_year_of_their_first_report_in_it():
    twenty = [report(f"r{n}", "v1", n) for n in range(20)]
    first = {**report("r-old", "v1", -60 * 24 * 365), "year": 2025}
    assert domain.verified_reporters([*twenty, report("x", "v2", 3)]) == {"v1": 2026, "v2": 2026}
    assert domain.verified_reporters([*twenty, first]) == {"v1": 2025}


# --- row "adjustments" --------------------------------------------------------------------------

@pytest.mark.parametrize("hours", [0.004, 1.005, -0.001, 2.675])
def test_hours_are_whole_hundredths(hours):
    assert not domain.whole_hundredths(hours)
    with pytest.raises(InvalidFields) as refused:
        domain.check_adjustment(hours)
    assert "hundredths" in refused.value.detail and "hours" in refused.value.errors


@pytest.mark.parametrize("hours", [0.07, 0.01, -12.34, 1000, 2.5])
def test_whole_hundredths_are_accepted(hours):
    assert domain.whole_hundredths(hours)
    domain.check_adjustment(hours)


# --- row "a year's close" -----------------------------------------------------------------------

def test_a_years_close_declines_the_time_still_waiting_and_keeps_what_was_credited():
    patrol, _ = recorded(7.5, ("r1",))
    closed = domain.closed_with_its_year(patrol, NOW)
    assert parts(closed) == (1.0, 0, 6.5, domain.CREDITED) and closed["decision_note"] == domain.YEAR_CLOSED
    unevidenced, _ = recorded(2, ())
    assert parts(domain.closed_with_its_year(unevidenced, NOW)) == (0, 0, 2.0, domain.DECLINED)


def test_a_years_close_declines_an_activitys_publicised_and_held_hours_and_lapses_its_objections():
    activity = {"participants": [{"volunteer_id": "a", "hours": 3, "status": domain.PUBLICISED},
                                 {"volunteer_id": "b", "hours": 2, "status": domain.HELD},
                                 {"volunteer_id": "c", "hours": 1, "status": domain.CREDITED}],
                "objections": [{"id": "o1", "volunteer_id": "b", "status": domain.OPEN}]}
    changes, released = domain.activity_closed_with_its_year(activity, NOW)
    assert released == [("a", 3), ("b", 2)]
    assert [p["status"] for p in changes["participants"]] == [domain.DECLINED, domain.DECLINED, domain.CREDITED]
    assert changes["objections"][0]["status"] == domain.LAPSED and changes["status"] == domain.CONFIRMED


def test_a_year_is_the_citys_local_year():
    start, end = domain.year_span(2026, ZONE)
    assert (start, end) == (datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC))


# --- row "objections" ---------------------------------------------------------------------------

def publicised(objections: list[dict]) -> dict:
    return {"status": domain.PUBLICISED, "publicity_ends": "2026-11-30", "objections": objections,
            "participants": [{"volunteer_id": "a", "hours": 3, "status": domain.PUBLICISED}]}


def test_a_participants_hours_are_objected_to_once():
    objection = domain.new_objection(publicised([]), "a", "未到场", "volunteer:x", NOW, ZONE)
    dismissed = {**objection, "status": domain.DISMISSED}
    with pytest.raises(Conflict) as refused:
        domain.new_objection(publicised([dismissed]), "a", "还是未到场", "volunteer:y", NOW, ZONE)
    assert "already decided" in refused.value.detail


@pytest.mark.parametrize("role, shown", [("association", True), ("office", True), ("volunteer", False),
                                         ("grid_leader", False), ("service", False)])
def test_who_objected_is_shown_to_the_association_and_the_office_only(role, shown):
    objection = {"id": "o1", "volunteer_id": "a", "raised_by": "volunteer:x", "status": domain.OPEN}
    caller = Caller("a" if role == "volunteer" else "someone", role, grid="lanshan-01")
    assert domain.shown_objection(objection, caller)["raised_by"] == ("volunteer:x" if shown else None)
    assert domain.shown_activity({"objections": [objection]}, caller)["objections"][0]["raised_by"] == (
        "volunteer:x" if shown else None)


# --- row "spot checks" --------------------------------------------------------------------------

def test_the_server_draws_a_spot_checks_seed_and_the_list_says_how_far_a_check_got():
    seeds = {domain.spot_check_seed() for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= seed < domain.SEEDS for seed in seeds)
    item = {"result": None}
    check = {"id": "c1", "year": 2026, "size": 3, "seed": 7, "created_by": "office:o", "created_at": NOW,
             "items": [item, {**item, "result": "passed"}, {**item, "result": "failed"}]}
    assert domain.spot_check_listed(check) == {"id": "c1", "year": 2026, "size": 3, "seed": 7,
                                               "created_by": "office:o", "created_at": NOW, "drawn": 3,
                                               "checked": 2, "failed": 1}


# --- the city's figure ---------------------------------------------------------------------------

@pytest.mark.parametrize("figure", [0, -1, 0.25, "one"])
def test_a_city_file_with_a_bad_evidence_figure_stops_the_service(tmp_path, figure):
    raw = json.loads((DEMO_DIR / "service_hours.json").read_text(encoding="utf-8"))
    raw["patrol"]["evidence_hours_per_report"] = figure  # 0.25 h is not a whole number of half-hour steps
    (tmp_path / "service_hours.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ReferenceDataError):
        load_service_hours(str(tmp_path))


def test_a_city_sets_its_own_evidence_figure(tmp_path):
    raw = json.loads((DEMO_DIR / "service_hours.json").read_text(encoding="utf-8"))
    raw["patrol"]["evidence_hours_per_report"] = 1.5
    (tmp_path / "service_hours.json").write_text(json.dumps(raw), encoding="utf-8")
    rules = load_service_hours(str(tmp_path))
    patrol, _ = domain.new_patrol(claim(7.5), ["r1"], day_centihours=0, by_its_grid_leader=False,
                                  recorded_by="volunteer:v1", now=NOW, rules=rules)
    assert parts(patrol)[:2] == (1.5, 6.0)
