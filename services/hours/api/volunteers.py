"""/v1/volunteers: registering volunteers (one, or a roster), reading them, their summary and ledger."""
from __future__ import annotations

from flask import request

from shared import idempotency
from shared.auth import current_caller, requires
from shared.logs import correlation_id
from shared.openapi import link, links
from shared.web import accepts_multipart

from .. import domain, schemas
from ..usecases import volunteers as use
from .blueprints import hours, now
from .blueprints import volunteers as blueprint

STAFF = domain.STAFF
VOLUNTEER_READERS = ("association", "office", "grid_leader", "volunteer", "service")
VOLUNTEER_LINKS = {name: link(f"/v1/volunteers/{{volunteer_id}}{path}", "get", volunteer_id="$response.body#/id")
                   for name, path in (("GetVolunteer", ""), ("GetSummary", "/summary"), ("GetLedger", "/ledger"))}


@blueprint.route("", methods=["POST"])
@requires(*STAFF)
@blueprint.arguments(schemas.VolunteerCreateSchema)
@blueprint.response(201, schemas.VolunteerSchema)
@blueprint.doc(**links(201, idempotency.REPLAYED, **VOLUNTEER_LINKS))
@blueprint.alt_response(409, description="The phone is already registered in this organisation, or the "
                                         "Idempotency-Key was used with another body")
@blueprint.doc(parameters=[idempotency.HEADER_PARAMETER])
def register_volunteer(fields: dict):
    """Register a volunteer; the phone and organisation identify them. Their token's `sub` is the returned id."""
    caller = current_caller()
    shown, created = use.register_volunteer(hours(), caller, fields, idempotency.requested_key(caller.id),
                                            idempotency.fingerprint(request.get_json()), correlation_id.get(), now())
    return shown, 201, idempotency.replay_header(created)


@blueprint.route("/import", methods=["POST"])
@accepts_multipart
@requires(*STAFF)
@blueprint.arguments(schemas.RosterUploadSchema, location="files")
@blueprint.response(200, schemas.RosterResultSchema)
@blueprint.alt_response(422, description="Not a readable roster (format, header, columns, over 10,000 rows, "
                                         "an XLSX unpacking to over 50 MiB); "
                                         "bad rows are not an error: they are listed in `errors`")
def import_roster(form):
    """Register an association's roster (XLSX or CSV): good rows are registered, rows already registered
    change nothing, and every bad row is reported with its row number and reason."""
    return use.import_roster(hours(), current_caller(), form["file"].read(), correlation_id.get(), now())


@blueprint.route("", methods=["GET"])
@requires("association", "office", "grid_leader", "service")
@blueprint.arguments(schemas.VolunteerQuerySchema, location="query")
@blueprint.response(200, schemas.VolunteerPageSchema)
def list_volunteers(query: dict):
    """Volunteers you may see (a grid leader: their grid's), newest registration first."""
    return use.volunteers_page(hours(), current_caller(), query)


@blueprint.route("/<string(length=24):volunteer_id>", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@blueprint.response(200, schemas.VolunteerSchema)
@blueprint.doc(**links(200, **VOLUNTEER_LINKS))
def get_volunteer(volunteer_id: str):
    """One volunteer: yourself, or one you may see."""
    return use.shown_volunteer(hours(), current_caller(), volunteer_id)


@blueprint.route("/<string(length=24):volunteer_id>/summary", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@blueprint.arguments(schemas.SummaryQuerySchema, location="query")
@blueprint.response(200, schemas.SummarySchema)
def volunteer_summary(query: dict, volunteer_id: str):
    """Hours in total and in the year, waiting hours, star level, the annual minimum, verified reports."""
    return use.summary(hours(), current_caller(), volunteer_id, query.get("year"), now())


@blueprint.route("/<string(length=24):volunteer_id>/ledger", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@blueprint.arguments(schemas.LedgerQuerySchema, location="query")
@blueprint.response(200, schemas.EntryPageSchema)
def volunteer_ledger(query: dict, volunteer_id: str):
    """The volunteer's ledger entries, newest first; entries are never changed or deleted."""
    return use.ledger_page(hours(), current_caller(), volunteer_id, query)
