"""The store: MongoDB through MONGO_URL, or the embedded in-memory store when it is unset."""
from __future__ import annotations

import logging
import threading

import pymongo
from pymongo.database import Database

log = logging.getLogger(__name__)

_embedded_lock = threading.Lock()
_embedded_client = None


def _embedded() -> pymongo.MongoClient:
    """One embedded client per process, so a service's web and worker threads see the same data."""
    global _embedded_client
    with _embedded_lock:
        if _embedded_client is None:
            import mongomock
            import mongomock.gridfs

            mongomock.gridfs.enable_gridfs_integration()
            _embedded_client = mongomock.MongoClient(tz_aware=True)
            log.warning(
                "MONGO_URL is not set: using the EMBEDDED IN-MEMORY store. Data lives only in this "
                "process and is lost when it stops. Set MONGO_URL=mongodb://... for real storage."
            )
        return _embedded_client


def connect(mongo_url: str | None, database: str) -> Database:
    """Open the service's own database. Call after fork: pymongo clients are not fork-safe."""
    if not mongo_url:
        return _embedded()[database]
    client = pymongo.MongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=3_000, connect=False)
    return client[database]


def ping(db: Database) -> str | None:
    """None when the store answers, else why not."""
    try:
        db.command("ping")
    except Exception as exc:  # readiness reports any failure as a reason, never raises
        return f"store: {exc.__class__.__name__}: {exc}"
    return None
