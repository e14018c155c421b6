"""Routing's background work: the report consumer, the outbox relay and the deadline watch.

`python -m services.routing.worker` runs them as a process of their own (MongoDB deployments).
"""
from __future__ import annotations

import functools

from pymongo.database import Database

from shared import reference, runtime
from shared.bus import EventConsumer, EventPublisher
from shared.config import Settings
from shared.outbox import OutboxRelay

from . import handlers
from .clock import clock_for
from .deadlines import OverdueWatch
from .store import CaseStore


def background_work(settings: Settings, db: Database) -> runtime.BackgroundWork:
    store = CaseStore.prepared(db, reference.load(settings.reference_dir))
    clocks = functools.partial(clock_for, calendar=reference.load_work_calendar(settings.reference_dir))
    consumer = EventConsumer(settings.amqp_url, db, handlers.subscriptions(store, clocks),
                             settings.retry_delays_ms, settings.prefetch)
    relay = OutboxRelay([store.cases], EventPublisher(settings.amqp_url, "routing"), "routing",
                        settings.relay_interval_s)
    watch = runtime.every(settings.periodic_interval_s, OverdueWatch(store).check, "cases flagged overdue")
    return runtime.BackgroundWork(consumer=consumer, relay=relay, periodic={"deadline-watch": watch})


if __name__ == "__main__":
    runtime.worker_main("routing", background_work)
