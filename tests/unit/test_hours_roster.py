"""Reading a volunteer roster (services/hours/roster.py): in-memory XLSX and CSV bytes, no I/O."""
from __future__ import annotations

import codecs
import csv
import io
import random
import re
import struct
import tracemalloc
import zipfile

import openpyxl
import pytest

from services.hours.roster import (
    MAX_ROWS,
    MAX_UNPACKED_BYTES,
    MIB,
    RosterRow,
    RosterUnreadable,
    RowError,
    normalise_phone,
    read_roster,
)

GRIDS = {"lanshan-01": "金雀山街道一网格", "lanshan-02": "金雀山街道二网格"}
CHINESE_HEADER = ["姓名", "手机号", "所属组织", "网格"]
ENGLISH_HEADER = ["name", "phone", "organization", "grid"]
ZHANG = ["张三", "13800000000", "红马甲服务队", "lanshan-01"]
LI = ["李四", "13900000001", "红马甲服务队", "lanshan-02"]


# --- builders ---------------------------------------------------------------------------------

def xlsx(*rows: list | None, title_rows: int = 0) -> bytes:
    """A workbook whose first sheet holds `rows` from row 1 + title_rows; None is a blank row."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for _ in range(title_rows):
        sheet.append([])
    for row in rows:
        sheet.append(row or [])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def with_sheet_xml(workbook: bytes, pattern: bytes, replacement: bytes) -> bytes:
    """`workbook` with its first sheet's XML edited, for what openpyxl itself never writes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                content, changed = re.subn(pattern, replacement, content)
                assert changed == 1
            target.writestr(item, content)
    return out.getvalue()


