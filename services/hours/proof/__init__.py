"""The proof of service (志愿服务证明) a volunteer downloads: an A4 PDF laid out like the recommended format of
民发〔2015〕149号 and 《志愿服务记录与证明出具办法（试行）》, with a QR code that leads to its online check.

Every character is set in Noto Serif SC, embedded as a subset of what the page draws (`typeface`), so that a
school's or an employer's reader shows the same page as ours, whatever fonts it has. A character the font lacks
(a rare one in a name, say) is printed as 〓 and listed by its code point on the page, never left out unseen.
Equal proofs make equal bytes (ReportLab's invariant mode), so that a proof is rendered once and then kept.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, fields
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from . import typeface

# Everything is set in it, tables and the QR code's drawing included: ReportLab starts each of them in Helvetica,
# which would be a font the PDF names without embedding it.
FONT = typeface.FONT_NAME

KIND_LABELS = {"patrol": "巡访", "activity": "志愿服务活动", "adjustment": "时长调整"}
MARGIN = 25 * mm
QR_SIDE = 32 * mm
# 服务类别 | 次数 | 时长（小时） | 服务内容: the content column takes what the A4 text width leaves.
COLUMN_WIDTHS = [28 * mm, 14 * mm, 26 * mm, A4[0] - 2 * MARGIN - 68 * mm]
CELL_PADDING = 6
CONTENT_PIECE_HEIGHT = 6 * 15  # six lines of CELL: a piece of content never leaves much of a page empty


@dataclass(frozen=True)
class ProofLine:
    """Hours and content of one kind of service."""

    kind: str  # "patrol" | "activity" | "adjustment"
    sessions: int
    hours: float
    content: str


@dataclass(frozen=True)
class Proof:
    number: str
    code: str
    verify_url: str  # the QR code encodes exactly this
    name: str
    volunteer_id: str
    phone_masked: str
    organization: str
    year: int
    period_start: date
    period_end: date
    total_hours: float
    lines: list[ProofLine]
    issuer: str
    issued_on: date
    sealed: bool  # the year is closed: its figures can no longer change


def hours_text(hours: float) -> str:
    """At most one decimal, half up as people round ("12.25" → "12.3"), and no ".0" on whole hours."""
    rounded = Decimal(str(hours)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{rounded:f}".removesuffix(".0")


def date_text(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _style(name: str, size: float, leading: float, **options) -> ParagraphStyle:
    # CJK wrapping breaks between any two characters: Chinese has no spaces to break at.
    return ParagraphStyle(name, fontName=FONT, fontSize=size, leading=leading, wordWrap="CJK", **options)


TITLE = _style("title", 22, 30, alignment=TA_CENTER, spaceAfter=6 * mm)
NUMBER = _style("number", 10.5, 15, alignment=TA_RIGHT, spaceAfter=6 * mm)
BODY = _style("body", 12, 22, firstLineIndent=24)  # the customary two-character indent
CELL = _style("cell", 10.5, 15)
CELL_CENTERED = _style("cell-centered", 10.5, 15, alignment=TA_CENTER)
SIGNATURE = _style("signature", 12, 22, alignment=TA_RIGHT)
NOTE = _style("note", 9.5, 14, textColor=colors.HexColor("#333333"))
FOOTER = _style("footer", 9, 12)


def _paragraph(text: str, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text, escaped, because names and titles typed by people must not be taken for
    reportlab's paragraph markup; a character the font lacks is printed as the mark of a missing one."""
    return Paragraph(escape("".join(map(_printable, text))), style)


def _printable(character: str) -> str:
    """The character, or what stands for it where the font lacks it: a space for a space, nothing for an invisible
    format character (a zero-width space, a direction mark), and the mark of a missing one for anything else."""
    if typeface.font().outlines.has(character):
        return character
    if character.isspace():
        return " "
    return "" if unicodedata.category(character) == "Cf" else typeface.MISSING_MARK


