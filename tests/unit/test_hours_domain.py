"""The credit policy and the ledger's rules, without I/O."""
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.hours import domain
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, InvalidFields
from shared.reference import load_service_hours, load_work_calendar

RULES = load_service_hours()
CALENDAR = load_work_calendar()
ZONE = ZoneInfo("Asia/Shanghai")
# A Tuesday morning in Linyi.
NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def claim(start: datetime, end: datetime, now: datetime = NOW) -> domain.PatrolClaim:
    return domain.claim_patrol("v1", "lanshan-01", start, end, now, RULES, CALENDAR, ZONE)


@pytest.mark.parametrize("minutes, hours", [(30, 0.5), (59, 0.5), (60, 1.0), (130, 2.0), (149, 2.0), (150, 2.5),
                                            (12 * 60, 12.0)])
def test_a_patrol_counts_its_actual_time_rounded_down_to_the_half_hour(minutes, hours):
    assert claim(NOW - timedelta(minutes=minutes), NOW).hours == hours


@pytest.mark.parametrize("start, end, field", [
    (NOW - timedelta(minutes=29), NOW, "ended_at"),                       # under the minimum
    (NOW, NOW - timedelta(hours=1), "ended_at"),                          # ends before it starts
    (NOW, NOW, "ended_at"),                                               # no time at all
    (NOW + timedelta(hours=1), NOW + timedelta(hours=2), "ended_at"),     # in the future
    (NOW - timedelta(hours=13), NOW, "ended_at"),                         # longer than any patrol
])
def test_a_patrol_outside_the_policy_is_refused_naming_the_field(start, end, field):
    with pytest.raises(InvalidFields) as refused:
        claim(start, end)
    assert field in refused.value.errors


def test_a_clock_a_minute_ahead_of_ours_is_not_the_future():
    assert claim(NOW - timedelta(hours=1), NOW + timedelta(minutes=1)).hours == 1.0


def test_the_service_date_is_the_citys_local_date():
    # 23:30 UTC on the 23rd is 07:30 on the 24th in Linyi.
    start = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert claim(start, start + timedelta(hours=1)).service_date == date(2026, 11, 24)


def test_a_patrol_is_recorded_within_ten_working_days_counted_past_the_national_holiday():
    # Served on Wednesday 30 September 2026; 1–7 October are days off and Saturday 10 October is worked,
    # so the tenth working day after it is Tuesday 20 October.
    start = datetime(2026, 9, 30, 1, 0, tzinfo=ZONE)
    on_the_last_day = datetime(2026, 10, 20, 15, 0, tzinfo=ZONE)
    assert claim(start, start + timedelta(hours=2), now=on_the_last_day).hours == 2.0
    with pytest.raises(InvalidFields) as refused:
        claim(start, start + timedelta(hours=2), now=on_the_last_day + timedelta(days=1))
    assert "2026-10-20" in refused.value.detail


def test_the_daily_cap_sends_hours_beyond_it_to_the_association_and_refuses_past_the_limit():
    assert domain.beyond_daily_cap(0, 2, RULES) is False
    assert domain.beyond_daily_cap(domain.centihours(6), 2, RULES) is False  # exactly 8
    assert domain.beyond_daily_cap(domain.centihours(6), 2.5, RULES) is True
    assert domain.beyond_daily_cap(domain.centihours(10), 2, RULES) is True  # exactly 12
    with pytest.raises(InvalidFields):
        domain.beyond_daily_cap(domain.centihours(10), 2.5, RULES)


def test_overlapping_service_is_a_conflict_and_touching_service_is_not():
    busy = [{"what": "patrol", "started_at": NOW - timedelta(hours=2), "ended_at": NOW - timedelta(hours=1)}]
    domain.refuse_overlap(NOW - timedelta(hours=1), NOW, busy)
    domain.refuse_overlap(NOW - timedelta(hours=4), NOW - timedelta(hours=2), busy)
    with pytest.raises(Conflict):
        domain.refuse_overlap(NOW - timedelta(hours=1, minutes=30), NOW, busy)
    with pytest.raises(Conflict):
        domain.refuse_overlap(NOW - timedelta(hours=3), NOW, busy)  # contains it


