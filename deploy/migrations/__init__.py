"""One-off changes to a service's stored data, each applied once per database and recorded there.

A version that stores something differently brings a migration for what earlier versions stored; the services
themselves only ever meet data in the current shape. `make up` runs the pending migrations of each service
before starting it, and compose's setup container (`python -m deploy.migrations`) does the same for a
deployment. Each service's database keeps a `migrations` collection: one document per migration applied, with
when; a migration is idempotent, so two runners racing do no harm (the second finds nothing left to change).

    python -m deploy.migrations [--service intake] [--list]
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.database import Database

from shared import geo
from shared.config import SERVICE_PORTS, Settings
from shared.store import AREA, OPEN, connect, drop_index_if_present

RECORDS = "migrations"


@dataclass(frozen=True)
class Migration:
    id: str
    service: str
    what: str
    apply: Callable[[Database, Mapping[str, str]], None]  # (the service's database, the environment)


def _give_open_documents_their_place_key(collection: str) -> Callable[[Database], None]:
    """Open reports and cases stored before they carried their place key get one, so that the nearby lookup
    (shared.geo.keys_around) finds them; the index the lookup used before goes."""
    def apply(db: Database, env: Mapping[str, str]) -> None:
        for document in db[collection].find({OPEN: True, AREA: {"$exists": False}}, {"category": 1, "location": 1}):
            db[collection].update_one({"_id": document["_id"]}, {"$set": {AREA: geo.place_key_of(document)}})
        drop_index_if_present(db[collection], "category_1_open_1_location.lat_1")
    return apply


def _drop_opening_locks_ttl(db: Database, env: Mapping[str, str]) -> None:
    """Routing's opening locks once expired by a TTL index; the embedded database's TTL monitor stalled the store
    (see bench/README.md), and the locks are few, so they stay."""
    drop_index_if_present(db["opening_locks"], "at_1")


def _drop_rate_limit_ttl(db: Database, env: Mapping[str, str]) -> None:
    """Rate limit windows once expired by a TTL index on `expires_at`; the worker now deletes the windows that are
    over through a plain index of the same name, which the limiter creates."""
    if "expireAfterSeconds" in db["rate_limits"].index_information().get("expires_at_1", {}):
        drop_index_if_present(db["rate_limits"], "expires_at_1")


def _seal_plaintext_webhook_secrets(db: Database, env: Mapping[str, str]) -> None:
    """Webhook secrets saved before notify sealed them are sealed (with NOTIFY_SECRET_KEY) and the plain text goes;
    a secret sealed meanwhile by a running process is left alone."""
    from services.notify.sealing import sealer_from
    from services.notify.settings import NotifySettings
    sealer = sealer_from(NotifySettings.from_env(env), Settings.from_env("notify", env))
    for document in db["subscriptions"].find({"secret": {"$exists": True}}, {"secret": 1}):
        db["subscriptions"].update_one(
            {"_id": document["_id"], "secret": document["secret"]},
            {"$set": {"secret_sealed": sealer.seal(document["secret"], document["_id"])}, "$unset": {"secret": ""}})


def _settle_addresses_saved_before_proof(db: Database, env: Mapping[str, str]) -> None:
    """Email addresses saved before they had to be proven: staff recipients' (set by staff) count as confirmed;
    anyone else's waits for its owner to ask for a code."""
    from services.notify.subscriptions import STAFF_RECIPIENTS
    for prefix in STAFF_RECIPIENTS:
        db["subscriptions"].update_many({"_id": {"$regex": f"^{prefix}"}, "email_confirmed": {"$exists": False}},
                                        {"$set": {"email_confirmed": True}})


MIGRATIONS: tuple[Migration, ...] = (
    Migration("2026-11-reports-place-keys", "intake", "open reports get their place key",
              _give_open_documents_their_place_key("reports")),
    Migration("2026-11-cases-place-keys", "routing", "open cases get their place key",
              _give_open_documents_their_place_key("cases")),
    Migration("2026-12-opening-locks-kept", "routing", "opening locks lose their TTL index", _drop_opening_locks_ttl),
    Migration("2026-12-webhook-secrets-sealed", "notify", "webhook secrets stored in plain text are sealed",
              _seal_plaintext_webhook_secrets),
    Migration("2026-12-staff-addresses-confirmed", "notify", "staff addresses saved before proofs count as proven",
              _settle_addresses_saved_before_proof),
    *(Migration(f"2026-12-rate-limit-windows-{service}", service, "rate limit windows lose their TTL index",
                _drop_rate_limit_ttl) for service in SERVICE_PORTS),
)


def pending(db: Database, service: str, migrations: Iterable[Migration] = MIGRATIONS) -> list[Migration]:
    done = {record["_id"] for record in db[RECORDS].find({}, {"_id": 1})}
    return [m for m in migrations if m.service == service and m.id not in done]


def migrate(db: Database, service: str, env: Mapping[str, str] | None = None,
            migrations: Iterable[Migration] = MIGRATIONS, say: Callable[[str], None] = lambda line: None) -> list[str]:
    """Apply the service's pending migrations in order, each recorded once applied; returns their ids. `env` (default
    the process's environment) gives a migration the settings it needs (notify's NOTIFY_SECRET_KEY)."""
    env = os.environ if env is None else env
    applied = []
    for migration in pending(db, service, migrations):
        say(f"  {service}: migrating: {migration.what} ({migration.id})")
        migration.apply(db, env)
        db[RECORDS].update_one({"_id": migration.id},
                               {"$setOnInsert": {"what": migration.what, "applied_at": datetime.now(UTC)}},
                               upsert=True)
        applied.append(migration.id)
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.migrations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=sorted(SERVICE_PORTS), action="append",
                        help="only this service (repeatable); default: every service")
    parser.add_argument("--list", action="store_true", help="say what is pending, change nothing")
    arguments = parser.parse_args(argv)
    for service in arguments.service or list(SERVICE_PORTS):
        settings = Settings.from_env(service)
        db = connect(settings.mongo_url, settings.database)
        if arguments.list:
            waiting = pending(db, service)
            print(f"{service}: " + (", ".join(m.id for m in waiting) if waiting else "nothing pending"))
        else:
            applied = migrate(db, service, say=print)
            print(f"{service}: {len(applied)} migration(s) applied" if applied else f"{service}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
