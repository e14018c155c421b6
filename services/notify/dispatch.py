"""The dispatcher: sends due email and webhook deliveries, retries failures with back-off, suspends a
receiver that keeps failing.

The worker's consumer wakes the dispatcher when it stores new deliveries, and the dispatcher wakes itself when
an attempt ends and when a retry it scheduled comes due; it also looks for due deliveries every IDLE_POLL_S
(a retry asked for over HTTP, a suspended receiver saved again, a confirmation mail), and at no other time reads
the store.

Mail and webhooks go out on pools of threads of their own, so that a slow mail server never holds up a webhook
nor the other way round. Every attempt ends within its deadline (NOTIFY_ATTEMPT_DEADLINE_S), however slowly the
other side answers. At most one attempt at a time per recipient and channel, across every worker process: each
attempt holds the recipient's lease on that channel in the store (`NotifyStore.take_lease`), taken before the
delivery is claimed and released when the attempt ends. A lease outlives the deadline by LEASE_MARGIN_S, so a live
attempt always ends before its lease runs out; a worker that dies mid-attempt leaves the lease and the claim to
run out, and the delivery is tried again (a receiver may then see a notice twice: webhooks carry
X-Woodpecker-Event-Id for that).
"""
from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from shared.outbound import TargetPolicy

from . import domain
from .domain import EMAIL, WEBHOOK
from .mail import Mail, Mailer
from .sealing import Sealer
from .settings import NotifySettings
from .store import NotifyStore
from .webhooks import post

log = logging.getLogger(__name__)
LEASE_MARGIN_S = 30.0
IDLE_POLL_S = 2.0


