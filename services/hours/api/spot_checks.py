"""/v1/spot-checks: drawing a spot check, reading checks, recording each drawn entry's result."""
from __future__ import annotations

from flask import request

from shared import idempotency
from shared.auth import current_caller, requires
from shared.logs import correlation_id
from shared.openapi import link, links

from .. import schemas
from ..usecases import spot_checks as use
from .blueprints import hours, now
from .blueprints import spot_checks as blueprint


@blueprint.route("", methods=["POST"])
@requires("office")
@blueprint.arguments(schemas.SpotCheckCreateSchema)
@blueprint.response(201, schemas.SpotCheckSchema)
@blueprint.doc(**links(201, idempotency.REPLAYED, GetSpotCheck=link(
    "/v1/spot-checks/{check_id}", "get", check_id="$response.body#/id")))
@blueprint.alt_response(409, description="The Idempotency-Key was used with another body")
@blueprint.doc(parameters=[idempotency.HEADER_PARAMETER])
def draw_spot_check(fields: dict):
    """Draw a random sample of the year's credited entries to check; fewer than `size` when the year holds
    fewer. The server draws the seed and records it on the check (the same seed over the same ledger draws the
    same entries), and every check drawn stays listed (`GET /v1/spot-checks`)."""
    caller = current_caller()
    stored, created = use.draw_spot_check(hours(), caller, fields, idempotency.requested_key(caller.id),
                                          idempotency.fingerprint(request.get_json()), now())
    return stored, 201, idempotency.replay_header(created)


@blueprint.route("", methods=["GET"])
@requires("office", "association")
@blueprint.arguments(schemas.SpotCheckQuerySchema, location="query")
@blueprint.response(200, schemas.SpotCheckPageSchema)
def list_spot_checks(query: dict):
    """Every spot check drawn (of `year`), newest first, with its seed and how far it got: a sample drawn
    again stays on the list for anyone auditing."""
    return use.spot_checks_page(hours(), query)


@blueprint.route("/<check_id>", methods=["GET"])
@requires("office", "association")
@blueprint.response(200, schemas.SpotCheckSchema)
def get_spot_check(check_id: str):
    """A spot check with each drawn entry and its result so far."""
    return use.known_spot_check(hours(), check_id)


@blueprint.route("/<check_id>/results", methods=["POST"])
@requires("office")
@blueprint.arguments(schemas.SpotCheckResultSchema)
@blueprint.response(200, schemas.SpotCheckSchema)
@blueprint.alt_response(409, description="This entry was checked already")
def record_spot_check_result(body: dict, check_id: str):
    """Record one drawn entry's result; a failed entry is reversed with the check as its reason."""
    return use.record_result(hours(), current_caller(), check_id, body["entry_id"], passed=body["passed"],
                             note=body["note"], correlation_id=correlation_id.get(), now=now())
