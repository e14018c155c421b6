"""What a notice says: a title, a body and a link per kind and language, from template files a city can edit.

The shipped files are `templates/<language>/<kind>.txt` beside this module; a city's folder
(NOTIFY_TEMPLATES_DIR) with the same layout replaces any of them file by file. A file is a Jinja template
of plain text: its first line is the title, the rest (after a blank line) is the body. Lines holding only
`{% ... %}` or `{# ... #}` leave nothing behind, so a file may open with a comment listing its variables
and `{% set %}` the words it needs.

A city's office edits these files, so they are rendered in Jinja's sandbox (no Python internals, no
mutation of what they are given) with strict undefined variables: a misspelt name fails `check()` when
the service starts instead of leaving a blank in a notice. Text is plain, never HTML, so nothing is escaped.
"""
from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

KINDS: tuple[str, ...] = (
    "report.dispatched", "report.rectified", "report.closed", "report.rejected", "report.joined",
    "case.event",
    "office.overdue", "office.extension_requested", "office.disputed",
    "hours.credited", "hours.reversed",
    "volunteer.level_changed", "volunteer.minimum_at_risk",
    "grid.digest",
    "email.confirmation",
)
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
SHIPPED_DIR = Path(__file__).with_name("templates")
TITLE_MAX_CHARS = 120
SUFFIX = ".txt"
# Line breaks inside a value stand in for this while the text is split into title and body, so that a
# note of several lines in the title does not push the rest of the title into the body.
_VALUE_BREAK = "\x1e"


class TemplateError(ValueError):
    """A template that does not load or render; the message names the file, the line if known, and why."""


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    link: str


def format_hours(value: float) -> str:
    """Hours to at most one decimal, without a trailing ".0": 2 → "2", 2.5 → "2.5", 2.25 → "2.3"."""
    rounded = Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    text = f"{rounded:f}".removesuffix(".0")
    return "0" if text == "-0" else text


_REPORT = "6745a1c2e4b0f3a9d2c81e07"
_CASE = "6745a1c3e4b0f3a9d2c81e0a"
_SITE = "https://woodpecker.example.cn"
_ITEMS = [
    {"report_id": "6741b0d2e4b0f3a9d2c80f11", "category_name": "占道经营、乱摆摊点",
     "submitted_at": "2026-11-23 09:12", "status_name": "处理中"},
    {"report_id": "6742c7a8e4b0f3a9d2c8104c", "category_name": "车辆乱停乱放",
     "submitted_at": "2026-11-24 16:40", "status_name": "已整改待核查"},
    {"report_id": "6744e015e4b0f3a9d2c81d93", "category_name": "环境脏乱差、暴露垃圾",
     "submitted_at": "2026-11-26 07:55", "status_name": "已提交"},
]

