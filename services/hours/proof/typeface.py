"""The proof's typeface, Noto Serif SC (SIL Open Font License 1.1, from the `pylopdf-fonts-zh-cn` package), embedded
in every proof as a subset of the glyphs that proof draws: any reader, pdfium, Poppler or a print shop's RIP,
shows the same page without a Chinese font of its own.

ReportLab embeds TrueType outlines only, and Noto ships CFF (PostScript) ones. So ReportLab is given a font of
metrics alone (every character's width, no outline), from which it lays out the page and picks each document's
characters; when it writes a document it asks for the font program of those characters, and only then are their
outlines converted to TrueType's quadratic curves, each glyph once in the life of the process.
"""
from __future__ import annotations

import copy
import threading
from io import BytesIO

import pylopdf_fonts_zh_cn
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont as OpenTypeFont
from fontTools.ttLib import newTable
from fontTools.ttLib.tables._c_m_a_p import CmapSubtable
from fontTools.ttLib.tables._g_l_y_f import Glyph
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_NAME = "NotoSerifSC"
# 〓 (the geta mark) is what Chinese typesetting has long printed where the type case lacks a character.
MISSING_MARK = "〓"
# How far a converted quadratic curve may stray from the original cubic, in font units (1/1000 em): under a
# hundredth of a millimetre at the proof's largest size.
CURVE_TOLERANCE = 1.0
# Taken into each program from Noto: its metrics, its names, and its copyright and licence notices.
KEPT_TABLES = ("head", "hhea", "OS/2", "name")
# fontTools keeps every outline it has decoded (about 9 KB each): the font is read afresh after this many, so
# that a process holds a few megabytes of them rather than, in time, the whole font's.
OUTLINES_BEFORE_REREADING = 2000


class Outlines:
    """Noto Serif SC's characters, widths and notices, and its glyphs converted to TrueType so far (a few hundred
    bytes each, at most the whole font's 31,058)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._read()
        self.characters: dict[int, str] = self._font.getBestCmap()
        self._glyph_names = self._font.getGlyphOrder()
        self._advances = {name: advance for name, (advance, _) in self._font["hmtx"].metrics.items()}
        self._kept = {tag: self._font[tag] for tag in KEPT_TABLES}
        self._converted: dict[str, bytes] = {}
        self._lock = threading.Lock()  # fontTools decodes its tables and outlines without one

    def _read(self) -> None:
        self._font = OpenTypeFont(self._path, lazy=True)
        self._glyph_set = self._font.getGlyphSet()
        self._decoded = 0

    def has(self, character: str) -> bool:
        return ord(character) in self.characters

    def truetype_glyphs(self, names: list[str]) -> dict[str, Glyph]:
        """These glyphs with quadratic outlines, each a new object: the caller may change them."""
        with self._lock:
            for name in names:
                if name not in self._converted:
                    self._converted[name] = self._convert(name)
            if self._decoded >= OUTLINES_BEFORE_REREADING:
                self._read()
        glyphs = {name: Glyph(self._converted[name]) for name in names}
        for glyph in glyphs.values():
            glyph.expand(None)
        return glyphs

    def _convert(self, name: str) -> bytes:
        pen = TTGlyphPen(None)
        # TrueType's outer contours turn clockwise, PostScript's the other way round.
        self._glyph_set[name].draw(Cu2QuPen(pen, CURVE_TOLERANCE, reverse_direction=True))
        self._decoded += 1
        return pen.glyph().compile(None)

    def program(self, glyphs: dict[str, Glyph], cmap: CmapSubtable) -> bytes:
        """A TrueType font of these glyphs (the first one .notdef) with Noto's widths, names and notices."""
        builder = FontBuilder(self._kept["head"].unitsPerEm, isTTF=True)
        builder.setupGlyphOrder(list(glyphs))
        builder.setupGlyf(glyphs)
        builder.setupHorizontalMetrics({name: (self._advances[name], getattr(glyph, "xMin", 0))
                                        for name, glyph in glyphs.items()})
        for tag, table in self._kept.items():
            builder.font[tag] = copy.deepcopy(table)  # compiling a font recomputes some of its values in place
        builder.setupPost(keepGlyphNames=False)
        builder.setupMaxp()
        builder.font["cmap"] = newTable("cmap")
        builder.font["cmap"].tableVersion, builder.font["cmap"].tables = 0, [cmap]
        builder.font.recalcTimestamp = False  # Noto's dates, not today's: equal proofs are equal bytes
        out = BytesIO()
        builder.font.save(out)
        return out.getvalue()

    def metrics_font(self) -> bytes:
        """Every glyph of Noto Serif SC with its width and no outline, and its whole Unicode cmap."""
        cmap = CmapSubtable.newSubtable(12)
        cmap.platformID, cmap.platEncID, cmap.language, cmap.cmap = 3, 10, 0, self.characters
        return self.program({name: Glyph() for name in self._glyph_names}, cmap)

    @property
    def bounding_box(self) -> list[float]:
        """Of the whole font, in thousandths of an em as a PDF font descriptor has it."""
        head = self._kept["head"]
        return [1000 * value / head.unitsPerEm for value in (head.xMin, head.yMin, head.xMax, head.yMax)]


class EmbeddedFont(TTFont):
    """ReportLab's font of Noto's metrics, whose subsets are embedded with their converted outlines."""

    def __init__(self, name: str, outlines: Outlines) -> None:
        super().__init__(name, BytesIO(outlines.metrics_font()), shapable=False)
        self.outlines = outlines
        self.face.bbox = outlines.bounding_box  # the metrics font has no outline to measure
        self.face.makeSubset = self._subset_program  # ReportLab asks its face for each subset's program

    def _subset_program(self, subset: list[int]) -> bytes:
        """The program of one of ReportLab's subsets: up to 256 characters, byte code n drawing subset[n]."""
        codes = {code: self.outlines.characters.get(character, ".notdef") for code, character in enumerate(subset)}
        # A PDF reads a simple TrueType font through its (1, 0) cmap, by the byte codes of the text.
        cmap = CmapSubtable.newSubtable(6)
        cmap.platformID, cmap.platEncID, cmap.language, cmap.cmap = 1, 0, 0, codes
        names = list(dict.fromkeys([".notdef", *codes.values()]))
        return self.outlines.program(self.outlines.truetype_glyphs(names), cmap)


_registered: EmbeddedFont | None = None
_registering = threading.Lock()


def font() -> EmbeddedFont:
    """Noto Serif SC, registered with ReportLab as FONT_NAME: read the first time a process asks (about half a
    second), then kept."""
    global _registered
    with _registering:
        if _registered is None:
            _registered = EmbeddedFont(FONT_NAME, Outlines(str(pylopdf_fonts_zh_cn.serif_path())))
            pdfmetrics.registerFont(_registered)
        return _registered
