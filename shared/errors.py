"""Domain errors and their one mapping to RFC 9457 problem+json."""
from __future__ import annotations

from flask import Response, json

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://woodpecker.example/problems/"
# The problem type of an HTTP error nothing more specific names: raised by the framework (shared/web.py) or answered
# by the web server before the app (414, 417, 431; deploy/gunicorn.conf.py).
HTTP_SLUGS = {400: "malformed-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
              405: "method-not-allowed", 409: "conflict", 413: "too-large", 414: "uri-too-long",
              415: "unsupported-media-type", 417: "expectation-failed", 422: "invalid-fields",
              429: "rate-limited", 431: "headers-too-large", 500: "internal-error", 501: "not-implemented",
              503: "unavailable"}


class DomainError(Exception):
    """An error a caller can act on; `status` and `slug` pick its problem type."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, errors: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(DomainError):
    status, slug, title = 404, "not-found", "Not found"


class NotVisible(NotFound):
    """Exists, but not for this caller: indistinguishable from absent (docs/contract.md)."""


class Forbidden(DomainError):
    status, slug, title = 403, "forbidden", "Role not allowed"


class Unauthorized(DomainError):
    status, slug, title = 401, "unauthorized", "Missing or invalid token"


class Conflict(DomainError):
    status, slug, title = 409, "conflict", "Conflict"


class IllegalTransition(Conflict):
    slug, title = "illegal-transition", "Illegal state transition"


class IdempotencyConflict(Conflict):
    slug, title = "idempotency-conflict", "Idempotency key reused with a different request"


class InvalidFields(DomainError):
    status, slug, title = 422, "invalid-fields", "Invalid fields"


class TooLarge(DomainError):
    status, slug, title = 413, "too-large", "Payload too large"


class UnsupportedMediaType(DomainError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ServiceBusy(DomainError):
    """Nothing was done; the same request may be sent again after `retry_after_s` seconds."""

    status, slug, title = 503, "busy", "Service busy"

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def problem(status: int, slug: str, title: str, detail: str, *, errors: dict | None = None,
            headers: dict | None = None) -> Response:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


def problem_from(error: DomainError) -> Response:
    retry_after = getattr(error, "retry_after_s", None)
    return problem(error.status, error.slug, error.title, error.detail, errors=error.errors,
                   headers={"Retry-After": str(retry_after)} if retry_after is not None else None)
