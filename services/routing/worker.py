"""Routing's background work: the report consumer, the outbox relay and the deadline watch.

`python -m services.routing.worker` runs them as a process of their own (MongoDB deployments).
"""
from __future__ import annotations

import functools

from pymongo.database import Database

from shared import reference, runtime
from shared.bus import EventConsumer
from shared.config import Settings

from . import handlers
from .clock import clock_for
from .deadlines import OverdueWatch
from .store import CaseStore


def background_work(settings: Settings, db: Database) -> runtime.BackgroundWork:
    relay = runtime.outbox_relay(settings)
    store = CaseStore.prepared(db, reference.load(settings.reference_dir), relay)
    relay.sweeps(store.cases, store.outbox)
    clocks = functools.partial(clock_for, calendar=reference.load_work_calendar(settings.reference_dir))
    consumer = EventConsumer(settings.amqp_url, handlers.subscriptions(store, clocks),
                             settings.retry_delays_ms, settings.prefetch)
    watch = runtime.every(settings.periodic_interval_s, OverdueWatch(store).check, "cases flagged overdue")
    return runtime.BackgroundWork(consumer=consumer, relay=relay, periodic={"deadline-watch": watch})


if __name__ == "__main__":
    runtime.worker_main("routing", background_work)
