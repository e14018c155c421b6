"""Admission by the pipeline's backlog: new work is refused at the door while the services' queues are full.

A service that accepts reports faster than the services behind it handle them only moves the wait: the
reports pile up in the queues, and each one reaches its department later than the one before (issue 11:
100 reports/s offered, 39–54 taken, and the departments heard almost nothing). So the endpoint that starts such
work asks `BacklogGate` first: while the services' queues hold more than `limit` ready messages it answers 503
with Retry-After, nothing done; the client sends the same request again later (with its Idempotency-Key that
is safe). The queues then stay bounded, at any offered rate, and what was accepted is handled in seconds.

The depths come from the broker (a passive declare per queue, which needs no permission on the queue), read
about once a second by a thread of the process's own, only while requests ask: an idle process sends nothing.
A request never waits for the broker: it is judged on the last reading, and admitted when there is none
recent (the broker away, the first request after a quiet spell). Departments' queues are not counted: a
department whose system is down must not stop the city's volunteers.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import kombu
from amqp.exceptions import AMQPError, NotFound
from kombu.exceptions import KombuError

from shared import metrics
from shared.bus import service_queues
from shared.config import Settings
from shared.errors import ServiceBusy

log = logging.getLogger(__name__)

READ_EVERY_S = 1.0
# A reading older than this is no reading: the broker did not answer, or nobody asked for a while.
STALE_AFTER_S = 5.0
# The reading thread stops asking the broker when no request has asked it for this long.
IDLE_AFTER_S = 10.0
RETRY_AFTER_S = 2
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Reading:
    messages: int  # ready in the watched queues, all together
    at: float      # time.monotonic() when read


class BacklogGate:
    """Admits work while the watched queues hold at most `limit` ready messages (no limit: everything)."""

    def __init__(self, service: str, read_depths: Callable[[], int] | None, limit: int,
                 read_every_s: float = READ_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.service, self.read_depths, self.limit = service, read_depths, limit
        self.read_every_s, self.clock = read_every_s, clock
        self.reading: Reading | None = None
        self.refusing = False
        self._asked_at = float("-inf")
        self._asked = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._reader_pid: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BacklogGate:
        if not settings.admission_backlog:
            return cls(settings.service, None, 0)
        queues = settings.admission_queues or tuple(service_queues())
        return cls(settings.service, QueueDepths(settings.amqp_url, queues), settings.admission_backlog)

    @property
    def enabled(self) -> bool:
        return self.read_depths is not None

    def admit(self) -> None:
        """Return if the work may start; raise ServiceBusy (503, Retry-After) while the queues are over the limit."""
        if not self.enabled:
            return
        now, reading = self.clock(), self.reading
        self._asked_at = now
        self._ensure_reader()
        self._asked.set()
        over = reading is not None and now - reading.at <= STALE_AFTER_S and reading.messages > self.limit
        self._note(over, reading)
        if over:
            metrics.admission_refused.labels(self.service).inc()
            raise ServiceBusy(f"The services' queues hold {reading.messages} messages, more than the "
                              f"{self.limit} they drain in a few seconds: nothing was done. Send the same request "
                              f"again in {RETRY_AFTER_S} s (with the same Idempotency-Key).", RETRY_AFTER_S)

    def read_once(self) -> None:
        """Take a reading now (the reading thread's step)."""
        try:
            messages = self.read_depths()
        except (OSError, AMQPError, KombuError) as exc:
            log.warning("admission: the broker did not tell the queues' depths; requests are admitted meanwhile",
                        extra={"error": f"{exc.__class__.__name__}: {exc}"})
            return
        self.reading = Reading(messages, self.clock())
        metrics.admission_backlog.labels(self.service).set(messages)

    def _note(self, over: bool, reading: Reading | None) -> None:
        if over != self.refusing:
            self.refusing = over
            if over:
                log.warning("admission: refusing new work until the queues drain",
                            extra={"messages": reading.messages, "limit": self.limit})
            else:
                log.info("admission: admitting again")

    def _ensure_reader(self) -> None:
        # A thread of this process's own: gunicorn forks its workers after the app is made.
        if self._reader_pid == os.getpid():
            return
        with self._lock:
            if self._reader_pid != os.getpid():
                self._reader_pid = os.getpid()
                threading.Thread(target=self._read_while_asked, name="admission", daemon=True).start()

    def stop(self) -> None:
        """End the readings (the process's reader thread and its connection)."""
        self._stopped.set()
        self._asked.set()

    def _read_while_asked(self) -> None:
        while not self._stopped.is_set():
            if self.clock() - self._asked_at > IDLE_AFTER_S:
                self._asked.clear()
                # Asked again between the look and the clear: its set() is gone, but _asked_at tells.
                if self.clock() - self._asked_at > IDLE_AFTER_S:
                    self._asked.wait()
                continue
            try:
                self.read_once()
            except Exception:  # a bug here must not end the readings for good, and so the admission's refusals
                log.exception("admission: reading the queues' depths failed")
            self._stopped.wait(self.read_every_s)
        if isinstance(self.read_depths, QueueDepths):
            self.read_depths.close()


class QueueDepths:
    """The ready messages of `queues` all together, by passive declares on a connection of its own."""

    def __init__(self, amqp_url: str, queues: Iterable[str]):
        self.amqp_url, self.queues = amqp_url, tuple(queues)
        self.connection: kombu.Connection | None = None
        self.channel = None

    def __call__(self) -> int:
        try:
            return sum(self._ready(queue) for queue in self.queues)
        except Exception:
            self.close()  # the next reading starts afresh
            raise

    def _ready(self, queue: str) -> int:
        if self.channel is None:
            self.connection = kombu.Connection(self.amqp_url, connect_timeout=CONNECT_TIMEOUT_S, heartbeat=0)
            self.channel = self.connection.channel()
        try:
            return self.channel.queue_declare(queue=queue, passive=True).message_count
        except NotFound:
            # Not declared (yet): it holds nothing. The broker closed the channel: the next queue opens another.
            self.channel = self.connection.channel()
            return 0

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # already broken: there is nothing left to close
                pass
        self.connection = self.channel = None
