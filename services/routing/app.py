"""The routing web process: `create_app()` wires settings, store, reference data and blueprints."""
from __future__ import annotations

import functools

from flask import Flask

from shared import reference, runtime
from shared.config import Settings
from shared.photo_ids import PhotoIds
from shared.web import create_service_app

from . import api
from .clock import clock_for
from .store import CaseStore

DESCRIPTION = """Cases, routing rules, deadlines, department work and league tables.

Every call needs `Authorization: Bearer <JWT>`; errors are `application/problem+json`.
A department's system receives its cases by binding a queue to `case.*.<department>` on the
`woodpecker.events` exchange (see deploy/examples/)."""


def create_app(settings: Settings | None = None) -> Flask:
    settings, db = runtime.bootstrap("routing", settings)
    city = reference.load(settings.reference_dir)
    store = CaseStore.prepared(db, city, runtime.outbox_relay(settings))
    clocks = functools.partial(clock_for, calendar=reference.load_work_calendar(settings.reference_dir))
    app = create_service_app(settings, title="Woodpecker routing", description=DESCRIPTION,
                             blueprints=[api.cases, api.rules, api.statistics],
                             readiness=runtime.readiness_checks(settings, db))
    app.extensions["routing"] = api.Routing(store=store, reference=city, clock_for=clocks,
                                            photo_ids=PhotoIds(settings.jwt_secret))
    return app
