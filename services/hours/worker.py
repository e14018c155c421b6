"""Hours' background work: the report and case consumers, the outbox relay, the publicity watch
and the annual-minimum reminder.

`python -m services.hours.worker` runs them as a process of their own.
"""
from __future__ import annotations

from pymongo.database import Database

from shared import reference, runtime
from shared.bus import EventConsumer
from shared.config import Settings

from . import handlers
from .publicity import PublicityWatch
from .reminders import MinimumReminder
from .store import HoursStore


def background_work(settings: Settings, db: Database) -> runtime.BackgroundWork:
    city = reference.load(settings.reference_dir)
    relay = runtime.outbox_relay(settings)
    store = HoursStore.prepared(db, reference.load_service_hours(settings.reference_dir), relay)
    relay.sweeps(store.volunteers, store.entries, store.patrols)
    consumer = EventConsumer(settings.amqp_url, handlers.subscriptions(store, city.timezone),
                             settings.retry_delays_ms, settings.prefetch)
    every = settings.periodic_interval_s
    watch = runtime.every(every, PublicityWatch(store, city.timezone).check, "publicised activity hours credited")
    reminder = runtime.every(every, MinimumReminder(store, city.timezone).check,
                             "volunteers reminded of the annual minimum")
    return runtime.BackgroundWork(consumer=consumer, relay=relay,
                                  periodic={"publicity-watch": watch, "minimum-reminder": reminder})


if __name__ == "__main__":
    runtime.worker_main("hours", background_work)
