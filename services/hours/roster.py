"""A volunteer association's roster, read from the XLSX or CSV its coordinator uploads, row by row.

Pure: bytes in, the rows fit to import and a plain-English reason for every other row out. Whether a row is a new
volunteer or one already on file (phone + organization) is the store's business, not this module's.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass

import openpyxl
from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

MAX_ROWS = 10_000
MIB = 1024 * 1024
# What an XLSX may unpack to, all its parts together: a roster of MAX_ROWS volunteers unpacks to a few MiB.
MAX_UNPACKED_BYTES = 50 * MIB
# Excel packs a sheet's XML 5 to 20 times; deflate can pack up to about 1,000 times, which only a file made to
# unpack into something huge (a zip bomb) does. Parts smaller than RATIO_CHECKED_FROM are not worth the check.
MAX_PACKING_RATIO = 100
RATIO_CHECKED_FROM = MIB
NAME_MAX_CHARS = 50
ORGANIZATION_MAX_CHARS = 100
XLSX_SIGNATURE = b"PK\x03\x04"
# The OLE2 container of Excel 97-2003 (.xls) and WPS: common in China, and not something openpyxl reads.
XLS_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# The headers coordinators actually type, in Chinese or English; compared after _header_key.
COLUMN_HEADERS = {
    "name": ("姓名", "name"),
    "phone": ("手机号", "手机号码", "联系电话", "电话", "phone", "mobile"),
    "organization": ("所属组织", "组织", "服务队", "单位", "organization", "organisation", "team"),
    "grid": ("网格", "网格编号", "所属网格", "grid", "grid_id"),
}
CSV_DELIMITERS = (",", "\t", ";")
MOBILE_NUMBER = re.compile(r"1[3-9][0-9]{9}")
# NFKC has already turned full-width spaces and hyphens into these; the rest are dashes Word and WPS substitute.
PHONE_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]")
COUNTRY_CODE = re.compile(r"^(?:\+|00)?86")
# Characters no CSV contains: they betray bytes that decode "successfully" as GB18030 but are an image or other binary.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
GRID_IDS_LISTED = 10


@dataclass(frozen=True)
class RosterRow:
    row: int
    name: str
    phone: str
    organization: str
    grid_id: str


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str


@dataclass(frozen=True)
class Roster:
    rows: list[RosterRow]
    errors: list[RowError]


class RosterUnreadable(ValueError):
    """The file as a whole cannot be read; the message tells the coordinator what to fix."""


def read_roster(data: bytes, grids: Mapping[str, str]) -> Roster:
    """Every non-blank row of `data` (XLSX or CSV) either as a RosterRow or as a RowError.

    `grids` maps the city's grid ids to their names; a row may name its grid by either.
    Row numbers are the ones the spreadsheet shows, blank rows included.
    """
    grid_ids_by_label = _grid_ids_by_label(grids)
    rows: list[RosterRow] = []
    errors: list[RowError] = []
    first_row_of_volunteer: dict[tuple[str, str], int] = {}
    with closing(_records(data)) as records:
        columns = _locate_columns(*_header(records))
        data_rows = 0
        for number, cells in records:
            values = {column: _cell(cells, index) for column, index in columns.items()}
            # Only the roster's columns count: templates often come with 序号 filled in far below the last volunteer.
            if not any(value.strip() for value in values.values()):
                continue
            data_rows += 1
            if data_rows > MAX_ROWS:
                raise RosterUnreadable(f"the file has more than {MAX_ROWS:,} volunteers; "
                                       f"split it into files of at most {MAX_ROWS:,} rows each")
            row, problems = _validate(number, values, grids, grid_ids_by_label)
            if volunteer := _volunteer(values):
                if volunteer in first_row_of_volunteer:
                    problems.append(f"duplicate of row {first_row_of_volunteer[volunteer]} "
                                    "(same phone and organization)")
                else:
                    first_row_of_volunteer[volunteer] = number
            if problems:
                errors.append(RowError(row=number, reason="; ".join(problems)))
            else:
                rows.append(row)
    return Roster(rows=rows, errors=errors)


def normalise_phone(text: str) -> str | None:
    """The 11-digit mainland mobile number in `text`, or None; tolerates spaces, dashes and +86 / 0086 / 86."""
    # A mobile number never starts with 8, so dropping a leading 86 can't spoil a number that was valid.
    digits = COUNTRY_CODE.sub("", PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", text)))
    return digits if MOBILE_NUMBER.fullmatch(digits) else None


# --- the file: numbered rows of cell texts ---------------------------------------------------------

def _records(data: bytes) -> Iterator[tuple[int, list[str]]]:
    if not data.strip():
        raise RosterUnreadable("the file is empty; upload the roster as .xlsx or CSV")
    if data.startswith(XLSX_SIGNATURE):
        return _xlsx_records(data)
    return _csv_records(_decode(data))


def _xlsx_records(data: bytes) -> Iterator[tuple[int, list[str]]]:
    # A damaged workbook, or a zip that is no workbook at all (.docx, .zip), fails in many different ways inside
    # zipfile, openpyxl and the XML parser; to the coordinator they all mean the same thing.
    unreadable = ("the file is a zip archive but not a readable XLSX workbook; "
                  "save the roster from Excel as .xlsx or CSV")
    _check_unpacked_size(data, unreadable)
    try:
        # Not data_only: a formula cell then reads as its formula's text, never as the value cached beside it,
        # which whoever made the file chose (Excel's own, or any other).
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    except Exception as error:
        raise RosterUnreadable(unreadable) from error
    try:
        if not workbook.worksheets:
            raise RosterUnreadable("the workbook has no worksheet; put the roster on its first sheet")
        sheet = workbook.worksheets[0]
        # Some writers record a wrong used range; read-only mode would trust it and silently drop rows.
        sheet.reset_dimensions()
        try:
            # Read-only mode yields an empty row for every row missing from the file, so counting gives row numbers.
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, [_cell_text(value) for value in values]
        except Exception as error:
            raise RosterUnreadable(unreadable) from error
    finally:
        workbook.close()


def _check_unpacked_size(data: bytes, unreadable: str) -> None:
    """Refuse a workbook that would unpack to more than MAX_UNPACKED_BYTES, or that packs a part absurdly well.

    The sizes are those the zip declares; zipfile, which openpyxl reads every part through, never unpacks more
    than a part declares (and refuses a part whose bytes then fail their checksum), so a lie cannot pass more.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except Exception as error:
        raise RosterUnreadable(unreadable) from error
    unpacked = sum(part.file_size for part in parts)
    if unpacked > MAX_UNPACKED_BYTES:
        raise RosterUnreadable(f"the workbook unpacks to {unpacked / MIB:,.0f} MiB, more than the "
                               f"{MAX_UNPACKED_BYTES // MIB} MiB a roster may; save only the roster's sheet, "
                               "without pictures, as .xlsx or CSV")
    for part in parts:
        if part.file_size >= RATIO_CHECKED_FROM and part.file_size > MAX_PACKING_RATIO * part.compress_size:
            raise RosterUnreadable(f"the workbook's part {part.filename} unpacks to "
                                   f"{part.file_size // max(part.compress_size, 1):,} times its packed size, "
                                   "which no spreadsheet program writes; save the roster from Excel as .xlsx or CSV")


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    # A formula is the text typed into its cell; a data table's has none.
    if isinstance(value, ArrayFormula):
        return value.text or ""
    if isinstance(value, DataTableFormula):
        return "="
    # A phone typed into a number cell arrives as 13800000000 or 13800000000.0.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _decode(data: bytes) -> str:
    if data.startswith(XLS_SIGNATURE):
        raise RosterUnreadable("the file is an old Excel .xls workbook; save it as .xlsx (Excel Workbook) or CSV")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode Text" export: tab-separated UTF-16.
        encodings = ("utf-16",)
    else:
        # UTF-8 first: GB18030 (Excel's CSV on a Chinese Windows) would decode almost any bytes, mostly wrongly.
        encodings = ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if not CONTROL_CHARACTERS.search(text):
            return text
    raise RosterUnreadable("the file is neither an XLSX workbook nor a CSV text file (UTF-8 or GBK); "
                           "save the roster from Excel as .xlsx or CSV")


