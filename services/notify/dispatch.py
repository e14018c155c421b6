"""The dispatcher: sends due email and webhook deliveries, retries failures with back-off, suspends a
receiver that keeps failing.

The worker's consumer wakes the dispatcher when it stores new deliveries, and the dispatcher wakes itself when
an attempt ends and when a retry it scheduled comes due; it also looks for due deliveries every IDLE_POLL_S
(a retry asked for over HTTP, a suspended receiver saved again), and at no other time reads the store.

Deliveries run on a pool of threads, at most one at a time per target (an address or a URL): a receiver
that hangs until the timeout holds one thread, and every other receiver's notices go on. A claimed
delivery is leased for a while, so another worker process skips it; a worker that dies mid-attempt
leaves the lease to run out and the delivery is tried again (a receiver may then see a notice twice:
webhooks carry X-Woodpecker-Event-Id for that).
"""
from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from . import domain
from .domain import EMAIL, WEBHOOK
from .mail import Mail, Mailer
from .settings import NotifySettings
from .store import NotifyStore
from .webhooks import TargetPolicy, post

log = logging.getLogger(__name__)
LEASE_S = 120.0
IDLE_POLL_S = 2.0


class Dispatcher:
    def __init__(self, store: NotifyStore, mailer: Mailer, policy: TargetPolicy, settings: NotifySettings,
                 idle_poll_s: float = IDLE_POLL_S):
        self.store = store
        self.mailer = mailer
        self.policy = policy
        self.settings = settings
        self.idle_poll_s = idle_poll_s
        self.pool = ThreadPoolExecutor(settings.delivery_threads, thread_name_prefix="notify-delivery")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        # Set when deliveries are stored or an attempt ends, so that they start now rather than at the next poll.
        self._wake = threading.Event()
        # The earliest retry this dispatcher scheduled and has not yet looked for (UTC), if any.
        self._next_retry: datetime | None = None
        self._random = random.Random()

    def wake(self) -> None:
        """New deliveries are stored: send what is due now."""
        self._wake.set()

    def dispatch_once(self, now: datetime | None = None) -> int:
        """Claim what is due and hand it to the pool; returns how many deliveries were started."""
        now = now or datetime.now(UTC)
        with self._lock:
            free = self.settings.delivery_threads - len(self._in_flight)
            busy = set(self._in_flight)
        if free <= 0:
            return 0
        claimed = self.store.claim_due(now, LEASE_S, free, busy)
        for delivery in claimed:
            with self._lock:
                self._in_flight.add(delivery["target"])
            self.pool.submit(self._deliver, delivery)
        return len(claimed)

    def _deliver(self, delivery: dict) -> None:
        try:
            self.attempt(delivery)
        except Exception:  # the store may be away: the lease runs out and the delivery is tried again
            log.exception("delivery attempt failed to complete", extra={"delivery_id": delivery["id"]})
        finally:
            with self._lock:
                self._in_flight.discard(delivery["target"])
            self._wake.set()

    def attempt(self, delivery: dict) -> dict:
        """One attempt, recorded with its status code and latency; returns the delivery's new state."""
        started = datetime.now(UTC)
        if delivery["channel"] == WEBHOOK:
            subscription = self.store.subscription(delivery["recipient"]) or {}
            result = post(delivery["target"], subscription.get("secret", ""), delivery["event_id"],
                          delivery["payload"].encode(), self.policy)
            # A target refused at the moment of sending (its name now resolves inside) stays refused.
            delivered, permanent = result.delivered, (result.error or "").startswith("refused target")
            attempt = {"at": started, "status_code": result.status_code, "latency_ms": round(result.latency_ms, 1),
                       "error": result.error}
        elif delivery["channel"] == EMAIL:
            clock = datetime.now(UTC)
            sent = self.mailer.send(Mail(to=delivery["target"], subject=delivery["title"], body=delivery["body"],
                                         message_id=f"<{delivery['id']}@woodpecker>"))
            delivered, permanent = sent.delivered, sent.permanent
            attempt = {"at": started, "status_code": None,
                       "latency_ms": round((datetime.now(UTC) - clock).total_seconds() * 1000, 1),
                       "error": sent.error}
        else:
            raise ValueError(f"unknown channel {delivery['channel']}")
        now = datetime.now(UTC)
        changes = domain.after_attempt(delivery, delivered, permanent, now, self.settings.retry_for_s,
                                       self._random.random())
        # Counted first: when this failure suspends the receiver, this delivery is held with the others rather
        # than left pending for one more attempt.
        if self.store.count_failure(delivery["recipient"], delivery["channel"], not delivered,
                                    self.settings.suspend_after):
            changes = {"status": domain.SUSPENDED, "next_attempt_at": None}
            log.warning("receiver suspended after repeated failures",
                        extra={"recipient": delivery["recipient"], "channel": delivery["channel"]})
        self.store.record_attempt(delivery, attempt, changes)
        if changes.get("status") == domain.PENDING and changes.get("next_attempt_at"):
            with self._lock:
                self._next_retry = min(filter(None, (self._next_retry, changes["next_attempt_at"])))
        return {**delivery, **changes}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(self._until_next_look())
            self._wake.clear()
            try:
                self.dispatch_once()
            except Exception:  # the store may be briefly away; the next pass catches up
                log.exception("dispatch pass failed")
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _until_next_look(self) -> float:
        """Seconds until the next poll, or until the earliest retry scheduled here comes due if that is sooner."""
        with self._lock:
            retry, now = self._next_retry, datetime.now(UTC)
            if retry is not None and retry <= now + timedelta(seconds=self.idle_poll_s):
                self._next_retry = None  # this look is for it (and a later retry is found by the polls)
                return max(0.0, (retry - now).total_seconds())
        return self.idle_poll_s