def _unprintable(proof: Proof) -> list[str]:
    """The characters of the proof's own text (names, titles, codes) printed as the mark of a missing one."""
    texts = [value for value in (getattr(proof, field.name) for field in fields(proof)) if isinstance(value, str)]
    texts += [line.content for line in proof.lines]
    return sorted({character for text in texts for character in text
                   if _printable(character) == typeface.MISSING_MARK != character})


def _body(proof: Proof) -> Paragraph:
    return _paragraph(
        f"兹证明 {proof.name}（志愿者编号：{proof.volunteer_id}，联系电话：{proof.phone_masked}）系{proof.organization}"
        f"志愿者，于 {date_text(proof.period_start)}至{date_text(proof.period_end)}期间参加志愿服务，"
        f"累计服务时长 {hours_text(proof.total_hours)} 小时。服务时长及内容如下：",
        BODY,
    )


def _hours_table(proof: Proof) -> Table:
    def centered(text: str) -> Paragraph:
        return _paragraph(text, CELL_CENTERED)

    rows: list[list] = [[centered(title) for title in ("服务类别", "次数", "时长（小时）", "服务内容")]]
    ends_of_lines = [0]  # the rows a horizontal rule goes under: the header, and the last row of each line
    continued = []  # rows whose content goes on in the next row, with no gap between them
    for line in proof.lines:
        first, *rest = _content_pieces(line.content)
        rows.append([centered(_kind_label(line.kind)), centered(str(line.sessions)), centered(hours_text(line.hours)),
                     first])
        for piece in rest:
            continued.append(len(rows) - 1)
            # An empty list draws nothing, where "" would draw an empty string that text extraction reads as a space.
            rows.append([[], [], [], piece])
        ends_of_lines.append(len(rows) - 1)
    rows.append([centered("合计"), [], centered(hours_text(proof.total_hours)), []])
    table = Table(rows, colWidths=COLUMN_WIDTHS, repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), FONT),
        ("BOX", (0, 0), (-1, -1), 0.5, colors.black),
        ("LINEAFTER", (0, 0), (-2, -1), 0.5, colors.black),
        *[("LINEBELOW", (0, row), (-1, row), 0.5, colors.black) for row in ends_of_lines],
        ("LINEBELOW", (0, "splitlast"), (-1, "splitlast"), 0.5, colors.black),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 4),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
        *[command for row in continued for command in (("BOTTOMPADDING", (0, row), (-1, row), 0),
                                                       ("TOPPADDING", (0, row + 1), (-1, row + 1), 0))],
    ]))
    return table


def _content_pieces(content: str) -> list[Paragraph]:
    """The content cell cut into pieces of a few lines, each set in a row of its own under the line's first row.

    A table breaks across pages only between rows, and a long list of activity titles in one row would not fit
    on a page. reportlab can split inside a row, but then repeats the header rows wrongly; and splitting a
    paragraph twice over adds spaces that are not in the text. So each piece is cut from the plain text.
    """
    pieces, rest = [], content
    while rest:
        length = _longest_fitting_beginning(rest)
        pieces.append(_paragraph(rest[:length], CELL))
        rest = rest[length:]
    return pieces or [_paragraph("", CELL)]


def _longest_fitting_beginning(text: str) -> int:
    """How many characters of `text` fit in one piece: doubling, then bisection, since the height only grows
    with the text, and a piece is short next to a long text."""
    fits, too_long = 0, 1
    while _fits(text[:too_long]):
        if too_long == len(text):
            return too_long
        fits, too_long = too_long, min(2 * too_long, len(text))
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        fits, too_long = (middle, too_long) if _fits(text[:middle]) else (fits, middle)
    return max(fits, 1)


def _fits(content: str) -> bool:
    return _paragraph(content, CELL).wrap(COLUMN_WIDTHS[3] - 2 * CELL_PADDING, A4[1])[1] <= CONTENT_PIECE_HEIGHT


def _kind_label(kind: str) -> str:
    if kind not in KIND_LABELS:
        raise ValueError(f"kind must be one of {sorted(KIND_LABELS)}, not {kind!r}")
    return KIND_LABELS[kind]


