"""Proofs of service (志愿服务证明): a volunteer's proof of a year as a PDF, and the public check of a proof
by its code."""
from __future__ import annotations

from flask import Response, current_app

from shared.auth import current_caller, requires
from shared.web import serves_export

from .. import domain, schemas
from ..usecases import records as use
from .blueprints import hours, now, records, volunteers


@volunteers.route("/<string(length=24):volunteer_id>/proof", methods=["GET"])
@serves_export
@requires("volunteer", "association", "office")
@volunteers.arguments(schemas.ProofQuerySchema, location="query")
@volunteers.response(200, content_type="application/pdf", description="The proof of service (志愿服务证明)")
@volunteers.doc(responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def proof_of_service(query: dict, volunteer_id: str):
    """A proof of the year's service, free of charge, with a number and a verification code that anyone can
    check at /v1/proofs/{code}. Asking again for unchanged figures gives the same proof, the same bytes."""
    pdf, record = use.proof_of_service(hours(), current_caller(), volunteer_id, query.get("year"),
                                       current_app.config["HOURS_PUBLIC_URL"], now())
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="proof-{record["number"]}.pdf"'})


@records.route("/proofs/<code>", methods=["GET"])
@records.doc(security=[])
@records.response(200, schemas.ProofVerdictSchema)
@records.doc(parameters=[{"in": "path", "name": "code", "required": True,
                          "schema": {"type": "string", "pattern": domain.CODE_PATTERN}}])
def verify_proof(code: str):
    """Anyone may check a proof by its code (no token): whether its figures still match the ledger, with the
    name masked and nothing else personal."""
    return use.verify_proof(hours(), code)
