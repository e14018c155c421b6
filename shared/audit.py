"""The audit log: who asked each service to change something, and what came of it.

The event stream records what changed in the domain; this records the people behind every state-changing
request (POST, PUT, PATCH, DELETE), refusals included (a 403 or a 409 leaves no event), in the service's own
database, for the office to read (`GET /v1/audit`) and for nobody to edit: no endpoint writes or deletes an
entry. Each service's worker forgets entries older than the retention (`drop_expired`), with a plain indexed
delete, for the reason `shared/ratelimit.py` gives against TTL indexes.

Entries are written in batches (every FLUSH_S by default, `WOODPECKER_AUDIT_FLUSH_S`), not one write per
request: the request that submits a report must not pay a store command for its audit line. A process killed
meanwhile loses what it had not written (a graceful stop writes it); `0` writes each entry before the answer.
Requests over a rate limit (429) and refused for overload (503) are not entered: they decide nothing about the
caller, and a flood of them must not become a flood of writes.
"""
from __future__ import annotations

import atexit
import logging
import secrets
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from shared.auth import requires
from shared.config import Settings
from shared.pagination import PageQuery, Position, decode_cursor, newest_first, page
from shared.schemas import Timestamp
from shared.store import connect_failing_fast

log = logging.getLogger(__name__)

COLLECTION = "audit"
FLUSH_S = 0.5
# What a process keeps in memory while its store is away, at most; beyond it the oldest are dropped (and logged).
MOST_BUFFERED = 10_000
NOT_ENTERED = frozenset({429, 503})
FILTERED_BY = ((), ("actor",), ("object",), ("actor", "object"))
# Every request is entered: a busy day holds hundreds of thousands of entries, and a page's first window is read
# whole (shared.pagination), so the log's windows start at seconds; a rare actor's take a dozen (indexed) more.
FIRST_WINDOW = timedelta(seconds=10)
# Ids and paths are entered as sent, cut to this length: a caller cannot make an entry large.
LONGEST_TEXT = 300


def outcome_of(status: int) -> str:
    if status < 400:
        return "succeeded"
    return "refused" if status < 500 else "failed"


def object_of(path: str, view_args: Mapping[str, object], created_id: str | None) -> str:
    """The object a request acted on, as its path below /v1/ up to the last id it names ("cases/6745…" for
    `POST /v1/cases/6745…/accept`); a creating request's new resource ("reports/6745…") when the answer named
    one; else the path itself ("rules")."""
    parts = path.strip("/").split("/")
    if parts and parts[0] == "v1":
        parts = parts[1:]
    values = {str(value) for value in view_args.values()}
    last = max((i for i, part in enumerate(parts) if part in values), default=None)
    if last is not None:
        parts = parts[:last + 1]
    elif created_id:
        parts = [*parts, created_id]
    return "/".join(parts)[:LONGEST_TEXT]


def audit_entry(*, at: datetime, service: str, method: str, rule: str, path: str, view_args: Mapping[str, object],
                status: int, created_id: str | None, actor: str | None, role: str | None, remote: str | None,
                request_id: str | None) -> dict:
    return {"_id": secrets.token_hex(12), "at": at, "service": service, "actor": actor, "role": role,
            "action": f"{method} {rule}", "object": object_of(path, view_args, created_id),
            "outcome": outcome_of(status), "status": status, "remote": remote,
            "request_id": request_id}


