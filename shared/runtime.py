"""A service's background work (its event consumer, outbox relay and periodic work) and its processes.

Every service runs the same way on any store: gunicorn web workers answer HTTP, and a worker process
of its own (`python -m services.<name>.worker`) runs the background work in threads.
"""
from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from shared import audit, ratelimit, spreadsheets
from shared.bus import EventConsumer, EventPublisher, broker_problem
from shared.config import Settings, check_jwt_secret
from shared.logs import configure_logging
from shared.outbox import OutboxRelay
from shared.store import connect, ping

log = logging.getLogger(__name__)


@dataclass
class BackgroundWork:
    consumer: EventConsumer | None = None
    relay: OutboxRelay | None = None
    # Periodic work of the service's own (e.g. routing's deadline watch): name → run(stop).
    periodic: dict[str, Callable[[threading.Event], None]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> BackgroundWork:
        if self.relay is not None:
            self.relay.start()
        if self.consumer is not None:
            self._spawn("event-consumer", self.consumer.run)
        for name, run in self.periodic.items():
            self._spawn(name, lambda run=run: run(self._stop))
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.consumer is not None:
            self.consumer.should_stop = True
        for thread in self._threads:
            thread.join(timeout)
        if self.relay is not None:  # last: what the consumer stored on its way out is still published
            self.relay.stop(timeout)

    def run_until_signalled(self) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.start()
        log.info("background work running", extra={"threads": [t.name for t in self._threads]})
        stop.wait()
        self.stop()


def every(interval_s: float, check: Callable[[datetime], int], done: str) -> Callable[[threading.Event], None]:
    """Periodic work for BackgroundWork.periodic: `check(now)` every `interval_s` until stopped, logging how
    many things a pass did ("<count> <done>"); a failed pass (the store briefly away) is logged and the next
    one catches up."""
    def run(stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                if count := check(datetime.now(UTC)):
                    log.info(done, extra={"count": count})
            except Exception:
                log.exception("periodic pass failed", extra={"work": done})

    return run


def bootstrap(service: str, settings: Settings | None = None) -> tuple[Settings, Database]:
    """What every process of a service does first: settings, JSON logs, its own database."""
    settings = settings or Settings.from_env(service)
    configure_logging(service)
    check_jwt_secret(settings)
    return settings, connect(settings.mongo_url, settings.database)


def outbox_relay(settings: Settings) -> OutboxRelay:
    """The relay of one of the service's processes: it publishes at once what the process stores. A worker's
    relay also sweeps up what was left behind (`OutboxRelay.sweeps`)."""
    return OutboxRelay(EventPublisher(settings.amqp_url, settings.service), settings.service, settings.outbox_sweep_s)


def readiness_checks(settings: Settings, db: Database) -> list[Callable[[], str | None]]:
    """What every service's /readyz asks: its own database and the broker."""
    return [lambda: ping(db), lambda: broker_problem(settings.amqp_url)]


def worker_main(service: str, build: Callable[[Settings, Database], BackgroundWork]) -> None:
    """Entry point of a service's worker process: its consumer, relay and periodic work, until SIGTERM; and, for
    every service, dropping the rate limit windows that are over, the stored spreadsheets that expired and the
    audit entries past their retention."""
    settings, db = bootstrap(service)
    work = build(settings, db)
    work.periodic["rate-limit-windows"] = every(
        settings.periodic_interval_s, functools.partial(ratelimit.drop_ended_windows, db[ratelimit.COLLECTION]),
        "rate limit windows dropped")
    work.periodic["spreadsheet-cache"] = every(
        settings.periodic_interval_s, functools.partial(spreadsheets.drop_expired, db[spreadsheets.COLLECTION]),
        "stored spreadsheets dropped")
    work.periodic["audit-retention"] = every(
        settings.periodic_interval_s, functools.partial(audit.drop_expired, db[audit.COLLECTION],
                                                        retention=timedelta(days=settings.audit_retention_days)),
        "audit entries past their retention dropped")
    work.run_until_signalled()
