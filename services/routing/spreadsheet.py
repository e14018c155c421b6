"""The monthly league table as the XLSX the civilization office circulates (Chinese headers)."""
from __future__ import annotations

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from shared.spreadsheets import Export, workbook_bytes, write, write_row

HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
BOLD = Font(bold=True)
HEADER_ROW = 4
SUBJECT = {"department": ("责任部门", "department_name"), "grid": ("网格", "grid_name")}
# (header, width, row field, number format); the subject column is filled in per kind.
COLUMNS = [("排名", 7, "rank", None), (None, 28, None, None), ("应结案数", 10, "due", "0"),
           ("延期数", 9, "deferred", "0"), ("按期结案数", 12, "closed_on_time", "0"),
           ("按期结案率", 12, "on_time_rate", "0.0%"), ("超期未结数", 12, "overdue_open", "0"),
           ("返工率", 10, "rework_rate", "0.0%"), ("平均整改时长(小时)", 19, "avg_hours_to_rectify", "0.0")]
NOTES = [
    ("排名", "依次按按期结案率从高到低、返工率从低到高、超期未结数从少到多排列；各项均相同者并列，其后名次顺延"),
    ("应结案数", "统计时段内处理期限到期的案卷数（不含不予受理的案卷）"),
    ("延期数", "应结案数中经批准延期的案卷数"),
    ("按期结案数", "应结案数中未延期、且在处理期限内（含到期时刻）结案的案卷数"),
    ("按期结案率", "按期结案数 ÷ (应结案数 − 延期数)；分母为 0 时不计算"),
    ("超期未结数", "截至统计时刻已过处理期限、仍未结案的案卷数（不含不予受理的案卷，不限统计时段）"),
    ("返工率", "统计时段内核查不通过次数 ÷ (核查通过次数 + 核查不通过次数)；无核查时不计算"),
    ("平均整改时长(小时)", "统计时段内整改完成的案卷，自首次派遣至首次整改完成的平均小时数，保留一位小数"),
]


def _header(sheet, row: int, titles: list[str]) -> None:
    for cell in write_row(sheet, row, titles):
        cell.font, cell.fill = BOLD, HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center")


def league_table_xlsx(rows: list[dict], title: str, period_text: str, kind: str) -> bytes:
    """`rows` from `department_stats` (kind "department") or `grid_stats` (kind "grid"), in rank order.

    `period_text` is the human period, e.g. "2026-11-01 至 2026-11-30（北京时间）".
    """
    if kind not in SUBJECT:
        raise ValueError(f"kind must be one of {sorted(SUBJECT)}, not {kind!r}")
    subject, name_field = SUBJECT[kind]
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "排名通报"
    write(sheet, 1, 1, title).font = Font(bold=True, size=14)
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(COLUMNS))
    write(sheet, 2, 1, f"统计时段：{period_text}")
    _header(sheet, HEADER_ROW, [header or subject for header, _, _, _ in COLUMNS])
    for row_number, row in enumerate(rows, start=HEADER_ROW + 1):
        for column, (_, _, field, number_format) in enumerate(COLUMNS, start=1):
            # openpyxl leaves a None value as an empty cell, which is what a missing rate should look like.
            cell = write(sheet, row_number, column, row[field or name_field])
            if number_format:
                cell.number_format = number_format
            if column != 2:
                cell.alignment = Alignment(horizontal="center")
    for column, (_, width, _, _) in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = f"A{HEADER_ROW + 1}"

    notes = workbook.create_sheet("说明")
    _header(notes, 1, ["指标", "计算方法"])
    for row_number, note in enumerate(NOTES, start=2):
        write_row(notes, row_number, note)
    notes.column_dimensions["A"].width = 20
    notes.column_dimensions["B"].width = 90
    notes.freeze_panes = "A2"
    return workbook_bytes(workbook)


LEAGUE_TABLE = Export("routing.league-table", layout=1, build=league_table_xlsx)
