"""The weekly grid summary as the XLSX a grid leader hands in (Chinese headers, local time)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from shared.reference import Category, local_text
from shared.spreadsheets import Export, workbook_bytes, write, write_row

from .domain import STATUS_ZH, STATUSES

HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
BOLD = Font(bold=True)
SUMMARY_HEADER_ROW = 5
REPORT_COLUMNS = [("序号", 6), ("报告编号", 26), ("提交时间", 17), ("问题类别", 22), ("问题描述", 50),
                  ("地址", 30), ("纬度", 11), ("经度", 11), ("状态", 13), ("案卷编号", 26),
                  ("照片数", 8), ("上报人", 16)]
DESCRIPTION_COLUMN = 5
REPORT_SHEETS = (("本周上报明细", "reports"), ("未办结问题", "open"), ("本周已办结", "fixed"))


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return local_text(moment, zone) or ""


def weekly_figures(summary: dict, categories: dict[str, Category], zone: ZoneInfo) -> dict:
    """What the weekly workbook prints, in text and numbers, from `summary` (`domain.weekly_summary`), its times
    in the city's time `zone`: the arguments of `weekly_workbook`."""
    year, number = summary["week"].split("-W")
    return {
        "heading": f"{summary['district_name']} {summary['grid_name']}  {year}年第{int(number)}周 “啄木鸟”巡访问题汇总",
        "period": f"统计时段：{_local(summary['from'], zone)} 至 {_local(summary['to'], zone)}（当地时间）",
        "totals": (f"本周上报 {summary['submitted']} 件；截至目前未办结 {len(summary['open'])} 件；"
                   f"本周办结 {len(summary['fixed'])} 件"),
        "by_category": [[counts["category_name"], counts["total"], *(counts[s] for s in STATUSES)]
                        for counts in summary["by_category"]],
        "sum_row": ["合计", summary["submitted"], *(summary["by_status"][s] for s in STATUSES)],
        "report_sheets": [[title, [_report_row(index, report, categories, zone)
                                   for index, report in enumerate(summary[part], start=1)]]
                          for title, part in REPORT_SHEETS],
    }


def _report_row(index: int, report: dict, categories: dict[str, Category], zone: ZoneInfo) -> list:
    category = categories.get(report["category"])
    return [index, report["id"], _local(report["submitted_at"], zone),
            category.name_zh if category else report["category"], report["description"],
            report["location"].get("address") or "", report["location"]["lat"], report["location"]["lng"],
            STATUS_ZH.get(report["status"], report["status"]), report.get("case_id") or "",
            len(report["photo_ids"]), report["reporter_id"]]


def _header(sheet, row: int, titles: list[str]) -> None:
    for cell in write_row(sheet, row, titles):
        cell.font, cell.fill = BOLD, HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center")


def _report_sheet(workbook: Workbook, title: str, rows: list[list]) -> None:
    sheet = workbook.create_sheet(title)
    _header(sheet, 1, [name for name, _ in REPORT_COLUMNS])
    for number, row in enumerate(rows, start=2):
        write_row(sheet, number, row)
        sheet.cell(row=number, column=DESCRIPTION_COLUMN).alignment = Alignment(wrap_text=True, vertical="top")
    for column, (_, width) in enumerate(REPORT_COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"


def weekly_workbook(heading: str, period: str, totals: str, by_category: list[list], sum_row: list,
                    report_sheets: list[list]) -> bytes:
    """The summary sheet, then one sheet per `[title, rows]` of `report_sheets` (see `weekly_figures`)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "汇总"
    write(sheet, 1, 1, heading).font = Font(bold=True, size=14)
    write(sheet, 2, 1, period)
    write(sheet, 3, 1, totals)
    columns = ["问题类别", "合计"] + [STATUS_ZH[s] for s in STATUSES]
    _header(sheet, SUMMARY_HEADER_ROW, columns)
    for number, counts in enumerate(by_category, start=SUMMARY_HEADER_ROW + 1):
        write_row(sheet, number, counts)
    for cell in write_row(sheet, SUMMARY_HEADER_ROW + 1 + len(by_category), sum_row):
        cell.font = BOLD
    sheet.column_dimensions["A"].width = 30
    for column in range(2, len(columns) + 1):
        sheet.column_dimensions[get_column_letter(column)].width = 13
    for title, rows in report_sheets:
        _report_sheet(workbook, title, rows)
    return workbook_bytes(workbook)


WEEKLY = Export("intake.weekly-grid", layout=1, build=weekly_workbook)
