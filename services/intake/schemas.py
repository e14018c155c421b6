"""Intake's HTTP and event shapes (docs/contract.md, "intake")."""
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
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False, metadata={"example": 35.06})
    lng = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False,
                       metadata={"example": 118.315})
    address = fields.String(validate=validate.Length(max=300), load_default=None, allow_none=True,
                            metadata={"example": "金雀山路与沂蒙路交叉口"})


class ReportCreateSchema(Schema):
    category = fields.String(required=True, metadata={"description": "a code of GET /v1/categories",
                                                      "example": "traffic.parking"})
    description = fields.String(required=True, validate=validate.Length(5, 2000),
                                metadata={"example": "人行道上停放多辆机动车，影响通行"})
    location = fields.Nested(LocationSchema, required=True)
    photo_ids = fields.List(photo_id_field(), required=True, validate=validate.Length(1, 9),
                            metadata={"description": "photos you uploaded (POST /v1/photos)"})
    observed_at = Timestamp(load_default=None, allow_none=True,
                            metadata={"description": "when you saw it; default: now",
                                      "example": "2026-11-24T08:30:00Z"})
    patrol_id = fields.String(validate=validate.Length(1, 100), load_default=None, allow_none=True)


class TimelineEntrySchema(Schema):
    at = Timestamp(required=True, metadata={"example": "2026-11-24T08:31:02.417Z"})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={"example": "in_progress"})
    note = fields.String(required=True, metadata={"example": "已派遣至交警支队，整改期限 2026-11-25 16:31"})


class ReportSchema(Schema):
    id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    reporter_id = fields.String(required=True, metadata={"example": "vol-1"})
    category = fields.String(required=True, metadata={"example": "traffic.parking"})
    description = fields.String(required=True, metadata={"example": "人行道上停放多辆机动车，影响通行"})
    location = fields.Nested(LocationSchema, required=True)
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    district = fields.String(required=True, metadata={"description": "the grid's district code", "example": "lanshan"})
    photo_ids = fields.List(fields.String(), required=True)
    observed_at = Timestamp(required=True)
    submitted_at = Timestamp(required=True)
    patrol_id = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={"example": "in_progress"})
    case_id = fields.String(required=True, allow_none=True, metadata={"example": "case-6b0563189074648134dcbce3"})
    department = fields.String(required=True, allow_none=True,
                               metadata={"description": "the department holding the case", "example": "traffic-police"})
    duplicate_of = fields.String(required=True, allow_none=True,
                                 metadata={"description": "an open report of the same category within 250 m"})
    after_photo_ids = fields.List(fields.String(), required=True,
                                  metadata={"description": "the department's after-photos"})
    timeline = fields.List(fields.Nested(TimelineEntrySchema), required=True)


class ReportPageSchema(Schema):
    items = fields.List(fields.Nested(ReportSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True,
                                metadata={"description": "pass as ?cursor= for the next page; null on the last"})


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
    id = fields.String(required=True, metadata={"example": "k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Ha"})
    content_type = fields.String(required=True, validate=validate.OneOf(["image/jpeg", "image/png", "image/webp"]),
                                 metadata={"example": "image/jpeg"})
    size = fields.Integer(required=True, metadata={"description": "bytes stored", "example": 48211})
    sha256 = fields.String(required=True, metadata={"example": "9f2c…"})
    width = fields.Integer(required=True, metadata={"description": "as stored", "example": 2560})
    height = fields.Integer(required=True, metadata={"description": "as stored", "example": 1920})


class GridSchema(Schema):
    id = fields.String(required=True, metadata={"example": "lanshan-01"})
    name = fields.String(required=True, metadata={"example": "金雀山街道一网格"})
    district = fields.String(required=True, metadata={"example": "lanshan"})
    district_name = fields.String(required=True, metadata={"example": "兰山区"})
    leader_id = fields.String(required=True, allow_none=True, metadata={"example": "leader-lanshan-01"})
    geometry = fields.Dict(required=True, metadata={"description": "GeoJSON Polygon (lng, lat)"})


class GridListSchema(Schema):
    items = fields.List(fields.Nested(GridSchema), required=True)


class LocateQuerySchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    lng = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)


class CategorySchema(Schema):
    code = fields.String(required=True, metadata={"example": "traffic.parking"})
    name_zh = fields.String(required=True, metadata={"example": "车辆乱停乱放"})
    name_en = fields.String(required=True, metadata={"example": "Illegal parking"})
    department = fields.String(required=True, allow_none=True, metadata={"example": "traffic-police"})
    deadline_hours = fields.Integer(required=True, allow_none=True, metadata={"example": 24})


class CategoryListSchema(Schema):
    items = fields.List(fields.Nested(CategorySchema), required=True)


class WeeklyQuerySchema(Schema):
    week = fields.String(validate=validate.Regexp(WEEK_PATTERN, error="ISO week, e.g. 2026-W47"),
                         metadata={"description": "ISO week, e.g. 2026-W47; default: the current week (week 53 "
                                                  "only in the years that have one)",
                                   "pattern": WEEK_PATTERN, "example": "2026-W47"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class CategoryCountSchema(Schema):
    category = fields.String(required=True, metadata={"example": "traffic.parking"})
    category_name = fields.String(required=True, metadata={"example": "车辆乱停乱放"})
    total = fields.Integer(required=True, metadata={"example": 3})
    submitted = fields.Integer(required=True)
    in_progress = fields.Integer(required=True)
    rectified = fields.Integer(required=True)
    closed = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    duplicate = fields.Integer(required=True)


class WeeklySummarySchema(Schema):
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    grid_name = fields.String(required=True, metadata={"example": "金雀山街道一网格"})
    district = fields.String(required=True, metadata={"example": "lanshan"})
    district_name = fields.String(required=True, metadata={"example": "兰山区"})
    week = fields.String(required=True, metadata={"example": "2026-W47"})
    from_ = Timestamp(data_key="from", attribute="from", required=True)
    to = Timestamp(required=True)
    submitted = fields.Integer(required=True, metadata={"example": 12})
    by_category = fields.List(fields.Nested(CategoryCountSchema), required=True)
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                            metadata={"example": {"submitted": 1, "in_progress": 4, "closed": 7}})
    reports = fields.List(fields.Nested(ReportSchema), required=True, metadata={"description": "submitted this week"})
    open = fields.List(fields.Nested(ReportSchema), required=True,
                       metadata={"description": "still open at the time of asking"})
    fixed = fields.List(fields.Nested(ReportSchema), required=True, metadata={"description": "closed this week"})
