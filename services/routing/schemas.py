"""Routing's HTTP shapes (docs/contract.md, "routing")."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, validate

from shared.events import rfc3339
from shared.geo import BoundingBox
from shared.pagination import PageQuery
from shared.photo_ids import photo_id_field
from shared.schemas import Timestamp

from .domain import (
    BASES,
    DEADLINE_STATES,
    DUE_SOON_WORKING_HOURS,
    HISTORY_ACTIONS,
    MAX_BOX_SPAN_DEG,
    MAX_HISTORY_PERIOD_DAYS,
    MAX_POINTS,
    REJECT_REASONS,
    STATUSES,
)

HOURS = validate.Range(min=0, min_inclusive=False, max=24 * 365)


def hours_field(description: str | None = None, example: float | None = None, **kwargs) -> fields.Float:
    """Hours above 0 up to a year; the document says the bound is exclusive (OpenAPI 3.0 puts a flag
    beside the bound)."""
    metadata = {"exclusiveMinimum": True, **({"description": description} if description else {}),
                **({"example": example} if example is not None else {})}
    return fields.Float(validate=HOURS, metadata=metadata, **kwargs)

PHOTOS = validate.Length(1, 9)
# A month of the programme's years (2000 to 2100).
MONTH_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$"


class LocationSchema(Schema):
    lat = fields.Float(required=True, metadata={"example": 35.06})
    lng = fields.Float(required=True, metadata={"example": 118.315})
    address = fields.String(allow_none=True, metadata={"example": "金雀山路与沂蒙路交叉口"})


class ExtensionSchema(Schema):
    hours = fields.Float(required=True, metadata={"example": 24})
    reason = fields.String(required=True, metadata={"example": "需协调拖车，申请延期一天"})
    status = fields.String(required=True, validate=validate.OneOf(["requested", "approved", "refused"]),
                           metadata={"example": "requested"})
    requested_at = Timestamp(required=True)
    requested_by = fields.String(required=True, metadata={"example": "police-1"})
    decided_at = Timestamp(required=True, allow_none=True)
    note = fields.String(required=True, allow_none=True)


class HistoryEntrySchema(Schema):
    at = Timestamp(required=True, metadata={"example": "2026-11-24T08:31:02.417Z"})
    actor = fields.String(required=True, metadata={"example": "department:police-1"})
    action = fields.String(required=True, validate=validate.OneOf(HISTORY_ACTIONS), metadata={"example": "accepted"})
    note = fields.String(required=True, metadata={"example": ""})


class SuggestionSchema(Schema):
    department = fields.String(required=True, metadata={"example": "sanitation"})
    deadline_hours = fields.Float(required=True, metadata={"example": 24})


class CaseSchema(Schema):
    id = fields.String(required=True, metadata={"example": "case-6b0563189074648134dcbce3"})
    report_ids = fields.List(fields.String(), required=True, metadata={"example": ["6b0563189074648134dcbce3"]})
    category = fields.String(required=True, metadata={"example": "traffic.parking"})
    department = fields.String(required=True, allow_none=True, metadata={"example": "traffic-police"})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={"example": "dispatched"})
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    district = fields.String(required=True, allow_none=True, metadata={"example": "lanshan"})
    location = fields.Nested(LocationSchema, required=True)
    description = fields.String(required=True, metadata={"example": "人行道上停放多辆机动车，影响通行"})
    photo_ids = fields.List(fields.String(), required=True)
    after_photo_ids = fields.List(fields.String(), required=True)
    opened_at = Timestamp(required=True)
    dispatched_at = Timestamp(required=True, allow_none=True)
    due_at = Timestamp(required=True, allow_none=True, metadata={"example": "2026-11-25T08:31:02.417Z"})
    basis = fields.String(required=True, validate=validate.OneOf(BASES),
                          metadata={"description": "how the deadline is counted", "example": "calendar"})
    overdue = fields.Boolean(required=True, metadata={"example": False})
    escalation_level = fields.Integer(required=True, metadata={"example": 0})
    rework_count = fields.Integer(required=True, metadata={"example": 0})
    deferred = fields.Boolean(required=True, metadata={"description": "an extension was approved", "example": False})
    extension = fields.Nested(ExtensionSchema, required=True, allow_none=True)
    rectified_at = Timestamp(required=True, allow_none=True)
    closed_at = Timestamp(required=True, allow_none=True)
    history = fields.List(fields.Nested(HistoryEntrySchema), required=True)
    merged_into = fields.String(required=True, allow_none=True, metadata={
        "description": "the case this one was merged into as a duplicate (then status is rejected and its reports "
                       "are that case's); null otherwise", "example": None})
    merged_report_ids = fields.List(fields.String(), required=True, metadata={
        "description": "the reports this case held until it was merged into another; empty otherwise"})
    suggestion = fields.Nested(SuggestionSchema, required=True, allow_none=True, metadata={
        "description": "where the routing rules would send the case, for the office's dispatch (null for other "
                       "callers, for a case no rule covers, and once the case can no longer be dispatched)"})


class CasePageSchema(Schema):
    items = fields.List(fields.Nested(CaseSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True,
                                metadata={"description": "pass as ?cursor= for the next page; null on the last"})


class CaseQuerySchema(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))
    department = fields.String()
    overdue = fields.Boolean()
    grid_id = fields.String()
    category = fields.String()
    order = fields.String(load_default="newest", validate=validate.OneOf(["newest", "oldest"]), metadata={
        "description": "by opening time; oldest first is for queues such as status=pending_triage"})


class DispatchSchema(Schema):
    department = fields.String(required=True, metadata={"description": "a code of GET /v1/departments",
                                                        "example": "sanitation"})
    deadline_hours = hours_field("default: the category's rule, else 72", load_default=None, allow_none=True)
    note = fields.String(validate=validate.Length(max=1000), load_default=None, allow_none=True,
                         metadata={"example": "请于24小时内清理"})


class DisputeSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(2, 1000), metadata={"example": "属于环卫职责"})


class RectifySchema(Schema):
    note = fields.String(required=True, validate=validate.Length(2, 2000), metadata={"example": "已拖移违停车辆"})
    photo_ids = fields.List(photo_id_field(), required=True, validate=PHOTOS,
                            metadata={"description": "after-photos uploaded to intake's /v1/photos"})


class VerifySchema(Schema):
    passed = fields.Boolean(required=True, metadata={"example": True})
    note = fields.String(required=True, validate=validate.Length(max=2000), metadata={"example": "复查通过"})
    deadline_hours = hours_field("rework deadline; default: the case's time limit", load_default=None,
                                 allow_none=True)


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(REJECT_REASONS), metadata={"example": "duplicate"})
    note = fields.String(load_default="", validate=validate.Length(max=2000), metadata={"example": "与已办案件重复"})


class MergeSchema(Schema):
    into = fields.String(required=True, validate=validate.Length(1, 200), metadata={
        "description": "the open case of the same category that takes this case's reports",
        "example": "case-6b0563189074648134dcbce3"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000),
                         metadata={"example": "与该案卷为同一处垃圾堆放"})


class ExtensionRequestSchema(Schema):
    hours = hours_field(example=24, required=True)
    reason = fields.String(required=True, validate=validate.Length(2, 1000), metadata={"example": "需协调拖车"})


class ExtensionDecisionSchema(Schema):
    approved = fields.Boolean(required=True, metadata={"example": True})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000),
                         metadata={"example": "同意延期一天"})


class RuleSchema(Schema):
    category = fields.String(required=True, metadata={"example": "env.garbage"})
    district = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "only for this district; none: city-wide", "example": None})
    department = fields.String(required=True, metadata={"example": "sanitation"})
    deadline_hours = hours_field(required=True)
    basis = fields.String(load_default="calendar", validate=validate.OneOf(BASES))


class RuleListSchema(Schema):
    items = fields.List(fields.Nested(RuleSchema), required=True)


class DepartmentSchema(Schema):
    code = fields.String(required=True, metadata={"example": "sanitation"})
    name_zh = fields.String(required=True, metadata={"example": "环卫处"})
    name_en = fields.String(required=True, metadata={"example": "Sanitation"})


class DepartmentListSchema(Schema):
    items = fields.List(fields.Nested(DepartmentSchema), required=True)


class PeriodQuerySchema(Schema):
    from_ = Timestamp(data_key="from", metadata={"description": "default: the start of this month"})
    to = Timestamp(metadata={"description": "default: now"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class MonthQuerySchema(Schema):
    month = fields.String(validate=validate.Regexp(MONTH_PATTERN, error="year-month, e.g. 2026-11"),
                          metadata={"description": "e.g. 2026-11; default: this month", "pattern": MONTH_PATTERN,
                                    "example": "2026-11"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class MeasuresSchema(Schema):
    rank = fields.Integer(required=True, metadata={"example": 1})
    due = fields.Integer(required=True, metadata={"example": 20})
    deferred = fields.Integer(required=True, metadata={"example": 1})
    closed_on_time = fields.Integer(required=True, metadata={"example": 17})
    on_time_rate = fields.Float(required=True, allow_none=True,
                                metadata={"description": "closed on time ÷ (due − deferred)", "example": 0.8947})
    overdue_open = fields.Integer(required=True, metadata={"example": 1})
    rework_rate = fields.Float(required=True, allow_none=True, metadata={"example": 0.05})
    avg_hours_to_rectify = fields.Float(required=True, allow_none=True, metadata={"example": 9.5})


class DepartmentRowSchema(MeasuresSchema):
    department = fields.String(required=True, metadata={"example": "sanitation"})
    department_name = fields.String(required=True, metadata={"example": "环卫处"})


class GridRowSchema(MeasuresSchema):
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    grid_name = fields.String(required=True, metadata={"example": "金雀山街道一网格"})


class DepartmentLeagueSchema(Schema):
    from_ = Timestamp(data_key="from", attribute="from", required=True)
    to = Timestamp(required=True)
    items = fields.List(fields.Nested(DepartmentRowSchema), required=True)


class GridLeagueSchema(Schema):
    from_ = Timestamp(data_key="from", attribute="from", required=True)
    to = Timestamp(required=True)
    items = fields.List(fields.Nested(GridRowSchema), required=True)


# --- the map ------------------------------------------------------------------------------------

_NUMBER = r"-?[0-9]{1,3}(\.[0-9]{1,17})?"
BOX_PATTERN = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"


class BoxField(fields.String):
    """`minLng,minLat,maxLng,maxLat` in degrees (the order of GeoJSON's bbox and Leaflet's toBBoxString)."""

    def _deserialize(self, value, attr, data, **kwargs) -> BoundingBox:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not re.fullmatch(BOX_PATTERN, text):
            raise ValidationError("Four numbers: minLng,minLat,maxLng,maxLat.")
        min_lng, min_lat, max_lng, max_lat = (float(part) for part in text.split(","))
        problems = []
        if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
            problems.append("Latitudes lie between -90 and 90.")
        if not (-180 <= min_lng <= 180 and -180 <= max_lng <= 180):
            problems.append("Longitudes lie between -180 and 180.")
        if not (min_lat < max_lat and min_lng < max_lng):
            problems.append("Each minimum must be below its maximum.")
        if max_lat - min_lat > MAX_BOX_SPAN_DEG or max_lng - min_lng > MAX_BOX_SPAN_DEG:
            problems.append(f"At most {MAX_BOX_SPAN_DEG:g} degrees wide and high: zoom in.")
        if problems:
            raise ValidationError(problems)
        return BoundingBox(min_lat=min_lat, max_lat=max_lat, min_lng=min_lng, max_lng=max_lng)


class PointQuerySchema(Schema):
    bbox = BoxField(required=True, metadata={
        "description": f"minLng,minLat,maxLng,maxLat in degrees, at most {MAX_BOX_SPAN_DEG:g}° each way",
        "pattern": BOX_PATTERN, "example": "118.25,35.0,118.45,35.2"})
    status = fields.String(validate=validate.OneOf(STATUSES), metadata={
        "description": "default: every open status; closed or rejected need from and to "
                       f"(at most {MAX_HISTORY_PERIOD_DAYS} days apart)"})
    department = fields.String(validate=validate.Length(1, 64))
    category = fields.String(validate=validate.Length(1, 64))
    grid_id = fields.String(validate=validate.Length(1, 64))
    from_ = Timestamp(data_key="from", metadata={"description": "opened at or after"})
    to = Timestamp(metadata={"description": "opened before"})
    limit = fields.Integer(load_default=MAX_POINTS, validate=validate.Range(1, MAX_POINTS),
                           metadata={"description": f"points at most (default and maximum {MAX_POINTS})"})


class MapPointSchema(Schema):
    id = fields.String(required=True, metadata={"example": "case-6b0563189074648134dcbce3"})
    lat = fields.Float(required=True, metadata={"example": 35.06})
    lng = fields.Float(required=True, metadata={"example": 118.315})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={"example": "dispatched"})
    category = fields.String(required=True, metadata={"example": "traffic.parking"})
    department = fields.String(required=True, allow_none=True, metadata={"example": "traffic-police"})
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    due_at = Timestamp(required=True, allow_none=True)
    overdue = fields.Boolean(required=True, metadata={"example": False})
    due_soon = fields.Boolean(required=True, metadata={
        "description": f"the deadline runs and falls within {DUE_SOON_WORKING_HOURS:g} working hours",
        "example": False})
    deadline = fields.String(required=True, validate=validate.OneOf(DEADLINE_STATES), metadata={
        "description": "overdue, due_soon, running, or none (no deadline runs: triage, rectified, finished)",
        "example": "running"})


class GridCountSchema(Schema):
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    count = fields.Integer(required=True, metadata={"example": 12})
    overdue = fields.Integer(required=True, metadata={"example": 2})
    due_soon = fields.Integer(required=True, metadata={"example": 3})


class MapPointsSchema(Schema):
    items = fields.List(fields.Nested(MapPointSchema), required=True)
    truncated = fields.Boolean(required=True, metadata={
        "description": "more cases match than `limit`: zoom in or filter", "example": False})
    grid_counts = fields.List(fields.Nested(GridCountSchema), required=True, metadata={
        "description": "the items per grid cell (of those answered, when truncated)"})
    due_soon_before = Timestamp(required=True, metadata={
        "description": f"{DUE_SOON_WORKING_HOURS:g} working hours from now: a running deadline before it is due soon"})


def points_json(answer: dict) -> str:
    """MapPointsSchema's JSON written directly: marshmallow's dump costs about 60 µs a point, a third of a second
    for a map of 5,000 cases. The same fields and formats (the conformance test checks answers against the
    document, and tests/unit/test_routing_map.py against MapPointsSchema's own dump)."""
    def stamp(moment: datetime | None) -> str | None:
        return None if moment is None else rfc3339(moment if moment.tzinfo else moment.replace(tzinfo=UTC))

    items = [{**point, "due_at": stamp(point["due_at"])} for point in answer["items"]]
    return json.dumps({**answer, "items": items, "due_soon_before": stamp(answer["due_soon_before"])},
                      ensure_ascii=False, separators=(",", ":"))


# --- the SLA board and the monthly series (the console's /sla and /stats) ----------------------

SLA_MAX_WINDOW_HOURS = 168
SLA_MAX_CASES = 100
STATS_MAX_MONTHS = 12


class SlaQuerySchema(Schema):
    department = fields.String(metadata={"description": "one department only (a department may name only its own)",
                                         "example": "traffic-police"})
    within_hours = fields.Float(load_default=24.0, validate=validate.Range(1, SLA_MAX_WINDOW_HOURS), metadata={
        "description": f"due soon: due within this many hours on the case's own clock (working hours for a "
                       f"working-hours deadline), 1 to {SLA_MAX_WINDOW_HOURS}", "example": 24})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, SLA_MAX_CASES), metadata={
        "description": f"cases listed per department, most urgent first, at most {SLA_MAX_CASES} (the counts are "
                       "complete; `truncated` says a list was cut)"})


