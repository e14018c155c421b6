"""The one app factory: problem+json errors, auth, health, readiness, metrics, rate limits, CORS and
OpenAPI docs.

OpenAPI comes from flask-smorest, which builds the document from the marshmallow schemas the
blueprints already use for validation, so the docs cannot drift from the code.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import swagger_ui_bundle
from apispec import APISpec, BasePlugin
from flask import Flask, Response, g, request, send_from_directory
from flask_cors import CORS
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields, validate
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure, PyMongoError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import logs, metrics
from shared.audit import NOT_ENTERED, AuditLog, audit_blueprint, audit_entry
from shared.auth import Caller, Tokens, accepted_tokens, current_caller
from shared.config import DEV_JWT_SECRET, Settings
from shared.errors import HTTP_SLUGS, DomainError, UnsupportedMediaType, problem, problem_from
from shared.oidc import ProviderTokens
from shared.openapi import ErrorResponses, ProblemSchema, problem_response, register_problem_responses
from shared.ratelimit import EXPORT, READ, UPLOAD, WRITE, WRITE_METHODS, RateLimiter
from shared.spreadsheets import SpreadsheetCache

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024 + 64 * 1024  # a 10 MiB photo plus its multipart envelope
ReadinessCheck = Callable[[], "str | None"]
# Swagger UI is served from the installed package, not a CDN: city networks are often closed.
DOCS_ASSETS = "/docs/assets"

# What a browser front end on an allowed origin may send, and read, beyond what CORS always allows.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"]
CORS_RESPONSE_HEADERS = ["Retry-After", "Idempotent-Replayed", "X-Request-Id", "Content-Disposition",
                         "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
CORS_MAX_AGE_S = 600  # how long a browser may reuse a preflight's answer

# What a caller may send as X-Request-Id (it reaches our logs and the correlation id of events): anything else is
# replaced by an id of our own.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# A JSON body nested deeper than this is refused before anything walks it (recursion in a parser, a validator,
# a fingerprint); no body of ours comes near.
MAX_JSON_DEPTH = 32
# A problem lists at most this many fields, each with at most this many messages, each at most this long: an
# answer to a body of a million unknown keys stays small.
MOST_ERROR_FIELDS, MOST_ERROR_MESSAGES, LONGEST_ERROR_TEXT = 20, 3, 300
# Endpoints no limit counts: probes, metrics and the API's own documents.
UNLIMITED_BLUEPRINTS = ("health", "api-docs")


def accepts_multipart(view: Callable) -> Callable:
    """Mark a view that takes multipart/form-data instead of JSON (an upload, with its own rate limit)."""
    view._woodpecker_multipart = True
    return view


def _takes_multipart(view: Callable | None) -> bool:
    return getattr(view, "_woodpecker_multipart", False)


def serves_export(view: Callable) -> Callable:
    """Mark a view that always answers a document costly to build (a PDF): it counts against the exports limit.
    Any view asked for `format=xlsx` does too."""
    view._woodpecker_export = True
    return view


def request_kind(view: Callable | None, method: str, wanted_format: str | None) -> str:
    """What a request counts as for the rate limits: an upload, a write, an export or a read."""
    if method in WRITE_METHODS:
        return UPLOAD if _takes_multipart(view) else WRITE
    return EXPORT if getattr(view, "_woodpecker_export", False) or wanted_format == "xlsx" else READ


def json_depth_exceeds(value, most: int) -> bool:
    """Whether `value` (parsed JSON) nests containers deeper than `most`, found without recursion."""
    level = [value]
    for _ in range(most):
        level = [child for item in level if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def bounded_errors(errors: dict[str, list[str]]) -> tuple[dict[str, list[str]], int]:
    """At most MOST_ERROR_FIELDS fields of `errors`, their messages cut short; and how many fields were left out."""
    shown = {field[:LONGEST_ERROR_TEXT]: [text[:LONGEST_ERROR_TEXT] for text in texts[:MOST_ERROR_MESSAGES]]
             for field, texts in list(errors.items())[:MOST_ERROR_FIELDS]}
    return shown, max(0, len(errors) - MOST_ERROR_FIELDS)


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


class ProblemApi(Api):
    """flask-smorest's Api, answering every HTTP error with RFC 9457 problem+json, and saying so."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        register_problem_responses(self.spec)

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        errors = None
        detail = error.description or ""
        messages = (getattr(error, "data", None) or {}).get("messages")
        if messages:
            errors, left_out = bounded_errors(_flatten(messages))
            more = f" ({left_out} more fields not listed)" if left_out else ""
            if status == 422:
                detail = f"Some fields are invalid; see errors{more}."
            elif status == 400:
                detail = "; ".join(m for texts in errors.values() for m in texts) + more
        headers = {k: v for k, v in error.get_headers() if k.lower() in ("allow", "retry-after")}
        return problem(status, HTTP_SLUGS.get(status, "http-error"), error.name, detail, errors=errors,
                       headers=headers)


