"""Routing's collections, indexes and queries: cases (with their outbox) and routing rules."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict, NotFound
from shared.events import Event
from shared.geo import BoundingBox
from shared.outbox import OUTBOX_FIELDS, ensure_outbox_index, push_events, with_events

from .domain import OPEN_STATUSES, RUNNING_STATUSES, Rule, Step, case_events

INTERNAL_FIELDS = ("_id", *OUTBOX_FIELDS)
CHANGE_RETRIES = 10


class StaleCase(Exception):
    """Someone else changed the case between our read and our write."""


def _public(document: dict | None) -> dict | None:
    if document is None:
        return None
    public = {k: v for k, v in document.items() if k not in INTERNAL_FIELDS}
    public["id"] = document["_id"]
    return public


class CaseStore:
    def __init__(self, db: Database):
        self.db = db
        self.cases = db["cases"]
        self.rules = db["rules"]

    def ensure_indexes(self) -> None:
        ensure_outbox_index(self.cases)
        self.cases.create_index([("category", ASCENDING), ("status", ASCENDING), ("location.lat", ASCENDING)])
        self.cases.create_index([("department", ASCENDING), ("_id", DESCENDING)])
        self.cases.create_index([("status", ASCENDING), ("overdue", ASCENDING), ("due_at", ASCENDING)])
        self.cases.create_index([("report_ids", ASCENDING)])
        self.cases.create_index([("due_at", ASCENDING)])

    # --- cases --------------------------------------------------------------------------------

    def insert(self, case: dict, events: list[Event]) -> bool:
        """False when a case with this id exists already (a redelivered report)."""
        try:
            self.cases.insert_one(with_events({"_id": case["id"], **_without_id(case)}, *events))
        except DuplicateKeyError:
            return False
        return True

    def save(self, before: dict, after: dict, events: list[Event]) -> None:
        """Write `after` and its events if the case is still as `before` left it (one winner)."""
        changed = {k: v for k, v in _without_id(after).items() if before.get(k) != v}
        result = self.cases.update_one({"_id": before["id"], "version": before["version"]},
                                       push_events({"$set": changed}, *events))
        if result.matched_count == 0:
            raise StaleCase(before["id"])

    def create(self, step: Step, correlation_id: str | None) -> bool:
        after = {**step.case, "version": 1}
        return self.insert(after, _events(Step(after, step.actions, step.report_ids), correlation_id))

    def change(self, case_id: str, decide: Callable[[dict], Step], correlation_id: str | None) -> dict:
        """Read the case, let `decide` make the step, save it with its events; re-decide if we lost a race."""
        for _ in range(CHANGE_RETRIES):
            before = self.case(case_id)
            if before is None:
                raise NotFound(f"No case {case_id}.")
            step = decide(before)
            if not step.actions:
                return before
            after = {**step.case, "version": before["version"] + 1}
            try:
                self.save(before, after, _events(Step(after, step.actions, step.report_ids), correlation_id))
            except StaleCase:
                continue
            return after
        raise Conflict(f"Case {case_id} is changing too quickly; try again.")

    def case(self, case_id: str) -> dict | None:
        return _public(self.cases.find_one({"_id": case_id}))

    def case_of_report(self, report_id: str) -> dict | None:
        return _public(self.cases.find_one({"report_ids": report_id}))

    def open_cases_near(self, category: str, box: BoundingBox) -> list[dict]:
        query = {"category": category, "status": {"$in": list(OPEN_STATUSES)},
                 "location.lat": {"$gte": box.min_lat, "$lte": box.max_lat},
                 "location.lng": {"$gte": box.min_lng, "$lte": box.max_lng}}
        return [_public(d) for d in self.cases.find(query, {"outbox": 0}).limit(200)]

    def list_cases(self, query: dict, after_id: str | None, limit: int) -> list[dict]:
        if after_id is not None:
            query = {"$and": [query, {"_id": {"$lt": after_id}}]}
        return [_public(d) for d in self.cases.find(query, {"outbox": 0}).sort("_id", DESCENDING).limit(limit + 1)]

    def newly_overdue(self, now: datetime, limit: int = 100) -> list[dict]:
        query = {"status": {"$in": list(RUNNING_STATUSES)}, "overdue": False, "due_at": {"$lte": now}}
        return [_public(d) for d in self.cases.find(query, {"outbox": 0}).limit(limit)]

    def cases_for_stats(self, start: datetime, end: datetime) -> list[dict]:
        """Cases that can count in a period: due, verified or rectified in it, or still open."""
        query = {"$or": [{"due_at": {"$gte": start, "$lt": end}}, {"rectified_at": {"$gte": start, "$lt": end}},
                         {"history.at": {"$gte": start, "$lt": end}}, {"status": {"$in": list(OPEN_STATUSES)}}]}
        return [_public(d) for d in self.cases.find(query, {"outbox": 0})]

    # --- rules --------------------------------------------------------------------------------

    def all_rules(self) -> list[Rule]:
        return [Rule(**{k: v for k, v in d.items() if k != "_id"})
                for d in self.rules.find().sort([("category", ASCENDING), ("district", ASCENDING)])]

    def replace_rules(self, rules: list[Rule]) -> None:
        # Not atomic across documents; the rules are a small table the office edits rarely, and a
        # case opened in between uses either the old or the new rule for its category.
        keep = []
        for rule in rules:
            rule_id = f"{rule.category}@{rule.district or '*'}"
            keep.append(rule_id)
            self.rules.replace_one({"_id": rule_id}, {"_id": rule_id, **vars(rule)}, upsert=True)
        self.rules.delete_many({"_id": {"$nin": keep}})

    def seed_rules(self, rules: list[Rule]) -> None:
        """The demo city's rules, the first time only: the office's edits survive restarts."""
        if self.rules.estimated_document_count() == 0:
            self.replace_rules(rules)


def _events(step: Step, correlation_id: str | None) -> list[Event]:
    return [Event.new(key, "routing", data, correlation_id) for key, data in case_events(step)]


def _without_id(document: dict) -> dict:
    return {k: v for k, v in document.items() if k != "id"}
