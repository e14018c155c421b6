"""Routing's HTTP shapes (CONTRACT "routing")."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.pagination import PageQuery
from shared.photo_ids import photo_id_field
from shared.schemas import Timestamp

from .domain import BASES, REJECT_REASONS, STATUSES

HOURS = validate.Range(min=0, min_inclusive=False, max=24 * 365)


def hours_field(description: str | None = None, **kwargs) -> fields.Float:
    """Hours above 0 up to a year; the document says the bound is exclusive (OpenAPI 3.0 puts a flag
    beside the bound)."""
    metadata = {"exclusiveMinimum": True, **({"description": description} if description else {})}
    return fields.Float(validate=HOURS, metadata=metadata, **kwargs)

PHOTOS = validate.Length(1, 9)
# A month of the programme's years (2000 to 2100).
MONTH_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$"


class LocationSchema(Schema):
    lat = fields.Float()
    lng = fields.Float()
    address = fields.String(allow_none=True)


class ExtensionSchema(Schema):
    hours = fields.Float()
    reason = fields.String()
    status = fields.String(metadata={"enum": ["requested", "approved", "refused"]})
    requested_at = Timestamp()
    requested_by = fields.String()
    decided_at = Timestamp(allow_none=True)
    note = fields.String(allow_none=True)


class HistoryEntrySchema(Schema):
    at = Timestamp()
    actor = fields.String()
    action = fields.String()
    note = fields.String()


class CaseSchema(Schema):
    id = fields.String()
    report_ids = fields.List(fields.String())
    category = fields.String()
    department = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": list(STATUSES)})
    grid_id = fields.String()
    district = fields.String(allow_none=True)
    location = fields.Nested(LocationSchema)
    description = fields.String()
    photo_ids = fields.List(fields.String())
    after_photo_ids = fields.List(fields.String())
    opened_at = Timestamp()
    dispatched_at = Timestamp(allow_none=True)
    due_at = Timestamp(allow_none=True)
    basis = fields.String(metadata={"enum": list(BASES), "description": "how the deadline is counted"})
    overdue = fields.Boolean()
    escalation_level = fields.Integer()
    rework_count = fields.Integer()
    deferred = fields.Boolean(metadata={"description": "an extension was approved"})
    extension = fields.Nested(ExtensionSchema, allow_none=True)
    rectified_at = Timestamp(allow_none=True)
    closed_at = Timestamp(allow_none=True)
    history = fields.List(fields.Nested(HistoryEntrySchema))


class CasePageSchema(Schema):
    items = fields.List(fields.Nested(CaseSchema))
    next_cursor = fields.String(allow_none=True)


class CaseQuerySchema(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))
    department = fields.String()
    overdue = fields.Boolean()
    grid_id = fields.String()
    category = fields.String()


class DispatchSchema(Schema):
    department = fields.String(required=True)
    deadline_hours = hours_field("default: the category's rule, else 72", load_default=None)
    note = fields.String(validate=validate.Length(max=1000), load_default=None)


class DisputeSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(2, 1000))


class RectifySchema(Schema):
    note = fields.String(required=True, validate=validate.Length(2, 2000))
    photo_ids = fields.List(photo_id_field(), required=True, validate=PHOTOS,
                            metadata={"description": "after-photos uploaded to intake's /v1/photos"})


class VerifySchema(Schema):
    passed = fields.Boolean(required=True)
    note = fields.String(required=True, validate=validate.Length(max=2000))
    deadline_hours = hours_field("rework deadline; default: the case's time limit", load_default=None)


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(REJECT_REASONS))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class ExtensionRequestSchema(Schema):
    hours = hours_field(required=True)
    reason = fields.String(required=True, validate=validate.Length(2, 1000))


class ExtensionDecisionSchema(Schema):
    approved = fields.Boolean(required=True)
    note = fields.String(load_default=None, validate=validate.Length(max=1000))


class RuleSchema(Schema):
    category = fields.String(required=True)
    district = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "only for this district; none: city-wide"})
    department = fields.String(required=True)
    deadline_hours = hours_field(required=True)
    basis = fields.String(load_default="calendar", validate=validate.OneOf(BASES))


class RuleListSchema(Schema):
    items = fields.List(fields.Nested(RuleSchema), required=True)


class DepartmentSchema(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()


class DepartmentListSchema(Schema):
    items = fields.List(fields.Nested(DepartmentSchema))


class PeriodQuerySchema(Schema):
    from_ = Timestamp(data_key="from", metadata={"description": "default: the start of this month"})
    to = Timestamp(metadata={"description": "default: now"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class MonthQuerySchema(Schema):
    month = fields.String(validate=validate.Regexp(MONTH_PATTERN, error="year-month, e.g. 2026-11"),
                          metadata={"description": "e.g. 2026-11; default: this month", "pattern": MONTH_PATTERN,
                                    "example": "2026-11"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class StatsRowSchema(Schema):
    rank = fields.Integer()
    department = fields.String()
    department_name = fields.String()
    grid_id = fields.String()
    grid_name = fields.String()
    due = fields.Integer()
    deferred = fields.Integer()
    closed_on_time = fields.Integer()
    on_time_rate = fields.Float(allow_none=True, metadata={"description": "closed on time ÷ (due − deferred)"})
    overdue_open = fields.Integer()
    rework_rate = fields.Float(allow_none=True)
    avg_hours_to_rectify = fields.Float(allow_none=True)


class StatsSchema(Schema):
    from_ = Timestamp(data_key="from", attribute="from")
    to = Timestamp()
    items = fields.List(fields.Nested(StatsRowSchema))
