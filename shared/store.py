"""The store: MongoDB (or any server speaking its protocol) through MONGO_URL, with plain pymongo."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from collections.abc import Collection as Collection_
from contextvars import ContextVar
from typing import Any, TypeVar

import pymongo
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure

from shared.errors import Conflict

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreNotConfigured(SystemExit):
    pass


def connect(mongo_url: str | None, database: str) -> Database:
    """Open the service's own database. Call after fork: pymongo clients are not fork-safe."""
    if not mongo_url:
        raise StoreNotConfigured(
            "MONGO_URL is not set. `make up` starts the embedded database and sets it for every service; "
            "to run a service on its own, point MONGO_URL at MongoDB (e.g. mongodb://127.0.0.1:27017).")
    client = pymongo.MongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=3_000, connect=False)
    return client[database]


def connect_failing_fast(mongo_url: str | None, database: str) -> Database:
    """The service's database through a client of its own with short timeouts, for what every request does beside
    its own work (rate limits, the audit log): when the store is away it gives up within a second and the request
    goes on, instead of waiting for pymongo's defaults."""
    client = pymongo.MongoClient(mongo_url, tz_aware=True, connect=False, serverSelectionTimeoutMS=500,
                                 connectTimeoutMS=500, socketTimeoutMS=3_000)
    return client[database]


def ping(db: Database) -> str | None:
    """None when the store answers, else which dependency is down (for /readyz, which anyone may call:
    the exception's text, with hosts and ports, goes to the log only)."""
    try:
        db.command("ping")
    except Exception as exc:  # readiness reports any failure as a reason, never raises
        log.warning("readiness: the store does not answer", extra={"error": f"{exc.__class__.__name__}: {exc}"})
        return "store unavailable"
    return None


# Intake's reports and routing's cases keep two lookup keys beside their fields: whether the document is open, so
# that a lookup of what is open never reads closed history, and its place key (shared.geo.place_key), so that
# looking for things of its kind near a point is a list of equalities that one index serves.
OPEN = "open"
AREA = "area"


def public_document(document: dict | None, hidden: Collection_[str]) -> dict | None:
    """A stored document as the API shows it: its `_id` as `id`, without the store's own fields (`hidden`)."""
    if document is None:
        return None
    return {"id": document["_id"], **{k: v for k, v in document.items() if k != "_id" and k not in hidden}}


def with_open_flag(fields: dict[str, Any], open_statuses: Collection_[str]) -> dict[str, Any]:
    """The fields to write, with the open flag derived from `status` when they set it."""
    if "status" in fields:
        return {**fields, OPEN: fields["status"] in open_statuses}
    return fields


def drop_index_if_present(collection: Collection, name: str) -> None:
    """Drop an index a newer version no longer uses (every write keeps paying for an index until it is dropped);
    several processes of a service may start at once, and the first one drops it."""
    if name in collection.index_information():
        with contextlib.suppress(OperationFailure):
            collection.drop_index(name)


class LostRace(Exception):
    """Someone else changed the document between our read and our conditional write."""


def if_unchanged_since(update: dict, revision_field: str, revision: int) -> list[dict]:
    """`update` (`$set` and `$unset` of top-level fields) as an update pipeline that applies it, and moves
    `revision_field` on by one, only if the document is still at `revision`; otherwise the document is left
    exactly as it is, and the write reports it unmodified (`modified_count` 0: a lost race).

    The check lives in the update rather than in the filter so that the filter names `_id` alone: the
    embedded database plans any other filter over every index of the collection, which on `reports` (17) made a
    case step's write cost its CPU 5.0 ms against 3.5 this way (README, Performance); MongoDB serves both from
    the `_id` index."""
    unchanged = {"$eq": [f"${revision_field}", revision]}

    def unless_changed(name: str, value) -> dict:
        if name.startswith("$") or "." in name or name == revision_field:
            raise ValueError(f"not a top-level field this update may set: {name!r}")
        return {"$cond": [unchanged, value, f"${name}"]}

    if unknown := set(update) - {"$set", "$unset"}:
        raise ValueError(f"only $set and $unset can be made conditional: {sorted(unknown)}")
    fields = {name: unless_changed(name, {"$literal": value}) for name, value in update.get("$set", {}).items()}
    fields.update({name: unless_changed(name, "$$REMOVE") for name in update.get("$unset", {})})
    fields[revision_field] = {"$cond": [unchanged, revision + 1, f"${revision_field}"]}
    return [{"$set": fields}]


# Enough for any burst of commands on one document; past it the caller hears a 409 (or, in a consumer,
# the event is retried later).
OPTIMISTIC_TRIES = 10


def optimistically(attempt: Callable[[], T], what: str, tries: int = OPTIMISTIC_TRIES) -> T:
    """Run `attempt` (read, decide, conditional write that raises LostRace when it matched nothing)
    again from the read each time it loses a race."""
    for _ in range(tries):
        try:
            return attempt()
        except LostRace:
            continue
    raise Conflict(f"{what} is changing too quickly; try again.")


# What `after_commit` was asked to do inside the transaction under way in this thread (None: none is).
_after_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar("after_commit", default=None)


def in_transaction(db: Database, work: Callable[[ClientSession], T]) -> T:
    """Run `work` as one multi-document transaction; the driver runs it again from the start when it met
    another transaction's writes, so `work` must read what it decides on through the session it is given.
    What `work` asked `after_commit` to do runs once the transaction has committed."""
    committed: list[Callable[[], None]] = []

    def attempt(session: ClientSession) -> T:
        committed.clear()  # an attempt the driver runs again stored nothing of what it asked for
        token = _after_commit.set(committed)
        try:
            return work(session)
        finally:
            _after_commit.reset(token)

    with db.client.start_session() as session:
        result = session.with_transaction(attempt)
    for action in committed:
        action()
    return result


def after_commit(action: Callable[[], None]) -> None:
    """Run `action` once the transaction under way (`in_transaction`) has committed; outside one, now."""
    waiting = _after_commit.get()
    if waiting is None:
        action()
    else:
        waiting.append(action)
