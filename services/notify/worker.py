"""Notify's background work: the event consumer (notices into inboxes and deliveries), the dispatcher
(email and webhooks, with retries) and the weekly grid digest.

`python -m services.notify.worker` runs them as a process of their own.
"""
from __future__ import annotations

import logging

from pymongo.database import Database

from shared import reference, runtime
from shared.bus import EventConsumer
from shared.config import Settings
from shared.outbound import TargetPolicy

from . import domain, handlers
from .digests import GridDigest
from .dispatch import Dispatcher
from .mail import mailer_from
from .notices import NoticeWriter
from .sealing import sealer_from
from .settings import NotifySettings
from .store import NotifyStore
from .templates import Templates

log = logging.getLogger(__name__)


def background_work(settings: Settings, db: Database, notify_settings: NotifySettings | None = None,
                    ) -> runtime.BackgroundWork:
    notify_settings = notify_settings or NotifySettings.from_env()
    sealer = sealer_from(notify_settings, settings)  # the worker opens the secrets it signs with
    store = NotifyStore.prepared(db)
    templates = Templates(notify_settings.templates_dir)
    templates.check()  # a city's broken template stops the worker at start, not at the first notice
    mailer = mailer_from(notify_settings.smtp_url, notify_settings.mail_from, notify_settings.mail_dir,
                         notify_settings.attempt_deadline_s)
    log.info("notify mail", extra={"mailer": mailer.describe()})
    policy = TargetPolicy.from_setting(notify_settings.allowed_networks, notify_settings.attempt_deadline_s)
    dispatcher = Dispatcher(store, mailer, policy, notify_settings, sealer)
    context = handlers.Context(store=store, writer=NoticeWriter(store, templates, on_deliveries=dispatcher.wake),
                               city=reference.load(settings.reference_dir),
                               links=domain.Links(notify_settings.link_base))
    consumer = EventConsumer(settings.amqp_url, handlers.subscriptions(context), settings.retry_delays_ms,
                             settings.prefetch)
    digest = runtime.every(settings.periodic_interval_s,
                           GridDigest(store, context.writer, context.city, context.links).check, "grid digests written")
    return runtime.BackgroundWork(consumer=consumer, relay=None,
                                  periodic={"dispatcher": dispatcher.run, "grid-digest": digest})


if __name__ == "__main__":
    runtime.worker_main("notify", background_work)
