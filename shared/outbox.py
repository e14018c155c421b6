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
import time
from collections.abc import Iterable

from pymongo.collection import Collection

from shared import metrics
from shared.bus import BrokerUnavailable, EventPublisher
from shared.events import Event

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
PENDING = {f"{OUTBOX_FIELD}.0": {"$exists": True}}


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
        # Events the broker returned as unroutable wait here before the next try (event id → when).
        self._not_before: dict[str, float] = {}
        self._unroutable_attempts: dict[str, int] = {}

    def relay_once(self) -> int:
        """Publish what is pending now; returns how many events the broker confirmed."""
        confirmed_total, pending_total = 0, 0
        now = time.monotonic()
        for collection in self.collections:
            documents = list(collection.find(PENDING, {OUTBOX_FIELD: 1}).limit(self.batch_size))
            due: list[tuple[object, Event]] = []
            for document in documents:
                for raw in document[OUTBOX_FIELD]:
                    pending_total += 1
                    if self._not_before.get(raw["id"], 0) <= now:
                        due.append((document["_id"], Event.from_dict(raw)))
            if not due:
                continue
            outcome = self.publisher.publish([event for _, event in due])
            self._remember_unroutable(outcome.unroutable + outcome.refused, now)
            confirmed = set(outcome.confirmed)
            for event_id in confirmed:
                self._not_before.pop(event_id, None)
                self._unroutable_attempts.pop(event_id, None)
            by_document: dict[object, list[str]] = {}
            for document_id, event in due:
                if event.id in confirmed:
                    by_document.setdefault(document_id, []).append(event.id)
            for document_id, event_ids in by_document.items():
                collection.update_one({"_id": document_id},
                                      {"$pull": {OUTBOX_FIELD: {"id": {"$in": event_ids}}}})
            confirmed_total += len(confirmed)
        metrics.outbox_pending.labels(self.service).set(pending_total - confirmed_total)
        return confirmed_total

    def _remember_unroutable(self, event_ids: list[str], now: float) -> None:
        for event_id in event_ids:
            attempts = self._unroutable_attempts.get(event_id, 0) + 1
            self._unroutable_attempts[event_id] = attempts
            self._not_before[event_id] = now + min(self.max_backoff_s, 0.5 * 2 ** attempts)
            log.warning("event unroutable (no queue bound yet); kept in the outbox",
                        extra={"event_id": event_id, "attempt": attempts})

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
