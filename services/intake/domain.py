"""Intake's rules: where a report belongs, what it duplicates, how case events move its status.

Plain Python over plain dicts and dataclasses: no Flask, no pymongo, no kombu.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shapely import STRtree
from shapely.geometry import Point, shape

from shared.auth import Caller
from shared.errors import InvalidFields
from shared.events import Event, MalformedEvent
from shared.geo import nearest_within
from shared.reference import FIRST_YEAR, LAST_YEAR, Category, Grid, local_text
from shared.scope import Scope

# A phone's clock may run a little ahead; beyond this an observation time is a mistake.
CLOCK_SKEW = timedelta(minutes=5)

SUBMITTED, IN_PROGRESS, RECTIFIED, CLOSED, REJECTED, DUPLICATE = (
    "submitted", "in_progress", "rectified", "closed", "rejected", "duplicate")
STATUSES = (SUBMITTED, IN_PROGRESS, RECTIFIED, CLOSED, REJECTED, DUPLICATE)
OPEN_STATUSES = (SUBMITTED, IN_PROGRESS, RECTIFIED)
STATUS_ZH = {SUBMITTED: "已提交", IN_PROGRESS: "处理中", RECTIFIED: "已整改待核查", CLOSED: "已办结",
             REJECTED: "已驳回", DUPLICATE: "重复上报"}


# --- where a report belongs -------------------------------------------------------------------

class GridMap:
    """Finds the grid cell holding a point, with real polygon geometry (GeoJSON is lng, lat)."""

    def __init__(self, grids: dict[str, Grid]):
        self._grids = list(grids.values())
        self._shapes = [shape(grid.geometry) for grid in self._grids]
        self._index = STRtree(self._shapes)

    def locate(self, lat: float, lng: float) -> Grid | None:
        point = Point(lng, lat)
        hits = sorted(self._index.query(point, predicate="intersects"))
        return self._grids[hits[0]] if hits else None


# --- who sees what ---------------------------------------------------------------------------

def visible_to(caller: Caller) -> Scope:
    """The reports a caller may see (docs/contract.md: a volunteer their own, a grid leader their grid's and
    their own, a department its cases', the office all)."""
    if caller.role in ("office", "service", "association"):
        return Scope.everything()
    if caller.role == "department":
        return Scope.any_of({"department": caller.dept})
    if caller.role == "grid_leader":
        return Scope.any_of({"grid_id": caller.grid}, {"reporter_id": caller.id})
    return Scope.any_of({"reporter_id": caller.id})


# --- duplicates -------------------------------------------------------------------------------

def likely_duplicate(lat: float, lng: float, candidates: list[dict]) -> str | None:
    """The id of the nearest open report within the duplicate radius (candidates: same category)."""
    nearest = nearest_within(lat, lng, [r for r in candidates if r["status"] in OPEN_STATUSES])
    return nearest["id"] if nearest else None


# --- a new report -----------------------------------------------------------------------------

def check_new_report(fields: dict, categories: dict[str, Category], grid: Grid | None,
                     not_theirs: list[str], now: datetime) -> None:
    """`not_theirs`: the photo ids the reporter did not upload (or that were never issued)."""
    errors: dict[str, list[str]] = {}
    if fields["category"] not in categories:
        errors["category"] = [f"Unknown category; one of: {', '.join(sorted(categories))}."]
    if grid is None:
        errors["location"] = ["The location is outside every grid cell of this city."]
    if not_theirs:
        errors["photo_ids"] = [f"Not a photo you uploaded: {', '.join(not_theirs)}."]
    if len(set(fields["photo_ids"])) != len(fields["photo_ids"]):
        errors.setdefault("photo_ids", []).append("A photo is listed twice.")
    observed_at = fields.get("observed_at")
    if observed_at and observed_at > now + CLOCK_SKEW:
        errors["observed_at"] = ["Cannot be in the future."]
    if errors:
        raise InvalidFields("The report cannot be accepted as sent; see errors.", errors)


def new_report(report_id: str, reporter_id: str, fields: dict, grid: Grid, *, duplicate_of: str | None,
               now: datetime) -> dict:
    note = "已提交，等待分派" if duplicate_of is None else f"已提交；疑似与报告 {duplicate_of} 重复，一并处理"
    return {
        "id": report_id,
        "reporter_id": reporter_id,
        "category": fields["category"],
        "description": fields["description"].strip(),
        "location": fields["location"],
        "grid_id": grid.id,
        "district": grid.district,
        "photo_ids": list(fields["photo_ids"]),
        "observed_at": fields.get("observed_at") or now,
        "submitted_at": now,
        "patrol_id": fields.get("patrol_id"),
        "status": SUBMITTED,
        "case_id": None,
        "department": None,
        "duplicate_of": duplicate_of,
        "closed_at": None,
        "after_photo_ids": [],
        "timeline": [{"at": now, "status": SUBMITTED, "note": note}],
        "case_version": 0,
        "applied_events": [],
    }


# What every subscriber learns of a new report (docs/contract.md: `report.submitted` carries the report).
PUBLISHED_FIELDS = ("id", "reporter_id", "category", "description", "location", "grid_id", "district", "photo_ids",
                    "observed_at", "submitted_at", "patrol_id", "status", "case_id", "department", "duplicate_of",
                    "after_photo_ids", "timeline")


REPORT_SUBMITTED = "report.submitted"


def report_submitted(report: dict, correlation_id: str | None) -> Event:
    return Event.new(REPORT_SUBMITTED, "intake", {k: report[k] for k in PUBLISHED_FIELDS}, correlation_id)


# --- the report follows its case --------------------------------------------------------------

# What each case action means for the reporter (None: the status stays, a timeline line is added; `joined`:
# the joining report takes up the case's status, CASE_STATUS_FOR_REPORT).
CASE_ACTION_STATUS = {
    "opened": None, "joined": None, "dispatched": IN_PROGRESS, "accepted": IN_PROGRESS, "disputed": IN_PROGRESS,
    "rectified": RECTIFIED, "closed": CLOSED, "reopened": IN_PROGRESS, "rejected": REJECTED,
    "overdue": None, "extension_requested": None, "extension_decided": None,
}
CASE_STATUS_FOR_REPORT = {"pending_triage": SUBMITTED, "dispatched": IN_PROGRESS, "accepted": IN_PROGRESS,
                          "rectified": RECTIFIED, "closed": CLOSED}
REJECT_REASON_ZH = {"duplicate": "重复上报", "invalid": "不属实或信息不全", "out_of_scope": "不属于受理范围"}


def parse_case_routing_key(routing_key: str) -> tuple[str, str | None]:
    """`case.<action>.<department>` → (action, department or None)."""
    parts = routing_key.split(".")
    if len(parts) != 3 or parts[0] != "case" or parts[1] not in CASE_ACTION_STATUS or not parts[2]:
        raise ValueError(f"not a case event routing key: {routing_key!r}")
    return parts[1], None if parts[2] == "none" else parts[2]


def case_step_note(action: str, data: dict, department_name: str | None, due_at: datetime | None,
                   zone: ZoneInfo) -> str:
    """The reporter's timeline line for a case step; a deadline is given in the city's time `zone`."""
    dept = department_name or "责任部门"
    if action == "opened":
        return "已立案"
    if action == "joined" and data.get("merged_from"):
        return f"市创城办核实案卷 {data['merged_from']} 与案卷 {data.get('case_id')} 为同一问题，已合并办理"
    if action == "joined":
        return "已并入同一问题的案卷"
    if action == "dispatched":
        return f"已派遣至{dept}" + (f"，整改期限 {local_text(due_at, zone)}" if due_at else "")
    if action == "accepted":
        return f"{dept}已受理"
    if action == "disputed":
        return f"{dept}提出异议，退回市创城办重新分派"
    if action == "rectified":
        return f"{dept}已整改并反馈" + (f"：{data['note']}" if data.get("note") else "")
    if action == "closed":
        return "核查通过，已办结"
    if action == "reopened":
        return "核查未通过，已退回返工" + (f"，新期限 {local_text(due_at, zone)}" if due_at else "")
    if action == "rejected":
        reason = REJECT_REASON_ZH.get(data.get("reason"), data.get("reason") or "")
        return f"未予受理：{reason}" + (f"（{data['note']}）" if data.get("note") else "")
    if action == "overdue":
        return f"{dept}已超过整改期限，已督办"
    if action == "extension_requested":
        return f"{dept}申请延期"
    return "延期申请已批准" if data.get("approved") else "延期申请未获批准"


def reports_following(action: str, data: dict) -> list[str]:
    """The reports a case step changes: every report of the case, except that a `joined` step changes only the
    report that joined (the case goes on as it was; the other reporters learn nothing new from a duplicate), and
    the end of a case merged into another changes none: its reports follow that case, each by its `joined`."""
    if action == "rejected" and data.get("merged_into"):
        return []
    report_ids = data.get("report_ids")
    if not isinstance(report_ids, list) or not report_ids:
        raise MalformedEvent("a case event must carry report_ids")
    if action != "joined":
        return [str(report_id) for report_id in report_ids]
    joined = data.get("report_id")
    if not isinstance(joined, str) or joined not in report_ids:
        raise MalformedEvent("a case.joined event must carry the report_id of one of its report_ids")
    return [joined]


@dataclass(frozen=True)
class CaseStep:
    event_id: str
    action: str
    department: str | None
    occurred_at: datetime
    data: dict


def follow_case(report: dict, step: CaseStep, department_name: str | None, due_at: datetime | None,
                zone: ZoneInfo) -> dict | None:
    """The `$set`/`$push` a case step makes to the report, or None if it was already applied (`zone`: the
    city's time zone, in which the timeline line gives a deadline).

    Events can arrive out of order (retries, redelivery): the timeline records every step in time
    order, but the status only follows a step not older than the last one applied (`case_version`,
    the case's own counter, when routing sends it; otherwise arrival order).
    """
    if step.event_id in report["applied_events"]:
        return None
    left = report.get("left_cases") or []
    if step.data.get("case_id") in left:
        return None  # a late step of a case the report was merged away from: it is no longer the report's
    version = step.data.get("case_version")
    # A merge moves the report to another case, whose versions are its own: its `joined` starts them over.
    moving = step.action == "joined" and bool(step.data.get("merged_from")) and \
        step.data.get("case_id") != report.get("case_id")
    # Events of one routing step share its version, so only a strictly older version is stale.
    newer = moving or version is None or int(version) >= report.get("case_version", 0)
    status = CASE_ACTION_STATUS[step.action]
    if step.action == "rejected" and step.data.get("reason") == "duplicate":
        status = DUPLICATE
    if step.action == "joined":  # joining a case under way: take up its status
        status = CASE_STATUS_FOR_REPORT.get(step.data.get("status"))
    changes: dict = {"case_id": step.data.get("case_id") or report.get("case_id")}
    if moving:
        changes["left_cases"] = [*left, step.data["merged_from"]]
    if newer:
        if version is not None:
            changes["case_version"] = int(version)
        if step.action == "disputed":
            changes["department"] = None  # back in triage: no department holds the case
        elif step.department:
            changes["department"] = step.department
        if status is not None:
            changes["status"] = status
            changes["closed_at"] = step.occurred_at if status == CLOSED else None
        if step.action == "rectified":
            changes["after_photo_ids"] = list(step.data.get("after_photo_ids") or [])
    # A late, older step is shown with the status it brought, even though it no longer sets it.
    entry = {"at": step.occurred_at, "status": status or report["status"],
             "note": case_step_note(step.action, step.data, department_name, due_at, zone),
             "event": f"case.{step.action}"}
    timeline = sorted([*report["timeline"], entry], key=lambda e: e["at"])
    return {**changes, "timeline": timeline, "applied_events": [*report["applied_events"], step.event_id]}


# --- the weekly summary of a grid -------------------------------------------------------------

@dataclass(frozen=True)
class Week:
    """An ISO week of the office, Monday to Monday in the city's time `zone`."""
    year: int
    number: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: ZoneInfo) -> Week:
        try:
            year, number = text.upper().split("-W")
            week = cls(int(year), int(number), zone)
            if not FIRST_YEAR <= week.year <= LAST_YEAR:
                raise ValueError(f"year outside {FIRST_YEAR}..{LAST_YEAR}")
            week.start  # noqa: B018 — validates the week number against the year
            return week
        except ValueError:
            raise InvalidFields("week must look like 2026-W47.", {"week": ["ISO week, e.g. 2026-W47"]}) from None

    @classmethod
    def containing(cls, moment: datetime, zone: ZoneInfo) -> Week:
        iso = moment.astimezone(zone).isocalendar()
        return cls(iso.year, iso.week, zone)

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def start(self) -> datetime:
        """Monday 00:00 in the city's local time (the office's week), as UTC."""
        monday = date.fromisocalendar(self.year, self.number, 1)
        return datetime.combine(monday, time(0), self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)


