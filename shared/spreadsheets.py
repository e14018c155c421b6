"""Spreadsheets over HTTP: the offices exchange XLSX files, so several endpoints answer with one on request."""
from __future__ import annotations

from typing import Any

from flask import Response
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def xlsx_response(workbook: bytes, filename: str) -> Response:
    """The workbook as a download named `filename`."""
    return Response(workbook, mimetype=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# For an endpoint that answers JSON, or with `format=xlsx` the spreadsheet: both under one 200 in its document.
AS_XLSX_TOO = {"responses": {200: {"content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}}}}


def storable(value: Any) -> Any:
    """A value a sheet can hold: text that people typed may carry control characters XLSX cannot store."""
    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value
