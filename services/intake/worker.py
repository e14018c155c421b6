"""Intake's background work: the case-event consumer and the outbox relay.

`python -m services.intake.worker` runs them as a process of their own (MongoDB deployments).
"""
from __future__ import annotations

from pymongo.database import Database

from shared import reference, runtime
from shared.bus import EventConsumer
from shared.config import Settings

from . import handlers
from .store import ReportStore


def background_work(settings: Settings, db: Database) -> runtime.BackgroundWork:
    relay = runtime.outbox_relay(settings)
    store = ReportStore.prepared(db, relay)
    relay.sweeps(store.reports)
    city = reference.load(settings.reference_dir)
    consumer = EventConsumer(settings.amqp_url, handlers.subscriptions(store, city),
                             settings.retry_delays_ms, settings.prefetch)
    return runtime.BackgroundWork(consumer=consumer, relay=relay)


if __name__ == "__main__":
    runtime.worker_main("intake", background_work)
