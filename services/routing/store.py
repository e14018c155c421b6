"""Routing's collections, indexes and queries: cases (with their outbox), routing rules, opening locks."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared import geo
from shared.errors import NotFound
from shared.events import utcnow
from shared.outbox import OUTBOX_FIELDS, OutboxRelay, ensure_outbox_index, hand, push_events, with_events
from shared.pagination import EPOCH, Position, newest_first
from shared.reference import ReferenceData
from shared.scope import Scope
from shared.store import LostRace, in_transaction, optimistically

from .domain import OPEN_STATUSES, RUNNING_STATUSES, Rule, Step, case_events, default_rules

# Kept beside `status` so that the nearby lookup is one equality and one range, the shape every
# store serves from an index: the open cases of a category never grow with the closed history.
OPEN = "open"
INTERNAL_FIELDS = ("_id", OPEN, *OUTBOX_FIELDS)
# An opening lock only matters while a case is being opened; old ones are cleared away.
LOCK_LIFETIME = timedelta(hours=1)
# How old the rules a process routes by may be: a change the office saves applies within this.
RULES_MAX_AGE_S = 1.0


LISTED_BY = ((), ("department",), ("grid_id",), ("status",), ("overdue",), ("category",),
             ("department", "status"), ("department", "overdue"), ("grid_id", "status"), ("grid_id", "overdue"))


def _public(document: dict | None) -> dict | None:
    if document is None:
        return None
    public = {k: v for k, v in document.items() if k not in INTERNAL_FIELDS}
    public["id"] = document["_id"]
    return public


def _indexed(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields to write, with the lookup keys derived from them."""
    if "status" in fields:
        return {**fields, OPEN: fields["status"] in OPEN_STATUSES}
    return fields


class CaseStore:
    def __init__(self, db: Database, relay: OutboxRelay | None = None):
        self.db = db
        self.relay = relay
        self.cases = db["cases"]
        self.rules = db["rules"]
        self.opening_locks = db["opening_locks"]
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
        # A report belongs to one case: the rule that makes a redelivered report open nothing.
        self.cases.create_index("report_ids", unique=True)
        self.cases.create_index([("category", ASCENDING), (OPEN, ASCENDING), ("location.lat", ASCENDING)])
        self.cases.create_index([("overdue", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)])
        # Lists walk back in windows of opening time. A filter alone or with the caller's scope has its own
        # index, so a rare value reads only its matches; other combinations read the time window.
        for prefix in LISTED_BY:
            self.cases.create_index([*((f, ASCENDING) for f in prefix), ("opened_at", DESCENDING)])
        self.cases.create_index([("due_at", ASCENDING)])
        self.opening_locks.create_index("at", expireAfterSeconds=int(LOCK_LIFETIME.total_seconds()))

    # --- cases --------------------------------------------------------------------------------

    def open_or_join(self, report_id: str, category: str, lat: float, lng: float,
                     decide: Callable[[list[dict]], Step], correlation_id: str | None) -> None:
        """Let `decide` open a case for the report or join it to one of the open cases nearby, as one
        transaction: two reports of one problem arriving at once end in one case.

        The transaction first writes the opening locks of the report's neighbourhood
        (shared.geo.neighbourhood_cells): two reports close enough to share a case share a lock, so
        their transactions conflict and the later one runs again, seeing the earlier one's case.
        """
        cells = [f"{category}@{cell}" for cell in geo.neighbourhood_cells(lat, lng)]
        box = geo.box_around(lat, lng, geo.DUPLICATE_RADIUS_M)

        def attempt(session: ClientSession) -> None:
            self.opening_locks.bulk_write([UpdateOne({"_id": cell}, {"$set": {"at": utcnow()}}, upsert=True)
                                           for cell in cells], ordered=False, session=session)
            nearby = self.open_cases_near(category, box, session)
            step = decide(nearby)
            if not step.actions:
                return
            before = next((case for case in nearby if case["id"] == step.case["id"]), None)
            if before is None:
                self.create(step, correlation_id, session)
            else:
                self.save(before, {**step.case, "version": before["version"] + 1}, step, correlation_id, session)

        def attempt_once() -> None:
            try:
                in_transaction(self.db, attempt)
            except DuplicateKeyError:
                if self.case_of_report(report_id) is None:
                    raise LostRace(report_id) from None  # an opening lock's first write met another's
                # else: a redelivered report, whose case was opened (or joined) before

        optimistically(attempt_once, f"The cases near report {report_id}")

    def create(self, step: Step, correlation_id: str | None, session: ClientSession | None = None) -> None:
        after = {**step.case, "version": 1}
        events = case_events(Step(after, step.actions, step.report_ids), correlation_id)
        self.cases.insert_one(with_events({"_id": after["id"], **_indexed(_without_id(after))}, *events),
                              session=session)
        hand(self.relay, self.cases, after["id"], events)

    def save(self, before: dict, after: dict, step: Step, correlation_id: str | None,
             session: ClientSession | None = None) -> None:
        """Write `after` and its events if the case is still as `before` left it (one winner)."""
        events = case_events(Step(after, step.actions, step.report_ids), correlation_id)
        changed = {k: v for k, v in _without_id(after).items() if before.get(k) != v}
        result = self.cases.update_one({"_id": before["id"], "version": before["version"]},
                                       push_events({"$set": _indexed(changed)}, *events), session=session)
        if result.matched_count == 0:
            raise LostRace(before["id"])
        hand(self.relay, self.cases, before["id"], events)

    def change(self, case_id: str, decide: Callable[[dict], Step], correlation_id: str | None) -> dict:
        """Read the case, let `decide` make the step, save it with its events; re-decide if we lost a race."""
        def attempt() -> dict:
            before = self.case(case_id)
            if before is None:
                raise NotFound(f"No case {case_id}.")
            step = decide(before)
            if not step.actions:
                return before
            after = {**step.case, "version": before["version"] + 1}
            self.save(before, after, step, correlation_id)
            return after

        return optimistically(attempt, f"Case {case_id}")

    def case(self, case_id: str) -> dict | None:
        return _public(self.cases.find_one({"_id": case_id}))

    def case_of_report(self, report_id: str) -> dict | None:
        return _public(self.cases.find_one({"report_ids": report_id}))

    def open_cases_near(self, category: str, box: geo.BoundingBox, session: ClientSession | None = None) -> list[dict]:
        """The open cases of `category` inside the box."""
        # The longitude is checked here rather than in the query: a second range would leave the
        # embedded database with only the category to look up.
        query = {"category": category, OPEN: True, "location.lat": {"$gte": box.min_lat, "$lte": box.max_lat}}
        return [_public(d) for d in self.cases.find(query, {"outbox": 0}, session=session)
                if box.min_lng <= d["location"]["lng"] <= box.max_lng]

    def list_cases(self, wanted: dict, scope: Scope, after: Position | None, limit: int) -> list[dict]:
        documents = newest_first(self.cases, scope.within(wanted), "opened_at", limit, after, projection={"outbox": 0})
        return [_public(d) for d in documents]

    def newly_overdue(self, now: datetime) -> list[dict]:
        """Cases whose deadline runs and has passed, not yet flagged: one bounded lookup per running status."""
        return [_public(d) for status in RUNNING_STATUSES for d in self.cases.find(
            {"overdue": False, "status": status, "due_at": {"$gte": EPOCH, "$lte": now}}, {"outbox": 0})]

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


def _without_id(document: dict) -> dict:
    return {k: v for k, v in document.items() if k != "id"}