class SlaCaseSchema(Schema):
    id = fields.String(required=True, metadata={"example": "case-6b0563189074648134dcbce3"})
    category = fields.String(required=True, metadata={"example": "traffic.parking"})
    department = fields.String(required=True, metadata={"example": "traffic-police"})
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={"example": "accepted"})
    due_at = Timestamp(required=True)
    basis = fields.String(required=True, validate=validate.OneOf(BASES), metadata={"example": "working"})
    standing = fields.String(required=True, validate=validate.OneOf(["overdue", "due_soon"]),
                             metadata={"example": "due_soon"})
    hours_left = fields.Float(required=True, allow_none=True, metadata={
        "description": "until the deadline, on the case's clock (null when overdue)", "example": 6.5})
    hours_overdue = fields.Float(required=True, allow_none=True, metadata={
        "description": "past the deadline, on the case's clock (null when due soon)", "example": None})
    escalation_level = fields.Integer(required=True, metadata={"example": 0})
    extension_requested = fields.Boolean(required=True, metadata={
        "description": "the department asked for more time and the office has not decided", "example": False})


class SlaDepartmentSchema(Schema):
    department = fields.String(required=True, metadata={"example": "traffic-police"})
    department_name = fields.String(required=True, metadata={"example": "交警大队"})
    overdue = fields.Integer(required=True, metadata={"example": 2})
    due_soon = fields.Integer(required=True, metadata={"example": 5})
    truncated = fields.Boolean(required=True, metadata={"description": "more cases than `limit`; the counts are "
                                                                       "complete"})
    cases = fields.List(fields.Nested(SlaCaseSchema), required=True)


