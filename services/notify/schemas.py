"""Notify's HTTP shapes (docs/contract.md, "notify")."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.pagination import PageQuery
from shared.schemas import Timestamp

from .domain import (
    CHANNELS,
    CODE_DIGITS,
    DELIVERY_KINDS,
    DELIVERY_STATUSES,
    KINDS,
    LANGUAGES,
    PATTERN_PATTERN,
    RECIPIENT_PATTERN,
)

URL_PATTERN = r"^https?://[^\s]{1,2040}$"


class InboxQuerySchema(PageQuery):
    unread = fields.Boolean(metadata={"description": "true: only unread items; false: only read ones"})


class InboxItemSchema(Schema):
    id = fields.String(required=True, metadata={"example": "5d4c3b2a19f8e7d6c5b4a392"})
    event_type = fields.String(required=True, metadata={"example": "case.dispatched.traffic-police"})
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata={"example": "report.dispatched"})
    title = fields.String(required=True, metadata={"example": "您上报的问题已派遣至交警大队"})
    body = fields.String(required=True)
    link = fields.String(required=True, metadata={"example": "http://127.0.0.1:8001/reports/6b05631890746481"})
    created_at = Timestamp(required=True)
    read_at = Timestamp(required=True, allow_none=True)


class InboxPageSchema(Schema):
    items = fields.List(fields.Nested(InboxItemSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class UnreadSchema(Schema):
    unread = fields.Integer(required=True, metadata={"example": 3})


class ReadAllSchema(Schema):
    marked = fields.Integer(required=True, metadata={"description": "items marked read", "example": 3})


class PreferenceSchema(Schema):
    channels = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), validate=validate.Length(0, 3),
                           metadata={"example": ["inbox", "webhook"]})
    muted = fields.Boolean(load_default=False, metadata={
        "description": "no notice of this kind at all (a report's outcome always reaches the inbox)"})


class SubscriptionInSchema(Schema):
    email = fields.Email(allow_none=True, load_default=None, validate=validate.Length(max=254),
                         metadata={"example": "duty@traffic-police.linyi.example"})
    webhook_url = fields.String(allow_none=True, load_default=None, validate=validate.Regexp(URL_PATTERN),
                                metadata={"pattern": URL_PATTERN, "example": "https://cases.traffic-police.example/hook"})
    events = fields.List(fields.String(validate=validate.Regexp(PATTERN_PATTERN),
                                       metadata={"pattern": PATTERN_PATTERN}),
                         load_default=list, validate=validate.Length(0, 50), metadata={
                             "description": "routing-key patterns sent by email and webhook; none: everything "
                                            "that concerns the recipient", "example": ["case.dispatched.*",
                                                                                     "case.overdue.*"]})
    language = fields.String(load_default="zh", validate=validate.OneOf(LANGUAGES), metadata={"example": "zh"})
    preferences = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                              values=fields.Nested(PreferenceSchema), load_default=dict,
                              metadata={"description": "per kind of notice: channels, or muted"})


class SubscriptionSchema(Schema):
    recipient = fields.String(required=True, metadata={"example": "department:traffic-police"})
    email = fields.String(required=True, allow_none=True)
    email_confirmed = fields.Boolean(required=True, metadata={
        "description": "whether mail goes to `email`: an address a volunteer sets waits for the code mailed to it"})
    webhook_url = fields.String(required=True, allow_none=True)
    events = fields.List(fields.String(), required=True)
    language = fields.String(required=True, validate=validate.OneOf(LANGUAGES))
    preferences = fields.Dict(keys=fields.String(), values=fields.Nested(PreferenceSchema), required=True)
    secret = fields.String(metadata={
        "description": "signs webhook POSTs (X-Woodpecker-Signature); keep it on the receiver. Only in the answer "
                       "that made it (the subscription's creation, a webhook added, a rotation): never shown again",
        "example": "whsec_3q2+7w…"})
    suspended = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), required=True, metadata={
        "description": "channels suspended after repeated failures; saving the subscription resumes them"})
    updated_at = Timestamp(required=True)


class ConfirmationCodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(f"^[0-9]{{{CODE_DIGITS}}}$"), metadata={
        "description": "the code mailed to the address", "example": "04817263"})


class AttemptSchema(Schema):
    at = Timestamp(required=True)
    status_code = fields.Integer(required=True, allow_none=True, metadata={"example": 200})
    latency_ms = fields.Float(required=True, metadata={"example": 84.2})
    error = fields.String(required=True, allow_none=True, metadata={"example": None})


class DeliverySchema(Schema):
    id = fields.String(required=True)
    event_id = fields.String(required=True)
    recipient = fields.String(required=True, metadata={"example": "department:traffic-police"})
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS), metadata={"example": "webhook"})
    kind = fields.String(required=True, validate=validate.OneOf(DELIVERY_KINDS))
    target = fields.String(required=True, metadata={"example": "https://cases.traffic-police.example/hook"})
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES), metadata={"example": "delivered"})
    created_at = Timestamp(required=True)
    next_attempt_at = Timestamp(required=True, allow_none=True)
    delivered_at = Timestamp(required=True, allow_none=True)
    attempt_count = fields.Integer(required=True, metadata={"example": 1})
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)


class DeliveryQuerySchema(PageQuery):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    recipient = fields.String(validate=validate.Regexp(RECIPIENT_PATTERN), metadata={"pattern": RECIPIENT_PATTERN})


class DeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
