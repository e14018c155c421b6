"""Spreadsheets: the one way the services write a workbook, and the cache that answers one over HTTP.

The offices exchange XLSX files, so several endpoints answer with one on request (`format=xlsx`). Every cell
goes through `write`, which stores text as text: a description a volunteer typed as `=HYPERLINK(...)` must
reach the grid leader's Excel as those characters, not as a live formula (openpyxl itself stores any string
that starts with `=` as one). Equal figures give equal bytes (`workbook_bytes`), so a workbook is built once
for its figures and served from the service's own database after that (`SpreadsheetCache`, `xlsx_answer`),
with its key as the ETag.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bson import Binary
from flask import Response, current_app, request
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from shared import metrics
from shared.config import Settings
from shared.store import connect

log = logging.getLogger(__name__)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel reads a typed cell that starts with one of these as a formula (`+`, `-` and `@` too, and a tab or a line
# break before one): such text gets Excel's quote prefix, so that it stays text even when someone edits the cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
# XML keeps no bare CR (a reader turns CR and CRLF into LF): the line break is written as the LF Excel reads.
LINE_BREAKS = re.compile(r"\r\n?")
# Every timestamp a workbook carries (its document properties, its zip entries) is this one, so that the bytes
# depend on the figures alone: the earliest time a zip entry can hold, as reproducible builds use.
FIXED_TIME = datetime(1980, 1, 1)
# Part of every stored workbook's key, beside its export's layout: raise it whenever `write` or `workbook_bytes`
# would write other bytes for the same cells.
WRITER = 1
COLLECTION = "spreadsheets"
EXPIRES_FIELD = "expires_at"
# A MongoDB document holds at most 16 MiB; a larger workbook is built on every request rather than stored.
MAX_STORED_BYTES = 12 * 1024 * 1024

# For an endpoint that answers JSON, or with `format=xlsx` the spreadsheet: both under one 200 in its document,
# and the 304 a caller gets for the workbook it already has.
AS_XLSX_TOO = {"responses": {
    200: {"content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}},
    304: {"description": "With `format=xlsx` and `If-None-Match` naming the workbook's ETag: the same figures, "
                         "so the same workbook as before"}}}


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


# --- the workbook an endpoint answers -----------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """One kind of workbook: `build(**figures)` makes its bytes from the figures it prints. Raise `layout`
    whenever `build` would write other bytes for the same figures, so that no stored workbook outlives it."""

    kind: str
    layout: int
    build: Callable[..., bytes]

    def key(self, figures: Mapping[str, Any]) -> str:
        """The hash of the kind, the layouts and the figures: equal for equal figures, in any process."""
        canonical = json.dumps({"kind": self.kind, "layout": [WRITER, self.layout], "figures": figures},
                               sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_canonical)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, ZoneInfo):
        return value.key
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    # str() of an arbitrary object may name its address in memory: a new key in every process.
    raise TypeError(f"{type(value).__name__} is not a figure a spreadsheet's key can be made of")


class SpreadsheetCache:
    """Built workbooks in the service's own database, by their key (`Export.key`), until they expire."""

    def __init__(self, workbooks: Collection, keep_s: float):
        self.workbooks, self.keep = workbooks, timedelta(seconds=keep_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> SpreadsheetCache:
        return cls(connect(settings.mongo_url, settings.database)[COLLECTION], settings.spreadsheet_cache_s)

    def prepare(self) -> None:
        """The index by which a worker finds the workbooks that have expired (`drop_expired`)."""
        self.workbooks.create_index(EXPIRES_FIELD)

    def workbook(self, export: Export, key: str, figures: Mapping[str, Any], now: datetime) -> bytes:
        """The workbook stored under `key`, or the one `export` builds from `figures`, then stored."""
        stored = self.workbooks.find_one({"_id": key}, {"workbook": 1})
        if stored is not None:
            metrics.spreadsheets_served.labels(export.kind, "stored").inc()
            return bytes(stored["workbook"])
        built = export.build(**figures)
        metrics.spreadsheets_served.labels(export.kind, "built").inc()
        if len(built) > MAX_STORED_BYTES:
            log.warning("workbook too large to store; built again on every request",
                        extra={"kind": export.kind, "bytes": len(built)})
            return built
        try:
            self.workbooks.insert_one({"_id": key, "kind": export.kind, "workbook": Binary(built),
                                       "built_at": now, EXPIRES_FIELD: now + self.keep})
        except DuplicateKeyError:
            pass  # another request built the same figures meanwhile: the same bytes
        return built


def drop_expired(workbooks: Collection, now: datetime) -> int:
    """Forget the workbooks that have expired (every service's worker does, now and then). A plain indexed
    delete rather than a TTL index, for the reason `shared.ratelimit` gives."""
    return workbooks.delete_many({EXPIRES_FIELD: {"$lt": now}}).deleted_count


def xlsx_response(workbook: bytes, filename: str) -> Response:
    """The workbook as a download named `filename`."""
    return Response(workbook, mimetype=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def xlsx_answer(export: Export, filename: str, now: datetime, **figures: Any) -> Response:
    """The answer to a request for the workbook `export` builds from `figures`: 304 when the caller already
    has it (If-None-Match), else the stored workbook, built only if these figures were never built before.
    The ETag is the key; an answer is the caller's own (names masked for them), so shared caches keep none."""
    key = export.key(figures)
    if request.if_none_match.contains_weak(key):
        response = Response(status=304)
    else:
        cache: SpreadsheetCache = current_app.extensions["spreadsheets"]
        response = xlsx_response(cache.workbook(export, key, figures, now), filename)
    response.set_etag(key)
    response.headers["Cache-Control"] = "private, no-cache"
    return response
