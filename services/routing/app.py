"""The routing web process. Its domain arrives with its own issue; today it serves health and docs."""
from __future__ import annotations

from flask import Flask

from shared import runtime
from shared.config import Settings
from shared.logs import configure_logging
from shared.store import connect
from shared.web import create_service_app


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env("routing")
    configure_logging("routing")
    db = connect(settings.mongo_url, settings.database)
    return create_service_app(settings, title="Woodpecker routing", description="See the README.",
                              readiness=runtime.readiness_checks(settings, db))