class AuditLog:
    """A service's audit entries, in its database's `audit` collection, written in batches."""

    def __init__(self, entries: Collection, flush_every_s: float = FLUSH_S):
        self.entries = entries
        self.flush_every_s = flush_every_s
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._atexit_registered = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        # A store that is away costs a request little: the entry waits in the buffer.
        return cls(connect_failing_fast(settings.mongo_url, settings.database)[COLLECTION], settings.audit_flush_s)

    def prepare(self) -> None:
        for prefix in FILTERED_BY:
            self.entries.create_index([*((f, ASCENDING) for f in prefix), ("at", DESCENDING)])

    def record(self, entry: dict) -> None:
        """Enter one request: at once when the log writes each entry, else at the next flush."""
        if not self.flush_every_s:
            try:
                self.entries.insert_one(entry)
            except PyMongoError as exc:
                log.warning("audit entry not written: its store does not answer; kept for the next request",
                            extra={"error": f"{exc.__class__.__name__}: {exc}"})
                self._keep([entry])
            return
        self._keep([entry])
        self._start_flushing()

    def flush(self) -> None:
        with self._lock:
            taken, self._buffer = self._buffer, []
        if not taken:
            return
        try:
            self.entries.insert_many(taken, ordered=False)
        except PyMongoError:
            self._keep(taken)  # entries already written are kept by their _id: written again, they are refused
            raise

    def entries_page(self, actor: str | None, object_: str | None, *, since: datetime | None,
                     until: datetime | None, after: Position | None, limit: int) -> list[dict]:
        wanted = {k: v for k, v in (("actor", actor), ("object", object_)) if v is not None}
        documents = newest_first(self.entries, [wanted], "at", limit, after, since=since, until=until,
                                 first_window=FIRST_WINDOW)
        return [{"id": d["_id"], **{k: v for k, v in d.items() if k != "_id"}} for d in documents]

    def _keep(self, entries: list[dict]) -> None:
        with self._lock:
            self._buffer = [*entries, *self._buffer]
            if len(self._buffer) > MOST_BUFFERED:
                dropped = len(self._buffer) - MOST_BUFFERED
                self._buffer = self._buffer[-MOST_BUFFERED:]
                log.error("audit entries dropped: the store has not answered for a long time",
                          extra={"count": dropped})

    def _start_flushing(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            if not self._atexit_registered:
                atexit.register(self._flush_quietly)
                self._atexit_registered = True
            self._flusher = threading.Thread(target=self._flush_every, name="audit-flush", daemon=True)
            self._flusher.start()

    def _flush_every(self) -> None:
        """Flush until the buffer is empty; the next entry starts the thread again (after a gunicorn fork too)."""
        while True:
            threading.Event().wait(self.flush_every_s)
            self._flush_quietly()
            with self._lock:
                if not self._buffer:
                    self._flusher = None
                    return

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # kept, and written at the next flush
            log.warning("audit entries not written: their store does not answer",
                        extra={"error": f"{exc.__class__.__name__}: {exc}"})


def drop_expired(entries: Collection, now: datetime, retention: timedelta) -> int:
    """Forget the entries older than the retention (every service's worker does, now and then)."""
    return entries.delete_many({"at": {"$lt": now - retention}}).deleted_count


# --- the HTTP shapes --------------------------------------------------------------------------------

class AuditQuerySchema(PageQuery):
    actor = fields.String(validate=validate.Length(1, LONGEST_TEXT), metadata={"description": "a token's sub"})
    object = fields.String(validate=validate.Length(1, LONGEST_TEXT),
                           metadata={"description": "e.g. cases/6745a1c3e4b0f3a9d2c81e0a (exact)"})
    since = Timestamp(data_key="from", metadata={"description": "entries at or after this time"})
    until = Timestamp(data_key="to", metadata={"description": "entries before this time"})


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(lambda: AuditEntrySchema()), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AuditEntrySchema(Schema):
    id = fields.String(required=True)
    at = Timestamp(required=True)
    service = fields.String(required=True)
    actor = fields.String(required=True, allow_none=True,
                          metadata={"description": "the token's sub; null when no valid token came"})
    role = fields.String(required=True, allow_none=True)
    action = fields.String(required=True, metadata={"example": "POST /v1/cases/<case_id>/accept"})
    object = fields.String(required=True, metadata={"example": "cases/6745a1c3e4b0f3a9d2c81e0a"})
    outcome = fields.String(required=True, validate=validate.OneOf(["succeeded", "refused", "failed"]))
    status = fields.Integer(required=True, metadata={"description": "the HTTP status of the answer"})
    remote = fields.String(required=True, allow_none=True, metadata={"description": "the client's address"})
    request_id = fields.String(required=True, allow_none=True)


def audit_blueprint(audit: AuditLog) -> Blueprint:
    blp = Blueprint("audit", __name__, url_prefix="/v1/audit",
                    description="Who asked this service to change what, and the answer (the office)")

    @blp.route("", methods=["GET"])
    @requires("office")
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def list_audit(query: dict):
        """Every state-changing request this service answered (refusals included, rate-limited and overload
        refusals aside), newest first: who (the token's sub and role), what (method and route), which object,
        when, from which address, and the outcome. Entries are kept for the configured retention and never
        changed."""
        items = audit.entries_page(query.get("actor"), query.get("object"), since=query.get("since"),
                                   until=query.get("until"), after=decode_cursor(query.get("cursor")),
                                   limit=query["limit"])
        return page(items, query["limit"], "at")

    return blp
