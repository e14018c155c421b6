"""The weekly grid summary as the XLSX a grid leader hands in (Chinese headers, local time)."""
from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from shared.reference import Category
from shared.spreadsheets import storable

from .domain import STATUS_ZH, STATUSES, local_text

HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
BOLD = Font(bold=True)
REPORT_COLUMNS = [("序号", 6), ("报告编号", 26), ("提交时间", 17), ("问题类别", 22), ("问题描述", 50),
                  ("地址", 30), ("纬度", 11), ("经度", 11), ("状态", 13), ("案卷编号", 26),
                  ("照片数", 8), ("上报人", 16)]


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return local_text(moment, zone) if moment else ""


def _header(sheet, row: int, titles: list[str]) -> None:
    for column, title in enumerate(titles, start=1):
        cell = sheet.cell(row=row, column=column, value=title)
        cell.font, cell.fill = BOLD, HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center")


def _report_sheet(workbook: Workbook, title: str, reports: list[dict], categories: dict[str, Category],
                  zone: ZoneInfo) -> None:
    sheet = workbook.create_sheet(title)
    _header(sheet, 1, [name for name, _ in REPORT_COLUMNS])
    for index, report in enumerate(reports, start=1):
        category = categories.get(report["category"])
        sheet.append([storable(value) for value in [
            index, report["id"], _local(report["submitted_at"], zone),
            category.name_zh if category else report["category"], report["description"],
            report["location"].get("address") or "", report["location"]["lat"], report["location"]["lng"],
            STATUS_ZH.get(report["status"], report["status"]), report.get("case_id") or "",
            len(report["photo_ids"]), report["reporter_id"],
        ]])
        sheet.cell(row=index + 1, column=5).alignment = Alignment(wrap_text=True, vertical="top")
    for column, (_, width) in enumerate(REPORT_COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"


def weekly_workbook(summary: dict, categories: dict[str, Category], zone: ZoneInfo) -> bytes:
    """`summary` from `domain.weekly_summary`; its times are written in the city's time `zone`."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "汇总"
    year, number = summary["week"].split("-W")
    sheet["A1"] = f"{summary['district_name']} {summary['grid_name']}  {year}年第{int(number)}周 “啄木鸟”巡访问题汇总"
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A2"] = f"统计时段：{_local(summary['from'], zone)} 至 {_local(summary['to'], zone)}（当地时间）"
    sheet["A3"] = (f"本周上报 {summary['submitted']} 件；截至目前未办结 {len(summary['open'])} 件；"
                   f"本周办结 {len(summary['fixed'])} 件")
    columns = ["问题类别", "合计"] + [STATUS_ZH[s] for s in STATUSES]
    _header(sheet, 5, columns)
    row = 6
    for counts in summary["by_category"]:
        sheet.append([counts["category_name"], counts["total"]] + [counts[s] for s in STATUSES])
        row += 1
    sheet.append(["合计", summary["submitted"]] + [summary["by_status"][s] for s in STATUSES])
    for cell in sheet[row]:
        cell.font = BOLD
    sheet.column_dimensions["A"].width = 30
    for column in range(2, len(columns) + 1):
        sheet.column_dimensions[get_column_letter(column)].width = 13
    _report_sheet(workbook, "本周上报明细", summary["reports"], categories, zone)
    _report_sheet(workbook, "未办结问题", summary["open"], categories, zone)
    _report_sheet(workbook, "本周已办结", summary["fixed"], categories, zone)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