def with_padded_sheet(workbook: bytes, padding: int, *, declared_as_before: bool = False) -> bytes:
    """`workbook` with `padding` bytes of blanks in its first sheet's XML (which deflate packs about a thousand
    times), streamed so that the test never holds them; `declared_as_before`: the zip still declares the part's
    old size, as a zip bomb that lies about its size does."""
    sheet = "xl/worksheets/sheet1.xml"
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename != sheet:
                target.writestr(item.filename, content)
                continue
            original_size = len(content)
            head, tail = content.split(b"<sheetData>")
            with target.open(sheet, "w") as part:
                part.write(head + b"<sheetData>")
                for _ in range(padding // MIB):
                    part.write(b" " * MIB)
                part.write(b" " * (padding % MIB) + tail)
    packed = bytearray(out.getvalue())
    if declared_as_before:
        # The uncompressed size in the part's local header (offset 22) and its central directory entry (24).
        for signature, size_at, name_length_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
            at = packed.find(signature)
            while at >= 0:
                length, = struct.unpack_from("<H", packed, at + name_length_at)
                if packed[at + name_at:at + name_at + length] == sheet.encode():
                    struct.pack_into("<I", packed, at + size_at, original_size)
                at = packed.find(signature, at + 4)
    return bytes(packed)


def csv_text(*rows: list | None, delimiter: str = ",") -> str:
    """`rows` as Excel writes them (quoting where needed); None is a blank line."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(row or [] for row in rows)
    return out.getvalue()


def csv_bytes(*rows: list | None, delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    return csv_text(*rows, delimiter=delimiter).encode(encoding)


def only_error(roster) -> RowError:
    assert roster.rows == []
    assert len(roster.errors) == 1
    return roster.errors[0]


# --- good rows --------------------------------------------------------------------------------

def test_xlsx_with_chinese_headers_yields_its_rows_with_sheet_row_numbers():
    roster = read_roster(xlsx(CHINESE_HEADER, ZHANG, LI), GRIDS)

    assert roster.errors == []
    assert roster.rows == [
        RosterRow(row=2, name="张三", phone="13800000000", organization="红马甲服务队", grid_id="lanshan-01"),
        RosterRow(row=3, name="李四", phone="13900000001", organization="红马甲服务队", grid_id="lanshan-02"),
    ]


def test_csv_with_english_headers_yields_its_rows():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ZHANG, LI), GRIDS)

    assert roster.errors == []
    assert [(row.row, row.name, row.grid_id) for row in roster.rows] == [(2, "张三", "lanshan-01"),
                                                                         (3, "李四", "lanshan-02")]


@pytest.mark.parametrize("column, titles", [
    (0, ["姓名", "name", "Name", " NAME "]),
    (1, ["手机号", "手机号码", "联系电话", "电话", "phone", "Mobile", "手机号*"]),
    (2, ["所属组织", "组织", "服务队", "单位", "organization", "Organisation", "TEAM"]),
    (3, ["网格", "网格编号", "所属网格", "grid", "grid_id", "Grid ID"]),
])
def test_every_accepted_header_title_names_its_column(column, titles):
    for title in titles:
        header = [*ENGLISH_HEADER]
        header[column] = title

        roster = read_roster(csv_bytes(header, ZHANG), GRIDS)

        assert roster.errors == [], title
        assert roster.rows[0].phone == "13800000000", title


def test_columns_are_found_in_any_order_and_extra_columns_are_ignored():
    header = ["序号", "网格", "备注", "手机号", "姓名", "所属组织"]
    roster = read_roster(xlsx(header, ["1", "lanshan-02", "周末可参加", "13800000000", "张三", "红马甲"]), GRIDS)

    assert roster.errors == []
    assert roster.rows == [RosterRow(row=2, name="张三", phone="13800000000", organization="红马甲",
                                     grid_id="lanshan-02")]


def test_gbk_encoded_csv_as_excel_in_china_saves_it_is_read():
    roster = read_roster(csv_bytes(CHINESE_HEADER, ["张三", "13800000000", "红马甲服务队", "金雀山街道一网格"],
                                   encoding="gbk"), GRIDS)

    assert roster.errors == []
    assert roster.rows[0].name == "张三"
    assert roster.rows[0].organization == "红马甲服务队"
    assert roster.rows[0].grid_id == "lanshan-01"


def test_utf8_csv_with_a_byte_order_mark_keeps_its_first_column():
    roster = read_roster(codecs.BOM_UTF8 + csv_bytes(CHINESE_HEADER, ZHANG), GRIDS)

    assert roster.errors == []
    assert roster.rows[0].name == "张三"


def test_excel_unicode_text_export_utf16_with_tabs_is_read():
    roster = read_roster(csv_text(CHINESE_HEADER, ZHANG, delimiter="\t").encode("utf-16"), GRIDS)

    assert roster.errors == []
    assert roster.rows[0].name == "张三"


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_csv_delimiter_is_detected(delimiter):
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ["张三", "13800000000", "Red Vests, Lanshan; East", "lanshan-01"],
                                   delimiter=delimiter), GRIDS)

    assert roster.errors == []
    assert roster.rows[0].organization == "Red Vests, Lanshan; East"


def test_quoted_cell_spanning_lines_is_one_row_so_later_row_numbers_match_the_sheet():
    spanning = ["张三", "13800000000", "红马甲\r\n服务队", "lanshan-01"]

    roster = read_roster(csv_bytes(ENGLISH_HEADER, spanning, ["李四", "1380000", "红马甲", "lanshan-01"]), GRIDS)

    assert roster.rows[0].organization == "红马甲 服务队"
    assert [error.row for error in roster.errors] == [3]


@pytest.mark.parametrize("stored_as", [b"13800000000", b"13800000000.0", b"1.38E10", b"8613800000000"])
def test_phone_typed_into_a_number_cell_is_accepted(stored_as):
    workbook = with_sheet_xml(xlsx(CHINESE_HEADER, ["张三", 13900000000, "红马甲", "lanshan-01"]),
                              rb"<v>13900000000</v>", b"<v>" + stored_as + b"</v>")

    roster = read_roster(workbook, GRIDS)

    assert roster.errors == []
    assert roster.rows[0].phone == "13800000000"


@pytest.mark.parametrize("typed", ["13800000000", "+86 138 0000 0000", "+8613800000000", "0086-138-0000-0000",
                                   "8613800000000", "138-0000-0000", " 138 0000 0000 ", "１３８００００００００",
                                   "138\u20140000\u20140000", "+86\u3000138 0000 0000"])
def test_phone_spacing_dashes_and_country_code_are_normalised(typed):
    assert normalise_phone(typed) == "13800000000"


@pytest.mark.parametrize("typed", ["", "1380000", "138000000001", "23800000000", "12800000000", "86138000000",
                                   "+85213800000000", "1380000000a", "0539-8123456", "1.38E+10"])
def test_what_is_not_an_11_digit_mobile_number_is_refused(typed):
    assert normalise_phone(typed) is None


def test_normalised_phone_is_what_the_row_carries():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ["张三", "+86 138-0000-0000", "红马甲", "lanshan-01"]), GRIDS)

    assert roster.rows[0].phone == "13800000000"


def test_grid_may_be_given_by_its_exact_name():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ["张三", "13800000000", "红马甲", "金雀山街道二网格"]), GRIDS)

    assert roster.errors == []
    assert roster.rows[0].grid_id == "lanshan-02"


def test_name_and_organization_are_trimmed_with_inner_whitespace_collapsed():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ["  Zhang \u3000 San ", "13800000000", " Red   Vests ",
                                                    " lanshan-01 "]), GRIDS)

    assert roster.rows == [RosterRow(row=2, name="Zhang San", phone="13800000000", organization="Red Vests",
                                     grid_id="lanshan-01")]


def test_longest_allowed_name_and_organization_are_accepted():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ["名" * 50, "13800000000", "队" * 100, "lanshan-01"]), GRIDS)

    assert roster.errors == []
    assert len(roster.rows) == 1


# --- bad rows ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cells, reason", [
    (["", "13800000000", "红马甲", "lanshan-01"], "name: missing"),
    (["名" * 51, "13800000000", "红马甲", "lanshan-01"], "name: 51 characters, more than the 50 allowed"),
    (["张三", "", "红马甲", "lanshan-01"], "phone: missing"),
    (["张三", "1380000", "红马甲", "lanshan-01"], "phone: '1380000' is not an 11-digit mobile number"),
    (["张三", "13800000000", "", "lanshan-01"], "organization: missing"),
    (["张三", "13800000000", "队" * 101, "lanshan-01"], "organization: 101 characters, more than the 100 allowed"),
    (["张三", "13800000000", "红马甲", ""], "grid: missing"),
    (["张三", "13800000000", "红马甲", "hedong-07"],
     "grid: 'hedong-07' must be one of the city's grid ids (lanshan-01, lanshan-02) or a grid's exact name"),
])
def test_each_bad_cell_is_reported_with_its_row_number_and_column(cells, reason):
    error = only_error(read_roster(csv_bytes(ENGLISH_HEADER, cells), GRIDS))

    assert error == RowError(row=2, reason=reason)


def test_good_rows_are_kept_while_bad_ones_are_reported_at_their_own_rows():
    bad = ["王五", "1380000", "红马甲", "lanshan-01"]

    roster = read_roster(xlsx(CHINESE_HEADER, ZHANG, bad, LI), GRIDS)

    assert [row.row for row in roster.rows] == [2, 4]
    assert [error.row for error in roster.errors] == [3]
    assert roster.errors[0].reason.startswith("phone:")


def test_several_problems_of_one_row_are_reported_together():
    error = only_error(read_roster(csv_bytes(ENGLISH_HEADER, ["", "12345", "红马甲", "nowhere"]), GRIDS))

    assert error.row == 2
    assert error.reason.split("; ") == [
        "name: missing",
        "phone: '12345' is not an 11-digit mobile number",
        "grid: 'nowhere' must be one of the city's grid ids (lanshan-01, lanshan-02) or a grid's exact name",
    ]


def test_grid_name_shared_by_two_grids_must_be_given_by_id():
    grids = {"lanshan-01": "一网格", "hedong-01": "一网格"}

    error = only_error(read_roster(csv_bytes(ENGLISH_HEADER, ["张三", "13800000000", "红马甲", "一网格"]), grids))

    assert error.reason == "grid: '一网格' is the name of several grids; use the grid id"


def test_a_city_with_many_grids_lists_only_some_of_their_ids():
    grids = {f"grid-{number:03}": f"第{number}网格" for number in range(250)}

    error = only_error(read_roster(csv_bytes(ENGLISH_HEADER, ["张三", "13800000000", "红马甲", "x"]), grids))

    assert "grid-000, grid-001" in error.reason
    assert "grid-249" not in error.reason
    assert "and 240 more" in error.reason


# --- duplicates -------------------------------------------------------------------------------

def test_a_row_repeating_an_earlier_phone_and_organization_is_a_duplicate():
    again = ["张三丰", "+86 138-0000-0000", " 红马甲服务队 ", "lanshan-02"]

    roster = read_roster(csv_bytes(ENGLISH_HEADER, ZHANG, LI, again), GRIDS)

    assert [row.row for row in roster.rows] == [2, 3]
    assert roster.errors == [RowError(row=4, reason="duplicate of row 2 (same phone and organization)")]


def test_the_same_phone_in_another_organization_is_another_volunteer():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, ZHANG, ["张三", "13800000000", "蓝马甲", "lanshan-01"]), GRIDS)

    assert roster.errors == []
    assert [(row.phone, row.organization) for row in roster.rows] == [("13800000000", "红马甲服务队"),
                                                                     ("13800000000", "蓝马甲")]


def test_a_first_row_wrong_elsewhere_still_makes_its_repeat_a_duplicate():
    first = ["张三", "13800000000", "红马甲服务队", "nowhere"]

    roster = read_roster(csv_bytes(ENGLISH_HEADER, first, ZHANG), GRIDS)

    assert roster.rows == []
    assert [error.row for error in roster.errors] == [2, 3]
    assert roster.errors[1].reason == "duplicate of row 2 (same phone and organization)"


# --- blank rows and the header's place ----------------------------------------------------------

def test_blank_rows_are_skipped_but_row_numbers_stay_the_sheets():
    bad = ["王五", "1380000", "红马甲", "lanshan-01"]

    roster = read_roster(xlsx(CHINESE_HEADER, None, ZHANG, None, None, bad, LI), GRIDS)

    assert [row.row for row in roster.rows] == [3, 7]
    assert [error.row for error in roster.errors] == [6]


def test_blank_csv_lines_and_rows_of_empty_cells_are_skipped_but_counted():
    roster = read_roster(csv_bytes(ENGLISH_HEADER, None, [" ", "", " ", ""], ["", "", "", "", "备注"], LI), GRIDS)

    assert roster.errors == []
    assert [row.row for row in roster.rows] == [5]


def test_header_is_the_first_non_empty_row():
    roster = read_roster(xlsx(CHINESE_HEADER, ZHANG, title_rows=2), GRIDS)

    assert roster.errors == []
    assert [row.row for row in roster.rows] == [4]


def test_rows_beyond_a_wrongly_recorded_sheet_size_are_still_read():
    workbook = with_sheet_xml(xlsx(CHINESE_HEADER, ZHANG, LI), rb'<dimension ref="[^"]+"', b'<dimension ref="A1:A1"')

    roster = read_roster(workbook, GRIDS)

    assert [row.row for row in roster.rows] == [2, 3]


# --- formulas --------------------------------------------------------------------------------------

def test_a_formula_is_read_as_its_text_not_as_the_value_cached_beside_it():
    workbook = with_sheet_xml(xlsx(CHINESE_HEADER, ["张三", '=TEXT(13800000000,"0")', "红马甲", "lanshan-01"]),
                              re.escape(b'<f>TEXT(13800000000,"0")</f><v />'),
                              b'<f>TEXT(13800000000,"0")</f><v>13800000000</v>')

    error = only_error(read_roster(workbook, GRIDS))

    assert error == RowError(row=2, reason="""phone: '=TEXT(13800000000,"0")' is not an 11-digit mobile number""")


def test_a_name_typed_as_a_formula_is_that_text():
    hyperlink = '=HYPERLINK("http://x/?"&A1,"点击查看")'

    roster = read_roster(xlsx(CHINESE_HEADER, [hyperlink, "13800000000", "红马甲", "lanshan-01"]), GRIDS)

    assert roster.errors == []
    assert roster.rows[0].name == hyperlink


def test_an_array_formula_is_read_as_its_text():
    workbook = with_sheet_xml(xlsx(CHINESE_HEADER, ["张三", "13800000000", "红马甲", '="lanshan-01"']),
                              rb'<c r="D2"><f>"lanshan-01"</f><v /></c>',
                              b'<c r="D2" t="str"><f t="array" ref="D2">"lanshan-01"</f><v>lanshan-01</v></c>')

    error = only_error(read_roster(workbook, GRIDS))

    assert error.reason.startswith("""grid: '="lanshan-01"' must be one of the city's grid ids""")


# --- what a workbook may unpack to ------------------------------------------------------------------

def test_a_workbook_unpacking_to_more_than_the_bound_is_refused_before_it_is_unpacked():
    bomb = with_padded_sheet(xlsx(CHINESE_HEADER, ZHANG), MAX_UNPACKED_BYTES + 10 * MIB)
    assert len(bomb) < MIB

    with pytest.raises(RosterUnreadable, match=r"unpacks to 60 MiB, more than the 50 MiB a roster may"):
        read_roster(bomb, GRIDS)


def test_a_part_packed_more_tightly_than_any_spreadsheet_program_packs_is_refused():
    with pytest.raises(RosterUnreadable, match=r"xl/worksheets/sheet1.xml unpacks to [0-9,]+ times its packed size"):
        read_roster(with_padded_sheet(xlsx(CHINESE_HEADER, ZHANG), 2 * MIB), GRIDS)


def test_a_part_lying_about_its_size_is_never_unpacked_beyond_what_it_declares():
    bomb = with_padded_sheet(xlsx(CHINESE_HEADER, ZHANG), 2 * MAX_UNPACKED_BYTES, declared_as_before=True)

    tracemalloc.start()
    try:
        with pytest.raises(RosterUnreadable, match="not a readable XLSX workbook"):
            read_roster(bomb, GRIDS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * MIB


def test_a_roster_of_max_rows_is_well_within_the_bounds():
    volunteers = [[f"志愿者{n}", f"138{n:08}", "红马甲服务队", "lanshan-01"] for n in range(MAX_ROWS)]

    roster = read_roster(xlsx(CHINESE_HEADER, *volunteers), GRIDS)

    assert roster.errors == [] and len(roster.rows) == MAX_ROWS


# --- files that cannot be read --------------------------------------------------------------------

def test_missing_columns_are_named():
    with pytest.raises(RosterUnreadable) as raised:
        read_roster(csv_bytes(["姓名", "所属组织", "备注"], ["张三", "红马甲", ""]), GRIDS)

    message = str(raised.value)
    assert "phone (手机号)" in message
    assert "grid (网格)" in message
    assert "name (" not in message
    assert "organization (" not in message


def test_two_columns_for_the_same_field_are_refused():
    with pytest.raises(RosterUnreadable, match="more than one phone column"):
        read_roster(csv_bytes([*CHINESE_HEADER, "联系电话"], [*ZHANG, "13900000000"]), GRIDS)


@pytest.mark.parametrize("data", [b"", b"  \r\n", csv_bytes(None, ["", " ", ""], None), xlsx()])
def test_a_file_without_a_header_row_is_refused(data):
    with pytest.raises(RosterUnreadable):
        read_roster(data, GRIDS)


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.mark.parametrize("data, says", [
    (PNG, "neither an XLSX workbook nor a CSV"),
    (random.Random(7).randbytes(4096), "neither an XLSX workbook nor a CSV"),
    (bytes(range(32)) * 64, "neither an XLSX workbook nor a CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "old Excel .xls workbook"),
    (b"PK\x03\x04 not really a zip", "not a readable XLSX workbook"),
], ids=["png", "random-bytes", "control-bytes-that-decode-as-text", "old-xls", "broken-zip"])
def test_what_is_not_a_spreadsheet_is_refused(data, says):
    with pytest.raises(RosterUnreadable, match=says):
        read_roster(data, GRIDS)


def test_a_zip_that_is_not_a_workbook_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<document/>")

    with pytest.raises(RosterUnreadable, match="not a readable XLSX workbook"):
        read_roster(out.getvalue(), GRIDS)


def test_up_to_max_rows_are_read_and_blank_rows_do_not_count():
    volunteers = [[f"志愿者{n}", f"138{n:08}", "红马甲", "lanshan-01"] for n in range(MAX_ROWS)]

    roster = read_roster(csv_bytes(ENGLISH_HEADER, None, *volunteers, None), GRIDS)

    assert roster.errors == []
    assert len(roster.rows) == MAX_ROWS


def test_more_than_max_rows_are_refused():
    volunteers = [[f"志愿者{n}", f"138{n:08}", "红马甲", "lanshan-01"] for n in range(MAX_ROWS + 1)]

    with pytest.raises(RosterUnreadable, match="more than 10,000"):
        read_roster(csv_bytes(ENGLISH_HEADER, *volunteers), GRIDS)
