"""Recording, evidencing and deciding patrols through hours' use cases, over an in-memory store: who may
record and decide, overlaps, the daily cap, evidence credited at once, and that a refusal changes nothing."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.hours import domain
from services.hours.usecases import Hours
from services.hours.usecases import evidence as evidence_use
from services.hours.usecases import patrols as use
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, InvalidFields, NotFound
from tests.unit.hours_usecase_fixtures import ASSOCIATION, hours_in_memory, now, register


@pytest.fixture
def hours() -> Hours:
    return hours_in_memory()


def patrol(hours: Hours, caller: Caller, grid_id: str, start: datetime, end: datetime,
           key: str | None = None) -> dict:
    recorded, _ = use.record_patrol(hours, caller, {"grid_id": grid_id, "started_at": start, "ended_at": end}, key,
                                    f"{grid_id}|{start}|{end}", "c-1", now())
    return recorded


def decide(hours: Hours, caller: Caller, patrol_id: str, confirm: bool, note: str = "已核对签到") -> dict:
    return use.decide_patrol(hours, caller, patrol_id, confirm, note, "c-1", now())


def hours_in_ledger(hours: Hours, volunteer_id: str) -> list[float]:
    return [e["hours"] for e in hours.store.ledger_of(volunteer_id)]


def pending(hours: Hours, volunteer_id: str) -> float:
    return domain.hours_of(hours.store.totals(volunteer_id)["pending"])


def test_an_unevidenced_patrol_waits_for_its_grid_leader(hours):
    volunteer_id, volunteer = register(hours)
    waiting = patrol(hours, volunteer, "lanshan-03", now() - timedelta(hours=3), now() - timedelta(hours=1))
    assert waiting["status"] == "awaiting_confirmation" and waiting["entry_id"] is None
    with pytest.raises(NotFound):  # another grid's leader does not see it
        decide(hours, Caller("gl-4", "grid_leader", grid="lanshan-04"), waiting["id"], True)
    with pytest.raises(Forbidden):
        decide(hours, volunteer, waiting["id"], True)
    assert hours_in_ledger(hours, volunteer_id) == []
    leader = Caller("gl-3", "grid_leader", grid="lanshan-03")
    confirmed = decide(hours, leader, waiting["id"], True)
    assert confirmed["status"] == "credited" and confirmed["decided_by"] == "grid_leader:gl-3"
    assert hours_in_ledger(hours, volunteer_id) == [2.0]
    with pytest.raises(Conflict):
        decide(hours, leader, waiting["id"], False, "重复")
    assert (hours.store.totals(volunteer_id)["years"][str(confirmed["service_date"][:4])], pending(
        hours, volunteer_id)) == (200, 0)


def test_a_declined_patrol_credits_nothing_and_frees_its_time(hours):
    volunteer_id, volunteer = register(hours)
    start, end = now() - timedelta(hours=5), now() - timedelta(hours=4)
    waiting = patrol(hours, volunteer, "lanshan-03", start, end)
    declined = decide(hours, ASSOCIATION, waiting["id"], False, "当日该网格无巡访安排")
    assert declined["status"] == "declined"
    assert hours_in_ledger(hours, volunteer_id) == [] and pending(hours, volunteer_id) == 0
    assert patrol(hours, volunteer, "lanshan-03", start, end)["status"] == "awaiting_confirmation"


def test_an_overlapping_patrol_is_409_and_changes_nothing(hours):
    volunteer_id, volunteer = register(hours)
    patrol(hours, volunteer, "lanshan-02", now() - timedelta(hours=3), now() - timedelta(hours=1))
    with pytest.raises(Conflict, match="overlaps"):
        patrol(hours, volunteer, "lanshan-04", now() - timedelta(hours=2), now())
    assert len(hours.store.patrols) == 1 and pending(hours, volunteer_id) == 2.0


def test_beyond_eight_hours_a_day_waits_for_the_association_and_beyond_twelve_is_refused(hours):
    volunteer_id, volunteer = register(hours)
    day = now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)  # yesterday, 08:00 in Linyi
    first = patrol(hours, volunteer, "lanshan-02", day, day + timedelta(hours=6))
    second = patrol(hours, volunteer, "lanshan-02", day + timedelta(hours=6), day + timedelta(hours=9))
    assert (first["status"], second["status"]) == ("awaiting_confirmation", "awaiting_approval")
    with pytest.raises(Forbidden):
        decide(hours, Caller("gl-2", "grid_leader", grid="lanshan-02"), second["id"], True)
    with pytest.raises(InvalidFields, match="12"):
        patrol(hours, volunteer, "lanshan-02", day + timedelta(hours=9), day + timedelta(hours=13))
    assert decide(hours, ASSOCIATION, second["id"], True)["status"] == "credited"


def test_only_a_registered_volunteer_records_patrols(hours):
    with pytest.raises(Forbidden, match="register"):
        patrol(hours, Caller("stranger", "volunteer"), "lanshan-01", now() - timedelta(hours=1), now())
    assert hours.store.patrols == {}


def test_a_grid_leader_cannot_confirm_their_own_patrol(hours):
    volunteer_id, as_volunteer = register(hours, "lanshan-03")
    as_leader = Caller(volunteer_id, "grid_leader", grid="lanshan-03")
    walked = patrol(hours, as_volunteer, "lanshan-03", now() - timedelta(hours=3), now() - timedelta(hours=1))
    assert walked["status"] == "awaiting_confirmation"
    for confirm in (True, False):
        with pytest.raises(Forbidden, match="own"):
            decide(hours, as_leader, walked["id"], confirm, "自己拒绝")
    assert hours_in_ledger(hours, volunteer_id) == [] and pending(hours, volunteer_id) == 2.0
    assert decide(hours, Caller("gl-3", "grid_leader", grid="lanshan-03"), walked["id"], True)["status"] == "credited"


def test_a_grid_leader_records_patrols_and_their_own_grids_wait_for_the_association(hours):
    volunteer_id, _ = register(hours, "lanshan-03")
    leader = Caller(volunteer_id, "grid_leader", grid="lanshan-03")
    own = patrol(hours, leader, "lanshan-03", now() - timedelta(hours=6), now() - timedelta(hours=5))
    assert own["status"] == "awaiting_approval" and own["recorded_by"] == f"grid_leader:{volunteer_id}"
    elsewhere = patrol(hours, leader, "lanshan-04", now() - timedelta(hours=4), now() - timedelta(hours=3))
    assert elsewhere["status"] == "awaiting_confirmation"
    with pytest.raises(Forbidden):
        decide(hours, Caller("gl-3", "grid_leader", grid="lanshan-03"), own["id"], True)
    assert decide(hours, Caller("gl-4", "grid_leader", grid="lanshan-04"), elsewhere["id"], True)["status"] == \
        "credited"
    assert decide(hours, ASSOCIATION, own["id"], True)["status"] == "credited"
    assert hours_in_ledger(hours, volunteer_id) == [1.0, 1.0]
    with pytest.raises(Forbidden, match="register"):
        patrol(hours, Caller("gl-unregistered", "grid_leader", grid="lanshan-03"), "lanshan-03",
               now() - timedelta(hours=1), now())


def test_a_patrol_evidenced_by_a_report_is_credited_at_once_with_its_event(hours):
    volunteer_id, volunteer = register(hours, "lanshan-02")
    start = now() - timedelta(hours=3)
    hours.store.add_report("r1", volunteer_id, "lanshan-02", start + timedelta(minutes=30))
    recorded = patrol(hours, volunteer, "lanshan-02", start, start + timedelta(hours=2))
    assert (recorded["credited_hours"], recorded["waiting_hours"], recorded["status"]) == (
        1.0, 1.0, "awaiting_confirmation")
    assert hours.store.reports["r1"]["patrol_id"] == recorded["id"]
    [credited] = hours.store.published
    assert (credited.type, credited.data["hours"], credited.data["source_id"], credited.correlation_id) == (
        "hours.credited", 1.0, "r1", "c-1")


def test_a_report_heard_after_its_patrol_credits_it_and_its_withdrawal_takes_it_back(hours):
    volunteer_id, volunteer = register(hours, "lanshan-02")
    start = now() - timedelta(hours=3)
    recorded = patrol(hours, volunteer, "lanshan-02", start, start + timedelta(hours=2))
    report = {"id": "r2", "reporter_id": volunteer_id, "grid_id": "lanshan-02",
              "submitted_at": start + timedelta(minutes=10), "year": start.year}
    evidence_use.reports_submitted(hours.store, [(report, "c-2")], now())
    assert hours.store.patrol(recorded["id"])["credited_hours"] == 1.0 and hours_in_ledger(hours, volunteer_id) == [1.0]
    assert evidence_use.withdraw_report(hours.store, "r2", "所在案卷被驳回", now(), "c-3")
    assert hours_in_ledger(hours, volunteer_id) == [1.0, -1.0] and pending(hours, volunteer_id) == 2.0
    assert [e.type for e in hours.store.published] == ["hours.credited", "hours.reversed"]
    assert evidence_use.withdraw_report(hours.store, "r2", "again", now(), "c-4")  # once per report
    assert hours_in_ledger(hours, volunteer_id) == [1.0, -1.0]
    assert not evidence_use.withdraw_report(hours.store, "never-heard", "why", now(), None)


def test_a_retried_patrol_with_its_key_records_it_once(hours):
    volunteer_id, volunteer = register(hours)
    start = now() - timedelta(hours=3)
    first = patrol(hours, volunteer, "lanshan-01", start, start + timedelta(hours=1), key="k1")
    again, created = use.record_patrol(hours, volunteer, {"grid_id": "lanshan-01", "started_at": start,
                                                          "ended_at": start + timedelta(hours=1)}, "k1",
                                       f"lanshan-01|{start}|{start + timedelta(hours=1)}", None, now())
    assert not created and again["id"] == first["id"] and len(hours.store.patrols) == 1
