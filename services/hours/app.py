"""The hours web process: `create_app()` wires settings, store, reference data and blueprints."""
from __future__ import annotations

from flask import Flask

from shared import reference, runtime
from shared.config import Settings
from shared.photo_ids import PhotoIds
from shared.web import create_service_app

from . import api
from .settings import HoursSettings
from .store import HoursStore
from .usecases import Hours

DESCRIPTION = """Volunteers, patrols, the service-hour ledger and each volunteer's summary.

Every call needs `Authorization: Bearer <JWT>`; errors are `application/problem+json`. A volunteer's
token has `sub` = their volunteer id. The ledger is append-only: a correction is a reversing entry."""


def create_app(settings: Settings | None = None, hours_settings: HoursSettings | None = None) -> Flask:
    hours_settings = hours_settings or HoursSettings.from_env()  # a malformed HOURS_PUBLIC_URL stops the start
    settings, db = runtime.bootstrap("hours", settings)
    city = reference.load(settings.reference_dir)
    rules = reference.load_service_hours(settings.reference_dir)
    store = HoursStore.prepared(db, rules, runtime.outbox_relay(settings))
    app = create_service_app(settings, title="Woodpecker hours", description=DESCRIPTION,
                             blueprints=api.BLUEPRINTS,
                             readiness=runtime.readiness_checks(settings, db))
    app.extensions["hours"] = Hours(store=store, reference=city, rules=rules,
                                    calendar=reference.load_work_calendar(settings.reference_dir),
                                    photo_ids=PhotoIds(settings.jwt_secret))
    app.config["HOURS_PUBLIC_URL"] = hours_settings.public_url
    return app
