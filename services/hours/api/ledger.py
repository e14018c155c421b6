"""/v1/adjustments and /v1/entries: adjustments, reading an entry, reversing one."""
from __future__ import annotations

from flask import request

from shared import idempotency
from shared.auth import current_caller, requires
from shared.logs import correlation_id

from .. import domain, schemas
from ..usecases import actor_label
from ..usecases import ledger as use
from .blueprints import hours, now
from .blueprints import ledger as blueprint
from .volunteers import VOLUNTEER_READERS


@blueprint.route("/adjustments", methods=["POST"])
@requires("association")
@blueprint.arguments(schemas.AdjustmentSchema)
@blueprint.response(201, schemas.EntrySchema)
@blueprint.alt_response(409, description="The Idempotency-Key was used with another body (another volunteer, "
                                         "other hours)")
@blueprint.doc(parameters=[idempotency.HEADER_PARAMETER])
def adjust_hours(fields: dict):
    """Credit (or, negative, debit) hours with a reason: a new ledger entry, never an edit. Hours are whole
    hundredths of an hour."""
    caller = current_caller()
    stored, created = use.adjust_hours(hours(), caller, fields, idempotency.requested_key(caller.id),
                                       idempotency.fingerprint(request.get_json()), correlation_id.get(), now())
    return stored, 201, idempotency.replay_header(created)


@blueprint.route("/entries/<entry_id>", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@blueprint.response(200, schemas.EntrySchema)
def get_entry(entry_id: str):
    """One ledger entry of a volunteer you may see."""
    return use.readable_entry(hours(), current_caller(), entry_id)


@blueprint.route("/entries/<entry_id>/reverse", methods=["POST"])
@requires(*domain.STAFF)
@blueprint.arguments(schemas.ReverseSchema)
@blueprint.response(201, schemas.EntrySchema)
@blueprint.alt_response(409, description="Already reversed, or itself a reversal")
def reverse_entry(body: dict, entry_id: str):
    """Reverse an entry with a reason: a new entry of the opposite hours, pointing at it."""
    return use.reverse_entry(hours(), actor_label(current_caller()), entry_id, body["reason"], correlation_id.get(),
                             now()), 201
