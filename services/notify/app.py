"""The notify web process: `create_app()` wires settings, store, reference data and blueprints."""
from __future__ import annotations

from flask import Flask

from shared import reference, runtime
from shared.config import Settings
from shared.outbound import TargetPolicy
from shared.web import create_service_app

from . import api, domain
from .sealing import sealer_from
from .settings import NotifySettings
from .store import NotifyStore
from .subscriptions import Subscriptions
from .templates import Templates

DESCRIPTION = """The inbox, subscriptions (email, signed webhooks, preferences) and the delivery log.

Every call needs `Authorization: Bearer <JWT>`; errors are `application/problem+json`. Webhook POSTs carry
`X-Woodpecker-Event-Id`, `X-Woodpecker-Timestamp` and `X-Woodpecker-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<raw body>" with the subscription's secret>` (for a while after a rotation, a second signature with
the old secret follows the first, after a comma). An email address a volunteer sets gets mail only once the code
mailed to it is confirmed."""


def create_app(settings: Settings | None = None, notify_settings: NotifySettings | None = None) -> Flask:
    settings, db = runtime.bootstrap("notify", settings)
    notify_settings = notify_settings or NotifySettings.from_env()
    sealer = sealer_from(notify_settings, settings)  # no key, no start: secrets are never stored in plain text
    templates = Templates(notify_settings.templates_dir)
    templates.check()  # a city's broken template stops the start, not a notice
    app = create_service_app(settings, title="Woodpecker notify", description=DESCRIPTION,
                             blueprints=[api.inbox, api.subscriptions, api.deliveries],
                             readiness=runtime.readiness_checks(settings, db))
    store = NotifyStore.prepared(db)
    subscriptions = Subscriptions(
        store=store, reference=reference.load(settings.reference_dir),
        policy=TargetPolicy.from_setting(notify_settings.allowed_networks, notify_settings.attempt_deadline_s),
        sealer=sealer, templates=templates, links=domain.Links(notify_settings.link_base),
        secret_overlap_s=notify_settings.secret_overlap_s)
    app.extensions["notify"] = api.Notify(store=store, subscriptions=subscriptions)
    return app
