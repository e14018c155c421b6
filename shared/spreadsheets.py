"""Spreadsheets: the one way the services write a workbook.

The offices exchange XLSX files, so several endpoints answer with one on request (`format=xlsx`). Every cell
goes through `write`, which stores text as text: a description a volunteer typed as `=HYPERLINK(...)` must
reach the grid leader's Excel as those characters, not as a live formula (openpyxl itself stores any string
that starts with `=` as one). Equal cells give equal bytes (`workbook_bytes`).
"""
from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flask import Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel reads a typed cell that starts with one of these as a formula (`+`, `-` and `@` too, and a tab or a line
# break before one): such text gets Excel's quote prefix, so that it stays text even when someone edits the cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
# XML keeps no bare CR (a reader turns CR and CRLF into LF): the line break is written as the LF Excel reads.
LINE_BREAKS = re.compile(r"\r\n?")
# Every timestamp a workbook carries (its document properties, its zip entries) is this one, so that the bytes
# depend on the figures alone: the earliest time a zip entry can hold, as reproducible builds use.
FIXED_TIME = datetime(1980, 1, 1)

# For an endpoint that answers JSON, or with `format=xlsx` the spreadsheet: both under one 200 in its document.
AS_XLSX_TOO = {"responses": {200: {"content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}}}}


# --- writing cells ------------------------------------------------------------------------------

def write(sheet: Worksheet, row: int, column: int, value: Any) -> Cell:
    """`value` into the cell at `row`, `column`: text always as a text cell, never a formula nor an error code,
    without the control characters XLSX cannot hold, its line breaks as LF, quote-prefixed where Excel would take
    it for a formula; numbers, dates and None (an empty cell) as they are. The cell, for its style."""
    cell = sheet.cell(row=row, column=column)
    if isinstance(value, str):
        text = LINE_BREAKS.sub("\n", ILLEGAL_CHARACTERS_RE.sub("", value))
        cell.value = text
        # openpyxl has just typed text starting with `=` as a formula and `#N/A` and its like as errors.
        cell.data_type = "s"
        if text.startswith(FORMULA_STARTS):
            cell.quotePrefix = True
    else:
        cell.value = value
    return cell


def write_row(sheet: Worksheet, row: int, values: Iterable[Any]) -> list[Cell]:
    """`values` across `row` from its first column, each as `write` puts it."""
    return [write(sheet, row, column, value) for column, value in enumerate(values, start=1)]


def workbook_bytes(book: Workbook) -> bytes:
    """The saved workbook; the same cells give the same bytes, whenever it is saved."""
    book.properties.created = book.properties.modified = FIXED_TIME
    out = io.BytesIO()
    # openpyxl's save_workbook would stamp the time of saving, and zipfile each entry's.
    with _ZipAtFixedTime(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(book, archive).write_data()
    return out.getvalue()


class _ZipAtFixedTime(zipfile.ZipFile):
    def writestr(self, zinfo_or_arcname: str | zipfile.ZipInfo, data: bytes | str,
                 compress_type: int | None = None, compresslevel: int | None = None) -> None:
        entry = zinfo_or_arcname
        if not isinstance(entry, zipfile.ZipInfo):
            entry = zipfile.ZipInfo(entry, date_time=FIXED_TIME.timetuple()[:6])
            entry.external_attr = 0o600 << 16
        super().writestr(entry, data, compress_type or self.compression, compresslevel)

    def write(self, filename: str, arcname: str | None = None, compress_type: int | None = None,
              compresslevel: int | None = None) -> None:
        # openpyxl writes each worksheet to a temporary file first; zipfile would stamp that file's time.
        with open(filename, "rb") as written:
            self.writestr(arcname or filename, written.read(), compress_type, compresslevel)


# --- answering with a workbook -------------------------------------------------------------------

def xlsx_response(workbook: bytes, filename: str) -> Response:
    """The workbook as a download named `filename`."""
    return Response(workbook, mimetype=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