def _csv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    try:
        # A record is a spreadsheet row even when a quoted cell spans several lines, so count records, not lines.
        yield from enumerate(reader, start=1)
    except csv.Error as error:
        raise RosterUnreadable(f"the CSV cannot be read near line {reader.line_num} ({error}); "
                               "save the roster from Excel as .xlsx or CSV") from error


def _sniff_delimiter(text: str) -> str:
    """The delimiter under which the header names the most roster columns; comma when none does better."""
    return max(CSV_DELIMITERS, key=lambda delimiter: _header_score(text, delimiter))


def _header_score(text: str, delimiter: str) -> int:
    try:
        for cells in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if any(cell.strip() for cell in cells):
                return sum(_header_key(cell) in COLUMN_OF_HEADER for cell in cells)
    except csv.Error:
        pass  # reading with the delimiter chosen reports the problem with its line number
    return 0


def _cell(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


# --- the header ----------------------------------------------------------------------------------

def _header_key(title: str) -> str:
    # "Grid ID", "grid_id" and "网格编号*" (templates star the required columns) all name the same column.
    return re.sub(r"[\s_*]", "", unicodedata.normalize("NFKC", title)).casefold()


COLUMN_OF_HEADER = {_header_key(title): column for column, titles in COLUMN_HEADERS.items() for title in titles}


def _header(records: Iterator[tuple[int, list[str]]]) -> tuple[int, list[str]]:
    for number, cells in records:
        if any(cell.strip() for cell in cells):
            return number, cells
    raise RosterUnreadable("the file has no header row: every row is blank; "
                           "the first row should name the columns 姓名, 手机号, 所属组织, 网格")


def _locate_columns(header_row: int, header: list[str]) -> dict[str, int]:
    """Each roster column's index in the header row."""
    indexes: dict[str, list[int]] = {column: [] for column in COLUMN_HEADERS}
    for index, title in enumerate(header):
        if column := COLUMN_OF_HEADER.get(_header_key(title)):
            indexes[column].append(index)
    for column, found in indexes.items():
        if len(found) > 1:
            titles = ", ".join(header[index].strip() for index in found)
            raise RosterUnreadable(f"row {header_row}, the header, has more than one {column} column ({titles}); "
                                   "keep one of them or rename the others")
    missing = [column for column, found in indexes.items() if not found]
    if missing:
        wanted = ", ".join(f"{column} ({COLUMN_HEADERS[column][0]})" for column in missing)
        present = ", ".join(title.strip() for title in header if title.strip())
        raise RosterUnreadable(f"row {header_row}, taken as the header, lacks the column(s) {wanted}; "
                               f"it has: {present}. The header must be the first non-empty row")
    return {column: found[0] for column, found in indexes.items()}


# --- one row -------------------------------------------------------------------------------------

def _validate(number: int, values: Mapping[str, str], grids: Mapping[str, str],
              grid_ids_by_label: Mapping[str, str | None]) -> tuple[RosterRow | None, list[str]]:
    """The row, or None and everything wrong with it."""
    name = _collapse(values["name"])
    phone = normalise_phone(values["phone"])
    organization = _collapse(values["organization"])
    grid = _collapse(values["grid"])
    grid_id = grid_ids_by_label.get(grid)
    problems = [*_length_problems("name", name, NAME_MAX_CHARS),
                *_phone_problems(values["phone"], phone),
                *_length_problems("organization", organization, ORGANIZATION_MAX_CHARS),
                *_grid_problems(grid, grid_id, grid_ids_by_label, grids)]
    if problems:
        return None, problems
    return RosterRow(row=number, name=name, phone=phone, organization=organization, grid_id=grid_id), []


def _volunteer(values: Mapping[str, str]) -> tuple[str, str] | None:
    """Phone and organization, which identify a volunteer, when both are valid; other cells don't matter.

    A row wrong elsewhere still claims its volunteer: the file lists that volunteer twice either way, and saying
    so at once spares the coordinator a second round of fixes.
    """
    phone = normalise_phone(values["phone"])
    organization = _collapse(values["organization"])
    if phone is None or _length_problems("organization", organization, ORGANIZATION_MAX_CHARS):
        return None
    return phone, organization


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _length_problems(column: str, text: str, max_chars: int) -> list[str]:
    if not text:
        return [f"{column}: missing"]
    if len(text) > max_chars:
        return [f"{column}: {len(text)} characters, more than the {max_chars} allowed"]
    return []


def _phone_problems(text: str, phone: str | None) -> list[str]:
    if not text.strip():
        return ["phone: missing"]
    if phone is None:
        return [f"phone: {text.strip()!r} is not an 11-digit mobile number"]
    return []


def _grid_ids_by_label(grids: Mapping[str, str]) -> dict[str, str | None]:
    """Each grid's id and name → its id; None for a name several grids share, which only an id can settle."""
    by_label: dict[str, str | None] = {}
    for grid_id, grid_name in grids.items():
        name = _collapse(grid_name)
        by_label[name] = grid_id if by_label.get(name, grid_id) == grid_id else None
    by_label.update({grid_id: grid_id for grid_id in grids})
    return by_label


def _grid_problems(grid: str, grid_id: str | None, grid_ids_by_label: Mapping[str, str | None],
                   grids: Mapping[str, str]) -> list[str]:
    if not grid:
        return ["grid: missing"]
    if grid not in grid_ids_by_label:
        listed = sorted(grids)[:GRID_IDS_LISTED]
        more = f" and {len(grids) - len(listed)} more" if len(grids) > len(listed) else ""
        return [f"grid: {grid!r} must be one of the city's grid ids ({', '.join(listed)}{more}) "
                "or a grid's exact name"]
    if grid_id is None:
        return [f"grid: {grid!r} is the name of several grids; use the grid id"]
    return []
