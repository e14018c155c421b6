"""Intake's collections, indexes and queries (reports, photos and their GridFS files)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import gridfs
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from shared import idempotency
from shared.auth import Caller
from shared.events import Event
from shared.geo import BoundingBox
from shared.outbox import OUTBOX_FIELDS, ensure_outbox_index, with_events

from .domain import OPEN_STATUSES

OPTIMISTIC_RETRIES = 20


def new_id() -> str:
    # ObjectIds sort by creation time, which is what the cursor pagination walks.
    return str(ObjectId())


def _public(document: dict | None) -> dict | None:
    if document is None:
        return None
    hidden = ("_id", "revision", idempotency.KEY_FIELD, idempotency.FINGERPRINT_FIELD, *OUTBOX_FIELDS)
    public = {k: v for k, v in document.items() if k not in hidden}
    public["id"] = document["_id"]
    return public


def visible_to(caller: Caller) -> dict:
    """The reports a caller may see (CONTRACT: a volunteer their own, a grid leader their grid's,
    a department its cases', the office all)."""
    if caller.role in ("office", "service", "association"):
        return {}
    if caller.role == "department":
        return {"department": caller.dept}
    if caller.role == "grid_leader":
        return {"$or": [{"grid_id": caller.grid}, {"reporter_id": caller.id}]}
    return {"reporter_id": caller.id}


class ReportStore:
    def __init__(self, db: Database):
        self.db = db
        self.reports = db["reports"]
        self.photos = db["photos"]
        self.photo_files = gridfs.GridFS(db, collection="photo_files")

    def ensure_indexes(self) -> None:
        idempotency.ensure_index(self.reports)
        idempotency.ensure_index(self.photos)
        ensure_outbox_index(self.reports)
        self.reports.create_index([("category", ASCENDING), ("status", ASCENDING), ("location.lat", ASCENDING)])
        self.reports.create_index([("grid_id", ASCENDING), ("submitted_at", DESCENDING)])
        self.reports.create_index([("reporter_id", ASCENDING), ("_id", DESCENDING)])
        self.reports.create_index([("case_id", ASCENDING)])
        self.reports.create_index([("photo_ids", ASCENDING)])
        self.reports.create_index([("after_photo_ids", ASCENDING)])
        self.photos.create_index([("owner_id", ASCENDING)])

    # --- reports ------------------------------------------------------------------------------

    def add_report(self, report: dict, event: Event, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        """Store the report and its `report.submitted` event in one write."""
        document = with_events({"_id": report["id"], **{k: v for k, v in report.items() if k != "id"},
                                "revision": 0}, event)
        stored, created = idempotency.insert_once(self.reports, document, key, fingerprint)
        return _public(stored), created

    def visible_report(self, report_id: str, scope: dict) -> dict | None:
        query = {"$and": [{"_id": report_id}, scope]} if scope else {"_id": report_id}
        return _public(self.reports.find_one(query))

    def open_reports_near(self, category: str, box: BoundingBox) -> list[dict]:
        query = {"category": category, "status": {"$in": list(OPEN_STATUSES)},
                 "location.lat": {"$gte": box.min_lat, "$lte": box.max_lat},
                 "location.lng": {"$gte": box.min_lng, "$lte": box.max_lng}}
        return [_public(d) for d in self.reports.find(query, {"location": 1, "status": 1}).limit(500)]

    def list_reports(self, query: dict, after_id: str | None, limit: int) -> list[dict]:
        if after_id is not None:
            query = {"$and": [query, {"_id": {"$lt": after_id}}]}
        cursor = self.reports.find(query).sort("_id", DESCENDING).limit(limit + 1)
        return [_public(d) for d in cursor]

    def grid_week_reports(self, grid_id: str, start: datetime, end: datetime) -> list[dict]:
        query = {"grid_id": grid_id, "submitted_at": {"$lt": end},
                 "$or": [{"submitted_at": {"$gte": start}}, {"status": {"$in": list(OPEN_STATUSES)}},
                         {"closed_at": {"$gte": start, "$lt": end}}]}
        return [_public(d) for d in self.reports.find(query).sort("submitted_at", ASCENDING)]

    def apply_case_step(self, report_id: str, follow: Callable[[dict], dict | None]) -> bool:
        """Apply `follow(report) -> changes` with optimistic concurrency; False if no such report."""
        for _ in range(OPTIMISTIC_RETRIES):
            document = self.reports.find_one({"_id": report_id})
            if document is None:
                return False
            changes = follow(_public(document))
            if changes is None:
                return True
            result = self.reports.update_one({"_id": report_id, "revision": document["revision"]},
                                             {"$set": changes, "$inc": {"revision": 1}})
            if result.matched_count:
                return True
        raise RuntimeError(f"report {report_id} kept changing under a case event; will retry")

    # --- photos -------------------------------------------------------------------------------

    def add_photo(self, photo: dict, content: bytes, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        """Store the bytes (GridFS) and then the photo record; a replayed key keeps the first photo."""
        self.photo_files.put(content, _id=photo["id"], content_type=photo["content_type"])
        document = {"_id": photo["id"], **{k: v for k, v in photo.items() if k != "id"}}
        try:
            stored, created = idempotency.insert_once(self.photos, document, key, fingerprint)
        except Exception:
            self.photo_files.delete(photo["id"])
            raise
        if not created:
            self.photo_files.delete(photo["id"])
        return _public(stored), created

    def photo(self, photo_id: str) -> dict | None:
        return _public(self.photos.find_one({"_id": photo_id}))

    def photo_content(self, photo_id: str) -> bytes:
        return self.photo_files.get(photo_id).read()

    def owned_photo_ids(self, owner_id: str, photo_ids: list[str]) -> set[str]:
        found = self.photos.find({"_id": {"$in": photo_ids}, "owner_id": owner_id}, {"_id": 1})
        return {d["_id"] for d in found}

    def photo_in_reports(self, photo_id: str, scope: dict) -> bool:
        """Is the photo attached (before or after) to a report matching `scope`?"""
        query = {"$and": [{"$or": [{"photo_ids": photo_id}, {"after_photo_ids": photo_id}]}, scope]}
        return self.reports.find_one(query, {"_id": 1}) is not None
