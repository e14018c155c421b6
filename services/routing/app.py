"""The routing web process. Its domain arrives with its own issue; today it serves health and docs."""
from __future__ import annotations

from flask import Flask

from shared import runtime
from shared.config import Settings
from shared.web import create_service_app


def create_app(settings: Settings | None = None) -> Flask:
    settings, db = runtime.bootstrap("routing", settings)
    return create_service_app(settings, title="Woodpecker routing", description="See the README.",
                              readiness=runtime.readiness_checks(settings, db))
