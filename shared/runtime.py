"""A service's background work (its event consumer and outbox relay) and where it runs.

With MongoDB, a service runs them in a worker process of their own (`python -m services.<name>.worker`).
With the embedded store, data lives in one process, so the web process runs them in threads
(started after gunicorn forks, see deploy/gunicorn.conf.py).
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from pymongo.database import Database

from shared.bus import EventConsumer, broker_problem
from shared.config import Settings
from shared.logs import configure_logging
from shared.outbox import OutboxRelay
from shared.store import connect, ping

log = logging.getLogger(__name__)

BACKGROUND_KEY = "woodpecker.background"


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
            self._spawn("outbox-relay", lambda: self.relay.run(self._stop))
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

    def run_until_signalled(self) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.start()
        log.info("background work running", extra={"threads": [t.name for t in self._threads]})
        stop.wait()
        self.stop()


def attach(app: Flask, build: Callable[[], BackgroundWork]) -> None:
    app.extensions[BACKGROUND_KEY] = build


def start_in_process(app: Flask) -> BackgroundWork | None:
    """Start the app's background work in this process, if it has any."""
    build = app.extensions.get(BACKGROUND_KEY)
    return build().start() if build else None


def bootstrap(service: str, settings: Settings | None = None) -> tuple[Settings, Database]:
    """What every process of a service does first: settings, JSON logs, its own database."""
    settings = settings or Settings.from_env(service)
    configure_logging(service)
    return settings, connect(settings.mongo_url, settings.database)


def readiness_checks(settings: Settings, db: Database) -> list[Callable[[], str | None]]:
    """What every service's /readyz asks: its own database and the broker."""
    return [lambda: ping(db), lambda: broker_problem(settings.amqp_url)]


def worker_main(service: str, build: Callable[[Settings, Database], BackgroundWork]) -> None:
    """Entry point of a service's worker process: its consumer and relay, until SIGTERM."""
    settings = Settings.from_env(service)
    if settings.embedded_store:
        raise SystemExit(f"{service} worker: MONGO_URL is not set. With the embedded store the web process "
                         "runs the consumer and relay itself; a separate worker would see none of its data.")
    build(*bootstrap(service, settings)).run_until_signalled()