def test_a_report_evidences_a_patrol_only_by_the_same_volunteer_in_its_grid_while_it_ran():
    patrol = {"volunteer_id": "v1", "grid_id": "lanshan-01", "started_at": NOW - timedelta(hours=2),
              "ended_at": NOW}
    report = {"reporter_id": "v1", "grid_id": "lanshan-01", "submitted_at": NOW - timedelta(hours=1)}
    assert domain.evidences(report, patrol)
    assert not domain.evidences({**report, "reporter_id": "v2"}, patrol)
    assert not domain.evidences({**report, "grid_id": "lanshan-02"}, patrol)
    assert not domain.evidences({**report, "submitted_at": NOW + timedelta(minutes=1)}, patrol)
    assert not domain.evidences({**report, "submitted_at": NOW - timedelta(hours=2, seconds=1)}, patrol)
    assert not domain.evidences({**report, "patrol_id": "p0"}, patrol)  # it evidences another patrol already
    assert not domain.evidences({**report, "withdrawn": {"reason": "所在案卷被驳回"}}, patrol)


@pytest.mark.parametrize("caller, status, allowed", [
    (Caller("leader-1", "grid_leader", grid="lanshan-01"), domain.AWAITING_CONFIRMATION, True),
    (Caller("leader-2", "grid_leader", grid="lanshan-02"), domain.AWAITING_CONFIRMATION, False),
    (Caller("leader-1", "grid_leader", grid="lanshan-01"), domain.AWAITING_APPROVAL, False),
    (Caller("assoc-1", "association"), domain.AWAITING_APPROVAL, True),
    (Caller("assoc-1", "association"), domain.AWAITING_CONFIRMATION, True),
    (Caller("v1", "grid_leader", grid="lanshan-01"), domain.AWAITING_CONFIRMATION, False),  # their own
    (Caller("v1", "association"), domain.AWAITING_APPROVAL, False),  # their own, whatever the role
])
def test_who_may_decide_a_waiting_patrol(caller, status, allowed):
    patrol = {"volunteer_id": "v1", "grid_id": "lanshan-01", "status": status}
    if allowed:
        domain.may_decide_patrol(caller, patrol)
    else:
        with pytest.raises(Forbidden):
            domain.may_decide_patrol(caller, patrol)


def test_a_decided_patrol_cannot_be_decided_again():
    with pytest.raises(Conflict):
        domain.may_decide_patrol(Caller("assoc-1", "association"), {"volunteer_id": "v1", "grid_id": "lanshan-01",
                                                                    "status": domain.CREDITED})


def test_an_entry_carries_its_rule_version_and_a_reversal_cancels_it_in_its_own_year():
    credited = domain.entry("v1", 2.5, domain.PATROL, source="patrol", source_id="p1", service_date=date(2025, 12, 31),
                            recorded_at=NOW, recorded_by="volunteer:v1", rules=RULES, note="网格巡访")
    assert credited["rule_version"] == RULES.rule_version and credited["year"] == 2025
    reversal = domain.reversal_of(credited, "抽查不符", "association:a1", NOW, RULES)
    assert reversal["hours"] == -2.5 and reversal["reverses"] == credited["id"]
    assert reversal["kind"] == domain.REVERSAL and reversal["source_id"] == credited["id"]
    assert reversal["year"] == 2025  # the year the reversed hours counted in
    with pytest.raises(Conflict):
        domain.reversal_of(reversal, "again", "association:a1", NOW, RULES)


@pytest.mark.parametrize("hours", [0, 1000.5, -1000.5])
def test_an_adjustment_is_non_zero_and_bounded(hours):
    with pytest.raises(InvalidFields):
        domain.check_adjustment(hours)


@pytest.mark.parametrize("total, level, next_at", [(0, 0, 100), (99.99, 0, 100), (100, 1, 300), (1499, 4, 1500),
                                                   (1500, 5, None), (4000, 5, None)])
def test_star_levels_follow_the_jurisdictions_thresholds(total, level, next_at):
    assert domain.star_level(total, RULES) == level
    assert domain.next_level_at(total, RULES) == next_at


def test_a_level_change_is_an_event_and_staying_on_a_level_is_not():
    assert domain.level_changed("v1", 9_000, 9_900, RULES, None) is None
    event = domain.level_changed("v1", 9_950, 10_050, RULES, "corr")
    assert event.type == "volunteer.level_changed"
    assert event.data == {"volunteer_id": "v1", "star_level": 1, "previous_level": 0, "total_hours": 100.5}


