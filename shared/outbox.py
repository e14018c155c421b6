"""The outbox: events stored in the same write as the state change, relayed with confirms.

A pending event lives in the `outbox` array of the document whose change it describes, so MongoDB's
single-document atomicity is the transaction: if the write fails there is no event; if it succeeds
the relay will publish the event, however long the broker is away. Once the broker confirms an
event, the relay pulls it from the document. Several relays may run; an event published twice
carries the same id, and every consumer is idempotent on it.

A document with pending events also carries `outbox_due`, the time its events are next to be
published, under a sparse index: the relay's query reads only documents with something to send,
however large the collection grows.

The relay publishes as soon as a change stream says a write set `outbox_due` (the embedded database and
MongoDB replica sets have them; a standalone MongoDB does not, and polling serves alone). Polling stays as
the safety net, for events a crash or a broker outage left behind and back-offs coming due, and slows to
one query a second while there is nothing to do.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from shared import metrics
from shared.bus import BrokerUnavailable, EventPublisher
from shared.events import Event

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
# When the document's events are next due; absent once nothing is pending.
DUE_FIELD = "outbox_due"
ATTEMPTS_FIELD = "outbox_attempts"
PENDING = {DUE_FIELD: {"$exists": True}}
# The relay's bookkeeping inside a document: never part of what an API shows.
OUTBOX_FIELDS = (OUTBOX_FIELD, DUE_FIELD, ATTEMPTS_FIELD)
# Doubling stops here: 2 ** 16 half-seconds is far beyond any back-off cap.
MAX_DOUBLINGS = 16
# While nothing happens a relay asks its store at most this often; with change streams to wake it, the
# poll is only the safety net and comes more rarely.
IDLE_POLL_S = 1.0
WATCHED_IDLE_POLL_S = 5.0
# How long a change stream's cursor waits on the server for a change before asking again.
WATCH_AWAIT_MS = 2000


def with_events(document: dict, *events: Event) -> dict:
    """The document to insert, carrying its events."""
    if not events:
        return document
    return {**document, OUTBOX_FIELD: [e.to_dict() for e in events], DUE_FIELD: datetime.now(UTC)}


def push_events(update: dict, *events: Event) -> dict:
    """An update that also appends `events` to the outbox of the document it changes."""
    if not events:
        return update
    pushes = dict(update.get("$push", {}))
    pushes[OUTBOX_FIELD] = {"$each": [e.to_dict() for e in events]}
    sets = dict(update.get("$set", {}))
    sets[DUE_FIELD] = datetime.now(UTC)
    return {**update, "$push": pushes, "$set": sets}


def ensure_outbox_index(collection: Collection) -> None:
    collection.create_index(DUE_FIELD, sparse=True)


def back_off_s(attempts: int, cap_s: float) -> float:
    return min(cap_s, 0.5 * 2 ** min(attempts, MAX_DOUBLINGS))


class OutboxRelay:
    """Moves pending events from the given collections to the broker."""

    def __init__(self, collections: Iterable[Collection], publisher: EventPublisher, service: str,
                 interval_s: float = 0.2, batch_size: int = 200, max_backoff_s: float = 30.0):
        self.collections = list(collections)
        self.publisher = publisher
        self.service = service
        self._watching: set[str] = set()  # the collections a change stream watches now
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s

    def relay_once(self) -> int:
        """Publish what is due now; returns how many events the broker confirmed."""
        confirmed_total, waiting_total = 0, 0
        now = datetime.now(UTC)
        for collection in self.collections:
            documents = list(collection.find({DUE_FIELD: {"$lte": now}}, {OUTBOX_FIELD: 1, ATTEMPTS_FIELD: 1})
                             .limit(self.batch_size))
            events = [Event.from_dict(raw) for document in documents for raw in document[OUTBOX_FIELD]]
            if not events:
                continue
            outcome = self.publisher.publish(events)
            confirmed, held = set(outcome.confirmed), set(outcome.unroutable + outcome.refused)
            settles = [self._settle(document, confirmed, held, now) for document in documents]
            collection.bulk_write(settles, ordered=False)
            confirmed_total += len(confirmed)
            waiting_total += len(events) - len(confirmed)
        metrics.outbox_pending.labels(self.service).set(waiting_total)
        return confirmed_total

    def _settle(self, document: dict, confirmed: set[str], held: set[str], now: datetime) -> UpdateOne:
        """One write per document: pull what the broker confirmed, and clear the due time only if the
        outbox is then empty, judged in the same atomic write (an event pushed meanwhile stays due)."""
        ids = [raw["id"] for raw in document[OUTBOX_FIELD]]
        remaining = {"$filter": {"input": f"${OUTBOX_FIELD}",
                                 "cond": {"$not": [{"$in": ["$$this.id", sorted(confirmed & set(ids))]}]}}}
        if any(event_id in held for event_id in ids):
            attempts = document.get(ATTEMPTS_FIELD, 0) + 1
            wait = back_off_s(attempts, self.max_backoff_s)
            log.warning("the broker did not take an event (refused it, or returned it with no alternate "
                        "exchange set up); kept in the outbox",
                        extra={"document": str(document["_id"]), "attempt": attempts, "retry_in_s": wait})
            when_pending, attempts_then = now + timedelta(seconds=wait), attempts
        else:
            when_pending, attempts_then = f"${DUE_FIELD}", "$$REMOVE"
        empty = {"$eq": [{"$size": f"${OUTBOX_FIELD}"}, 0]}
        return UpdateOne({"_id": document["_id"]}, [
            {"$set": {OUTBOX_FIELD: remaining}},
            {"$set": {DUE_FIELD: {"$cond": [empty, "$$REMOVE", when_pending]},
                      ATTEMPTS_FIELD: {"$cond": [empty, "$$REMOVE", attempts_then]}}},
        ])

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop`: at once when a change stream says events were stored, and by polling as the
        safety net (events left by a crash, a broker outage, a back-off coming due), which slows to one query
        a second while there is nothing to do."""
        stored = threading.Event()
        for collection in self.collections:
            threading.Thread(target=self._watch, args=(collection, stored, stop), daemon=True,
                             name=f"outbox-watch-{collection.name}").start()
        backoff = idle = self.interval_s
        while not stop.is_set():
            failed = True
            try:
                published = self.relay_once()
                backoff, failed = self.interval_s, False
            except BrokerUnavailable as exc:
                published = 0
                backoff = min(self.max_backoff_s, max(backoff * 2, 0.5))
                log.warning("broker unavailable; events stay in the outbox",
                            extra={"retry_in_s": backoff, "error": str(exc)})
            except ConnectionFailure as exc:
                published = 0
                backoff = min(self.max_backoff_s, max(backoff * 2, 0.5))
                log.warning("store unavailable; events wait in the outbox",
                            extra={"retry_in_s": backoff, "error": str(exc)})
            except Exception:  # anything else is a bug worth its traceback; keep relaying meanwhile
                published = 0
                backoff = min(self.max_backoff_s, max(backoff * 2, 0.5))
                log.exception("outbox relay pass failed", extra={"retry_in_s": backoff})
            if published:
                idle = self.interval_s
                continue
            if failed:
                stop.wait(backoff)
                continue
            woke = _wait_for(stored, stop, idle)
            stored.clear()
            longest = WATCHED_IDLE_POLL_S if len(self._watching) == len(self.collections) else IDLE_POLL_S
            idle = self.interval_s if woke else min(longest, idle * 2)
        self.publisher.close()

    def _watch(self, collection: Collection, stored: threading.Event, stop: threading.Event) -> None:
        """Set `stored` whenever a write gives a document events to send (a change stream, where the store has
        them: MongoDB replica sets and the embedded database; a standalone MongoDB has none, and polling
        alone serves)."""
        due_set = [{"$match": {"$or": [{"operationType": {"$in": ["insert", "replace"]},
                                        f"fullDocument.{DUE_FIELD}": {"$exists": True}},
                                       {f"updateDescription.updatedFields.{DUE_FIELD}": {"$exists": True}}]}}]
        while not stop.is_set():
            try:
                with collection.watch(due_set, max_await_time_ms=WATCH_AWAIT_MS) as stream:
                    self._watching.add(collection.name)
                    while not stop.is_set():
                        if stream.try_next() is not None:
                            stored.set()
            except OperationFailure as exc:
                self._watching.discard(collection.name)
                log.info("no change streams on this store; the relay polls", extra={"error": str(exc)})
                return
            except PyMongoError:  # the store is away: the relay's own pass reports it; watch again later
                self._watching.discard(collection.name)
                stop.wait(1.0)


def _wait_for(signal: threading.Event, stop: threading.Event, timeout_s: float) -> bool:
    """Wait until `signal` is set (True), `timeout_s` passes or `stop` is set (False), noticing `stop` within a
    quarter of a second, so that a process stops promptly however long the relay meant to idle."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if signal.wait(min(remaining, 0.25)):
            return True
    return False