def _seal_note(proof: Proof) -> Paragraph:
    if proof.sealed:
        return _paragraph(f"{proof.year}年度服务时长已结算封存，以上数据不再变更。", NOTE)
    return _paragraph(f"{proof.year}年度服务时长尚未结算，以上数据截至出具日期。", NOTE)


def _missing_note(missing: list[str]) -> list[Paragraph]:
    """What each 〓 stands for, by code point: the reader can tell a gap in the type from the name itself."""
    if not missing:
        return []
    code_points = "、".join(f"U+{ord(character):04X}" for character in missing)
    return [_paragraph(f"注：字库未收录的字以“{typeface.MISSING_MARK}”代替，依次为 {code_points}。", NOTE)]


def _closing(proof: Proof) -> KeepTogether:
    """特此证明, the issuer with room for its seal, and how to check the proof: never split over two pages."""
    return KeepTogether([
        Spacer(0, 8 * mm), _paragraph("特此证明。", BODY), Spacer(0, 12 * mm),
        _paragraph(f"出具单位（盖章）：{proof.issuer}", SIGNATURE), _paragraph(date_text(proof.issued_on), SIGNATURE),
        Spacer(0, 10 * mm), _verification(proof),
    ])


def _verification(proof: Proof) -> Table:
    qr = QrCodeWidget(proof.verify_url, barLevel="M")
    left, bottom, right, top = qr.getBounds()
    drawing = Drawing(QR_SIDE, QR_SIDE, transform=[QR_SIDE / (right - left), 0, 0, QR_SIDE / (top - bottom), 0, 0],
                      initialFontName=FONT)
    drawing.add(qr)
    how_to_verify = [
        _paragraph(f"验证码：{proof.code}", CELL),
        _paragraph("扫描左侧二维码，或在浏览器中访问以下网址，核验本证明的真伪：", CELL),
        _paragraph(proof.verify_url, CELL),  # a line of its own, to be typed from paper
        _paragraph("本证明依据志愿服务记录免费出具。", CELL),
    ]
    table = Table([[drawing, how_to_verify]], colWidths=[QR_SIDE + 4 * mm, None])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (0, 0), 0),
                               ("FONTNAME", (0, 0), (-1, -1), FONT)]))
    return table


def _numbered_canvas(proof: Proof) -> type[Canvas]:
    """A canvas that writes "第 n 页 共 N 页" with the number and code on every page, so that a page gone
    missing, or one taken from another proof, shows."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self) -> None:
            # The page count is known only at the end: keep each page and write the footers in save().
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for page_number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                for text, alignment in ((f"证明编号：{proof.number}", TA_LEFT), (f"验证码：{proof.code}", TA_CENTER),
                                        (f"第 {page_number} 页 共 {len(self._pages)} 页", TA_RIGHT)):
                    footer = _paragraph(text, ParagraphStyle("footer", FOOTER, alignment=alignment))
                    footer.wrapOn(self, A4[0] - 2 * MARGIN, MARGIN)
                    footer.drawOn(self, MARGIN, 12 * mm)
                super().showPage()
            super().save()

    return NumberedCanvas


def render_proof(proof: Proof) -> bytes:
    """The proof as an A4 PDF."""
    typeface.font()  # registered with ReportLab before any paragraph measures its text
    out = BytesIO()
    document = SimpleDocTemplate(out, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=30 * mm,
                                 bottomMargin=MARGIN, title=f"志愿服务证明 {proof.number}", author=proof.issuer,
                                 lang="zh-CN", invariant=True, initialFontName=FONT)
    document.build(
        [_paragraph("志愿服务证明", TITLE), _paragraph(f"编号：{proof.number}", NUMBER), _body(proof),
         Spacer(0, 4 * mm), _hours_table(proof), Spacer(0, 2 * mm), _seal_note(proof),
         *_missing_note(_unprintable(proof)), _closing(proof)],
        canvasmaker=_numbered_canvas(proof),
    )
    return out.getvalue()