SAMPLE_CONTEXTS: dict[str, dict] = {
    "report.dispatched": {
        "report_id": _REPORT, "case_id": _CASE, "status": "dispatched", "category_name": "环境脏乱差、暴露垃圾",
        "department_name": "环卫处", "due_at": "2026-11-26 08:31", "link": f"{_SITE}/reports/{_REPORT}"},
    "report.rectified": {
        "report_id": _REPORT, "case_id": _CASE, "status": "rectified", "category_name": "环境脏乱差、暴露垃圾",
        "department_name": "环卫处", "due_at": "2026-11-26 08:31", "note": "已清运垃圾并冲洗地面，增设分类垃圾桶一组。",
        "link": f"{_SITE}/reports/{_REPORT}"},
    "report.closed": {
        "report_id": _REPORT, "case_id": _CASE, "status": "closed", "category_name": "环境脏乱差、暴露垃圾",
        "department_name": "环卫处", "due_at": "2026-11-26 08:31", "link": f"{_SITE}/reports/{_REPORT}"},
    "report.rejected": {
        "report_id": _REPORT, "case_id": _CASE, "status": "rejected", "category_name": "乱贴乱画小广告",
        "department_name": "", "due_at": None, "reason": "out_of_scope", "note": "该处为私人住宅院内，不属于公共区域。",
        "link": f"{_SITE}/reports/{_REPORT}"},
    "report.joined": {
        "report_id": _REPORT, "case_id": _CASE, "category_name": "车辆乱停乱放", "status": "accepted",
        "department_name": "交警支队", "due_at": "2026-11-26 08:31", "merged_from": None,
        "link": f"{_SITE}/reports/{_REPORT}"},
    "case.event": {
        "action": "dispatched", "case_id": _CASE, "category_name": "环境脏乱差、暴露垃圾", "department_name": "环卫处",
        "status": "dispatched", "due_at": "2026-11-26 08:31", "grid_name": "金雀山街道一网格",
        "description": "金雀山路与沂蒙路交叉口东北角垃圾堆放两天未清运。", "overdue": False, "escalation_level": 0,
        "note": "", "link": f"{_SITE}/cases/{_CASE}"},
    "office.overdue": {
        "case_id": _CASE, "category_name": "环境脏乱差、暴露垃圾", "department_name": "环卫处",
        "due_at": "2026-11-26 08:31", "escalation_level": 1, "grid_name": "金雀山街道一网格",
        "link": f"{_SITE}/cases/{_CASE}"},
    "office.extension_requested": {
        "case_id": _CASE, "category_name": "基础设施损坏", "department_name": "市政公用事业服务中心", "hours": 48,
        "reason": "破损井盖为非标尺寸，需定制更换，预计两日内到货。", "link": f"{_SITE}/cases/{_CASE}"},
    "office.disputed": {
        "case_id": _CASE, "category_name": "占道经营、乱摆摊点", "department_name": "交警支队",
        "note": "该路段占道经营属城市管理部门职责，建议转城市管理局。", "link": f"{_SITE}/cases/{_CASE}"},
    "hours.credited": {
        "hours": 2.5, "kind": "patrol", "note": "金雀山街道一网格巡访，发现问题 3 处。", "service_date": "2026-11-24",
        "link": f"{_SITE}/me/hours"},
    "hours.reversed": {
        "hours": -1.5, "note": "与同日志愿服务活动时段重叠，按规定冲减。", "service_date": "2026-11-24",
        "link": f"{_SITE}/me/hours"},
    "volunteer.level_changed": {
        "star_level": 2, "previous_level": 1, "total_hours": 302.5, "link": f"{_SITE}/me/hours"},
    "volunteer.minimum_at_risk": {
        "year": 2026, "year_hours": 12.5, "minimum_hours": 20, "hours_short": 7.5, "link": f"{_SITE}/me/hours"},
    "grid.digest": {
        "grid_name": "金雀山街道一网格", "week": "2026-W48", "period": "11月23日至11月29日",
        "new": 7, "open": 3, "overdue": 1, "closed": 5, "open_items": _ITEMS, "overdue_items": _ITEMS[:1],
        "link": f"{_SITE}/grids/jinqueshan-1/digests/2026-W48"},
    "email.confirmation": {"code": "04817263", "expires_at": "2026-11-27 09:12", "link": f"{_SITE}/me/notifications"},
}

# Besides each sample, `check()` renders these variations of it, so that a branch the sample does not
# take (another reason, action or level, a missing deadline, a list past its limit) also fails at start.
_VARIATIONS: dict[str, tuple[dict, ...]] = {
    "report.dispatched": ({"due_at": None},),
    "report.rejected": ({"reason": "duplicate", "note": ""}, {"reason": "invalid"}),
    "report.joined": tuple({"status": s} for s in
                           ("pending_triage", "dispatched", "rectified", "closed", "rejected"))
    + ({"merged_from": "6745a1c3e4b0f3a9d2c81e0b"},),
    "case.event": tuple({"action": a} for a in
                        ("accepted", "disputed", "rectified", "closed", "reopened", "rejected",
                         "extension_requested", "extension_decided", "opened", "joined"))
    + ({"action": "overdue", "overdue": True, "escalation_level": 2, "note": "已逾期 6 小时。"},
       {"action": "disputed", "status": "pending_triage", "department_name": None, "due_at": None}),
    "hours.credited": ({"kind": "activity", "hours": 4}, {"kind": "adjustment", "hours": 1, "note": ""}),
    "volunteer.level_changed": ({"star_level": 1, "previous_level": 2, "total_hours": 295},
                                {"star_level": 0, "previous_level": 1, "total_hours": 98}),
    "grid.digest": ({"open_items": _ITEMS * 8, "overdue_items": _ITEMS * 7},
                    {"new": 0, "open": 0, "overdue": 0, "open_items": [], "overdue_items": []}),
}


