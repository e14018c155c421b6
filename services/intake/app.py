"""The intake web process: `create_app()` wires settings, store, reference data and blueprints."""
from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask

from shared import reference, runtime
from shared.config import Settings
from shared.photo_ids import PhotoIds
from shared.web import create_service_app

from . import api
from .domain import GridMap
from .photos import PhotoCleaner
from .store import ReportStore

DESCRIPTION = """Volunteers' photos and reports, grid cells and weekly grid summaries.

Every call needs `Authorization: Bearer <JWT>`; errors are `application/problem+json`."""

# Photos decoded at once by one web process (each of gunicorn's workers), whatever its thread count:
# one upload peaks at up to about 250 MB (bench/photo_memory.py), so 2 keep a worker under about 500 MB
# of photo memory while its other threads still answer everything else.
PHOTO_CONCURRENCY_VARIABLE = "WOODPECKER_PHOTO_CONCURRENCY"
DEFAULT_PHOTO_CONCURRENCY = 2


def photo_concurrency(env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(PHOTO_CONCURRENCY_VARIABLE, str(DEFAULT_PHOTO_CONCURRENCY))
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"{PHOTO_CONCURRENCY_VARIABLE} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def create_app(settings: Settings | None = None) -> Flask:
    settings, db = runtime.bootstrap("intake", settings)
    city = reference.load(settings.reference_dir)
    store = ReportStore.prepared(db)
    app = create_service_app(settings, title="Woodpecker intake", description=DESCRIPTION,
                             blueprints=[api.photos, api.reports, api.grids],
                             readiness=runtime.readiness_checks(settings, db))
    app.extensions["intake"] = api.Intake(store=store, reference=city, grid_map=GridMap(city.grids),
                                          photo_cleaner=PhotoCleaner(photo_concurrency()),
                                          photo_ids=PhotoIds(settings.jwt_secret))
    return app
