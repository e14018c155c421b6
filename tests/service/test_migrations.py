"""The one-off migrations (deploy/migrations): each applied once per database, recorded, and what each does
(the list itself is tests/unit/test_migrations.py)."""
from __future__ import annotations

import uuid

from deploy.migrations import Migration, migrate, pending
from shared.store import connect


def fresh_db(mongo_url: str):
    return connect(mongo_url, f"test_migrations_{uuid.uuid4().hex[:10]}")


def test_a_migration_runs_once_per_database_in_order_and_is_recorded(mongo_url):
    db = fresh_db(mongo_url)
    ran = []
    steps = [Migration(f"m{n}", "intake", f"step {n}", lambda db, env, n=n: ran.append(n)) for n in (1, 2)]
    steps.append(Migration("other", "routing", "not intake's", lambda db, env: ran.append("routing")))
    assert migrate(db, "intake", {}, steps) == ["m1", "m2"]
    assert migrate(db, "intake", {}, steps) == []
    assert ran == [1, 2]
    assert {r["_id"]: r["what"] for r in db["migrations"].find()} == {"m1": "step 1", "m2": "step 2"}
    assert [m.id for m in pending(db, "routing", steps)] == ["other"]


def test_a_failed_migration_is_not_recorded_and_runs_again(mongo_url):
    db = fresh_db(mongo_url)
    tries = []

    def flaky(db, env):
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("the store went away")

    steps = [Migration("flaky", "hours", "flaky", flaky)]
    try:
        migrate(db, "hours", {}, steps)
    except RuntimeError:
        pass
    assert db["migrations"].count_documents({}) == 0
    assert migrate(db, "hours", {}, steps) == ["flaky"]


def test_staff_addresses_saved_before_proofs_count_as_proven_and_others_wait_for_their_owner(mongo_url):
    db = fresh_db(mongo_url)
    db["subscriptions"].insert_many([
        {"_id": "department:sanitation", "email": "desk@sanitation.example"},
        {"_id": "office", "email": "office@city.example"},
        {"_id": "volunteer:v1", "email": "v1@example.com"},
        {"_id": "department:traffic-police", "email": "x@police.example", "email_confirmed": False},
    ])
    assert "2026-12-staff-addresses-confirmed" in migrate(db, "notify")
    confirmed = {d["_id"]: d.get("email_confirmed") for d in db["subscriptions"].find()}
    assert confirmed == {"department:sanitation": True, "office": True, "volunteer:v1": None,
                         "department:traffic-police": False}