def weekly_summary(grid: Grid, week: Week, reports: list[dict], categories: dict[str, Category]) -> dict:
    """Counts by category and status of the week's reports, what is still open and what was fixed.

    `reports`: the grid's reports submitted before the week ended that were submitted during the
    week, are still open, or were closed during the week.
    """
    submitted = [r for r in reports if week.start <= r["submitted_at"] < week.end]
    by_category: dict[str, dict[str, int]] = {}
    for report in submitted:
        row = by_category.setdefault(report["category"], {s: 0 for s in STATUSES} | {"total": 0})
        row[report["status"]] += 1
        row["total"] += 1
    by_status = {s: sum(1 for r in submitted if r["status"] == s) for s in STATUSES}
    still_open = [r for r in reports if r["status"] in OPEN_STATUSES]
    fixed = [r for r in reports if r["status"] == CLOSED and r.get("closed_at") and
             week.start <= r["closed_at"] < week.end]
    by_time = lambda r: r["submitted_at"]  # noqa: E731
    return {
        "grid_id": grid.id, "grid_name": grid.name, "district": grid.district,
        "district_name": grid.district_name, "week": week.label, "from": week.start, "to": week.end,
        "submitted": len(submitted),
        "by_category": [{"category": code, "category_name": categories[code].name_zh if code in categories else code,
                         **counts} for code, counts in sorted(by_category.items())],
        "by_status": by_status,
        "reports": sorted(submitted, key=by_time),
        "open": sorted(still_open, key=by_time),
        "fixed": sorted(fixed, key=by_time),
    }