class RateLimitDocs(BasePlugin):
    """Documents the 429 answer on every operation a rate limit applies to (an apispec plugin: it sees
    each operation as flask-smorest registers it)."""

    def __init__(self, app: Flask, limiter: RateLimiter):
        self.app, self.limiter = app, limiter

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        seconds = {"schema": {"type": "integer"}}
        spec.components.response("RATE_LIMITED", problem_response(
            "Over a rate limit (per caller or per client address); the detail says which",
            {"Retry-After": {"description": "Seconds until the limit's next window", **seconds},
             "RateLimit-Limit": {"description": "Requests allowed per window", **seconds},
             "RateLimit-Remaining": {"description": "Requests left in this window", **seconds},
             "RateLimit-Reset": {"description": "Seconds until the window ends", **seconds}}))

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs) -> None:
        rule = kwargs.get("rule")
        if rule is None or rule.endpoint.split(".")[0] in UNLIMITED_BLUEPRINTS:
            return
        view = self.app.view_functions.get(rule.endpoint)
        for method, operation in (operations or {}).items():
            if self.limiter.applies(kind=request_kind(view, method.upper(), None)):
                operation.setdefault("responses", {})[429] = "RATE_LIMITED"


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]), metadata={"example": "ok"})


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready"]), metadata={"example": "ready"})


def _readiness_blueprint(checks: list[ReadinessCheck]) -> Blueprint:
    blp = Blueprint("health", __name__, description="Liveness, readiness and metrics")

    @blp.route("/healthz")
    @blp.doc(security=[], summary="Process alive (no I/O)")
    @blp.response(200, HealthSchema)
    def healthz():
        return {"status": "ok"}

    @blp.route("/readyz")
    @blp.doc(security=[], summary="Store and broker reachable; 503 with reasons if not")
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, description="Not ready: errors.reasons says which dependency is down")
    def readyz():
        reasons = [reason for check in checks if (reason := check())]
        if reasons:
            return problem(503, "not-ready", "Not ready", "; ".join(reasons), errors={"reasons": reasons})
        return {"status": "ready"}

    @blp.route("/metrics")
    @blp.doc(security=[], summary="Prometheus metrics (text format)")
    @blp.response(200, content_type="text/plain", description="Prometheus text exposition format 0.0.4")
    @blp.doc(responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def prometheus_metrics():
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return blp


def create_service_app(settings: Settings, *, title: str, description: str,
                       blueprints: Iterable[Blueprint] = (), readiness: Iterable[ReadinessCheck] = ()) -> Flask:
    if settings.jwt_secret == DEV_JWT_SECRET:
        log.warning("WOODPECKER_JWT_SECRET is not set: tokens are signed with the public development secret")
    tokens = _accepted_tokens(settings)
    app = Flask(settings.service)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0)
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
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                               "description": accepted_tokens(settings)}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.json.ensure_ascii = False
    app.add_url_rule(f"{DOCS_ASSETS}/<path:filename>", "docs_assets",
                     lambda filename: send_from_directory(swagger_ui_bundle.swagger_ui_path, filename))
    limiter = RateLimiter.from_settings(settings)
    audit = AuditLog.from_settings(settings)
    spreadsheets = SpreadsheetCache.from_settings(settings)
    _prepare_in_store(limiter, audit, spreadsheets)
    app.extensions["tokens"] = tokens
    app.extensions["rate_limits"] = limiter
    app.extensions["audit"] = audit
    app.extensions["spreadsheets"] = spreadsheets
    api = ProblemApi(app, spec_kwargs={"extra_plugins": [RateLimitDocs(app, limiter), ErrorResponses()]})
    api.register_blueprint(_readiness_blueprint(list(readiness)))
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    api.register_blueprint(audit_blueprint(audit))
    _install_request_hooks(app, settings, limiter, audit)
    _install_error_handlers(app)
    if settings.cors_origins:
        _allow_cross_origin(app, settings.cors_origins)
    return app