class Dispatcher:
    def __init__(self, store: NotifyStore, mailer: Mailer, policy: TargetPolicy, settings: NotifySettings,
                 sealer: Sealer, idle_poll_s: float = IDLE_POLL_S):
        self.store = store
        self.mailer = mailer
        self.policy = policy  # staff webhooks'; volunteers' are stricter (domain.webhook_policy)
        self.settings = settings
        self.sealer = sealer
        self.idle_poll_s = idle_poll_s
        self.lease_s = settings.attempt_deadline_s + LEASE_MARGIN_S
        self.holder = domain.new_id()  # this dispatcher, as its leases name it
        self.threads = {EMAIL: settings.mail_threads, WEBHOOK: settings.webhook_threads}
        self.pools = {EMAIL: ThreadPoolExecutor(settings.mail_threads, thread_name_prefix="notify-mail"),
                      WEBHOOK: ThreadPoolExecutor(settings.webhook_threads, thread_name_prefix="notify-webhook")}
        self._in_flight: set[tuple[str, str]] = set()  # (recipient, channel) of the attempts under way here
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
        """Claim what is due and hand it to the pools; returns how many deliveries were started."""
        now = now or datetime.now(UTC)
        with self._lock:
            busy = set(self._in_flight)
        free = {channel: size - sum(1 for _, c in busy if c == channel) for channel, size in self.threads.items()}
        if all(count <= 0 for count in free.values()):
            return 0
        claimed = self.store.claim_due(now, self.lease_s, free, busy, self.holder)
        for delivery in claimed:
            with self._lock:
                self._in_flight.add(_key(delivery))
            self.pools[delivery["channel"]].submit(self._deliver, delivery)
        return len(claimed)

    def _deliver(self, delivery: dict) -> None:
        try:
            self.attempt(delivery)
        except Exception:  # the store may be away: the lease runs out and the delivery is tried again
            log.exception("delivery attempt failed to complete", extra={"delivery_id": delivery["id"]})
        finally:
            try:
                self.store.release_lease(_key(delivery), self.holder)
            except Exception:  # the store is away: the lease runs out by itself
                log.exception("delivery lease not released", extra={"delivery_id": delivery["id"]})
            with self._lock:
                self._in_flight.discard(_key(delivery))
            self._wake.set()

    def attempt(self, delivery: dict) -> dict:
        """One attempt, recorded with its status code and latency; returns the delivery's new state. It goes where
        the recipient's subscription says now, if anywhere (`domain.destination`)."""
        subscription = self.store.subscription(delivery["recipient"])
        verdict, target = domain.destination(delivery, subscription)
        if verdict == domain.HOLD:
            self.store.hold(delivery, target)
            # Proven meanwhile? Its release may have run before this hold: look again.
            self.store.release_held_mail_of_confirmed({delivery["recipient"]}, datetime.now(UTC))
            return {**delivery, "status": domain.HELD}
        started = datetime.now(UTC)
        if verdict == domain.DROP:
            changes = {"status": domain.FAILED, "next_attempt_at": None}
            self.store.record_attempt(delivery, {"at": started, "status_code": None, "latency_ms": 0.0,
                                                 "error": "not sent: the recipient no longer has this address"},
                                      changes)
            return {**delivery, **changes}
        if delivery["channel"] == WEBHOOK:
            delivered, permanent, attempt = self._post(delivery, subscription, target, started)
        elif delivery["channel"] == EMAIL:
            delivered, permanent, attempt = self._mail(delivery, target, started)
        else:
            raise ValueError(f"unknown channel {delivery['channel']}")
        now = datetime.now(UTC)
        changes = domain.after_attempt(delivery, delivered=delivered, permanent=permanent, now=now,
                                       retry_for_s=self.settings.retry_for_s, draw=self._random.random())
        if target != delivery["target"]:
            changes["target"] = target
        # Counted first: when this failure suspends the receiver, this delivery is held with the others rather
        # than left pending for one more attempt.
        if self.store.count_failure(delivery["recipient"], delivery["channel"], not delivered,
                                    self.settings.suspend_after):
            changes = {**changes, "status": domain.SUSPENDED, "next_attempt_at": None}
            log.warning("receiver suspended after repeated failures",
                        extra={"recipient": delivery["recipient"], "channel": delivery["channel"]})
        self.store.record_attempt(delivery, attempt, changes)
        if changes.get("status") == domain.PENDING and changes.get("next_attempt_at"):
            with self._lock:
                self._next_retry = min(filter(None, (self._next_retry, changes["next_attempt_at"])))
        return {**delivery, **changes}

    def _post(self, delivery: dict, subscription: dict, url: str, started: datetime) -> tuple[bool, bool, dict]:
        result = post(url, self._signing_secrets(subscription, started), delivery["event_id"],
                      delivery["payload"].encode(), domain.webhook_policy(delivery["recipient"], self.policy))
        # A target refused at the moment of sending (its name now resolves inside) stays refused.
        return result.delivered, result.permanent, {
            "at": started, "status_code": result.status_code, "latency_ms": round(result.latency_ms, 1),
            "error": result.error}

    def _mail(self, delivery: dict, address: str, started: datetime) -> tuple[bool, bool, dict]:
        body = self.sealer.open(delivery["body"], delivery["id"]) if delivery.get("sealed") else delivery["body"]
        clock = datetime.now(UTC)
        sent = self.mailer.send(Mail(to=address, subject=delivery["title"], body=body,
                                     message_id=f"<{delivery['id']}@woodpecker>"))
        return sent.delivered, sent.permanent, {
            "at": started, "status_code": None,
            "latency_ms": round((datetime.now(UTC) - clock).total_seconds() * 1000, 1), "error": sent.error}

    def _signing_secrets(self, subscription: dict, now: datetime) -> list[str]:
        recipient = subscription["_id"]
        current = (self.sealer.open(subscription["secret_sealed"], recipient) if subscription.get("secret_sealed")
                   else subscription.get("secret", ""))  # stored before secrets were sealed, until the next start
        previous = subscription.get("previous_secret_sealed")
        return domain.signing_secrets(current, self.sealer.open(previous, recipient) if previous else None,
                                      subscription.get("previous_secret_until"), now)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(self._until_next_look())
            self._wake.clear()
            try:
                self.dispatch_once()
            except Exception:  # the store may be briefly away; the next pass catches up
                log.exception("dispatch pass failed")
        for pool in self.pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def _until_next_look(self) -> float:
        """Seconds until the next poll, or until the earliest retry scheduled here comes due if that is sooner."""
        with self._lock:
            retry, now = self._next_retry, datetime.now(UTC)
            if retry is not None and retry <= now + timedelta(seconds=self.idle_poll_s):
                self._next_retry = None  # this look is for it (and a later retry is found by the polls)
                return max(0.0, (retry - now).total_seconds())
        return self.idle_poll_s


def _key(delivery: dict) -> tuple[str, str]:
    return delivery["recipient"], delivery["channel"]
