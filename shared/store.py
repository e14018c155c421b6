"""The store: MongoDB (or any server speaking its protocol) through MONGO_URL, with plain pymongo."""
from __future__ import annotations

import logging

import pymongo
from pymongo.database import Database

log = logging.getLogger(__name__)


class StoreNotConfigured(SystemExit):
    pass


def connect(mongo_url: str | None, database: str) -> Database:
    """Open the service's own database. Call after fork: pymongo clients are not fork-safe."""
    if not mongo_url:
        raise StoreNotConfigured(
            "MONGO_URL is not set. `make up` starts the embedded database and sets it for every service; "
            "to run a service on its own, point MONGO_URL at MongoDB (e.g. mongodb://127.0.0.1:27017).")
    client = pymongo.MongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=3_000, connect=False)
    return client[database]


def ping(db: Database) -> str | None:
    """None when the store answers, else which dependency is down (for /readyz, which anyone may call:
    the exception's text, with hosts and ports, goes to the log only)."""
    try:
        db.command("ping")
    except Exception as exc:  # readiness reports any failure as a reason, never raises
        log.warning("readiness: the store does not answer", extra={"error": f"{exc.__class__.__name__}: {exc}"})
        return "store unavailable"
    return None
