"""The proof of service PDF (services/hours/proof): it opens, its Chinese text extracts and is drawn from a font
embedded in it, its figures and labels are the proof's, its QR code leads to exactly the verification address,
long proofs flow over pages without losing anything, and equal proofs are equal bytes."""
from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import date

import pypdfium2
import pytest
import zxingcpp
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from services.hours.proof import Proof, ProofLine, hours_text, render_proof
from services.hours.settings import HoursSettings

VERIFY_URL = "http://127.0.0.1:8003/v1/proofs/7K3M-Q9XD-2FHP"
A4_POINTS = (595.28, 841.89)


# --- builders ---------------------------------------------------------------------------------

def a_proof(**changes) -> Proof:
    proof = Proof(
        number="WP-2026-000123",
        code="7K3M-Q9XD-2FHP",
        verify_url=VERIFY_URL,
        name="张三丰",
        volunteer_id="V-000042",
        phone_masked="138****0000",
        organization="兰山区金雀山街道文明实践志愿服务队",
        year=2026,
        period_start=date(2026, 1, 5),
        period_end=date(2026, 12, 20),
        total_hours=38.5,
        lines=[
            ProofLine("patrol", 12, 30.5, "网格巡访 12 次（兰山区金雀山街道一网格）"),
            ProofLine("activity", 3, 9, "文明交通劝导；垃圾分类宣传；敬老院探访"),
            ProofLine("adjustment", 1, -1, "补录 2026年3月2日 巡访时长"),
        ],
        issuer="临沂市志愿者总会",
        issued_on=date(2027, 1, 10),
        sealed=True,
    )
    return replace(proof, **changes)


def activity_titles(count: int) -> str:
    return "；".join(f"第{number}期文明交通劝导志愿服务活动（兰山区金雀山街道人民广场路口）"
                     for number in range(1, count + 1))


# --- reading the PDF back ---------------------------------------------------------------------

