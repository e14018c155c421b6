"""Intake's collections, indexes and queries (reports, photos and their GridFS files)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

import gridfs
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database

from shared import geo, idempotency
from shared.events import Event
from shared.outbox import (
    OUTBOX_FIELDS,
    OutboxRelay,
    ensure_outbox_index,
    publish_after_commit,
    update_settling_delivered,
    with_events,
)
from shared.pagination import Position, newest_first
from shared.scope import Scope
from shared.store import (
    AREA,
    OPEN,
    LostRace,
    if_unchanged_since,
    optimistically,
    public_document,
    with_open_flag,
)

from .domain import OPEN_STATUSES, REPORT_SUBMITTED


def new_id() -> str:
    """A report's id: unique without asking the store (a report's readers are checked, so it may be guessable)."""
    return str(ObjectId())


HIDDEN_FIELDS = ("_id", "revision", OPEN, AREA, idempotency.KEY_FIELD, idempotency.FINGERPRINT_FIELD, *OUTBOX_FIELDS)


LISTED_BY = ((), ("reporter_id",), ("grid_id",), ("department",), ("status",), ("category",),
             ("reporter_id", "status"), ("grid_id", "status"), ("department", "status"))


_public = partial(public_document, hidden=HIDDEN_FIELDS)
_indexed = partial(with_open_flag, open_statuses=OPEN_STATUSES)


class ReportStore:
    def __init__(self, db: Database, relay: OutboxRelay | None = None):
        self.db = db
        self.relay = relay
        self.reports = db["reports"]
        self.photos = db["photos"]
        self.photo_files = gridfs.GridFS(db, collection="photo_files")

    @classmethod
    def prepared(cls, db: Database, relay: OutboxRelay | None = None) -> ReportStore:
        """The store with its indexes in place, whichever of the service's processes starts first; the events it
        stores go to `relay`, the process's own."""
        store = cls(db, relay)
        store.ensure_indexes()
        return store

    def ensure_indexes(self) -> None:
        """Every query below is an equality prefix and at most one range over one of these (see bench/queries)."""
        idempotency.ensure_index(self.reports)
        idempotency.ensure_index(self.photos)
        ensure_outbox_index(self.reports)
        self.reports.create_index([(OPEN, ASCENDING), (AREA, ASCENDING)])
        # Lists walk back in windows of submission time. A filter alone or with the caller's scope has its
        # own index, so a rare value reads only its matches; other combinations read the time window.
        for prefix in LISTED_BY:
            self.reports.create_index([*((f, ASCENDING) for f in prefix), ("submitted_at", DESCENDING)])
        self.reports.create_index([("grid_id", ASCENDING), (OPEN, ASCENDING)])
        self.reports.create_index([("grid_id", ASCENDING), ("closed_at", ASCENDING)])
        self.reports.create_index([("photo_ids", ASCENDING)])
        self.reports.create_index([("after_photo_ids", ASCENDING)])

    # --- reports ------------------------------------------------------------------------------

    def add_report(self, report: dict, event: Event, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        """Store the report and its `report.submitted` event in one write."""
        document = with_events({"_id": report["id"], **_indexed({k: v for k, v in report.items() if k != "id"}),
                                AREA: geo.place_key_of(report), "revision": 0}, event)
        stored, created = idempotency.insert_once(self.reports, document, key, fingerprint)
        if created:
            # Pulled by the write of the report's first case event (apply_case_steps).
            publish_after_commit(self.relay, self.reports, document["_id"], [event], consumer_settles_first=True)
        return _public(stored), created

    def visible_report(self, report_id: str, scope: Scope) -> dict | None:
        report = _public(self.reports.find_one({"_id": report_id}))
        return report if report is not None and scope.admits(report) else None

    def open_reports_near(self, category: str, lat: float, lng: float) -> list[dict]:
        """The open reports of `category` in the cells around the point (which of them are within the duplicate
        radius is the domain's to judge)."""
        query = {OPEN: True, AREA: {"$in": geo.keys_around(category, lat, lng)}}
        return [_public(d) for d in self.reports.find(query, {"location": 1, "status": 1})]

    def list_reports(self, wanted: dict, scope: Scope, after: Position | None, limit: int, *,
                     since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        documents = newest_first(self.reports, scope.within(wanted), "submitted_at", limit, after, since=since,
                                 until=until)
        return [_public(d) for d in documents]

    def grid_week_reports(self, grid_id: str, start: datetime, end: datetime) -> list[dict]:
        """The grid's reports submitted before `end` that were submitted in the week, are still open,
        or were closed in it: three bounded lookups rather than one `$or` the embedded database scans."""
        found = {}
        for query in ({"grid_id": grid_id, "submitted_at": {"$gte": start, "$lt": end}},
                      {"grid_id": grid_id, OPEN: True},
                      {"grid_id": grid_id, "closed_at": {"$gte": start, "$lt": end}}):
            found.update((d["_id"], d) for d in self.reports.find(query) if d["submitted_at"] < end)
        return sorted((_public(d) for d in found.values()), key=lambda r: r["submitted_at"])

    def apply_case_steps(self, follows: list[tuple[str, Callable[[dict], dict | None]]]) -> list[str]:
        """Apply each `follow(report) -> changes` in turn, with one read and one conditional write for all the
        reports they concern; returns the ids of those intake does not have. If another process changed one of
        them meanwhile, everything is read and applied again: a report keeps the ids of the events it has
        applied, so each step is applied once.

        The same write pulls the report's `report.submitted` from its outbox, which the relay published and left
        there: a case event names only reports whose submission routing has received, so it was published (and
        delivered to every queue bound to it, which the broker does at once)."""
        ids = list(dict.fromkeys(report_id for report_id, _ in follows))

        def attempt() -> list[str]:
            documents = {d["_id"]: d for d in self.reports.find({"_id": {"$in": ids}})}
            changed: dict[str, dict] = {}
            for report_id, follow in follows:
                if report_id not in documents:
                    continue
                changes = follow({**_public(documents[report_id]), **changed.get(report_id, {})})
                if changes is not None:
                    changed[report_id] = {**changed.get(report_id, {}), **changes}
            writes = [UpdateOne({"_id": report_id}, if_unchanged_since(
                update_settling_delivered(documents[report_id], {"$set": _indexed(changes)}, REPORT_SUBMITTED),
                "revision", documents[report_id]["revision"])) for report_id, changes in changed.items()]
            if writes and self.reports.bulk_write(writes, ordered=False).modified_count < len(writes):
                raise LostRace(", ".join(changed))
            return [report_id for report_id in ids if report_id not in documents]

        return optimistically(attempt, f"Reports {', '.join(ids)}")

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

    def photo_in_reports(self, photo_id: str, scope: Scope) -> bool:
        """Is the photo attached (before or after) to a report `scope` admits?"""
        return any(scope.admits(report) for field in ("photo_ids", "after_photo_ids")
                   for report in self.reports.find({field: photo_id}, {"reporter_id": 1, "grid_id": 1,
                                                                       "department": 1}))
