"""What every service's OpenAPI document says beyond what each blueprint declares, so that it tells the
whole truth: every error is `application/problem+json`, and every operation lists each error it can
answer with. A front-end team generates its client from the document; an answer the document does not
list is one the client cannot read.

These are apispec plugins: flask-smorest hands them each operation as it registers it.
"""
from __future__ import annotations

import http
from typing import Any

from apispec import APISpec, BasePlugin
from marshmallow import Schema, fields

from shared.errors import PROBLEM_MEDIA_TYPE

SECONDS = {"schema": {"type": "integer", "minimum": 0}}
# flask-smorest registers ProblemSchema (the Api's ERROR_SCHEMA) under this name.
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class ProblemSchema(Schema):
    """RFC 9457 problem details, the body of every error (media type application/problem+json)."""

    type = fields.String(required=True, metadata={"example": "https://woodpecker.example/problems/invalid-fields"})
    title = fields.String(required=True, metadata={"example": "Invalid fields"})
    status = fields.Integer(required=True, metadata={"example": 422})
    detail = fields.String(required=True, metadata={"example": "Some fields are invalid; see errors."})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "per-field messages (validation errors), or a readiness "
                                                  "check's `reasons`",
                                   "example": {"description": ["Length must be between 5 and 2000."]}})


def problem_response(description: str, headers: dict | None = None) -> dict:
    # By reference: responses added after flask-smorest has resolved its schemas cannot name the class.
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
            **({"headers": headers} if headers else {})}


RETRY_AFTER_HEADER = {"Retry-After": {"description": "Seconds to wait", **SECONDS}}
# What any operation may answer besides what it declares, and when.
STORE_OR_BROKER_AWAY = problem_response("The database is briefly unavailable (or the service busy, or the identity "
                                        "provider's keys cannot be fetched to check the token): nothing was done; "
                                        "retry after Retry-After seconds", RETRY_AFTER_HEADER)


def register_problem_responses(spec: APISpec) -> None:
    """flask-smorest's named responses (UNAUTHORIZED, …), as problem+json rather than plain JSON."""
    spec.components.schema("Problem", schema=ProblemSchema)
    for status in http.HTTPStatus:
        if status >= 400:
            spec.components.response(status.name, problem_response(status.phrase), lazy=True)
    spec.components.response("DEFAULT_ERROR", problem_response("Any other error"), lazy=True)


class ErrorResponses(BasePlugin):
    """Every error an operation can answer, each as problem+json: those it declares (completed with the
    problem schema when they carry only a description), and those the app factory gives every request."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        rule = kwargs.get("rule")
        for method, operation in (operations or {}).items():
            if rule is not None:
                # The view's name (submit_report, accept_case): what generated clients name their functions.
                operation.setdefault("operationId", rule.endpoint.rsplit(".", 1)[-1])
            responses = operation.setdefault("responses", {})
            for status, response in list(responses.items()):
                if _is_error(status) and isinstance(response, dict) and "content" not in response:
                    responses[status] = problem_response(response.get("description", ""), response.get("headers"))
            if path and path.startswith("/v1/"):
                for status, name in _implied(method, path, operation):
                    responses.setdefault(status, name)
                responses.setdefault(503, STORE_OR_BROKER_AWAY)


def _is_error(status: int | str) -> bool:
    return str(status).isdigit() and int(status) >= 400


def _implied(method: str, path: str, operation: dict) -> list[tuple[int, str]]:
    """The errors the app factory answers for an operation of this shape, whatever its view does."""
    # 414 and 431: the web server's limits on the request line and the headers (deploy/gunicorn.conf.py).
    implied = [(401, "UNAUTHORIZED"), (414, "REQUEST_URI_TOO_LONG"), (431, "REQUEST_HEADER_FIELDS_TOO_LARGE")]
    if "{" in path:
        implied.append((404, "NOT_FOUND"))
    if any(parameter.get("in") == "query" for parameter in operation.get("parameters", [])):
        implied.append((422, "UNPROCESSABLE_ENTITY"))
    if "requestBody" in operation:
        implied += [(400, "BAD_REQUEST"), (413, "REQUEST_ENTITY_TOO_LARGE"), (415, "UNSUPPORTED_MEDIA_TYPE"),
                    (422, "UNPROCESSABLE_ENTITY")]
    return implied


def link(path: str, method: str, **parameters: str) -> dict:
    """An OpenAPI link to the operation `method path`, its parameters taken from this response
    (e.g. report_id="$response.body#/id"): what a client, or a stateful test, calls next."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method.lower()}", "parameters": parameters}


def links(status: int, headers: dict | None = None, **named: dict) -> dict:
    """`@blueprint.doc(**links(201, GetReport=link(...)))`, with the response's headers if it has some."""
    return {"responses": {status: {"links": named, **({"headers": headers} if headers else {})}}}
