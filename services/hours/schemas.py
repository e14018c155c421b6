"""Hours' HTTP shapes (docs/contract.md, "hours")."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from shared.pagination import PageQuery
from shared.photo_ids import photo_id_field
from shared.reference import FIRST_YEAR, LAST_YEAR
from shared.schemas import Timestamp

from .domain import (
    ACTIVITY_STATUSES,
    KINDS,
    LARGEST_ADJUSTMENT_HOURS,
    OBJECTION_STATUSES,
    PARTICIPANT_STATUSES,
    PATROL_STATUSES,
)

PHONE_PATTERN = r"^1[3-9][0-9]{9}$"
ID = validate.Length(1, 64)
YEAR = validate.Range(FIRST_YEAR, LAST_YEAR)
DATE_EXAMPLE = "2026-11-24"


def text(low: int, high: int, example: str, **kwargs) -> fields.String:
    return fields.String(validate=validate.Length(low, high), metadata={"example": example}, **kwargs)


# --- volunteers -----------------------------------------------------------------------------------

class VolunteerCreateSchema(Schema):
    name = text(1, 50, "王小明", required=True)
    phone = fields.String(required=True, validate=validate.Regexp(PHONE_PATTERN),
                          metadata={"description": "a mainland mobile number, 11 digits", "pattern": PHONE_PATTERN,
                                    "example": "13800000000"})
    organization = text(1, 100, "兰山区金雀山街道志愿服务队", required=True)
    grid_id = text(1, 64, "lanshan-01", required=True)


class VolunteerSchema(Schema):
    id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    name = fields.String(required=True, metadata={"example": "王小明"})
    phone = fields.String(required=True, metadata={
        "description": "in full for the association and the office, masked (138****0000) for everyone else",
        "example": "138****0000"})
    organization = fields.String(required=True, metadata={"example": "兰山区金雀山街道志愿服务队"})
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    registered_at = Timestamp(required=True)
    star_level = fields.Integer(required=True, metadata={"example": 1})


class VolunteerQuerySchema(PageQuery):
    organization = text(1, 100, "兰山区金雀山街道志愿服务队")
    grid_id = text(1, 64, "lanshan-01")
    star_level = fields.Integer(validate=validate.Range(0, 10), metadata={"example": 1})


class VolunteerPageSchema(Schema):
    items = fields.List(fields.Nested(VolunteerSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class RosterUploadSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # other form fields are ignored

    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                               "description": "the roster: XLSX, or CSV in UTF-8 or GB18030, "
                                                              "columns 姓名, 手机号, 所属组织, 网格"})


class RowErrorSchema(Schema):
    row = fields.Integer(required=True, metadata={"example": 7})
    reason = fields.String(required=True, metadata={"example": "phone: '1380000' is not an 11-digit mobile number"})


class RosterResultSchema(Schema):
    rows = fields.Integer(required=True, metadata={"description": "data rows read", "example": 120})
    registered = fields.Integer(required=True, metadata={"example": 112})
    already_registered = fields.Integer(required=True, metadata={
        "description": "rows whose phone and organisation were registered before: nothing changed", "example": 5})
    errors = fields.List(fields.Nested(RowErrorSchema), required=True)


# --- the ledger -----------------------------------------------------------------------------------

class EntrySchema(Schema):
    id = fields.String(required=True, metadata={"example": "a1b2c3d4e5f60718293a4b5c"})
    volunteer_id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    hours = fields.Float(required=True, metadata={"description": "negative for a reversal or a debit",
                                                  "example": 2.5})
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata={"example": "patrol"})
    source = fields.String(required=True, metadata={
        "description": "what credited it: report (a patrol's part its report evidenced), patrol (a patrol's time a "
                       "person confirmed), activity, adjustment, reversal", "example": "patrol"})
    source_id = fields.String(required=True, metadata={"example": "0f1e2d3c4b5a697887a6b5c4"})
    service_date = fields.String(required=True, metadata={"format": "date", "example": DATE_EXAMPLE})
    recorded_at = Timestamp(required=True)
    recorded_by = fields.String(required=True, metadata={"example": "association:assoc-1"})
    rule_version = fields.String(required=True, metadata={"example": "linyi-2026.2"})
    note = fields.String(required=True, metadata={"example": "网格巡访 lanshan-01"})
    reverses = fields.String(metadata={"description": "the entry this one reverses", "example": None})
    patrol_id = fields.String(metadata={"description": "the patrol a patrol entry (or its reversal) credits: the "
                                                       "part its report evidenced has the report as its source",
                                        "example": "0f1e2d3c4b5a697887a6b5c4"})


class LedgerQuerySchema(PageQuery):
    year = fields.Integer(validate=YEAR, metadata={"example": 2026})


class EntryPageSchema(Schema):
    items = fields.List(fields.Nested(EntrySchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AdjustmentSchema(Schema):
    volunteer_id = text(1, 64, "6b0563189074648134dcbce3", required=True)
    hours = fields.Float(required=True, validate=validate.Range(-LARGEST_ADJUSTMENT_HOURS, LARGEST_ADJUSTMENT_HOURS),
                         metadata={"description": "non-zero, whole hundredths of an hour; negative debits",
                                   "multipleOf": 0.01, "example": 2})
    reason = text(2, 500, "补录 11 月 20 日文明交通劝导活动时长（纸质签到表）", required=True)
    service_date = fields.Date(metadata={"description": "the day the service was given; today by default",
                                         "example": DATE_EXAMPLE})


class ReverseSchema(Schema):
    reason = text(2, 500, "抽查发现签到记录与实际不符", required=True)


# --- patrols --------------------------------------------------------------------------------------

class PatrolCreateSchema(Schema):
    grid_id = text(1, 64, "lanshan-01", required=True)
    started_at = Timestamp(required=True, metadata={"example": "2026-11-24T01:00:00Z"})
    ended_at = Timestamp(required=True, metadata={"example": "2026-11-24T03:10:00Z"})


class PatrolCreditSchema(Schema):
    entry_id = fields.String(required=True, metadata={"example": "a1b2c3d4e5f60718293a4b5c"})
    hours = fields.Float(required=True, metadata={"example": 1.0})
    report_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the report that evidenced this part (credited at once); null: a person confirmed it"})
    recorded_at = Timestamp(required=True)
    recorded_by = fields.String(required=True, metadata={"example": "system:evidence"})
    reversal_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the entry that took this part back, if one did"})
    reversal_note = fields.String(required=True, allow_none=True, metadata={"description": "why it was taken back"})


class PatrolSchema(Schema):
    id = fields.String(required=True, metadata={"example": "0f1e2d3c4b5a697887a6b5c4"})
    volunteer_id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    started_at = Timestamp(required=True)
    ended_at = Timestamp(required=True)
    hours = fields.Float(required=True, metadata={"description": "actual time, rounded down to the half hour",
                                                  "example": 2.0})
    service_date = fields.String(required=True, metadata={"format": "date", "example": DATE_EXAMPLE})
    status = fields.String(required=True, validate=validate.OneOf(PATROL_STATUSES), metadata={
        "description": "awaiting_* while any of its time waits for a person; else credited while any of it is "
                       "credited; else declined", "example": "credited"})
    credited_hours = fields.Float(required=True, metadata={
        "description": "credited: the parts its reports evidenced at once and what a person confirmed",
        "example": 1.0})
    waiting_hours = fields.Float(required=True, metadata={"description": "waiting for the grid leader or the "
                                                                         "association", "example": 1.0})
    declined_hours = fields.Float(required=True, metadata={"example": 0.0})
    credits = fields.List(fields.Nested(PatrolCreditSchema), required=True, metadata={
        "description": "each ledger entry that credited part of it, and whether it was taken back"})
    evidence_report_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the first report that evidenced it, submitted in its grid while it ran"})
    entry_id = fields.String(required=True, allow_none=True, metadata={
        "description": "its first ledger entry once anything is credited (all of them: credits)"})
    recorded_at = Timestamp(required=True)
    recorded_by = fields.String(required=True, metadata={"example": "volunteer:6b0563189074648134dcbce3"})
    decided_by = fields.String(required=True, allow_none=True)
    decided_at = Timestamp(required=True, allow_none=True)
    decision_note = fields.String(required=True, allow_none=True)


class PatrolQuerySchema(PageQuery):
    status = fields.String(validate=validate.OneOf(PATROL_STATUSES), metadata={"example": "awaiting_confirmation"})
    grid_id = text(1, 64, "lanshan-01")
    volunteer_id = text(1, 64, "6b0563189074648134dcbce3")


class PatrolPageSchema(Schema):
    items = fields.List(fields.Nested(PatrolSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class DecisionSchema(Schema):
    note = text(0, 500, "已核对巡访签到", load_default="")


class DeclineSchema(Schema):
    note = text(2, 500, "当日该网格无巡访安排", required=True)


# --- the summary ----------------------------------------------------------------------------------

class SummaryQuerySchema(Schema):
    year = fields.Integer(validate=YEAR, metadata={"description": "this year by default", "example": 2026})


class SummarySchema(Schema):
    volunteer_id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    year = fields.Integer(required=True, metadata={"example": 2026})
    total_hours = fields.Float(required=True, metadata={"example": 128.5})
    year_hours = fields.Float(required=True, metadata={"example": 21.0})
    pending_hours = fields.Float(required=True, metadata={"description": "recorded, not yet confirmed",
                                                          "example": 2.0})
    star_level = fields.Integer(required=True, metadata={"example": 1})
    next_level_at = fields.Float(required=True, allow_none=True, metadata={
        "description": "total hours of the next star level; null at the top", "example": 300})
    annual_minimum_met = fields.Boolean(required=True, metadata={"example": True})
    verified_reports = fields.Integer(required=True, metadata={
        "description": "reports whose case closed after re-check, all years", "example": 14})
    year_verified_reports = fields.Integer(required=True, metadata={"example": 6})


# --- rankings, proofs, years ----------------------------------------------------------------------

class RankingQuerySchema(Schema):
    year = fields.Integer(validate=YEAR, metadata={"description": "this year by default", "example": 2026})
    by = fields.String(load_default="hours", validate=validate.OneOf(["hours", "reports"]),
                       metadata={"description": "hours credited, or reports whose case closed after re-check"})
    organization = text(1, 100, "兰山区金雀山街道志愿服务队")
    grid = text(1, 64, "lanshan-01")
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200),
                           metadata={"description": "rows in JSON; the spreadsheet holds every row"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "xlsx"]))


class RankingRowSchema(Schema):
    rank = fields.Integer(required=True, metadata={"description": "equal figures share a rank", "example": 1})
    name = fields.String(required=True, metadata={"description": "masked", "example": "王*明"})
    volunteer_id = fields.String(required=True, allow_none=True, metadata={
        "description": "for the association and the office; null for everyone else"})
    organization = fields.String(required=True, metadata={"example": "兰山区金雀山街道志愿服务队"})
    grid_id = fields.String(required=True, metadata={"example": "lanshan-01"})
    hours = fields.Float(required=True, metadata={"example": 86.5})
    verified_reports = fields.Integer(required=True, metadata={"example": 12})


class RankingSchema(Schema):
    year = fields.Integer(required=True, metadata={"example": 2026})
    by = fields.String(required=True, validate=validate.OneOf(["hours", "reports"]), metadata={"example": "hours"})
    items = fields.List(fields.Nested(RankingRowSchema), required=True)


class ProofQuerySchema(Schema):
    year = fields.Integer(validate=YEAR, metadata={"description": "this year by default", "example": 2026})


class ProofVerdictSchema(Schema):
    valid = fields.Boolean(required=True, metadata={"example": True})
    code = fields.String(required=True, metadata={"example": "7K3M-Q9XD-2FHP"})
    number = fields.String(required=True, metadata={"example": "WP-2026-000123"})
    year = fields.Integer(required=True, metadata={"example": 2026})
    hours = fields.Float(required=True, metadata={"example": 36.5})
    issuer = fields.String(required=True, metadata={"example": "临沂市志愿服务联合会"})
    name = fields.String(required=True, metadata={"description": "masked", "example": "王*明"})
    issued_on = fields.String(required=True, metadata={"format": "date", "example": DATE_EXAMPLE})
    sealed = fields.Boolean(required=True, metadata={"description": "the year has been closed", "example": False})
    detail = fields.String(required=True, metadata={"example": "The figures match the ledger as of now."})


class ClosedYearSchema(Schema):
    year = fields.Integer(required=True, metadata={"example": 2025})
    closed_at = Timestamp(required=True)
    closed_by = fields.String(required=True, metadata={"example": "office:office-1"})
    volunteers = fields.Integer(required=True, metadata={"description": "volunteers whose figures were sealed",
                                                         "example": 1840})
    declined_patrols = fields.Integer(required=True, metadata={
        "description": "patrols whose time still waiting was declined with the close (年度已结账)", "example": 3})
    declined_participants = fields.Integer(required=True, metadata={
        "description": "activity participants whose publicised or held hours were declined with the close",
        "example": 0})


# --- activities -----------------------------------------------------------------------------------

class ActivityCreateSchema(Schema):
    title = text(2, 100, "文明交通劝导志愿服务活动", required=True)
    description = text(0, 2000, "在沂蒙路与金雀山路口劝导行人遵守交通信号", load_default="")
    grid_id = fields.String(validate=ID, allow_none=True, load_default=None, metadata={"example": "lanshan-01"})
    place = fields.String(validate=validate.Length(1, 200), allow_none=True, load_default=None,
                          metadata={"example": "沂蒙路与金雀山路交叉口"})
    starts_at = Timestamp(required=True, metadata={"example": "2026-11-21T01:00:00Z"})
    ends_at = Timestamp(required=True, metadata={"example": "2026-11-21T04:00:00Z"})


def in_half_hours(hours: float) -> None:
    # Out-of-range values are the Range validator's to report; doubling a huge float would overflow here.
    if abs(hours) <= 24 and (hours * 2) != int(hours * 2):
        raise ValidationError("Hours are counted in half hours (e.g. 2.5).")


class ParticipantInSchema(Schema):
    volunteer_id = text(1, 64, "6b0563189074648134dcbce3", required=True)
    hours = fields.Float(required=True, validate=[validate.Range(0.5, 24), in_half_hours], metadata={
        "description": "hours served, in half hours, at most the activity's length", "multipleOf": 0.5,
        "example": 3})


class CompletionSchema(Schema):
    participants = fields.List(fields.Nested(ParticipantInSchema), required=True, validate=validate.Length(1, 500))
    summary = text(5, 2000, "劝导行人闯红灯 126 人次，发放文明出行宣传资料 300 份", required=True)
    photo_ids = fields.List(photo_id_field(), required=True, validate=validate.Length(4, 30),
                            metadata={"description": "at least 4 photos you uploaded to intake (POST /v1/photos)"})


class ParticipantSchema(Schema):
    volunteer_id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    hours = fields.Float(required=True, metadata={"example": 3})
    status = fields.String(required=True, validate=validate.OneOf(PARTICIPANT_STATUSES),
                           metadata={"example": "publicised"})
    entry_id = fields.String(required=True, allow_none=True)


class ObjectionSchema(Schema):
    id = fields.String(required=True, metadata={"example": "9a8b7c6d5e4f30211f0e9d8c"})
    volunteer_id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    reason = fields.String(required=True, metadata={"example": "该志愿者当天未到场"})
    raised_by = fields.String(required=True, allow_none=True, metadata={
        "description": "for the association and the office; null for everyone else",
        "example": "volunteer:5c0563189074648134dcbce1"})
    raised_at = Timestamp(required=True)
    status = fields.String(required=True, validate=validate.OneOf(OBJECTION_STATUSES), metadata={"example": "open"})
    decided_by = fields.String(required=True, allow_none=True)
    decided_at = Timestamp(required=True, allow_none=True)
    note = fields.String(required=True, allow_none=True)


class ActivitySchema(Schema):
    id = fields.String(required=True, metadata={"example": "3c2b1a09f8e7d6c5b4a39281"})
    title = fields.String(required=True, metadata={"example": "文明交通劝导志愿服务活动"})
    description = fields.String(required=True)
    grid_id = fields.String(required=True, allow_none=True, metadata={"example": "lanshan-01"})
    place = fields.String(required=True, allow_none=True)
    starts_at = Timestamp(required=True)
    ends_at = Timestamp(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ACTIVITY_STATUSES), metadata={"example": "planned"})
    created_by = fields.String(required=True, metadata={"example": "association:assoc-1"})
    created_at = Timestamp(required=True)
    summary = fields.String(allow_none=True, metadata={"description": "once completed"})
    photo_ids = fields.List(fields.String(), metadata={"description": "once completed"})
    completed_at = Timestamp(allow_none=True)
    publicity_ends = fields.String(metadata={"format": "date", "description": "the last day objections are heard",
                                             "example": DATE_EXAMPLE})
    participants = fields.List(fields.Nested(ParticipantSchema), required=True)
    objections = fields.List(fields.Nested(ObjectionSchema), required=True)


class ActivityQuerySchema(PageQuery):
    status = fields.String(validate=validate.OneOf(ACTIVITY_STATUSES), metadata={"example": "publicised"})
    grid_id = text(1, 64, "lanshan-01")


class ActivityPageSchema(Schema):
    items = fields.List(fields.Nested(ActivitySchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class ObjectionCreateSchema(Schema):
    volunteer_id = text(1, 64, "6b0563189074648134dcbce3", required=True)
    reason = text(2, 500, "该志愿者当天未到场", required=True)


class ObjectionDecisionSchema(Schema):
    upheld = fields.Boolean(required=True, metadata={"description": "true: the hours are declined; false: they "
                                                                    "are publicised again", "example": False})
    note = text(0, 500, "经核实签到表，该志愿者全程参加", load_default="")


# --- spot checks ----------------------------------------------------------------------------------

class SpotCheckCreateSchema(Schema):
    year = fields.Integer(required=True, validate=YEAR, metadata={"example": 2026})
    size = fields.Integer(required=True, validate=validate.Range(1, 500), metadata={"example": 30})

    @pre_load
    def _server_draws_the_seed(self, data: object, **kwargs) -> object:
        """A caller who sends a seed hears why it is refused, not just "unknown field"."""
        if isinstance(data, dict) and "seed" in data:
            raise ValidationError("The server draws the seed and records it on the check; send none.", "seed")
        return data


class CheckedEntrySchema(Schema):
    entry_id = fields.String(required=True, metadata={"example": "a1b2c3d4e5f60718293a4b5c"})
    volunteer_id = fields.String(required=True, metadata={"example": "6b0563189074648134dcbce3"})
    hours = fields.Float(required=True, metadata={"example": 2.5})
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata={"example": "patrol"})
    source = fields.String(required=True, metadata={"example": "patrol"})
    source_id = fields.String(required=True, metadata={"example": "0f1e2d3c4b5a697887a6b5c4"})
    service_date = fields.String(required=True, metadata={"format": "date", "example": DATE_EXAMPLE})
    result = fields.String(required=True, allow_none=True, validate=validate.OneOf(["passed", "failed"]),
                           metadata={"description": "null until checked", "example": None})
    note = fields.String(required=True, allow_none=True)
    checked_by = fields.String(required=True, allow_none=True)
    checked_at = Timestamp(required=True, allow_none=True)
    reversal_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the entry that reversed a failed one"})


class SpotCheckSchema(Schema):
    id = fields.String(required=True, metadata={"example": "5d4c3b2a19f8e7d6c5b4a392"})
    year = fields.Integer(required=True, metadata={"example": 2026})
    size = fields.Integer(required=True, metadata={"example": 30})
    seed = fields.Integer(required=True, metadata={
        "description": "drawn by the server: the same seed over the same ledger draws the same entries",
        "example": 4811390245981123})
    created_by = fields.String(required=True, metadata={"example": "office:office-1"})
    created_at = Timestamp(required=True)
    items = fields.List(fields.Nested(CheckedEntrySchema), required=True)


class SpotCheckResultSchema(Schema):
    entry_id = text(1, 64, "a1b2c3d4e5f60718293a4b5c", required=True)
    passed = fields.Boolean(required=True, metadata={"example": False})
    note = text(2, 500, "签到表无该志愿者签名", required=True)


class SpotCheckQuerySchema(PageQuery):
    year = fields.Integer(validate=YEAR, metadata={"example": 2026})


class SpotCheckListedSchema(Schema):
    id = fields.String(required=True, metadata={"example": "5d4c3b2a19f8e7d6c5b4a392"})
    year = fields.Integer(required=True, metadata={"example": 2026})
    size = fields.Integer(required=True, metadata={"example": 30})
    seed = fields.Integer(required=True, metadata={"example": 4811390245981123})
    created_by = fields.String(required=True, metadata={"example": "office:office-1"})
    created_at = Timestamp(required=True)
    drawn = fields.Integer(required=True, metadata={"description": "entries drawn", "example": 30})
    checked = fields.Integer(required=True, metadata={"description": "entries with a result", "example": 12})
    failed = fields.Integer(required=True, metadata={"description": "entries that failed (reversed)", "example": 1})


class SpotCheckPageSchema(Schema):
    items = fields.List(fields.Nested(SpotCheckListedSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
