"""The ledger through hours' use cases, over an in-memory store: adjustments credited once per request,
reversals once and final, the star level's event, spot-check results, and a closed year's sealed figures."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.hours import domain
from services.hours.publicity import PublicityWatch
from services.hours.usecases import Hours
from services.hours.usecases import activities as activities_use
from services.hours.usecases import ledger as use
from services.hours.usecases import patrols as patrols_use
from services.hours.usecases import records as records_use
from services.hours.usecases import spot_checks as spot_checks_use
from shared.auth import Caller
from shared.errors import Conflict, IdempotencyConflict, InvalidFields, NotFound
from shared.photo_ids import side_of
from tests.unit.hours_usecase_fixtures import ASSOCIATION, CITY, OFFICE, hours_in_memory, now, register


@pytest.fixture
def hours() -> Hours:
    return hours_in_memory()


def adjust(hours: Hours, volunteer_id: str, amount: float, key: str | None = None, **fields) -> tuple[dict, bool]:
    body = {"volunteer_id": volunteer_id, "hours": amount, "reason": "补录纸质签到时长", **fields}
    return use.adjust_hours(hours, ASSOCIATION, body, key, f"{volunteer_id}|{amount}|{fields}", "c-1", now())


def reverse(hours: Hours, entry_id: str, reason: str = "抽查发现签到记录与实际不符") -> dict:
    return use.reverse_entry(hours, "office:office-1", entry_id, reason, "c-2", now())


def total(hours: Hours, volunteer_id: str) -> float:
    return domain.hours_of(hours.store.totals(volunteer_id)["total"])


def test_an_adjustment_is_a_new_entry_and_a_retry_credits_it_once(hours):
    volunteer, _ = register(hours)
    first, created = adjust(hours, volunteer, 3.5, key="assoc-1:k1")
    again, created_again = adjust(hours, volunteer, 3.5, key="assoc-1:k1")
    assert (created, created_again, first["id"]) == (True, False, again["id"])
    assert first["kind"] == "adjustment" and first["recorded_by"] == "association:assoc-1"
    with pytest.raises(IdempotencyConflict):
        adjust(hours, volunteer, 4, key="assoc-1:k1")
    assert total(hours, volunteer) == 3.5 and len(hours.store.published) == 1


def test_an_adjustments_key_reused_for_another_volunteer_is_409_and_credits_nobody_twice(hours):
    (one, _), (other, _) = register(hours), register(hours)
    adjust(hours, one, 5, key="assoc-1:k2")
    with pytest.raises(IdempotencyConflict, match="Idempotency-Key"):
        adjust(hours, other, 5, key="assoc-1:k2")
    assert hours.store.ledger_of(other) == [] and (total(hours, one), total(hours, other)) == (5, 0)


@pytest.mark.parametrize("amount", [0.004, 1.005, -0.001, 0, 1000.01])
def test_adjustments_that_are_not_whole_hundredths_or_out_of_bounds_are_refused(hours, amount):
    volunteer, _ = register(hours)
    with pytest.raises(InvalidFields) as refused:
        adjust(hours, volunteer, amount)
    assert "hours" in refused.value.errors and hours.store.ledger_of(volunteer) == []


def test_an_adjustment_for_nobody_registered_is_refused(hours):
    with pytest.raises(InvalidFields) as refused:
        adjust(hours, "f" * 24, 2)
    assert "volunteer_id" in refused.value.errors and hours.store.entries == {}


def test_a_reversal_cancels_an_entry_once_and_is_itself_final(hours):
    volunteer, _ = register(hours)
    entry, _ = adjust(hours, volunteer, 6)
    reversal = reverse(hours, entry["id"])
    assert (reversal["hours"], reversal["reverses"], reversal["kind"]) == (-6, entry["id"], "reversal")
    assert total(hours, volunteer) == 0
    with pytest.raises(Conflict, match=reversal["id"]):
        reverse(hours, entry["id"], "再次")
    with pytest.raises(Conflict):
        reverse(hours, reversal["id"], "撤销")
    with pytest.raises(NotFound):
        reverse(hours, "0" * 24)
    assert sorted(e["hours"] for e in hours.store.ledger_of(volunteer)) == [-6, 6]
    assert [(e.type, e.data["reverses"]) for e in hours.store.published[1:]] == [("hours.reversed", entry["id"])]


def test_crossing_a_star_level_publishes_the_change_once(hours):
    volunteer, _ = register(hours)
    adjust(hours, volunteer, 99.5)
    adjust(hours, volunteer, 1)
    levels = [e for e in hours.store.published if e.type == "volunteer.level_changed"]
    assert [(e.data["volunteer_id"], e.data["star_level"], e.data["previous_level"]) for e in levels] == [
        (volunteer, 1, 0)]
    assert hours.store.volunteer(volunteer)["star_level"] == 1


def test_reversing_a_patrols_entry_declines_that_part_of_the_patrol(hours):
    volunteer, caller = register(hours, "lanshan-02")
    start = now() - timedelta(hours=3)
    walked, _ = patrols_use.record_patrol(hours, caller, {"grid_id": "lanshan-02", "started_at": start,
                                                          "ended_at": start + timedelta(hours=2)}, None, "f", None,
                                          now())
    confirmed = patrols_use.decide_patrol(hours, ASSOCIATION, walked["id"], True, "", None, now())
    reverse(hours, confirmed["entry_id"])
    patrol = hours.store.patrol(walked["id"])
    assert (patrol["status"], patrol["credited_hours"], patrol["declined_hours"]) == ("declined", 0, 2.0)


# --- spot checks --------------------------------------------------------------------------------

def a_check_of(hours: Hours, entries: list[dict]) -> dict:
    check = {"id": "check-1", "year": now().year, "size": len(entries), "seed": 7, "created_by": "office:office-1",
             "created_at": now(), "items": [domain.checked_item(e) for e in entries]}
    hours.store.create_spot_check(check, None, "f")
    return check


def record(hours: Hours, entry_id: str, passed: bool, note: str = "核对无误") -> dict:
    return spot_checks_use.record_result(hours, OFFICE, "check-1", entry_id, passed=passed, note=note,
                                         correlation_id="c-3", now=now())


def test_a_failed_entry_is_reversed_with_the_check_as_its_reason_and_each_entry_is_checked_once(hours):
    volunteer, _ = register(hours)
    failing, passing = adjust(hours, volunteer, 2)[0], adjust(hours, volunteer, 3)[0]
    a_check_of(hours, [failing, passing])
    failed = record(hours, failing["id"], False, "签到表无该志愿者签名")
    item = next(i for i in failed["items"] if i["entry_id"] == failing["id"])
    assert item["result"] == "failed" and item["checked_by"] == "office:office-1"
    reversal = hours.store.entry(item["reversal_id"])
    assert (reversal["reverses"], reversal["hours"]) == (failing["id"], -2) and "check-1" in reversal["note"]
    passed = record(hours, passing["id"], True)
    assert next(i for i in passed["items"] if i["entry_id"] == passing["id"])["result"] == "passed"
    with pytest.raises(Conflict):
        record(hours, passing["id"], False, "再查")
    with pytest.raises(InvalidFields):
        record(hours, "0" * 24, True)
    with pytest.raises(NotFound):
        spot_checks_use.record_result(hours, OFFICE, "no-such-check", passing["id"], passed=True, note="",
                                      correlation_id=None, now=now())
    assert total(hours, volunteer) == 3  # only the failed entry was reversed, once


def test_an_entry_checked_already_is_not_reversed_by_a_second_failing_result(hours):
    volunteer, _ = register(hours)
    entry, _ = adjust(hours, volunteer, 2)
    a_check_of(hours, [entry])
    record(hours, entry["id"], True)
    with pytest.raises(Conflict, match="checked already"):
        record(hours, entry["id"], False, "再查")
    assert total(hours, volunteer) == 2 and len(hours.store.entries) == 1


# --- closing a year -----------------------------------------------------------------------------

def test_a_year_closes_once_after_it_ends_and_nothing_more_is_credited_into_it(hours):
    volunteer, _ = register(hours)
    last_year = now().year - 1
    entry, _ = adjust(hours, volunteer, 8, service_date=datetime(last_year, 12, 20).date())
    with pytest.raises(Conflict):  # this year may still be recorded
        records_use.close_year(hours, OFFICE, now().year, now())
    closed = records_use.close_year(hours, OFFICE, last_year, now())
    assert (closed["volunteers"], closed["declined_patrols"], closed["declined_participants"]) == (1, 0, 0)
    with pytest.raises(Conflict, match="already closed"):
        records_use.close_year(hours, OFFICE, last_year, now())
    with pytest.raises(Conflict, match="closed"):
        reverse(hours, entry["id"], "更正")
    with pytest.raises(Conflict, match="closed"):
        adjust(hours, volunteer, 1, service_date=datetime(last_year, 12, 21).date())
    assert total(hours, volunteer) == 8 and hours.store.year_row(volunteer, last_year)["sealed_centihours"] == 800


def test_closing_a_year_declines_what_still_waits_in_it_and_the_watch_stops_trying(hours):
    walker, walker_caller = register(hours)
    held, _ = register(hours)
    at = now()
    walked, _ = patrols_use.record_patrol(hours, walker_caller, {
        "grid_id": "lanshan-02", "started_at": at - timedelta(hours=6), "ended_at": at - timedelta(hours=4)},
        None, "f", None, at)
    activity, _ = activities_use.create_activity(hours, ASSOCIATION, {
        "title": "文明交通劝导志愿服务活动", "grid_id": "lanshan-01", "starts_at": at - timedelta(hours=3),
        "ends_at": at - timedelta(hours=1)}, None, "f", at)
    activities_use.complete_activity(hours, ASSOCIATION, activity["id"], {
        "participants": [{"volunteer_id": walker, "hours": 2}, {"volunteer_id": held, "hours": 1.5}],
        "summary": "劝导行人闯红灯 126 人次",
        "photo_ids": [hours.photo_ids.issue(side_of(ASSOCIATION)) for _ in range(4)]}, at)
    activities_use.object_to_activity(hours, OFFICE, activity["id"], {"volunteer_id": held, "reason": "未到场"}, at)
    after_its_windows = datetime(at.year + 1, 3, 2, 4, tzinfo=UTC)
    closed = records_use.close_year(hours, OFFICE, at.year, after_its_windows)
    assert (closed["declined_patrols"], closed["declined_participants"]) == (1, 2)
    patrol = hours.store.patrol(walked["id"])
    assert (patrol["status"], patrol["declined_hours"], patrol["waiting_hours"]) == ("declined", 2.0, 0)
    assert patrol["decision_note"] == "年度已结账"
    shown = hours.store.activity(activity["id"])
    assert shown["status"] == "confirmed" and {p["status"] for p in shown["participants"]} == {"declined"}
    assert [o["status"] for o in shown["objections"]] == ["lapsed"]
    assert hours.store.totals(walker)["pending"] == hours.store.totals(held)["pending"] == 0
    with pytest.raises(Conflict):
        patrols_use.decide_patrol(hours, ASSOCIATION, walked["id"], True, "", None, after_its_windows)
    watch = PublicityWatch(hours.store, CITY.timezone)
    assert watch.check(after_its_windows) == 0 and watch.warned == set()


def test_a_grid_leader_sees_no_entry_of_a_volunteer_outside_their_grid(hours):
    volunteer, _ = register(hours, "lanshan-01")
    entry, _ = adjust(hours, volunteer, 2)
    assert use.readable_entry(hours, Caller("gl-1", "grid_leader", grid="lanshan-01"), entry["id"])["hours"] == 2
    with pytest.raises(NotFound):
        use.readable_entry(hours, Caller("gl-2", "grid_leader", grid="lanshan-02"), entry["id"])
