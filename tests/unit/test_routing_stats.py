"""Routing's league tables (services/routing/stats.py) and their XLSX (services/routing/spreadsheet.py)."""
from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from services.routing.spreadsheet import league_table_xlsx
from services.routing.stats import department_stats, grid_stats, month_bounds
from shared.errors import InvalidFields
from shared.reference import FIRST_YEAR, LAST_YEAR

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the demo city's time zone
START = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 2026-11 in Beijing time
END = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
MID = datetime(2026, 11, 15, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
DEPARTMENTS = {"sanitation": "环卫处", "traffic-police": "交警支队"}
HOUR = timedelta(hours=1)
_ids = itertools.count(1)


# --- builders ---------------------------------------------------------------------------------

def a_case(department: str | None = "sanitation", status: str = "dispatched", due_at: datetime | None = MID,
           closed_at: datetime | None = None, deferred: bool = False, grid_id: str = "lanshan-01",
           dispatched_at: datetime | None = None, rectified_at: datetime | None = None,
           history: list[dict] | None = None) -> dict:
    dispatched_at = dispatched_at or (due_at - 24 * HOUR if due_at else None)
    return {
        "id": f"case-{next(_ids)}", "report_ids": ["r-1"], "category": "env.garbage", "department": department,
        "status": status, "grid_id": grid_id, "district": "lanshan", "opened_at": dispatched_at,
        "dispatched_at": dispatched_at, "due_at": due_at, "overdue": False, "rework_count": 0,
        "extension": ({"hours": 48, "reason": "材料采购", "status": "approved", "requested_at": MID,
                       "decided_at": MID} if deferred else None),
        "deferred": deferred, "rectified_at": rectified_at, "closed_at": closed_at, "history": history or [],
    }


def closed(due_at: datetime = MID, late_by: timedelta = -HOUR, **fields) -> dict:
    return a_case(status="closed", due_at=due_at, closed_at=due_at + late_by, **fields)


def entry(action: str, at: datetime = MID) -> dict:
    return {"at": at, "actor": "inspector-1", "action": action, "note": ""}


def stats(cases: list[dict], departments: dict[str, str] = DEPARTMENTS, now: datetime = NOW) -> dict[str, dict]:
    return {row["department"]: row for row in department_stats(cases, departments, START, END, now)}


def sanitation(cases: list[dict], now: datetime = NOW) -> dict:
    return stats(cases, now=now)["sanitation"]


# --- due, deferred, on time -------------------------------------------------------------------

def test_due_counts_cases_whose_deadline_falls_in_the_period_start_inclusive_end_exclusive():
    cases = [a_case(due_at=START - timedelta(seconds=1)), a_case(due_at=START), a_case(due_at=MID),
             a_case(due_at=END - timedelta(seconds=1)), a_case(due_at=END), a_case(due_at=None)]
    assert sanitation(cases)["due"] == 3


def test_due_counts_cases_by_due_at_not_by_when_they_were_opened_or_closed():
    opened_before = a_case(due_at=MID, dispatched_at=START - 30 * 24 * HOUR)
    closed_after = closed(due_at=MID, late_by=40 * 24 * HOUR)
    due_later = a_case(due_at=END + HOUR, dispatched_at=MID)
    assert sanitation([opened_before, closed_after, due_later])["due"] == 2


def test_rejected_cases_are_not_due_and_not_overdue():
    row = sanitation([a_case(status="rejected", due_at=MID), a_case(due_at=MID)])
    assert (row["due"], row["overdue_open"]) == (1, 1)


def test_deferred_cases_leave_the_denominator_and_do_not_count_as_on_time():
    cases = [closed(), a_case(deferred=True), closed(deferred=True)]
    row = sanitation(cases)
    assert (row["due"], row["deferred"], row["closed_on_time"]) == (3, 2, 1)
    assert row["on_time_rate"] == 1.0


def test_closed_after_the_deadline_is_not_on_time_but_closed_at_the_deadline_is():
    row = sanitation([closed(late_by=HOUR), closed(late_by=timedelta(0)), closed(late_by=-HOUR), a_case()])
    assert row["closed_on_time"] == 2
    assert row["on_time_rate"] == 0.5


def test_a_case_still_open_or_awaiting_verification_is_due_but_not_on_time():
    row = sanitation([closed(), a_case(status="rectified", rectified_at=MID - HOUR)])
    assert (row["due"], row["closed_on_time"], row["on_time_rate"]) == (2, 1, 0.5)


@pytest.mark.parametrize("cases", [[], [a_case(deferred=True), closed(deferred=True)]],
                         ids=["nothing-due", "everything-deferred"])
def test_on_time_rate_is_none_when_nothing_non_deferred_was_due(cases):
    assert sanitation(cases)["on_time_rate"] is None


# --- overdue, rework, time to rectify ---------------------------------------------------------

def test_overdue_open_compares_the_deadline_with_now_whatever_the_period():
    cases = [a_case(due_at=START - 100 * HOUR), a_case(due_at=NOW - HOUR), a_case(due_at=NOW + HOUR),
             a_case(status="accepted", due_at=MID), a_case(status="rectified", due_at=MID),
             a_case(due_at=None)]
    assert sanitation(cases)["overdue_open"] == 4
    assert sanitation(cases, now=MID + HOUR)["overdue_open"] == 3


def test_overdue_open_ignores_closed_cases_even_when_they_closed_late():
    assert sanitation([closed(late_by=HOUR), closed(late_by=-HOUR), a_case()])["overdue_open"] == 1


def test_overdue_open_uses_the_deadline_not_the_stale_flag():
    flagged_but_extended = a_case(due_at=NOW + HOUR) | {"overdue": True}
    assert sanitation([flagged_but_extended])["overdue_open"] == 0


def test_rework_rate_counts_verifications_in_the_period_only():
    history = [entry("verified_failed", START - HOUR), entry("verified_failed", START),
               entry("verified_passed", MID), entry("verified_passed", END - HOUR), entry("verified_failed", END),
               entry("rectified", MID), entry("disputed", MID), entry("opened", MID)]
    other = [entry("verified_failed", MID)]
    row = sanitation([a_case(history=history, due_at=END + HOUR), a_case(history=other, due_at=None)])
    assert row["rework_rate"] == 0.5  # 2 failed of 4 verdicts in the period


def test_rework_rate_is_none_without_verifications_in_the_period():
    history = [entry("rectified", MID), entry("verified_failed", START - HOUR)]
    assert sanitation([a_case(history=history)])["rework_rate"] is None


def test_avg_hours_to_rectify_is_the_mean_from_first_dispatch_over_cases_rectified_in_the_period():
    cases = [a_case(dispatched_at=MID, rectified_at=MID + 10 * HOUR),
             a_case(dispatched_at=MID, rectified_at=MID + 5 * HOUR + timedelta(minutes=20)),
             a_case(dispatched_at=START - 50 * HOUR, rectified_at=START - HOUR),
             a_case(dispatched_at=MID, rectified_at=END),
             a_case(dispatched_at=MID)]
    assert sanitation(cases)["avg_hours_to_rectify"] == 7.7  # (10 + 5.33) / 2, one decimal


def test_avg_hours_to_rectify_is_none_when_nothing_was_rectified_in_the_period():
    assert sanitation([a_case(dispatched_at=MID, rectified_at=END + HOUR)])["avg_hours_to_rectify"] is None


# --- rows and ranks ---------------------------------------------------------------------------

def test_every_department_gets_a_row_even_without_cases_and_strangers_are_ignored():
    rows = department_stats([closed(department="housing"), closed(department=None)], DEPARTMENTS, START, END, NOW)
    assert sorted(row["department"] for row in rows) == sorted(DEPARTMENTS)
    empty = {row["department"]: row for row in rows}["traffic-police"]
    assert empty == {"department": "traffic-police", "department_name": "交警支队", "due": 0, "deferred": 0,
                     "closed_on_time": 0, "on_time_rate": None, "overdue_open": 0, "rework_rate": None,
                     "avg_hours_to_rectify": None, "rank": 1}


def test_cases_are_counted_for_their_own_department_only():
    row = stats([closed(department="traffic-police", late_by=HOUR), closed()])["traffic-police"]
    assert (row["department_name"], row["due"], row["closed_on_time"]) == ("交警支队", 1, 0)


def ranked(rows: list[dict]) -> list[tuple[str, int]]:
    return [(row["department"], row["rank"]) for row in rows]


def test_ranking_puts_higher_on_time_rate_first_and_no_rate_last():
    departments = {"none": "甲", "half": "乙", "full": "丙", "zero": "丁"}
    cases = [closed(department="full"), closed(department="half"), a_case(department="half"),
             a_case(department="zero")]
    assert ranked(department_stats(cases, departments, START, END, NOW)) == [
        ("full", 1), ("half", 2), ("zero", 3), ("none", 4)]


def test_ranking_breaks_on_time_ties_by_rework_rate_ascending_with_no_rate_last():
    departments = {"unverified": "甲", "reworked": "乙", "clean": "丙"}
    cases = [closed(department=d) for d in departments]
    cases[1]["history"] = [entry("verified_failed"), entry("verified_passed")]
    cases[2]["history"] = [entry("verified_passed")]
    assert ranked(department_stats(cases, departments, START, END, NOW)) == [
        ("clean", 1), ("reworked", 2), ("unverified", 3)]


def test_ranking_breaks_remaining_ties_by_fewer_overdue_cases():
    departments = {"late": "甲", "prompt": "乙"}
    cases = [closed(department="late"), closed(department="prompt"),
             a_case(department="late", due_at=START - HOUR)]  # overdue, but not due in the period
    assert ranked(department_stats(cases, departments, START, END, NOW)) == [("prompt", 1), ("late", 2)]


def test_full_ties_share_a_rank_listed_by_code_and_the_next_rank_skips():
    departments = {"d": "丁", "c": "丙", "b": "乙", "a": "甲"}
    cases = [closed(department="a"), closed(department="b"), closed(department="b", late_by=HOUR),
             closed(department="c"), closed(department="c", late_by=2 * HOUR), a_case(department="d")]
    assert ranked(department_stats(cases, departments, START, END, NOW)) == [
        ("a", 1), ("b", 2), ("c", 2), ("d", 4)]


# --- grids, months ----------------------------------------------------------------------------

def test_grid_stats_keys_the_same_measures_by_grid():
    grids = {"lanshan-01": "金雀山街道一网格", "lanshan-02": "金雀山街道二网格", "lanshan-03": "银雀山街道一网格"}
    cases = [closed(grid_id="lanshan-02"), closed(grid_id="lanshan-02", department="traffic-police"),
             closed(grid_id="lanshan-01", late_by=HOUR), a_case(grid_id="lanshan-01", due_at=START - HOUR)]
    rows = grid_stats(cases, grids, START, END, NOW)
    assert [(row["grid_id"], row["grid_name"], row["rank"]) for row in rows] == [
        ("lanshan-02", "金雀山街道二网格", 1), ("lanshan-01", "金雀山街道一网格", 2),
        ("lanshan-03", "银雀山街道一网格", 3)]
    assert (rows[0]["due"], rows[0]["on_time_rate"]) == (2, 1.0)
    assert (rows[1]["due"], rows[1]["closed_on_time"], rows[1]["overdue_open"]) == (1, 0, 1)
    assert "department" not in rows[0]


def test_month_bounds_is_the_beijing_month_as_utc_instants():
    assert month_bounds("2026-11", SHANGHAI) == (START, END)
    assert month_bounds("2026-12", SHANGHAI) == (END, datetime(2026, 12, 31, 16, 0, tzinfo=UTC))
    assert month_bounds(f"{FIRST_YEAR}-01", SHANGHAI)[0] == datetime(1999, 12, 31, 16, 0, tzinfo=UTC)
    assert month_bounds(f"{LAST_YEAR}-12", SHANGHAI)[1] == datetime(2100, 12, 31, 16, 0, tzinfo=UTC)


def test_a_city_in_another_time_zone_has_its_own_month_boundaries():
    urumqi = ZoneInfo("Asia/Urumqi")  # UTC+6, two hours behind Beijing
    assert month_bounds("2026-11", urumqi) == (datetime(2026, 10, 31, 18, 0, tzinfo=UTC),
                                               datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    london = ZoneInfo("Europe/London")  # the month starts in summer time and ends in winter time
    assert month_bounds("2026-10", london) == (datetime(2026, 9, 30, 23, 0, tzinfo=UTC),
                                               datetime(2026, 11, 1, 0, 0, tzinfo=UTC))


@pytest.mark.parametrize("text", ["", "2026", "2026-13", "2026-00", "2026-1", "2026/11", "26-11", "2026-11-01",
                                  " 2026-11", "1999-12", "2101-01", "２０２６-11", "november"])
def test_month_bounds_refuses_anything_but_a_plausible_year_month(text):
    with pytest.raises(InvalidFields) as raised:
        month_bounds(text, SHANGHAI)
    assert set(raised.value.errors) == {"month"}


# --- the spreadsheet --------------------------------------------------------------------------

HEADERS = ["排名", "责任部门", "应结案数", "延期数", "按期结案数", "按期结案率", "超期未结数", "返工率",
           "平均整改时长(小时)"]


def open_xlsx(rows: list[dict], kind: str = "department"):
    data = league_table_xlsx(rows, "2026年11月 责任部门整改情况排名通报", "2026-11-01 至 2026-11-30（北京时间）", kind)
    return load_workbook(io.BytesIO(data))


def header_row(sheet) -> int:
    return next(row[0].row for row in sheet.iter_rows() if row[0].value == "排名")


def test_league_table_xlsx_has_the_ranking_and_the_explanation_sheets():
    cases = [closed(), a_case(), closed(department="traffic-police")]
    cases[0]["history"] = [entry("verified_passed"), entry("verified_failed"), entry("verified_passed")]
    rows = department_stats(cases, DEPARTMENTS | {"housing": "住建局"}, START, END, NOW)
    workbook = open_xlsx(rows)
    assert workbook.sheetnames == ["排名通报", "说明"]
    sheet = workbook["排名通报"]
    assert sheet["A1"].value == "2026年11月 责任部门整改情况排名通报"
    assert "2026-11-01 至 2026-11-30" in sheet["A2"].value
    top = header_row(sheet)
    assert [cell.value for cell in sheet[top]] == HEADERS
    assert sheet.freeze_panes == f"A{top + 1}"
    body = list(sheet.iter_rows(min_row=top + 1, values_only=True))
    assert [(line[0], line[1]) for line in body] == [(1, "交警支队"), (2, "环卫处"), (3, "住建局")]
    on_time = sheet.cell(row=top + 2, column=HEADERS.index("按期结案率") + 1)
    assert (on_time.value, on_time.number_format) == (0.5, "0.0%")
    rework = sheet.cell(row=top + 2, column=HEADERS.index("返工率") + 1)
    assert (rework.value, rework.number_format) == (pytest.approx(1 / 3), "0.0%")
    assert sheet.cell(row=top + 3, column=HEADERS.index("按期结案率") + 1).value is None


def test_league_table_xlsx_explains_every_measure_in_one_line_each():
    notes = open_xlsx([])["说明"]
    explained = {row[0]: row[1] for row in notes.iter_rows(min_row=2, values_only=True)}
    assert set(HEADERS) - {"责任部门"} <= set(explained)
    assert "延期数" in explained["按期结案率"] and all("\n" not in text for text in explained.values())


def test_league_table_xlsx_for_grids_names_the_grid_column():
    rows = grid_stats([closed()], {"lanshan-01": "金雀山街道一网格"}, START, END, NOW)
    sheet = open_xlsx(rows, kind="grid")["排名通报"]
    top = header_row(sheet)
    assert sheet.cell(row=top, column=2).value == "网格"
    assert sheet.cell(row=top + 1, column=2).value == "金雀山街道一网格"
    assert sheet.max_row == top + 1
