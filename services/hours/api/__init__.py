"""Hours' HTTP API, one module per resource: each view translates the request, calls one use case
(services/hours/usecases/) and translates the answer back. Importing the package attaches every route to
its blueprint (blueprints.py)."""
from __future__ import annotations

from . import activities, ledger, patrols, proofs, records, spot_checks, volunteers
from .blueprints import BLUEPRINTS

__all__ = ["BLUEPRINTS", "activities", "ledger", "patrols", "proofs", "records", "spot_checks", "volunteers"]
