"""The list of one-off migrations (deploy/migrations): pure checks (running them is
tests/service/test_migrations.py)."""
from __future__ import annotations

from deploy.migrations import MIGRATIONS


def test_every_migration_names_a_service_and_has_a_unique_id():
    ids = [m.id for m in MIGRATIONS]
    assert len(ids) == len(set(ids))
    assert {m.service for m in MIGRATIONS} <= {"intake", "routing", "hours", "notify"}
