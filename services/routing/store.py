"""Routing's collections, indexes, queries and writes: cases (with their outbox), routing rules, opening locks.
What a case becomes and the events of the step come ready-made from the use cases (usecases/)."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import geo
from shared.events import Event, utcnow
from shared.outbox import (
    EVENTS_COLLECTION,
    OUTBOX_FIELDS,
    OutboxRelay,
    ensure_outbox_index,
    events_document,
    publish_after_commit,
    push_events,
)
from shared.pagination import EPOCH, Position, newest_first, oldest_first
from shared.reference import ReferenceData
from shared.scope import Scope
from shared.store import (
    AREA,
    OPEN,
    LostRace,
    in_transaction,
    public_document,
    with_open_flag,
)

from .domain import OPEN_STATUSES, RUNNING_STATUSES, Rule, default_rules
from .sla import BOARD_FIELDS

T = TypeVar("T")
INTERNAL_FIELDS = ("_id", OPEN, AREA, *OUTBOX_FIELDS)
# An opening lock matters only while a case is being opened, but it stays: one per category and lattice cell
# reported in, which the city's area bounds. (Not a TTL index: the embedded database's TTL monitor keeps a read
# snapshot open after it deletes, and the store stalls behind it; see shared.ratelimit.)
DUPLICATE_KEY = 11000
# How old the rules a process routes by may be: a change the office saves applies within this.
RULES_MAX_AGE_S = 1.0


# The map's points: the fields it draws, and the index its box is read from.
MAP_FIELDS = {"location": 1, "status": 1, "category": 1, "department": 1, "grid_id": 1, "due_at": 1, "overdue": 1}
# The map's open cases: an index of the open cases alone (partial), so that a box reads entries of open cases only.
# A compound index led by the open key holds every case, and the embedded database's scan of its open range
# was measured to grow with the closed history (bench/console_queries: 3.4× from 10,000 to 30,000 cases).
MAP_INDEX = [("location.lat", ASCENDING), ("location.lng", ASCENDING)]
MAP_INDEX_NAME = "open_cases_by_place"

# The SLA board's lookups: by department (the office, a department), or by grid (a grid leader).
SLA_BOARD_BY = ("department", "grid_id")
LISTED_BY = ((), ("department",), ("grid_id",), ("status",), ("overdue",), ("category",),
             ("department", "status"), ("department", "overdue"), ("grid_id", "status"), ("grid_id", "overdue"),
             # A department's or a grid's cases of a category: without these the embedded database scanned the
             # whole collection for each window (bench/console_queries.py, explain()).
             ("department", "category"), ("grid_id", "category"))


def _public(document: dict | None) -> dict | None:
    public = public_document(document, INTERNAL_FIELDS)
    if public is None:
        return None
    public.setdefault("merged_into", None)  # cases stored before merges existed
    public.setdefault("merged_report_ids", [])
    if public.get("report_ids") == [_no_reports(document["_id"])]:
        public["report_ids"] = []
    return public


def _no_reports(case_id: str) -> str:
    """What a case merged into another holds in place of reports: the unique index on `report_ids` takes an empty
    list as one key shared by every such case, so each holds a key of its own that no report id can be."""
    return f"merged:{case_id}"


def _indexed(fields: dict[str, Any], case_id: str | None = None) -> dict[str, Any]:
    """The fields to write, with the lookup keys derived from them."""
    if fields.get("report_ids") == [] and case_id is not None:
        fields = {**fields, "report_ids": [_no_reports(case_id)]}
    return with_open_flag(fields, OPEN_STATUSES)


class CaseChange(NamedTuple):
    """A case to write: as it is stored (None: a new case), as it is to be, and the events of the steps between."""
    before: dict | None
    after: dict
    events: list[Event]


class AlreadyRouted(Exception):
    """Some reports to route have a case already: their ids (`report_ids`)."""

    def __init__(self, report_ids: set[str]):
        super().__init__(", ".join(sorted(report_ids)))
        self.report_ids = report_ids


class CaseStore:
    def __init__(self, db: Database, relay: OutboxRelay | None = None):
        self.db = db
        self.relay = relay
        self.cases = db["cases"]
        self.rules = db["rules"]
        self.opening_locks = db["opening_locks"]
        self.outbox = db[EVENTS_COLLECTION]  # the events of the cases a transaction opens and joins
        self._rules_read: tuple[float, list[Rule]] | None = None  # (monotonic time, rules) of the last read

    @classmethod
    def prepared(cls, db: Database, city: ReferenceData, relay: OutboxRelay | None = None) -> CaseStore:
        """The store with its indexes and, on a fresh database, the city's default rules: whichever of a
        service's processes starts first (web or worker) must find them in place. The events it stores go to
        `relay`, the process's own."""
        store = cls(db, relay)
        store.ensure_indexes()
        store.seed_rules(default_rules(city.categories.values()))
        return store

    def ensure_indexes(self) -> None:
        """Every query below is an equality prefix and at most one range over one of these (see bench/queries)."""
        ensure_outbox_index(self.cases)
        ensure_outbox_index(self.outbox)
        # A report belongs to one case: the rule that makes a redelivered report open nothing.
        self.cases.create_index("report_ids", unique=True)
        self.cases.create_index([(OPEN, ASCENDING), (AREA, ASCENDING)])
        self.cases.create_index([("overdue", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)])
        # Lists walk back in windows of opening time. A filter alone or with the caller's scope has its own
        # index, so a rare value reads only its matches; other combinations read the time window.
        for prefix in LISTED_BY:
            self.cases.create_index([*((f, ASCENDING) for f in prefix), ("opened_at", DESCENDING)])
        self.cases.create_index([("due_at", ASCENDING)])
        # The map's box: open cases only, a latitude band of them, longitude checked on the way.
        self.cases.create_index(MAP_INDEX, name=MAP_INDEX_NAME, partialFilterExpression={OPEN: True})
        # The SLA board: a department's (or a grid's) running cases by deadline, closed history never read.
        for holder in SLA_BOARD_BY:
            self.cases.create_index([("status", ASCENDING), (holder, ASCENDING), ("due_at", ASCENDING)])

    # --- cases --------------------------------------------------------------------------------

    def transaction(self, work: Callable[[ClientSession], T]) -> T:
        """Run `work` as one transaction (shared.store.in_transaction): it reads and writes through the session it
        is given, and the driver may run it again from the start."""
        return in_transaction(self.db, work)

    def open_or_join(self, reports: list[dict], decide: Callable[[list[dict]], list[CaseChange]]) -> None:
        """Store what `decide` makes of the open cases near `reports` (the cases they open and those they join,
        with their events), all in one transaction: reports of one problem arriving at once, in one list or in
        several, end in one case; a list costs one transaction, not one a report.

        The transaction first writes the opening locks of the reports' neighbourhoods
        (shared.geo.neighbourhood_cells): two reports close enough to share a case share a lock, so
        their transactions conflict and the later one runs again, `decide` seeing the earlier one's case.
        Raises AlreadyRouted when some of the reports have a case already (redelivered after their case closed:
        the unique index on `report_ids` refused them), LostRace when two first writes of an opening lock met.
        """
        cells = sorted({f"{report['category']}@{cell}" for report in reports
                        for cell in geo.neighbourhood_cells(report["location"]["lat"], report["location"]["lng"])})

        def attempt(session: ClientSession) -> None:
            self.opening_locks.bulk_write([UpdateOne({"_id": cell}, {"$set": {"at": utcnow()}}, upsert=True)
                                           for cell in cells], ordered=False, session=session)
            self._store_changes(decide(self.open_cases_near(reports, session)), session)

        try:
            in_transaction(self.db, attempt)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if not _duplicate_key(exc):
                raise
            if known := self._reports_with_a_case([report["id"] for report in reports]):
                raise AlreadyRouted(known) from None
            raise LostRace(", ".join(report["id"] for report in reports)) from None

    def _store_changes(self, changed: list[CaseChange], session: ClientSession) -> None:
        """The cases the reports opened, in one insert, those they joined, in one write of conditional updates, and
        all their events in one document of the outbox collection (published, it is deleted rather than each case
        rewritten)."""
        opened = [{"_id": case["id"], **_indexed(_without_id(case)), AREA: geo.place_key_of(case)}
                  for before, case, _ in changed if before is None]
        if opened:
            self.cases.insert_many(opened, session=session)
        joined = [(before, case) for before, case, _ in changed if before is not None]
        if joined:
            writes = [UpdateOne({"_id": before["id"], "version": before["version"]},
                                {"$set": _indexed(_changes(before, case))}) for before, case in joined]
            if self.cases.bulk_write(writes, ordered=True, session=session).matched_count < len(writes):
                raise LostRace(", ".join(before["id"] for before, _ in joined))
        if events := [event for _, _, case_events in changed for event in case_events]:
            document = events_document(*events)
            self.outbox.insert_one(document, session=session)
            publish_after_commit(self.relay, self.outbox, document["_id"], events)

    def _reports_with_a_case(self, report_ids: list[str]) -> set[str]:
        return {report_id for d in self.cases.find({"report_ids": {"$in": report_ids}}, {"report_ids": 1})
                for report_id in d["report_ids"] if report_id in report_ids}

    def save(self, before: dict, after: dict, events: list[Event], session: ClientSession | None = None) -> None:
        """Write `after` and its events if the case is still as `before` left it (one winner); LostRace if not."""
        result = self.cases.update_one({"_id": before["id"], "version": before["version"]},
                                       push_events({"$set": _indexed(_changes(before, after), before["id"])}, *events),
                                       session=session)
        if result.matched_count == 0:
            raise LostRace(before["id"])
        publish_after_commit(self.relay, self.cases, before["id"], events)

    def case(self, case_id: str, session: ClientSession | None = None) -> dict | None:
        return _public(self.cases.find_one({"_id": case_id}, {"outbox": 0}, session=session))

    def case_of_report(self, report_id: str) -> dict | None:
        return _public(self.cases.find_one({"report_ids": report_id}))

    def open_cases_near(self, reports: list[dict], session: ClientSession | None = None) -> list[dict]:
        """The open cases in the cells around each report, of its category: one lookup for them all. (Which of
        them are within the duplicate radius of which report is the domain's to judge.)"""
        areas = sorted({key for report in reports for key in
                        geo.keys_around(report["category"], report["location"]["lat"], report["location"]["lng"])})
        return [_public(d) for d in self.cases.find({OPEN: True, AREA: {"$in": areas}}, {"outbox": 0}, session=session)]

    def list_cases(self, wanted: dict, scope: Scope, after: Position | None, limit: int,
                   oldest: bool = False) -> list[dict]:
        read = oldest_first if oldest else newest_first
        documents = read(self.cases, scope.within(wanted), "opened_at", limit, after, projection={"outbox": 0})
        return [_public(d) for d in documents]

    def newly_overdue(self, now: datetime) -> list[dict]:
        """Cases whose deadline runs and has passed, not yet flagged: one bounded lookup per running status."""
        return [_public(d) for status in RUNNING_STATUSES for d in self.cases.find(
            {"overdue": False, "status": status, "due_at": {"$gte": EPOCH, "$lte": now}}, {"outbox": 0})]

    def sla_board(self, filters: list[dict], horizon: datetime) -> list[dict]:
        """The running cases due by `horizon` (overdue ones included) that match one of `filters` (each a
        department, or a grid, and maybe both, as `Scope.within` gives them): one lookup per filter and running
        status, each an equality prefix and a range over a board index, so it reads the present only."""
        found: dict[str, dict] = {}
        projection = dict.fromkeys(BOARD_FIELDS, 1)
        for wanted in filters:
            for status in RUNNING_STATUSES:
                query = {**wanted, "status": status, "due_at": {"$gte": EPOCH, "$lte": horizon}}
                for document in self.cases.find(query, projection):
                    found[document["_id"]] = _public(document)
        return list(found.values())

    def cases_for_stats(self, start: datetime, end: datetime) -> list[dict]:
        """Cases that can count in a period: due, verified or rectified in it, or still open.

        A scan, deliberately: league tables are asked for now and then, not on every request."""
        query = {"$or": [{"due_at": {"$gte": start, "$lt": end}}, {"rectified_at": {"$gte": start, "$lt": end}},
                         {"history.at": {"$gte": start, "$lt": end}}, {"status": {"$in": list(OPEN_STATUSES)}}]}
        return [_public(d) for d in self.cases.find(query, {"outbox": 0})]

    # --- rules --------------------------------------------------------------------------------

    def all_rules(self) -> list[Rule]:
        rules = [Rule(**{k: v for k, v in d.items() if k != "_id"})
                 for d in self.rules.find().sort([("category", ASCENDING), ("district", ASCENDING)])]
        self._rules_read = (time.monotonic(), rules)
        return rules

    def rules_in_force(self) -> list[Rule]:
        """The rules to route a report by: those read less than RULES_MAX_AGE_S ago, so that a stream of reports
        asks the store for them about once a second rather than once a report."""
        if self._rules_read is not None and time.monotonic() - self._rules_read[0] < RULES_MAX_AGE_S:
            return self._rules_read[1]
        return self.all_rules()

    def replace_rules(self, rules: list[Rule]) -> None:
        # Not atomic across documents; the rules are a small table the office edits rarely, and a
        # case opened in between uses either the old or the new rule for its category.
        keep = []
        for rule in rules:
            rule_id = f"{rule.category}@{rule.district or '*'}"
            keep.append(rule_id)
            self.rules.replace_one({"_id": rule_id}, {"_id": rule_id, **vars(rule)}, upsert=True)
        self.rules.delete_many({"_id": {"$nin": keep}})
        self._rules_read = None  # this process routes by the new rules at once

    def seed_rules(self, rules: list[Rule]) -> None:
        """The demo city's rules, the first time only: the office's edits survive restarts."""
        if self.rules.estimated_document_count() == 0:
            self.replace_rules(rules)


    # --- the map ------------------------------------------------------------------------------

    def open_points(self, wanted: dict, scope: Scope, box: geo.BoundingBox, limit: int,
                    opened: tuple[datetime | None, datetime | None] = (None, None)) -> tuple[list[dict], bool]:
        """The cases inside `box` the caller may see, as the map needs them (no history, photos or outbox), at
        most `limit` of them, and whether there were more.

        Open cases (the default, or an open `status`) come from the open cases' own (partial) index by a latitude
        band, so what is read is bounded by the city's open cases, never by its closed history; a finished status
        comes from the status index over the opening period the domain bounds."""
        status = wanted.get("status")
        box_filter: dict[str, Any] = {"location.lat": {"$gte": box.min_lat, "$lte": box.max_lat},
                                      "location.lng": {"$gte": box.min_lng, "$lte": box.max_lng}}
        if opened != (None, None):
            box_filter["opened_at"] = {k: v for k, v in (("$gte", opened[0]), ("$lt", opened[1])) if v is not None}
        index = MAP_INDEX if status is None or status in OPEN_STATUSES else [("status", ASCENDING),
                                                                             ("opened_at", DESCENDING)]
        open_key = {OPEN: True} if index is MAP_INDEX else {}
        points: list[dict] = []
        for alternative in scope.within(wanted):
            query = {**open_key, **alternative, **box_filter}
            found = self.cases.find(query, MAP_FIELDS, hint=MAP_INDEX_NAME if index is MAP_INDEX else index,
                                    limit=limit + 1 - len(points),
                                    batch_size=limit + 1)
            points += [_public(d) for d in found]
            if len(points) > limit:
                return points[:limit], True
        return points, False


def _without_id(document: dict) -> dict:
    return {k: v for k, v in document.items() if k != "id"}


def _duplicate_key(exc: DuplicateKeyError | BulkWriteError) -> bool:
    """Whether the write failed only because a unique key was taken (a bulk write says so per statement)."""
    if isinstance(exc, DuplicateKeyError):
        return True
    errors = exc.details.get("writeErrors") or []
    return bool(errors) and all(error.get("code") == DUPLICATE_KEY for error in errors)


def _changes(before: dict, after: dict) -> dict:
    return {k: v for k, v in _without_id(after).items() if before.get(k) != v}