def _accepted_tokens(settings: Settings) -> Tokens:
    """The tokens the service accepts, said in its log; with a provider, its keys fetched now (a provider away
    leaves the service up: shared/oidc.py)."""
    provider = ProviderTokens.from_settings(settings.oidc, settings.service) if settings.oidc else None
    tokens = Tokens(settings, provider)
    log.info("bearer tokens accepted", extra={"issuers": ",".join(settings.token_issuers),
                                              "tokens": accepted_tokens(settings)})
    if provider and tokens.local:
        log.warning("tokens signed with WOODPECKER_JWT_SECRET are accepted beside the identity provider's: set "
                    "WOODPECKER_TOKEN_ISSUERS=oidc once every caller signs in through the provider")
    if provider:
        provider.keys.refresh()
    return tokens


def _prepare_in_store(*parts: RateLimiter | AuditLog | SpreadsheetCache) -> None:
    """The indexes of what every service keeps in its store beside its own data (rate limit windows, audit
    entries, stored spreadsheets); a store away at start leaves them to the next process that finds it."""
    for part in parts:
        try:
            part.prepare()
        except PyMongoError as exc:
            log.warning("indexes not prepared: the store does not answer", extra={
                "collection": part.__class__.__name__, "error": f"{exc.__class__.__name__}: {exc}"})


def _allow_cross_origin(app: Flask, origins: Iterable[str]) -> None:
    """CORS for the allow-listed origins only; any other origin gets no CORS headers, so its browser refuses
    to hand our answers to its page. Preflights are answered by Flask's automatic OPTIONS, before any view:
    they need no token and count against no limit."""
    methods = sorted({m for rule in app.url_map.iter_rules() for m in rule.methods or ()} - {"HEAD", "OPTIONS"})
    # always_send=False: flask-cors would otherwise list every allowed origin to a request that named none.
    CORS(app, origins=list(origins), methods=methods, allow_headers=CORS_REQUEST_HEADERS,
         expose_headers=CORS_RESPONSE_HEADERS, max_age=CORS_MAX_AGE_S, supports_credentials=False, always_send=False)

    @app.after_request
    def vary_by_origin(response: Response) -> Response:
        # Whether an answer carries CORS headers depends on the Origin it was asked with (flask-cors says so
        # only when several origins are allowed): a browser's cache must not hand one origin's to another.
        response.vary.add("Origin")
        return response


