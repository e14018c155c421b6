"""The intake web process: `create_app()` wires settings, store, reference data and blueprints."""
from __future__ import annotations

from flask import Flask

from shared import reference, runtime
from shared.admission import BacklogGate
from shared.config import Settings
from shared.photo_ids import PhotoIds
from shared.web import create_service_app

from . import api
from .domain import GridMap
from .photos import PhotoCleaner
from .store import ReportStore

DESCRIPTION = """Volunteers' photos and reports, grid cells and weekly grid summaries.

Every call needs `Authorization: Bearer <JWT>`; errors are `application/problem+json`."""

def create_app(settings: Settings | None = None) -> Flask:
    settings, db = runtime.bootstrap("intake", settings)
    city = reference.load(settings.reference_dir)
    store = ReportStore.prepared(db, runtime.outbox_relay(settings))
    app = create_service_app(settings, title="Woodpecker intake", description=DESCRIPTION,
                             blueprints=[api.photos, api.reports, api.grids],
                             readiness=runtime.readiness_checks(settings, db))
    app.extensions["intake"] = api.Intake(store=store, reference=city, grid_map=GridMap(city.grids),
                                          photo_cleaner=PhotoCleaner(settings.photo_concurrency),
                                          photo_ids=PhotoIds(settings.jwt_secret),
                                          admission=BacklogGate.from_settings(settings))
    return app
