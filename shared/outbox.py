"""The outbox: events stored in the same write as the state change, relayed with confirms.

A pending event lives in the `outbox` array of the document whose change it describes, so MongoDB's
single-document atomicity is the transaction: if the write fails there is no event; if it succeeds
the relay will publish the event, however long the broker is away. Once the broker confirms an
event, the relay pulls it from the document. Several relays may run; an event published twice
carries the same id, and every consumer is idempotent on it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pymongo.collection import Collection

from shared import metrics
from shared.bus import BrokerUnavailable, EventPublisher
from shared.events import Event

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
# A document whose event the broker returned (no queue bound yet) waits until then before the next try;
# kept in the document, so the hold survives restarts and every relay sees it.
RETRY_AT_FIELD = "outbox_retry_at"
ATTEMPTS_FIELD = "outbox_attempts"
PENDING = {f"{OUTBOX_FIELD}.0": {"$exists": True}}
# The relay's bookkeeping inside a document: never part of what an API shows.
OUTBOX_FIELDS = (OUTBOX_FIELD, RETRY_AT_FIELD, ATTEMPTS_FIELD)


def _due(now: datetime) -> dict:
    return {**PENDING, "$or": [{RETRY_AT_FIELD: None}, {RETRY_AT_FIELD: {"$lte": now}}]}


def with_events(document: dict, *events: Event) -> dict:
    """The document to insert, carrying its events."""
    return {**document, OUTBOX_FIELD: [e.to_dict() for e in events]}


def push_events(update: dict, *events: Event) -> dict:
    """An update that also appends `events` to the outbox of the document it changes."""
    pushes = dict(update.get("$push", {}))
    pushes[OUTBOX_FIELD] = {"$each": [e.to_dict() for e in events]}
    return {**update, "$push": pushes}


def ensure_outbox_index(collection: Collection) -> None:
    collection.create_index(f"{OUTBOX_FIELD}.id")


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
            documents = list(collection.find(_due(now), {OUTBOX_FIELD: 1, ATTEMPTS_FIELD: 1}).limit(self.batch_size))
            events = [Event.from_dict(raw) for document in documents for raw in document[OUTBOX_FIELD]]
            if not events:
                continue
            outcome = self.publisher.publish(events)
            confirmed, held = set(outcome.confirmed), set(outcome.unroutable + outcome.refused)
            for document in documents:
                self._settle(collection, document, confirmed, held, now)
            confirmed_total += len(confirmed)
            waiting_total += len(events) - len(confirmed)
        metrics.outbox_pending.labels(self.service).set(waiting_total)
        return confirmed_total

    def _settle(self, collection: Collection, document: dict, confirmed: set[str], held: set[str],
                now: datetime) -> None:
        ids = [raw["id"] for raw in document[OUTBOX_FIELD]]
        update: dict = {}
        if done := [event_id for event_id in ids if event_id in confirmed]:
            update["$pull"] = {OUTBOX_FIELD: {"id": {"$in": done}}}
        if any(event_id in held for event_id in ids):
            attempts = document.get(ATTEMPTS_FIELD, 0) + 1
            wait = min(self.max_backoff_s, 0.5 * 2 ** attempts)
            update["$set"] = {RETRY_AT_FIELD: now + timedelta(seconds=wait), ATTEMPTS_FIELD: attempts}
            log.warning("event unroutable (no queue bound yet); kept in the outbox",
                        extra={"document": str(document["_id"]), "attempt": attempts, "retry_in_s": wait})
        elif document.get(ATTEMPTS_FIELD):
            update["$unset"] = {RETRY_AT_FIELD: "", ATTEMPTS_FIELD: ""}
        if update:
            collection.update_one({"_id": document["_id"]}, update)

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
            except Exception:  # the store may be briefly away too; keep relaying once it is back
                published = 0
                backoff = min(self.max_backoff_s, max(backoff * 2, 0.5))
                log.exception("outbox relay pass failed", extra={"retry_in_s": backoff})
            if published == 0:
                stop.wait(backoff)
        self.publisher.close()