def _install_request_hooks(app: Flask, settings: Settings, limiter: RateLimiter, audit: AuditLog) -> None:
    service = settings.service

    # Flask runs these in order: the request id first (a 429 carries it too), then the rate limits (a
    # request over its limit costs no more work), then the media type and the body.
    @app.before_request
    def begin():
        g.started = time.perf_counter()
        g.started_at = datetime.now(UTC)
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        g.log_token = logs.correlation_id.set(g.request_id)

    @app.before_request
    def limit_rate():
        if request.url_rule is None or request.method == "OPTIONS" \
                or request.endpoint.split(".")[0] in UNLIMITED_BLUEPRINTS or request.endpoint == "docs_assets":
            return None
        kind = request_kind(app.view_functions.get(request.endpoint), request.method, request.args.get("format"))
        quotas = limiter.quotas(kind=kind, caller_id=_token_subject(), address=request.remote_addr or "unknown")
        if not quotas:
            return None
        try:
            g.rate_limits = limiter.admit(quotas)
        except PyMongoError as exc:
            log.warning("rate limits not checked: their store does not answer; the request goes through",
                        extra={"error": f"{exc.__class__.__name__}: {exc}"})
            return None
        if g.rate_limits.refused_by:
            log.info("rate limited", extra={"keys": [usage.quota.key for usage in g.rate_limits.refused_by]})
            return problem(429, "rate-limited", "Too many requests", g.rate_limits.detail())
        return None

    @app.before_request
    def check_media_type():
        # A request no route takes (404, 405) hears that first, whatever its body.
        if request.routing_exception is None and request.method in ("POST", "PUT", "PATCH") \
                and (request.content_length or request.mimetype):
            view = app.view_functions.get(request.endpoint)
            wanted = "multipart/form-data" if _takes_multipart(view) else "application/json"
            if request.content_length and request.mimetype != wanted:
                raise UnsupportedMediaType(f"Send the body as {wanted}, not {request.mimetype or 'untyped'}.")

    @app.before_request
    def read_json_body():
        """A JSON body is bounded in size (413) and depth (400) before any view, validator or fingerprint reads
        it; what is read here is what they get (Flask keeps the parsed body)."""
        if request.routing_exception is not None or request.method not in ("POST", "PUT", "PATCH") \
                or _takes_multipart(app.view_functions.get(request.endpoint)):
            return None
        if (request.content_length or 0) > settings.json_body_limit:
            return problem(413, "too-large", "Payload too large",
                           f"A JSON body is at most {settings.json_body_limit // 1024} KiB; this one is "
                           f"{request.content_length // 1024} KiB.")
        request.max_content_length = settings.json_body_limit  # a body sent without its length is cut here
        try:
            body = request.get_json(silent=True)  # malformed JSON: the view's validation says so, as always
        except RecursionError:
            body = None
            deep = True
        else:
            deep = json_depth_exceeds(body, MAX_JSON_DEPTH)
        if deep:
            return problem(400, "malformed-request", "Bad Request",
                           f"The JSON body nests more than {MAX_JSON_DEPTH} levels deep.")
        return None

    @app.after_request
    def enter_in_audit(response: Response) -> Response:
        if request.method in WRITE_METHODS and request.url_rule is not None \
                and response.status_code not in NOT_ENTERED:
            caller = _caller_or_none()
            audit.record(audit_entry(
                at=g.get("started_at") or datetime.now(UTC), service=service, method=request.method,
                rule=request.url_rule.rule, path=request.path, view_args=request.view_args or {},
                status=response.status_code, created_id=_created_id(response),
                actor=caller.id if caller else None, role=caller.role if caller else None,
                remote=request.remote_addr, request_id=g.get("request_id")))
        return response

    @app.after_request
    def finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.http_requests.labels(service, request.method, endpoint, response.status_code).inc()
        if "started" in g:
            metrics.http_latency.labels(service, request.method, endpoint).observe(time.perf_counter() - g.started)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if "rate_limits" in g:
            response.headers.update(g.rate_limits.headers())
        return response

    @app.teardown_request
    def forget(_exc):
        if "log_token" in g:
            logs.correlation_id.reset(g.log_token)


def _created_id(response: Response) -> str | None:
    """The id a creating request's answer names (what `object` of its audit entry points at)."""
    if response.status_code != 201 or not response.is_json:
        return None
    body = response.get_json(silent=True)
    created = body.get("id") if isinstance(body, dict) else None
    return str(created) if isinstance(created, str | int) else None


def _caller_or_none() -> Caller | None:
    try:
        return current_caller()
    except DomainError:  # 401, a token mapped to no role (403), its provider away (503): the view answers
        return None


def _token_subject() -> str | None:
    """Whom a valid token names; None without one (the view then answers the bad token with its 401, 403 or 503)."""
    caller = _caller_or_none()
    return caller.id if caller else None


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

