"""Intake's background work: the case-event consumer and the outbox relay.

`python -m services.intake.worker` runs them as a process of their own (MongoDB deployments).
"""
from __future__ import annotations

from pymongo.database import Database

from shared import reference, runtime
from shared.bus import EventConsumer, EventPublisher
from shared.config import Settings
from shared.outbox import OutboxRelay

from . import handlers
from .store import ReportStore


def background_work(settings: Settings, db: Database) -> runtime.BackgroundWork:
    store = ReportStore.prepared(db)
    city = reference.load(settings.reference_dir)
    consumer = EventConsumer(settings.amqp_url, db, handlers.subscriptions(store, city),
                             settings.retry_delays_ms, settings.prefetch)
    relay = OutboxRelay([store.reports], EventPublisher(settings.amqp_url, "intake"), "intake",
                        settings.relay_interval_s)
    return runtime.BackgroundWork(consumer=consumer, relay=relay)


if __name__ == "__main__":
    runtime.worker_main("intake", background_work)