class Templates:
    """The notices' templates: a city's folder first, then the shipped ones."""

    def __init__(self, override_dir: Path | None = None):
        self.override_dir = Path(override_dir) if override_dir is not None else None
        folders = [self.override_dir, SHIPPED_DIR] if self.override_dir is not None else [SHIPPED_DIR]
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(folders, encoding="utf-8"),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            # What runs is what check() passed at start: an edit takes effect on restart, checked again.
            auto_reload=False,
        )
        self._env.filters["hours"] = format_hours
        self._env.finalize = _hold_line_breaks

    def render(self, kind: str, language: str, context: dict) -> Rendered:
        if kind not in KINDS:
            raise KeyError(kind)
        language = _supported(language)
        path = self.path_of(kind, language)
        try:
            text = self._env.get_template(f"{language}/{kind}{SUFFIX}").render(context)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(f"{path}, line {error.lineno}: {error.message}") from error
        except Exception as error:  # whatever a city's template does wrong, the notice names the file
            raise TemplateError(f"{path}{_line_in(error, path)}: {type(error).__name__}: {error}") from error
        title, body = _split(text)
        if not title:
            raise TemplateError(f"{path}: the first line (the title) is empty")
        if not body:
            raise TemplateError(f"{path}: the body (after the title) is empty")
        return Rendered(title=_one_line(title), body=body, link=context["link"])

    def check(self) -> None:
        if self.override_dir is not None:
            self._check_override_files()
        for kind in KINDS:
            for context in _samples(kind):
                for language in LANGUAGES:
                    self.render(kind, language, context)

    def path_of(self, kind: str, language: str) -> Path:
        """The file a kind is rendered from in a language: the city's, else the shipped one."""
        relative = Path(_supported(language), f"{kind}{SUFFIX}")
        if self.override_dir is not None and (self.override_dir / relative).is_file():
            return self.override_dir / relative
        return SHIPPED_DIR / relative

    def _check_override_files(self) -> None:
        """A city's file that replaces nothing (a misspelt name) would be ignored without a word."""
        if not self.override_dir.is_dir():
            raise TemplateError(f"{self.override_dir}: the templates folder does not exist")
        expected = {Path(language, f"{kind}{SUFFIX}") for language in LANGUAGES for kind in KINDS}
        for path in sorted(self.override_dir.rglob(f"*{SUFFIX}")):
            if path.relative_to(self.override_dir) not in expected:
                raise TemplateError(f"{path}: replaces no template; expected <language>/<kind>{SUFFIX} with "
                                    f"language in {', '.join(LANGUAGES)} and kind in {', '.join(KINDS)}")


def _supported(language: str) -> str:
    """"en", "EN", "en-US", "en_GB" → en; anything not offered → the default."""
    base = (language or "").replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def _samples(kind: str) -> Iterator[dict]:
    sample = SAMPLE_CONTEXTS[kind]
    yield sample
    for variation in _VARIATIONS.get(kind, ()):
        yield {**sample, **variation}


def _hold_line_breaks(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", _VALUE_BREAK)
    return value


def _split(text: str) -> tuple[str, str]:
    """The first line, and the rest with no trailing spaces and never two blank lines in a row."""
    title, _, body = text.strip().partition("\n")
    title = title.replace(_VALUE_BREAK, " ")
    lines: list[str] = []
    for line in body.replace(_VALUE_BREAK, "\n").strip("\n").splitlines():
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return title.strip(), "\n".join(lines).strip("\n")


def _one_line(title: str) -> str:
    title = " ".join(title.split())
    if len(title) <= TITLE_MAX_CHARS:
        return title
    return title[:TITLE_MAX_CHARS - 1].rstrip() + "…"


def _line_in(error: BaseException, path: Path) -> str:
    """Jinja puts the template's lines into the traceback; the deepest one is where it failed."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    return f", line {lines[-1]}" if lines else ""