def page_texts(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def unwrapped(text: str) -> str:
    """The text with the line breaks of its layout taken out: what a wrapped paragraph said."""
    return text.replace("\n", "")


def without_spaces(text: str) -> str:
    return re.sub(r"\s+", "", text)


def stitched(texts: list[str]) -> str:
    """The pages' text as one, without what every page repeats (the table header, the footer), so that what
    flowed from one page to the next reads on."""
    header = re.compile(r"服务类别\s*次数\s*时长（小时）\s*服务内容\s*")
    footer = re.compile(r"证明编号：\S+\s*验证码：\S+\s*第 \d+ 页 共 \d+ 页\s*")
    return "".join(unwrapped(footer.sub("", header.sub("", text))) for text in texts)


def qr_codes_by_page(pdf: bytes) -> list[list[str]]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        # Scale 3 is 216 dpi: several pixels to a module of the 32 mm code.
        return [[code.text for code in zxingcpp.read_barcodes(page.render(scale=3).to_pil(),
                                                              formats=zxingcpp.BarcodeFormat.QRCode)]
                for page in document]
    finally:
        document.close()


def inked_shares(pdf: bytes, text: str) -> list[tuple[str, float]]:
    """Each character of `text` where it first stands on the first page, with the share of its box (as pdfium
    places it, from the font's metrics) that pdfium paints dark: nearly none for a glyph it could not draw."""
    scale = 3
    page = pypdfium2.PdfDocument(pdf)[0]
    characters = page.get_textpage()
    found = characters.search(text, match_case=True).get_next()
    assert found is not None, f"{text!r} is not in the page's text"
    image = page.render(scale=scale).to_pil().convert("L")
    shares = []
    for index in range(found[0], found[0] + found[1]):
        character = characters.get_text_range(index, 1)
        if character.isspace():
            continue  # the line break pdfium reads between two lines of a paragraph
        left, bottom, right, top = characters.get_charbox(index, loose=True)
        box = image.crop((round(left * scale), round((page.get_height() - top) * scale),
                          round(right * scale), round((page.get_height() - bottom) * scale)))
        shares.append((character, sum(box.histogram()[:128]) / (box.width * box.height)))
    return shares


def faint(shares: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The characters with too little ink to be a Chinese character or a letter."""
    return [(character, share) for character, share in shares if share < 0.04]


def fonts(pdf: bytes) -> list[dict]:
    """Every font the pages use (the descendant of a composite font, which holds its descriptor)."""
    found = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            found.append(font["/DescendantFonts"][0].get_object() if font["/Subtype"] == "/Type0" else font)
    return found


def embedded_program(font: dict) -> bytes | None:
    descriptor = font.get("/FontDescriptor")
    for key in ("/FontFile2", "/FontFile3", "/FontFile"):
        if descriptor is not None and key in descriptor.get_object():
            return descriptor.get_object()[key].get_object().get_data()
    return None


def common_hanzi(count: int) -> str:
    """The first `count` characters of GB 2312's first level: the commonest Chinese characters."""
    rows = (bytes([row, cell]).decode("gb2312") for row in range(0xB0, 0xD8) for cell in range(0xA1, 0xFF)
            if (row, cell) < (0xD7, 0xFA))
    return "".join(character for _, character in zip(range(count), rows, strict=False))


# --- the file ---------------------------------------------------------------------------------

def test_the_proof_is_a_one_page_a4_pdf():
    pdf = render_proof(a_proof())

    assert pdf.startswith(b"%PDF-")
    pages = PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) == 1
    assert (float(pages[0].mediabox.width), float(pages[0].mediabox.height)) == pytest.approx(A4_POINTS, abs=0.5)


def test_equal_proofs_are_equal_bytes_and_another_proof_is_not():
    assert render_proof(a_proof()) == render_proof(a_proof())
    assert render_proof(a_proof(total_hours=38)) != render_proof(a_proof())


# --- how it looks anywhere --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["志愿服务证明", "张三丰", "兰山区金雀山街道文明实践志愿服务队"])
def test_every_character_of_the_heading_and_the_volunteer_is_drawn_by_pdfium(text):
    shares = inked_shares(render_proof(a_proof()), text)

    assert [character for character, _ in shares] == list(text)
    assert faint(shares) == []


@pytest.mark.parametrize("proof", [
    a_proof(),
    # More than 256 characters: ReportLab embeds them as several subsets of the font.
    a_proof(lines=[ProofLine("activity", 1, 2, common_hanzi(600))]),
], ids=["one page", "600 distinct characters"])
def test_every_font_is_embedded_as_a_subset_of_the_characters_drawn(proof):
    used = fonts(render_proof(proof))

    assert used
    for font in used:
        program = embedded_program(font)
        assert program is not None, f"{font['/BaseFont']} is not embedded"
        assert re.fullmatch(r"/[A-Z]{6}\+NotoSerifSC-Regular", font["/BaseFont"])
        assert TTFont(io.BytesIO(program))["maxp"].numGlyphs <= 257  # of Noto Serif SC's 31,058


def test_the_text_typed_by_people_is_drawn_in_full_on_every_page_of_a_long_proof():
    content = common_hanzi(600)
    pdf = render_proof(a_proof(lines=[ProofLine("activity", 1, 2, content)]))

    assert content in stitched(page_texts(pdf))
    assert faint(inked_shares(pdf, content[:40])) == []


def test_a_character_the_font_lacks_is_printed_as_a_mark_and_named_by_its_code_point():
    pdf = render_proof(a_proof(name="张𠮷𠮷", organization="😀志愿服务队"))
    text = unwrapped(page_texts(pdf)[0])

    assert "兹证明 张〓〓（" in text
    assert "系〓志愿服务队志愿者" in text
    assert "注：字库未收录的字以“〓”代替，依次为 U+1F600、U+20BB7。" in text
    assert faint(inked_shares(pdf, "张〓〓")) == []


@pytest.mark.parametrize("content", ["清扫；宣传", "清扫\t宣传\u2028敬老\r\n院", "清扫\u200b宣传\u200d敬老\ufeff院"],
                         ids=["the font's own", "spaces the font lacks", "invisible format characters"])
def test_a_proof_whose_every_character_can_be_drawn_has_no_mark_and_no_note(content):
    text = page_texts(render_proof(a_proof(lines=[ProofLine("activity", 1, 2, content)])))[0]

    assert "〓" not in text
    assert "字库未收录" not in text


# --- what it says -----------------------------------------------------------------------------

def test_the_chinese_text_extracts_with_the_title_the_volunteer_and_the_proof_number():
    text = page_texts(render_proof(a_proof()))[0]

    assert "志愿服务证明" in text
    assert "张三丰" in text
    assert "编号：WP-2026-000123" in text
    assert "验证码：7K3M-Q9XD-2FHP" in text


def test_the_body_says_who_served_when_and_how_many_hours_in_all():
    body = unwrapped(page_texts(render_proof(a_proof()))[0])

    assert ("兹证明 张三丰（志愿者编号：V-000042，联系电话：138****0000）系兰山区金雀山街道文明实践志愿服务队志愿者，"
            "于 2026年1月5日至2026年12月20日期间参加志愿服务，累计服务时长 38.5 小时。") in body
    assert "特此证明。" in body


def test_the_table_gives_sessions_hours_and_content_under_the_chinese_label_of_each_kind():
    table = without_spaces(page_texts(render_proof(a_proof()))[0])

    assert "服务类别次数时长（小时）服务内容" in table
    assert "巡访1230.5网格巡访12次（兰山区金雀山街道一网格）" in table
    assert "志愿服务活动39文明交通劝导；垃圾分类宣传；敬老院探访" in table
    assert "时长调整1-1补录2026年3月2日巡访时长" in table
    assert "合计38.5" in table
    for kind in ("patrol", "activity", "adjustment"):
        assert kind not in table


def test_the_issuing_organisation_and_date_close_the_proof():
    text = page_texts(render_proof(a_proof()))[0]

    assert "出具单位（盖章）：临沂市志愿者总会" in text
    assert "2027年1月10日" in text


@pytest.mark.parametrize(("hours", "printed"), [
    (12.5, "12.5"), (12.0, "12"), (12, "12"), (12.25, "12.3"), (0.05, "0.1"), (3.14159, "3.1"), (-1.25, "-1.3"),
    (0, "0"), (1234.56, "1234.6"),
])
def test_hours_are_printed_with_at_most_one_decimal(hours, printed):
    assert hours_text(hours) == printed


def test_the_proof_prints_hours_with_at_most_one_decimal():
    proof = a_proof(total_hours=12.25, lines=[ProofLine("patrol", 5, 12.25, "网格巡访 5 次")])

    text = without_spaces(page_texts(render_proof(proof))[0])

    assert "累计服务时长12.3小时" in text
    assert "巡访512.3" in text
    assert "12.25" not in text


def test_a_sealed_year_says_its_figures_no_longer_change():
    text = page_texts(render_proof(a_proof(sealed=True)))[0]

    assert "2026年度服务时长已结算封存，以上数据不再变更。" in text
    assert "尚未结算" not in text


def test_an_open_year_says_its_figures_are_as_of_the_issue_date():
    text = page_texts(render_proof(a_proof(sealed=False)))[0]

    assert "2026年度服务时长尚未结算，以上数据截至出具日期。" in text
    assert "封存" not in text


def test_text_typed_by_people_is_printed_as_typed_not_read_as_markup():
    proof = a_proof(name="A&B <b>张</b>", organization="<font size=40>队</font>",
                    lines=[ProofLine("activity", 1, 2, "清扫 <br/> & 宣传 <i>小区</i>")])

    text = without_spaces(page_texts(render_proof(proof))[0])

    assert "兹证明A&B<b>张</b>（" in text
    assert "系<fontsize=40>队</font>志愿者" in text
    assert "清扫<br/>&宣传<i>小区</i>" in text


def test_an_unknown_kind_of_service_is_refused():
    with pytest.raises(ValueError, match="training"):
        render_proof(a_proof(lines=[ProofLine("training", 1, 2, "培训")]))


# --- how to verify it -------------------------------------------------------------------------

@pytest.mark.parametrize("verify_url", [
    VERIFY_URL,
    "https://woodpecker.linyi.example.cn/v1/proofs/Z9Y8-X7W6-V5U4?lang=zh-CN&from=print",
])
def test_the_qr_code_encodes_exactly_the_verify_url(verify_url):
    pdf = render_proof(a_proof(verify_url=verify_url))

    assert qr_codes_by_page(pdf) == [[verify_url]]


def test_the_proof_tells_the_reader_to_scan_the_code_or_visit_the_address():
    text = page_texts(render_proof(a_proof()))[0]

    assert "扫描左侧二维码，或在浏览器中访问以下网址，核验本证明的真伪：" in unwrapped(text)
    assert VERIFY_URL in text.splitlines()


@pytest.mark.parametrize(("configured", "base"), [
    (None, "http://127.0.0.1:8003"),  # where `make up` serves hours
    ("https://woodpecker.linyi.example.cn", "https://woodpecker.linyi.example.cn"),
    ("https://woodpecker.linyi.example.cn:8443/hours/", "https://woodpecker.linyi.example.cn:8443/hours"),
])
def test_the_link_leads_under_the_configured_public_address_with_its_port_and_path(configured, base):
    env = {} if configured is None else {"HOURS_PUBLIC_URL": configured}

    assert HoursSettings.from_env(env).public_url == base


@pytest.mark.parametrize("configured", [
    "ftp://hours.example.cn", "hours.example.cn", "//hours.example.cn", "https://", "javascript:alert(1)",
    "https://user:secret@hours.example.cn", "https://hours.example.cn/?next=//elsewhere.example",
    "https://hours.example.cn/#top", "https://hours.example.cn?", "https://hours.example.cn:99999",
    "https://hours.example.cn:0", "https://hours example.cn", "https://hours.example.cn/\n",
])
def test_a_public_address_that_is_not_a_plain_http_base_is_refused(configured):
    with pytest.raises(ValueError, match="HOURS_PUBLIC_URL"):
        HoursSettings.from_env({"HOURS_PUBLIC_URL": configured})


# --- long proofs ------------------------------------------------------------------------------

def test_a_long_content_line_flows_over_pages_with_every_character_kept():
    titles = activity_titles(120)
    proof = a_proof(total_hours=430.5, lines=[ProofLine("patrol", 12, 30.5, "网格巡访 12 次"),
                                              ProofLine("activity", 120, 400, titles)])

    pdf = render_proof(proof)
    texts = page_texts(pdf)

    assert len(texts) > 1
    assert titles in stitched(texts)
    assert "志愿服务活动120400第1期" in without_spaces(texts[0])


def test_many_lines_flow_over_pages_with_every_line_kept_once():
    lines = [ProofLine("adjustment", 1, 0.5, f"补录第{number}次网格巡访时长") for number in range(1, 81)]
    proof = a_proof(total_hours=40, lines=lines)

    texts = page_texts(render_proof(proof))
    everything = without_spaces("".join(texts))

    assert len(texts) > 1
    for number in range(1, 81):
        assert everything.count(f"时长调整10.5补录第{number}次网格巡访时长") == 1
    assert everything.count("合计40") == 1


@pytest.mark.parametrize("lines", [
    [ProofLine("activity", 120, 400, activity_titles(120))],
    [ProofLine("adjustment", 1, 0.5, f"补录第{number}次网格巡访时长") for number in range(1, 81)],
], ids=["long content", "many lines"])
def test_every_page_of_a_long_proof_repeats_the_header_number_code_and_page_count(lines):
    texts = page_texts(render_proof(a_proof(lines=lines)))

    for page_number, text in enumerate(texts, start=1):
        assert without_spaces(text).count("服务类别次数时长（小时）服务内容") == 1
        assert "证明编号：WP-2026-000123" in text
        assert "验证码：7K3M-Q9XD-2FHP" in text
        assert f"第 {page_number} 页 共 {len(texts)} 页" in text


@pytest.mark.parametrize("lines", [
    [ProofLine("activity", 120, 400, activity_titles(120))],
    [ProofLine("adjustment", 1, 0.5, f"补录第{number}次网格巡访时长") for number in range(1, 81)],
], ids=["long content", "many lines"])
def test_a_long_proof_ends_with_the_issuer_and_the_qr_code_together_on_its_last_page(lines):
    pdf = render_proof(a_proof(lines=lines))
    texts = page_texts(pdf)

    assert [page for page, text in enumerate(texts) if "出具单位（盖章）" in text] == [len(texts) - 1]
    assert qr_codes_by_page(pdf) == [[]] * (len(texts) - 1) + [[VERIFY_URL]]


@pytest.mark.parametrize("line_count", range(36, 46))
def test_the_closing_is_never_split_over_two_pages(line_count):
    # Around forty lines the table ends near the foot of the second page: without being kept together,
    # the issuer and the QR code would land on different pages.
    lines = [ProofLine("adjustment", 1, 0.5, f"补录第{number}次网格巡访时长") for number in range(1, line_count + 1)]
    texts = page_texts(render_proof(a_proof(lines=lines)))

    for closing in ("特此证明。", "出具单位（盖章）", "扫描左侧二维码"):
        assert [page for page, text in enumerate(texts) if closing in text] == [len(texts) - 1]


def test_a_proof_with_no_lines_still_renders_its_total():
    text = without_spaces(page_texts(render_proof(a_proof(lines=[], total_hours=0)))[0])

    assert "累计服务时长0小时" in text
    assert "服务类别次数时长（小时）服务内容合计0" in text