class SlaBoardSchema(Schema):
    as_of = Timestamp(required=True)
    within_hours = fields.Float(required=True, metadata={"example": 24})
    departments = fields.List(fields.Nested(SlaDepartmentSchema), required=True,
                              metadata={"description": "those the caller may see, the most overdue first"})


class MonthRangeQuerySchema(Schema):
    from_month = fields.String(required=True, validate=validate.Regexp(MONTH_PATTERN, error="year-month, e.g. 2026-01"),
                               metadata={"pattern": MONTH_PATTERN, "example": "2026-01"})
    to_month = fields.String(required=True, validate=validate.Regexp(MONTH_PATTERN, error="year-month, e.g. 2026-12"),
                             metadata={"description": f"inclusive; at most {STATS_MAX_MONTHS} months from from_month",
                                       "pattern": MONTH_PATTERN, "example": "2026-12"})


class DepartmentMonthSchema(Schema):
    month = fields.String(required=True, metadata={"example": "2026-11"})
    from_ = Timestamp(data_key="from", attribute="from", required=True)
    to = Timestamp(required=True)
    items = fields.List(fields.Nested(DepartmentRowSchema), required=True)


class GridMonthSchema(Schema):
    month = fields.String(required=True, metadata={"example": "2026-11"})
    from_ = Timestamp(data_key="from", attribute="from", required=True)
    to = Timestamp(required=True)
    items = fields.List(fields.Nested(GridRowSchema), required=True)


class DepartmentMonthlySchema(Schema):
    months = fields.List(fields.Nested(DepartmentMonthSchema), required=True)


class GridMonthlySchema(Schema):
    months = fields.List(fields.Nested(GridMonthSchema), required=True)
