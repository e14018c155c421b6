"""Intake's HTTP and event shapes (CONTRACT "intake")."""
from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import EXCLUDE, Schema, fields, validate

from shared.pagination import PageQuery
from shared.photo_ids import photo_id_field
from shared.schemas import Timestamp

from .domain import STATUSES

# An ISO week of the programme's years (2000 to 2100).
WEEK_PATTERN = r"^(20[0-9]{2}|2100)-[Ww](0[1-9]|[1-4][0-9]|5[0-3])$"


class LocationSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    lng = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    address = fields.String(validate=validate.Length(max=300), load_default=None)


class ReportCreateSchema(Schema):
    category = fields.String(required=True, metadata={"example": "traffic.parking"})
    description = fields.String(required=True, validate=validate.Length(5, 2000))
    location = fields.Nested(LocationSchema, required=True)
    photo_ids = fields.List(photo_id_field(), required=True, validate=validate.Length(1, 9))
    observed_at = Timestamp(load_default=None)
    patrol_id = fields.String(validate=validate.Length(1, 100), load_default=None)


class TimelineEntrySchema(Schema):
    at = Timestamp()
    status = fields.String()
    note = fields.String()


class ReportSchema(Schema):
    id = fields.String()
    reporter_id = fields.String()
    category = fields.String()
    description = fields.String()
    location = fields.Nested(LocationSchema)
    grid_id = fields.String()
    district = fields.String(metadata={"description": "the grid's district code"})
    photo_ids = fields.List(fields.String())
    observed_at = Timestamp()
    submitted_at = Timestamp()
    patrol_id = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": list(STATUSES)})
    case_id = fields.String(allow_none=True)
    department = fields.String(allow_none=True, metadata={"description": "the department holding the case"})
    duplicate_of = fields.String(allow_none=True,
                                 metadata={"description": "an open report of the same category within 250 m"})
    after_photo_ids = fields.List(fields.String(), metadata={"description": "the department's after-photos"})
    timeline = fields.List(fields.Nested(TimelineEntrySchema))


class ReportPageSchema(Schema):
    items = fields.List(fields.Nested(ReportSchema))
    next_cursor = fields.String(allow_none=True)


class ReportQuerySchema(PageQuery):
    grid_id = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))
    category = fields.String()
    reporter_id = fields.String()
    from_ = Timestamp(data_key="from", metadata={"description": "submitted at or after"})
    to = Timestamp(metadata={"description": "submitted before"})


class PhotoUploadSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # other form fields are ignored, and the document says they may be sent

    file = Upload(required=True, metadata={"description": "JPEG, PNG or WebP, at most 10 MiB"})


class PhotoSchema(Schema):
    id = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    width = fields.Integer()
    height = fields.Integer()


class GridSchema(Schema):
    id = fields.String()
    name = fields.String()
    district = fields.String()
    district_name = fields.String()
    leader_id = fields.String(allow_none=True)
    geometry = fields.Dict(metadata={"description": "GeoJSON Polygon (lng, lat)"})


class GridListSchema(Schema):
    items = fields.List(fields.Nested(GridSchema))


class LocateQuerySchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    lng = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)


class CategorySchema(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    department = fields.String(allow_none=True)
    deadline_hours = fields.Integer(allow_none=True)


class CategoryListSchema(Schema):
    items = fields.List(fields.Nested(CategorySchema))


class WeeklyQuerySchema(Schema):
    week = fields.String(validate=validate.Regexp(WEEK_PATTERN, error="ISO week, e.g. 2026-W47"),
                         metadata={"description": "ISO week, e.g. 2026-W47; default: the current week (week 53 "
                                                  "only in the years that have one)",
                                   "pattern": WEEK_PATTERN, "example": "2026-W47"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class CategoryCountSchema(Schema):
    category = fields.String()
    category_name = fields.String()
    total = fields.Integer()
    submitted = fields.Integer()
    in_progress = fields.Integer()
    rectified = fields.Integer()
    closed = fields.Integer()
    rejected = fields.Integer()
    duplicate = fields.Integer()


class WeeklySummarySchema(Schema):
    grid_id = fields.String()
    grid_name = fields.String()
    district = fields.String()
    district_name = fields.String()
    week = fields.String()
    from_ = Timestamp(data_key="from", attribute="from")
    to = Timestamp()
    submitted = fields.Integer()
    by_category = fields.List(fields.Nested(CategoryCountSchema))
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    reports = fields.List(fields.Nested(ReportSchema), metadata={"description": "submitted this week"})
    open = fields.List(fields.Nested(ReportSchema), metadata={"description": "still open at the time of asking"})
    fixed = fields.List(fields.Nested(ReportSchema), metadata={"description": "closed this week"})
