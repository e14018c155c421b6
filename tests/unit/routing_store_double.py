"""An in-memory double of routing's store (CaseStore, as routing's use cases call it), so that the use cases and
the report handler run with no database: a transaction is the double itself, and work that raises leaves it as
it was (what another writer stored meanwhile stays), as a MongoDB transaction would. `meanwhile` stands for
another writer between a read and a write."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

from services.routing import domain
from services.routing.store import AlreadyRouted, CaseChange
from shared import geo
from shared.events import Event
from shared.store import LostRace

T = TypeVar("T")


class CaseStoreDouble:
    def __init__(self, rules: list[domain.Rule] = ()):
        self.rules = list(rules)
        self.cases: dict[str, dict] = {}
        self.published: list[Event] = []
        # Runs once, just before the next write checks the case it read: another writer winning a race.
        self.meanwhile: Callable[[], None] | None = None
        self._undo: list[tuple[str, dict | None, list[Event]]] | None = None  # what the transaction under way wrote

    # --- what tests set up ------------------------------------------------------------------------

    def add(self, case: dict) -> dict:
        self.cases[case["id"]] = copy.deepcopy(case)
        return case

    # --- CaseStore --------------------------------------------------------------------------------

    def rules_in_force(self) -> list[domain.Rule]:
        return self.rules

    def all_rules(self) -> list[domain.Rule]:
        return self.rules

    def case(self, case_id: str, session: object = None) -> dict | None:
        return copy.deepcopy(self.cases.get(case_id))

    def save(self, before: dict, after: dict, events: list[Event], session: object = None) -> None:
        self._let_another_writer_in()
        if self.cases[before["id"]]["version"] != before["version"]:
            raise LostRace(before["id"])
        self._write(after, events)

    def transaction(self, work: Callable[[CaseStoreDouble], T]) -> T:
        self._undo = []
        try:
            return work(self)
        except BaseException:
            for case_id, previous, events in reversed(self._undo):
                if previous is None:
                    del self.cases[case_id]
                else:
                    self.cases[case_id] = previous
                self.published = [e for e in self.published if all(e is not ours for ours in events)]
            raise
        finally:
            self._undo = None

    def open_or_join(self, reports: list[dict], decide: Callable[[list[dict]], list[CaseChange]]) -> None:
        nearby = [case for case in self.cases.values()
                  if case["status"] in domain.OPEN_STATUSES and any(_near(case, report) for report in reports)]
        changed = decide(copy.deepcopy(nearby))
        self._let_another_writer_in()
        # A case's id is unique, and a report belongs to one case (the store's unique index on `report_ids`).
        held = {report_id: case["id"] for case in self.cases.values() for report_id in case["report_ids"]}
        if any(before is None and after["id"] in self.cases for before, after, _ in changed) or any(
                held.get(report_id, after["id"]) != after["id"] for _, after, _ in changed
                for report_id in after["report_ids"]):
            if known := {report["id"] for report in reports} & set(held):
                raise AlreadyRouted(known)
            raise LostRace(", ".join(report["id"] for report in reports))
        if any(before is not None and self.cases[before["id"]]["version"] != before["version"]
               for before, _, _ in changed):
            raise LostRace(", ".join(report["id"] for report in reports))
        for _, after, events in changed:
            self._write(after, events)

    def _write(self, case: dict, events: list[Event]) -> None:
        if self._undo is not None:
            self._undo.append((case["id"], self.cases.get(case["id"]), events))
        self.cases[case["id"]] = copy.deepcopy(case)
        self.published += events

    def _let_another_writer_in(self) -> None:
        """Another writer's work, outside the transaction under way (if any)."""
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            undo, self._undo = self._undo, None
            try:
                meanwhile()
            finally:
                self._undo = undo


def _near(case: dict, report: dict) -> bool:
    """Of the report's category and within the duplicate radius's box around it (the store reads lattice cells)."""
    box = geo.box_around(report["location"]["lat"], report["location"]["lng"], geo.DUPLICATE_RADIUS_M)
    return (case["category"] == report["category"] and box.min_lat <= case["location"]["lat"] <= box.max_lat
            and box.min_lng <= case["location"]["lng"] <= box.max_lng)
