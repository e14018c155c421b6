"""The annual ranking as the XLSX an association posts on its notice board (Chinese headers, names masked)."""
from __future__ import annotations

from collections.abc import Mapping

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

from shared.spreadsheets import Export, workbook_bytes, write

HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
BOLD = Font(bold=True)
HEADER_ROW = 3
MEASURES = {"hours": "服务时长", "reports": "有效信息数"}
# (header, width, row field, number format)
COLUMNS = [("名次", 7, "rank", "0"), ("姓名", 10, "name", None), ("所属组织", 30, "organization", None),
           ("网格", 14, "grid_name", None), ("服务时长（小时）", 16, "hours", "0.0"),
           ("有效信息数（已核查结案）", 24, "verified_reports", "0")]


def ranking_rows(shown: list[dict], grid_names: Mapping[str, str]) -> list[dict]:
    """The ranking's rows as the sheet prints them (`domain.ranking_row`s, the grid by its name): its figures."""
    printed = [field for _, _, field, _ in COLUMNS if field != "grid_name"]
    return [{**{field: row[field] for field in printed}, "grid_name": grid_names.get(row["grid_id"], row["grid_id"])}
            for row in shown]


def ranking_xlsx(rows: list[dict], year: int, by: str, scope_text: str) -> bytes:
    """`rows` in rank order, each with rank, masked name, organization, grid_name, hours, verified_reports."""
    book = Workbook()
    sheet = book.active
    sheet.title = f"{year}年{MEASURES[by]}排名"
    write(sheet, 1, 1, f"{year}年度志愿者{MEASURES[by]}排名（{scope_text}）").font = Font(bold=True, size=14)
    write(sheet, 2, 1, "姓名已按个人信息保护要求隐去部分字符；并列者名次相同，其后名次顺延。")
    for column, (title, width, _, _) in enumerate(COLUMNS, start=1):
        header = write(sheet, HEADER_ROW, column, title)
        header.font, header.fill = BOLD, HEADER_FILL
        header.alignment = Alignment(horizontal="center")
        sheet.column_dimensions[header.column_letter].width = width
    for offset, row in enumerate(rows, start=1):
        for column, (_, _, field, number_format) in enumerate(COLUMNS, start=1):
            written = write(sheet, HEADER_ROW + offset, column, row[field])
            if number_format:
                written.number_format = number_format
    sheet.freeze_panes = sheet.cell(row=HEADER_ROW + 1, column=1)
    return workbook_bytes(book)


RANKING = Export("hours.ranking", layout=1, build=ranking_xlsx)
