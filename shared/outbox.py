"""The outbox: events stored in the same write as the state change, published at once, swept up if left behind.

A pending event lives in the `outbox` array of the document whose change it describes, so MongoDB's
single-document atomicity is the transaction: if the write fails there is no event; if it succeeds the
event will be published, however long the broker is away. Once the broker confirms an event, the relay
pulls it from the document. An event may be published twice (it carries the same id each time); every
consumer is idempotent on it.

Publishing at once. Whoever stored a change with its events (a request, an event handler, periodic work)
hands them to its process's relay (`publish_after_commit`) once the write, or the transaction it belongs to, has
committed. The relay publishes what it is handed in batches with publisher confirms, without reading the
store, and pulls the confirmed events from their documents in one write per collection every
SETTLE_EVERY_S, a statement per document that still holds them; events
that a consumer's later write of the document usually pulls (`update_settling_delivered`: a report's submission, by
its first case event) it leaves to that write for a third of the grace.

Events of a transaction. A writer in a transaction (routing opening and joining cases) stores the events of
all the documents it changes in one document of their own in its database's `outbox` collection
(`events_document`), inserted in the transaction: the transaction is then the atomicity, and once the broker
has confirmed them the relay deletes that small document instead of rewriting each changed one, a write that
costs the embedded database about as much per index as the change itself (`bench.index_cost`; `cases` has 16).

Sweeping up. A document with pending events carries `outbox_due` under a sparse index: the grace
(WOODPECKER_OUTBOX_GRACE_S, 30 s) after its write, or when a refused event's back-off ends. A service's
worker relay sweeps its collections for documents past their due time: events whose process died before
publishing them, events a broker outage kept, refused events whose back-off is over. That sweep is all a
relay ever reads; while nothing is left behind it asks each collection once every `sweep_every_s`.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import DeleteOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure

from shared import metrics
from shared.bus import BrokerUnavailable, EventPublisher
from shared.events import Event
from shared.store import after_commit

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
# When the sweep is to publish the document's events, if no relay has by then; absent once nothing is pending.
DUE_FIELD = "outbox_due"
ATTEMPTS_FIELD = "outbox_attempts"
PENDING = {DUE_FIELD: {"$exists": True}}
# The relay's bookkeeping inside a document: never part of what an API shows.
OUTBOX_FIELDS = (OUTBOX_FIELD, DUE_FIELD, ATTEMPTS_FIELD)
# The collection of documents that hold nothing but a transaction's events (`events_document`).
EVENTS_COLLECTION = "outbox"
# How long a stored event waits for the process that stored it to publish it before a worker's sweep does:
# far longer than a handed event takes to be confirmed and settled, even behind a busy store, so that the
# sweep takes only what was left behind (publishing an event twice is harmless, but it is work, and it would
# come when the store is busiest); what was left behind goes out within this, and a sweep, of its write.
GRACE_VARIABLE = "WOODPECKER_OUTBOX_GRACE_S"
DEFAULT_GRACE_S = 30.0
# Confirmed events are pulled from their documents at most this long after their publishing, a batch of
# them in one write per collection. A process that dies meanwhile leaves them to the sweep, which publishes
# them again (same ids).
SETTLE_EVERY_S = 1.0
# ... or, when a consumer's write usually pulls them first (`publish_after_commit(consumer_settles_first=True)`),
# a third of the grace (10 s): long enough for the consumer, short enough to be done well before the sweep
# would publish them again.
CONSUMER_SHARE_OF_GRACE = 1 / 3
SWEEP_EVERY_S = 5.0
# Documents one sweep takes from a collection, and settles in one write: a backlog (after a broker outage)
# goes out in writes short enough for the requests writing the same collection to go on meanwhile.
SWEEP_BATCH = 50
# Doubling stops here: 2 ** 16 half-seconds is far beyond any back-off cap.
MAX_DOUBLINGS = 16
# How often a waiting relay looks up to notice that it is asked to stop.
STOP_CHECK_S = 0.25


def handoff_grace_s() -> float:
    return float(os.environ.get(GRACE_VARIABLE) or DEFAULT_GRACE_S)


def consumer_first_s() -> float:
    return handoff_grace_s() * CONSUMER_SHARE_OF_GRACE


def _due() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=handoff_grace_s())


def with_events(document: dict, *events: Event) -> dict:
    """The document to insert, carrying its events."""
    if not events:
        return document
    return {**document, OUTBOX_FIELD: [e.to_dict() for e in events], DUE_FIELD: _due()}


def events_document(*events: Event) -> dict:
    """A document of nothing but `events`, to insert into the database's EVENTS_COLLECTION in the transaction that
    stores the changes they describe; hand it over as any other
    (`publish_after_commit(relay, outbox, document["_id"], events)`)."""
    return with_events({"_id": events[0].id}, *events)


def _only_events(collection: Collection) -> bool:
    return collection.name == EVENTS_COLLECTION


def push_events(update: dict, *events: Event) -> dict:
    """An update that also appends `events` to the outbox of the document it changes."""
    if not events:
        return update
    pushes = dict(update.get("$push", {}))
    pushes[OUTBOX_FIELD] = {"$each": [e.to_dict() for e in events]}
    sets = dict(update.get("$set", {}))
    sets[DUE_FIELD] = _due()
    return {**update, "$push": pushes, "$set": sets}


def ensure_outbox_index(collection: Collection) -> None:
    collection.create_index(DUE_FIELD, sparse=True)


def back_off_s(attempts: int, cap_s: float) -> float:
    return min(cap_s, 0.5 * 2 ** min(attempts, MAX_DOUBLINGS))


def publish_after_commit(relay: OutboxRelay | None, collection: Collection, document_id, events: Iterable[Event],
                         consumer_settles_first: bool = False) -> None:
    """Tell the process's relay that `events` are stored in the document (or will be, once the transaction
    under way commits), so that it publishes them now. Without a relay (a command-line tool, a test of the
    store alone) they wait for the worker's sweep.

    `consumer_settles_first`: a later write of the document usually pulls them (`update_settling_delivered`), so
    the relay leaves that write `consumer_first_s()` before it pulls what is still there itself: one write of the
    document fewer while all is well, and no write of its own to add while the store is at its busiest."""
    events = list(events)
    if relay is not None and events:
        settle_after_s = consumer_first_s() if consumer_settles_first else SETTLE_EVERY_S
        after_commit(lambda: relay.publish_soon(collection, document_id, events, settle_after_s))


def update_settling_delivered(document: dict, update: dict, event_type: str) -> dict:
    """`update` of `document` (as it was read, and written only if unchanged since) that also pulls its
    `event_type` events from the outbox: for a consumer that has just learnt they were delivered, because the
    event it handles could only have followed them. It spares the relay a write of its own."""
    outbox = document.get(OUTBOX_FIELD) or []
    remaining = [raw for raw in outbox if raw.get("type") != event_type]
    if len(remaining) == len(outbox):
        return update
    sets = {**update.get("$set", {}), OUTBOX_FIELD: remaining}
    if remaining:
        return {**update, "$set": sets}
    return {**update, "$set": sets, "$unset": {**update.get("$unset", {}), DUE_FIELD: "", ATTEMPTS_FIELD: ""}}


@dataclass(frozen=True)
class Handed:
    collection: Collection
    document_id: object
    events: list[Event]
    settle_after_s: float


@dataclass(frozen=True)
class Published:
    """Confirmed events, to be pulled from their document once `at` (monotonic) has come; `all_of_them` when they are
    every event that was handed with the document."""
    at: float
    collection: Collection
    document_id: object
    event_ids: set[str]
    all_of_them: bool


class OutboxRelay:
    """Publishes what its process hands it, at once; a worker's relay also sweeps up what was left behind.

    It runs in a thread of its own, started by `start()` or by the first hand-off, so that a gunicorn
    worker starts its own after the fork.
    """

    def __init__(self, publisher: EventPublisher, service: str, sweep_every_s: float = SWEEP_EVERY_S,
                 batch_size: int = SWEEP_BATCH, max_backoff_s: float = 30.0):
        self.publisher = publisher
        self.service = service
        self.swept: list[Collection] = []
        self.sweep_every_s = sweep_every_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self._handed: list[Handed] = []
        self._wake = threading.Condition()
        self._unsettled: list[Published] = []
        self._broker_away_until = 0.0
        self._backoff_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sweeps(self, *collections: Collection) -> OutboxRelay:
        """Also sweep these collections for events left behind (a service's worker relay does)."""
        self.swept.extend(collections)
        return self

    # --- the hand-off -------------------------------------------------------------------------------

    def publish_soon(self, collection: Collection, document_id, events: list[Event],
                     settle_after_s: float = SETTLE_EVERY_S) -> None:
        """Events just stored in the document: publish them as soon as possible, and pull them from it about
        `settle_after_s` after the broker has confirmed them."""
        with self._wake:
            self._handed.append(Handed(collection, document_id, events, settle_after_s))
            self._wake.notify()
        self.start()

    def start(self) -> OutboxRelay:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
                self._thread.start()
                # A process that exits (a gunicorn worker told to stop) first settles what it published.
                atexit.register(self.stop)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the loop -----------------------------------------------------------------------------------

    def _run(self) -> None:
        next_sweep = time.monotonic()  # at once: whatever an earlier process left behind
        while not self._stop.is_set():
            handed = self._next_handed(until=min(next_sweep if self.swept else float("inf"), self._settle_at()))
            if handed:
                self._publish_handed(handed)
            if self._settle_at() <= time.monotonic():
                self._settle_handed(time.monotonic())
            if self.swept and next_sweep <= time.monotonic():
                next_sweep = time.monotonic() + self._sweep_and_wait()
        self._settle_handed(float("inf"))
        self.publisher.close()

    def _next_handed(self, until: float) -> list[Handed]:
        """What was handed, waiting for it until `until` (monotonic), noticing a stop within STOP_CHECK_S."""
        with self._wake:
            while not self._handed and not self._stop.is_set():
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(min(remaining, STOP_CHECK_S))
            handed, self._handed = self._handed, []
        return handed

    def _settle_at(self) -> float:
        return min((published.at for published in self._unsettled), default=float("inf"))

    def _publish_handed(self, handed: list[Handed]) -> None:
        if time.monotonic() < self._broker_away_until:
            return  # stored and due after their grace: the sweep publishes them once the broker is back
        events = [event for item in handed for event in item.events]
        try:
            outcome = self.publisher.publish(events)
        except BrokerUnavailable as exc:
            self._backoff_s = min(self.max_backoff_s, max(self._backoff_s * 2, 0.5))
            self._broker_away_until = time.monotonic() + self._backoff_s
            log.warning("broker unavailable; the events stay in the outbox for the sweep",
                        extra={"events": len(events), "retry_in_s": self._backoff_s, "error": str(exc)})
            return
        self._backoff_s = 0.0
        confirmed = set(outcome.confirmed)
        # A refused or returned event stays as stored, due after its grace: the sweep retries it with back-off.
        now = time.monotonic()
        for item in handed:
            handed_ids = {event.id for event in item.events}
            if ids := handed_ids & confirmed:
                self._unsettled.append(Published(now + item.settle_after_s, item.collection, item.document_id, ids,
                                                  ids == handed_ids))

    def _settle_handed(self, now: float) -> None:
        """Pull the confirmed events whose time has come from their documents: per collection, one read of which
        of them still hold their events (a consumer may have pulled them, `update_settling_delivered`) and one write
        of a statement per document that does.

        Statements of one document each, outside any transaction. A multi-document update that meets a
        transaction which has written one of its documents waits for it on the embedded database holding the
        collection's lock, and so holds up that transaction's next write of the collection, and itself, until
        the transaction times out. A transaction of its own avoided that, but the embedded database passes every
        transaction's statements through one registry: a settle in every relay put the service's own writes in
        that queue, behind any transaction that waits, and a consumer's plain write of a document such a settle
        had written waited, retrying, for as long as the queue stood (the pipeline bench's stalls)."""
        # With those whose time comes soon: a second's events are pulled in one write, not one write each.
        soon = now + SETTLE_EVERY_S / 2
        due = [published for published in self._unsettled if published.at <= soon]
        self._unsettled = [published for published in self._unsettled if published.at > soon]
        by_collection: dict[str, list[Published]] = defaultdict(list)
        for published in due:
            by_collection[published.collection.full_name].append(published)
        for name, documents in by_collection.items():
            try:
                _settle_together(documents)
            except Exception:  # the events stay due after their grace; the sweep publishes them again
                log.exception("could not settle published events", extra={"collection": name})

    def _sweep_and_wait(self) -> float:
        """One sweep; how long until the next: at once while it finds a backlog, later after a failure."""
        try:
            published, full = self.sweep_once()
        except BrokerUnavailable as exc:
            self._backoff_s = min(self.max_backoff_s, max(self._backoff_s * 2, 0.5))
            log.warning("broker unavailable; events stay in the outbox",
                        extra={"retry_in_s": self._backoff_s, "error": str(exc)})
            return self._backoff_s
        except ConnectionFailure as exc:
            log.warning("store unavailable; events wait in the outbox", extra={"error": str(exc)})
            return min(self.sweep_every_s, 1.0)
        except Exception:  # anything else is a bug worth its traceback; keep relaying meanwhile
            log.exception("outbox sweep failed")
            return self.sweep_every_s
        self._backoff_s = 0.0
        if published:
            metrics.outbox_swept.labels(self.service).inc(published)
        return 0.0 if full else self.sweep_every_s

    # --- the sweep ----------------------------------------------------------------------------------

    def sweep_once(self) -> tuple[int, bool]:
        """Publish what is past its due time; returns (events the broker confirmed, whether a batch was full)."""
        confirmed_total, waiting_total, full = 0, 0, False
        now = datetime.now(UTC)
        for collection in self.swept:
            documents = list(collection.find({DUE_FIELD: {"$lte": now}}, {OUTBOX_FIELD: 1, ATTEMPTS_FIELD: 1})
                             .limit(self.batch_size))
            full = full or len(documents) == self.batch_size
            events = [Event.from_dict(raw) for document in documents for raw in document[OUTBOX_FIELD]]
            if not events:
                continue
            outcome = self.publisher.publish(events)
            confirmed, held = set(outcome.confirmed), set(outcome.unroutable + outcome.refused)
            collection.bulk_write([self._settle_swept(collection, document, confirmed, held, now)
                                   for document in documents], ordered=False)
            confirmed_total += len(confirmed)
            waiting_total += len(events) - len(confirmed)
        metrics.outbox_pending.labels(self.service).set(waiting_total)
        return confirmed_total, full

    def _settle_swept(self, collection: Collection, document: dict, confirmed: set[str], held: set[str],
                      now: datetime) -> UpdateOne | DeleteOne:
        """Pull what the broker confirmed (delete a document of nothing but events once all are confirmed); a
        document still holding a refused event waits out its back-off."""
        ids = {raw["id"] for raw in document[OUTBOX_FIELD]}
        if _only_events(collection) and ids <= confirmed:
            return DeleteOne({"_id": document["_id"]})
        if not ids & held:
            return UpdateOne({"_id": document["_id"]}, _pulled(confirmed & ids))
        attempts = document.get(ATTEMPTS_FIELD, 0) + 1
        wait = back_off_s(attempts, self.max_backoff_s)
        log.warning("the broker did not take an event (refused it, or returned it with no alternate exchange set "
                    "up); kept in the outbox", extra={"document": str(document["_id"]), "attempt": attempts,
                                                       "retry_in_s": wait})
        return UpdateOne({"_id": document["_id"]},
                         _pulled(confirmed & ids, due=now + timedelta(seconds=wait), attempts=attempts))


def _settle_together(documents: list[Published]) -> None:
    """Pull the published events from those of their documents, all in one collection, that still hold them."""
    collection = documents[0].collection
    if _only_events(collection):
        # Nothing is added to a document of events after its insert: once all of them are confirmed it goes, unread.
        whole = {published.document_id for published in documents if published.all_of_them}
        if whole:
            collection.bulk_write([DeleteOne({"_id": document_id}) for document_id in whole], ordered=False)
        documents = [published for published in documents if published.document_id not in whole]
        if not documents:
            return
    wanted: dict[object, set[str]] = defaultdict(set)
    for published in documents:
        wanted[published.document_id] |= published.event_ids
    holding = collection.find({"_id": {"$in": list(wanted)}}, {f"{OUTBOX_FIELD}.id": 1})
    writes = [UpdateOne({"_id": document["_id"]}, _pulled(ids)) for document in holding
              if (ids := wanted[document["_id"]] & {raw["id"] for raw in document.get(OUTBOX_FIELD) or []})]
    if writes:
        collection.bulk_write(writes, ordered=False)


def _pulled(event_ids: set[str], due: datetime | None = None, attempts: int | None = None) -> list[dict]:
    """The update that pulls the confirmed events, and clears the due time only if the outbox is then empty,
    judged in the same atomic write (an event pushed meanwhile stays due). A document still holding events
    keeps its due time and attempts, unless given new ones; one holding none of them is not changed at all."""
    remaining = {"$filter": {"input": f"${OUTBOX_FIELD}",
                             "cond": {"$not": [{"$in": ["$$this.id", sorted(event_ids)]}]}}}
    empty = {"$eq": [{"$size": {"$ifNull": [f"${OUTBOX_FIELD}", []]}}, 0]}
    return [
        {"$set": {OUTBOX_FIELD: remaining}},
        {"$set": {DUE_FIELD: {"$cond": [empty, "$$REMOVE", due or f"${DUE_FIELD}"]},
                  ATTEMPTS_FIELD: {"$cond": [empty, "$$REMOVE", attempts or f"${ATTEMPTS_FIELD}"]}}},
    ]