def test_the_summary_reads_the_running_totals():
    volunteer = {"id": "v1", "totals": {"total": 12_050, "years": {"2026": 2_150, "2025": 9_900}, "pending": 200,
                                        "verified_reports": 7, "verified_reports_years": {"2026": 3}}}
    assert domain.summary(volunteer, 2026, RULES) == {
        "volunteer_id": "v1", "year": 2026, "total_hours": 120.5, "year_hours": 21.5, "pending_hours": 2.0,
        "star_level": 1, "next_level_at": 300, "annual_minimum_met": True, "verified_reports": 7,
        "year_verified_reports": 3}
    assert domain.summary(volunteer, 2025, RULES)["annual_minimum_met"] is True
    assert domain.summary({"id": "v2"}, 2026, RULES)["annual_minimum_met"] is False


@pytest.mark.parametrize("name, masked", [("王小明", "王*明"), ("李四", "李*"), ("欧阳娜娜", "欧**娜"), ("张", "*")])
def test_names_in_public_tables_are_masked(name, masked):
    assert domain.mask_name(name) == masked


def test_the_phone_is_shown_in_full_only_to_the_association_and_the_office():
    volunteer = {"id": "v1", "name": "王小明", "phone": "13800001234", "organization": "队", "grid_id": "lanshan-01",
                 "registered_at": NOW, "star_level": 0}
    assert domain.shown_volunteer(volunteer, Caller("a", "association"))["phone"] == "13800001234"
    assert domain.shown_volunteer(volunteer, Caller("o", "office"))["phone"] == "13800001234"
    assert domain.shown_volunteer(volunteer, Caller("v1", "volunteer"))["phone"] == "138****1234"
    assert domain.shown_volunteer(volunteer, Caller("l", "grid_leader", grid="lanshan-01"))["phone"] == "138****1234"


def test_a_volunteer_reads_only_their_own_record_and_a_grid_leader_their_grids():
    volunteer = {"id": "v1", "grid_id": "lanshan-01"}
    assert domain.may_read_volunteer(Caller("v1", "volunteer"), volunteer)
    assert not domain.may_read_volunteer(Caller("v2", "volunteer"), volunteer)
    assert domain.may_read_volunteer(Caller("l", "grid_leader", grid="lanshan-01"), volunteer)
    assert not domain.may_read_volunteer(Caller("l", "grid_leader", grid="hedong-01"), volunteer)
    assert not domain.may_read_volunteer(Caller("d", "department", dept="sanitation"), volunteer)


def test_the_rankings_bands_cover_every_value_once_from_the_top_down():
    from services.hours.store import _bands_from_the_top

    bands = list(_bands_from_the_top())

    def holding(value: int) -> list[int]:
        return [i for i, band in enumerate(bands)
                if value >= band.get("$gte", -10**9) and value < band.get("$lt", 10**12)]

    for value in (-500, 0, 1, 2, 63, 64, 65, 100, 2_000, 5_200, 7_199, 150_000, 2 ** 20, 10 ** 9):
        assert len(holding(value)) == 1, value
    # From the top down: a higher value never sits in a later band.
    assert holding(7_200) <= holding(7_199) and holding(64) < holding(63) < holding(1) < holding(0)


def test_ranks_are_shared_by_equal_figures_and_the_next_rank_skips():
    rows = [{"centihours": c} for c in (900, 500, 500, 300, 300, 300, 100)]
    assert [r["rank"] for r in domain.ranked(rows, "hours")] == [1, 2, 2, 4, 4, 4, 7]


def test_a_year_closes_only_once_its_last_days_service_can_no_longer_be_recorded_or_publicised():
    # 31 December 2026 + 10 + 3 working days (no 2027 holidays listed: weekdays) = Tuesday 19 January 2027.
    domain.refuse_open_year(2026, datetime(2027, 1, 20, 4, tzinfo=UTC), ZONE, RULES, CALENDAR)
    with pytest.raises(Conflict) as refused:
        domain.refuse_open_year(2026, datetime(2027, 1, 19, 4, tzinfo=UTC), ZONE, RULES, CALENDAR)
    assert "2027-01-20" in refused.value.detail
    with pytest.raises(Conflict):
        domain.refuse_open_year(2027, datetime(2027, 1, 20, 4, tzinfo=UTC), ZONE, RULES, CALENDAR)
