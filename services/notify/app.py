"""The notify web process: `create_app()` wires settings, store, reference data and blueprints."""
from __future__ import annotations

from flask import Flask

from shared import reference, runtime
from shared.config import Settings
from shared.web import create_service_app

from . import api
from .settings import NotifySettings
from .store import NotifyStore
from .templates import Templates
from .webhooks import TargetPolicy

DESCRIPTION = """The inbox, subscriptions (email, signed webhooks, preferences) and the delivery log.

Every call needs `Authorization: Bearer <JWT>`; errors are `application/problem+json`. Webhook POSTs carry
`X-Woodpecker-Event-Id`, `X-Woodpecker-Timestamp` and `X-Woodpecker-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<raw body>" with the subscription's secret>`."""


def create_app(settings: Settings | None = None, notify_settings: NotifySettings | None = None) -> Flask:
    settings, db = runtime.bootstrap("notify", settings)
    notify_settings = notify_settings or NotifySettings.from_env()
    Templates(notify_settings.templates_dir).check()  # a city's broken template stops the start, not a notice
    app = create_service_app(settings, title="Woodpecker notify", description=DESCRIPTION,
                             blueprints=[api.inbox, api.subscriptions, api.deliveries],
                             readiness=runtime.readiness_checks(settings, db))
    app.extensions["notify"] = api.Notify(
        store=NotifyStore.prepared(db), reference=reference.load(settings.reference_dir),
        policy=TargetPolicy.from_setting(notify_settings.allowed_networks, notify_settings.webhook_timeout_s))
    return app
