"""The one app factory: problem+json errors, auth, health, readiness, metrics and OpenAPI docs.

OpenAPI comes from flask-smorest, which builds the document from the marshmallow schemas the
blueprints already use for validation, so the docs cannot drift from the code.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable

import swagger_ui_bundle
from flask import Flask, Response, g, request, send_from_directory
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException

from shared import logs, metrics
from shared.config import DEV_JWT_SECRET, Settings
from shared.errors import DomainError, UnsupportedMediaType, problem, problem_from

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024 + 64 * 1024  # a 10 MiB photo plus its multipart envelope
ReadinessCheck = Callable[[], "str | None"]
# Swagger UI is served from the installed package, not a CDN: city networks are often closed.
DOCS_ASSETS = "/docs/assets"

_HTTP_SLUGS = {400: "malformed-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
               405: "method-not-allowed", 409: "conflict", 413: "too-large", 415: "unsupported-media-type",
               422: "invalid-fields", 429: "rate-limited", 503: "unavailable"}


def accepts_multipart(view: Callable) -> Callable:
    """Mark a view that takes multipart/form-data instead of JSON."""
    view._woodpecker_multipart = True
    return view


def _flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """webargs nests errors by location and field; the problem's `errors` is flat: {field: [...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = str(key) if key not in ("json", "query", "files", "form", "view_args", "headers") else ""
            path = ".".join(p for p in (prefix, name) if p)
            for field, texts in _flatten(value, path).items():
                flat.setdefault(field, []).extend(texts)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        flat[prefix or "_body"] = list(messages)
    elif isinstance(messages, list):
        for index, item in enumerate(messages):
            flat.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "_body"] = [str(messages)]
    return flat


class ProblemSchema(Schema):
    """RFC 9457 problem details, the body of every error (media type application/problem+json)."""

    type = fields.String(metadata={"example": "https://woodpecker.example/problems/invalid-fields"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "per-field messages (validation errors)"})


class ProblemApi(Api):
    """flask-smorest's Api, answering every HTTP error with RFC 9457 problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        errors = None
        detail = error.description or ""
        messages = (getattr(error, "data", None) or {}).get("messages")
        if messages:
            errors = _flatten(messages)
            if status == 422:
                detail = "Some fields are invalid; see errors."
            elif status == 400:
                detail = "; ".join(m for texts in errors.values() for m in texts)
        headers = {k: v for k, v in error.get_headers() if k.lower() in ("allow", "retry-after")}
        return problem(status, _HTTP_SLUGS.get(status, "http-error"), error.name, detail, errors, headers)


def _readiness_blueprint(checks: list[ReadinessCheck]) -> Blueprint:
    blp = Blueprint("health", __name__, description="Liveness, readiness and metrics")

    @blp.route("/healthz")
    @blp.doc(security=[], summary="Process alive (no I/O)")
    def healthz():
        return {"status": "ok"}

    @blp.route("/readyz")
    @blp.doc(security=[], summary="Store and broker reachable; 503 with reasons if not")
    def readyz():
        reasons = [reason for check in checks if (reason := check())]
        if reasons:
            return problem(503, "not-ready", "Not ready", "; ".join(reasons), {"reasons": reasons})
        return {"status": "ready"}

    @blp.route("/metrics")
    @blp.doc(security=[], summary="Prometheus metrics (text format)")
    def prometheus_metrics():
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return blp


def create_service_app(settings: Settings, *, title: str, description: str,
                       blueprints: Iterable[Blueprint] = (), readiness: Iterable[ReadinessCheck] = ()) -> Flask:
    if settings.jwt_secret == DEV_JWT_SECRET:
        log.warning("WOODPECKER_JWT_SECRET is not set: tokens are signed with the public development secret")
    app = Flask(settings.service)
    app.config.update(
        WOODPECKER_SETTINGS=settings,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_AS_ASCII=False,
        API_TITLE=title,
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{DOCS_ASSETS}/",
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.json.ensure_ascii = False
    app.add_url_rule(f"{DOCS_ASSETS}/<path:filename>", "docs_assets",
                     lambda filename: send_from_directory(swagger_ui_bundle.swagger_ui_path, filename))
    api = ProblemApi(app)
    api.register_blueprint(_readiness_blueprint(list(readiness)))
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    _install_request_hooks(app, settings.service)
    _install_error_handlers(app)
    return app


def _install_request_hooks(app: Flask, service: str) -> None:
    @app.before_request
    def begin():
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        g.log_token = logs.correlation_id.set(g.request_id)
        if request.method in ("POST", "PUT", "PATCH") and (request.content_length or request.mimetype):
            view = app.view_functions.get(request.endpoint)
            wanted = "multipart/form-data" if getattr(view, "_woodpecker_multipart", False) else "application/json"
            if request.content_length and request.mimetype != wanted:
                raise UnsupportedMediaType(f"Send the body as {wanted}, not {request.mimetype or 'untyped'}.")

    @app.after_request
    def finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.http_requests.labels(service, request.method, endpoint, response.status_code).inc()
        if "started" in g:
            metrics.http_latency.labels(service, request.method, endpoint).observe(time.perf_counter() - g.started)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    @app.teardown_request
    def forget(_exc):
        if "log_token" in g:
            logs.correlation_id.reset(g.log_token)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        return problem_from(error)

    @app.errorhandler(ConnectionFailure)
    def store_unavailable(error: ConnectionFailure):
        # The request may or may not have been stored: a retry with the same Idempotency-Key is safe.
        log.warning("store unavailable", extra={"error": str(error)})
        return problem(503, "store-unavailable", "Service unavailable",
                       "Our database is briefly unavailable; retry shortly (with the same Idempotency-Key).",
                       headers={"Retry-After": "2"})

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        return problem(500, "internal-error", "Internal server error",
                       "Something went wrong on our side; the request id identifies it in our logs.")

