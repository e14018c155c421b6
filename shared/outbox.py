"""The outbox: events stored in the same write as the state change, relayed with confirms.

A pending event lives in the `outbox` array of the document whose change it describes, so MongoDB's
single-document atomicity is the transaction: if the write fails there is no event; if it succeeds
the relay will publish the event, however long the broker is away. Once the broker confirms an
event, the relay pulls it from the document. Several relays may run; an event published twice
carries the same id, and every consumer is idempotent on it.

A document with pending events also carries `outbox_due`, the time its events are next to be
published, under a sparse index: the relay's query reads only documents with something to send,
however large the collection grows.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure

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
        backoff = self.interval_s
        while not stop.is_set():
            try:
                published = self.relay_once()
                backoff = self.interval_s
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
            if published == 0:
                stop.wait(backoff)
        self.publisher.close()
