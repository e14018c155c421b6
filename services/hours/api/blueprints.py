"""Hours' blueprints (one per resource, as the OpenAPI document groups them), and what every view reaches
for: the use cases' dependencies and the time of the request."""
from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask_smorest import Blueprint

from ..usecases import Hours

volunteers = Blueprint("volunteers", __name__, url_prefix="/v1/volunteers",
                       description="Volunteers, their ledgers and summaries")
patrols = Blueprint("patrols", __name__, url_prefix="/v1/patrols", description="Patrol sessions (巡访)")
ledger = Blueprint("ledger", __name__, url_prefix="/v1", description="Adjustments and reversals of ledger entries")
activities = Blueprint("activities", __name__, url_prefix="/v1/activities",
                       description="Service activities, publicised (公示) before their hours are credited")
spot_checks = Blueprint("spot_checks", __name__, url_prefix="/v1/spot-checks",
                        description="Spot checks (抽查) of recorded hours")
records = Blueprint("records", __name__, url_prefix="/v1",
                    description="Rankings, proofs of service (志愿服务证明) and closing a year")

BLUEPRINTS = (volunteers, patrols, activities, ledger, spot_checks, records)


def hours() -> Hours:
    return current_app.extensions["hours"]


def now() -> datetime:
    return datetime.now(UTC)
