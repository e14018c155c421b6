"""/v1/patrols: recording a patrol, reading patrols, confirming or declining one."""
from __future__ import annotations

from flask import request

from shared import idempotency
from shared.auth import current_caller, requires
from shared.logs import correlation_id
from shared.openapi import link, links

from .. import schemas
from ..usecases import patrols as use
from .blueprints import hours, now
from .blueprints import patrols as blueprint

PATROL_LINKS = {"GetPatrol": link("/v1/patrols/{patrol_id}", "get", patrol_id="$response.body#/id"),
                "ConfirmPatrol": link("/v1/patrols/{patrol_id}/confirm", "post", patrol_id="$response.body#/id"),
                "DeclinePatrol": link("/v1/patrols/{patrol_id}/decline", "post", patrol_id="$response.body#/id")}


@blueprint.route("", methods=["POST"])
@requires("volunteer", "grid_leader")
@blueprint.arguments(schemas.PatrolCreateSchema)
@blueprint.response(201, schemas.PatrolSchema)
@blueprint.doc(**links(201, idempotency.REPLAYED, **PATROL_LINKS))
@blueprint.alt_response(403, description="Not a registered volunteer")
@blueprint.alt_response(409, description="Overlaps another patrol of yours, or the Idempotency-Key was used with "
                                         "another body")
@blueprint.doc(parameters=[idempotency.HEADER_PARAMETER])
def record_patrol(fields: dict):
    """Record a patrol you walked (a volunteer, or a grid leader registered as one). Each distinct report you
    submitted in its grid while it ran credits up to an hour of it at once (`evidence_hours_per_report`); the
    rest waits for the grid leader or the association (beyond 8 hours a day, or a grid leader's own patrol in
    their grid: the association)."""
    caller = current_caller()
    stored, created = use.record_patrol(hours(), caller, fields, idempotency.requested_key(caller.id),
                                        idempotency.fingerprint(request.get_json()), correlation_id.get(), now())
    return stored, 201, idempotency.replay_header(created)


@blueprint.route("", methods=["GET"])
@requires("volunteer", "grid_leader", "association", "office", "service")
@blueprint.arguments(schemas.PatrolQuerySchema, location="query")
@blueprint.response(200, schemas.PatrolPageSchema)
def list_patrols(query: dict):
    """Patrols you may see (yours; a grid leader's grid's; all for staff), newest first."""
    return use.patrols_page(hours(), current_caller(), query)


@blueprint.route("/<patrol_id>", methods=["GET"])
@requires("volunteer", "grid_leader", "association", "office", "service")
@blueprint.response(200, schemas.PatrolSchema)
def get_patrol(patrol_id: str):
    """One patrol you may see."""
    return use.readable_patrol(hours(), current_caller(), patrol_id)


@blueprint.route("/<patrol_id>/confirm", methods=["POST"])
@requires("grid_leader", "association")
@blueprint.arguments(schemas.DecisionSchema)
@blueprint.response(200, schemas.PatrolSchema)
@blueprint.alt_response(403, description="Your own patrol, or one only the association decides")
@blueprint.alt_response(409, description="The patrol is not waiting")
def confirm_patrol(body: dict, patrol_id: str):
    """Confirm a waiting patrol: its waiting hours are credited. Nobody confirms their own patrol; beyond the
    daily cap, and for a grid leader's patrol in their own grid, only the association may."""
    return use.decide_patrol(hours(), current_caller(), patrol_id, True, body["note"], correlation_id.get(), now())


@blueprint.route("/<patrol_id>/decline", methods=["POST"])
@requires("grid_leader", "association")
@blueprint.arguments(schemas.DeclineSchema)
@blueprint.response(200, schemas.PatrolSchema)
@blueprint.alt_response(403, description="Your own patrol, or one only the association decides")
@blueprint.alt_response(409, description="The patrol is not waiting")
def decline_patrol(body: dict, patrol_id: str):
    """Decline a waiting patrol, saying why: its waiting hours are declined and what its reports credited at
    once is taken back (reversing entries); what a person confirmed before stands."""
    return use.decide_patrol(hours(), current_caller(), patrol_id, False, body["note"], correlation_id.get(), now())
