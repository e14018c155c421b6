"""/v1/activities: planning, completing and reading service activities; objections and their decisions."""
from __future__ import annotations

from flask import request

from shared import idempotency
from shared.auth import current_caller, requires
from shared.openapi import link, links

from .. import domain, schemas
from ..usecases import activities as use
from .blueprints import activities as blueprint
from .blueprints import hours, now

ACTIVITY_READERS = ("volunteer", "grid_leader", "association", "office", "service")
ACTIVITY_LINKS = {name: link(f"/v1/activities/{{activity_id}}{path}", method, activity_id="$response.body#/id")
                  for name, path, method in (("GetActivity", "", "get"), ("CompleteActivity", "/complete", "post"),
                                             ("ObjectToActivity", "/objections", "post"))}


@blueprint.route("", methods=["POST"])
@requires(*domain.ACTIVITY_ORGANISERS)
@blueprint.arguments(schemas.ActivityCreateSchema)
@blueprint.response(201, schemas.ActivitySchema)
@blueprint.doc(**links(201, idempotency.REPLAYED, **ACTIVITY_LINKS))
@blueprint.alt_response(409, description="The Idempotency-Key was used with another body")
@blueprint.doc(parameters=[idempotency.HEADER_PARAMETER])
def create_activity(fields: dict):
    """Plan a service activity (a grid leader: in their own grid cell)."""
    caller = current_caller()
    stored, created = use.create_activity(hours(), caller, fields, idempotency.requested_key(caller.id),
                                          idempotency.fingerprint(request.get_json()), now())
    return stored, 201, idempotency.replay_header(created)


@blueprint.route("", methods=["GET"])
@requires(*ACTIVITY_READERS)
@blueprint.arguments(schemas.ActivityQuerySchema, location="query")
@blueprint.response(200, schemas.ActivityPageSchema)
def list_activities(query: dict):
    """Activities, newest first: what is publicised now, for anyone in the association to see."""
    return use.activities_page(hours(), current_caller(), query)


@blueprint.route("/<activity_id>", methods=["GET"])
@requires(*ACTIVITY_READERS)
@blueprint.response(200, schemas.ActivitySchema)
@blueprint.doc(**links(200, **ACTIVITY_LINKS))
def get_activity(activity_id: str):
    """One activity, with its participants' hours and any objections (who raised one: for the association and
    the office only)."""
    return use.shown_activity(hours(), current_caller(), activity_id)


@blueprint.route("/<activity_id>/complete", methods=["POST"])
@requires(*domain.ACTIVITY_ORGANISERS)
@blueprint.arguments(schemas.CompletionSchema)
@blueprint.response(200, schemas.ActivitySchema)
@blueprint.alt_response(409, description="Completed before, not ended yet, or a participant was elsewhere then")
def complete_activity(body: dict, activity_id: str):
    """Record who took part and for how long, with a summary and at least 4 photos: the hours are publicised
    for the publicity window (3 working days by default) and credited when it ends without objection.
    Completing again credits nothing twice."""
    return use.complete_activity(hours(), current_caller(), activity_id, body, now())


@blueprint.route("/<activity_id>/objections", methods=["POST"])
@requires("volunteer", "grid_leader", "association", "office")
@blueprint.arguments(schemas.ObjectionCreateSchema)
@blueprint.response(201, schemas.ObjectionSchema)
@blueprint.alt_response(409, description="The publicity window is over, the hours are held or decided, or an "
                                         "objection to them was dismissed already")
def object_to_activity(body: dict, activity_id: str):
    """Object to a participant's publicised hours (anyone in the association, during the window): the hours
    are held until the association decides. A participant's hours are objected to once: after a dismissal
    the association has decided. Who objected is shown to the association and the office only."""
    return use.object_to_activity(hours(), current_caller(), activity_id, body, now()), 201


@blueprint.route("/<activity_id>/objections/<objection_id>/decision", methods=["POST"])
@requires("association")
@blueprint.arguments(schemas.ObjectionDecisionSchema)
@blueprint.response(200, schemas.ObjectionSchema)
@blueprint.alt_response(409, description="Decided before")
def decide_objection(body: dict, activity_id: str, objection_id: str):
    """Uphold an objection (the participant's hours are declined) or dismiss it (they are publicised again
    and credited with the others)."""
    return use.decide_objection(hours(), current_caller(), activity_id, objection_id, body, now())
