"""Acting on cases: the cases reports open or join, a command on one case, merging two. Each reads through the
store, lets the domain (or the `decide` it is given) make the step, builds the step's events and stores the case
with them on the condition that it is still as read; one that lost that race reads again and decides again."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pymongo.client_session import ClientSession

from shared.auth import Caller
from shared.errors import NotFound
from shared.events import Event
from shared.store import LostRace, optimistically

from .. import domain
from ..domain import Merge, Step, Submitted
from ..store import AlreadyRouted, CaseChange, CaseStore


def route_reports(store: CaseStore, submitted: list[Submitted], route: Callable[[dict, list[dict]], Step]) -> None:
    """Let `route` open a case for each report or join it to an open case nearby (one stored, or one that an
    earlier report of the list opened or joined), all stored together (CaseStore.open_or_join). A report that
    already has a case (a redelivered one) opens nothing."""
    def decide(stored: list[dict]) -> list[CaseChange]:
        batch = RoutingBatch()
        for submission in submitted:
            report = submission.report
            step = route(report, batch.joinable_cases(stored, report["category"]))
            batch.record(step, stored, submission.correlation_id)
        return batch.changed()

    def attempt() -> None:
        nonlocal submitted
        try:
            store.open_or_join([submission.report for submission in submitted], decide)
        except AlreadyRouted as routed:
            # Reports redelivered after their case closed: route the others without them.
            submitted = [s for s in submitted if s.report["id"] not in routed.report_ids]
            if submitted:
                raise LostRace(", ".join(s.report["id"] for s in submitted)) from None

    optimistically(attempt, f"The cases near reports {', '.join(s.report['id'] for s in submitted)}")


def act_on_case(store: CaseStore, caller: Caller, case_id: str, decide: Callable[[dict], Step], *,
                correlation_id: str | None) -> dict:
    """Run the caller's command on a case they may see (to them, another is not there); the case as it ends."""
    scope = domain.visible_to(caller)

    def scoped(case: dict) -> Step:
        if not scope.admits(case):
            raise NotFound(f"No case {case_id}.")
        return decide(case)

    return change_case(store, case_id, scoped, correlation_id=correlation_id)


def change_case(store: CaseStore, case_id: str, decide: Callable[[dict], Step], *,
                correlation_id: str | None) -> dict:
    """Read the case, let `decide` make the step, store the case with the step's events; the case as it ends.
    A step without actions stores nothing."""
    def attempt() -> dict:
        before = store.case(case_id)
        if before is None:
            raise NotFound(f"No case {case_id}.")
        step = decide(before)
        if not step.actions:
            return before
        after, events = _at_version(step, before["version"] + 1, correlation_id)
        store.save(before, after, events)
        return after

    return optimistically(attempt, f"Case {case_id}")


def merge_cases(store: CaseStore, source_id: str, target_id: str, decide: Callable[[dict, dict], Merge], *,
                correlation_id: str | None) -> dict:
    """Read both cases, let `decide` make the merge, store both sides and their events in one transaction (the
    source gives up its reports before the target takes them, as the unique index on `report_ids` wants); the
    source as it ends. NotFound for either case unknown."""
    def work(session: ClientSession) -> dict:
        source, target = store.case(source_id, session), store.case(target_id, session)
        if source is None:
            raise NotFound(f"No case {source_id}.")
        if target is None:
            raise NotFound(f"No case {target_id} to merge into.")
        merge = decide(source, target)
        ended, ending = _at_version(merge.source, source["version"] + 1, correlation_id)
        # The target's version jumps past the source's end: a reader that keeps, per report, the latest case
        # version it applied (intake, notify) takes the moved reports' joins, and every later step of the target,
        # as newer than anything of the case they left.
        grown, joins = _at_version(merge.target, max(ended["version"], target["version"]) + 1, correlation_id)
        store.save(source, ended, ending, session)
        store.save(target, grown, joins, session)
        return ended

    return optimistically(lambda: store.transaction(work), f"Cases {source_id} and {target_id}")


class RoutingBatch:
    """The cases a list of reports opens or joins, each as it stands after the last of them: how it was stored
    (None if new), how it is now, and the events of every step in order."""

    def __init__(self):
        self._cases: dict[str, CaseChange] = {}

    def joinable_cases(self, stored: list[dict], category: str) -> list[dict]:
        """The open cases of `category` a report may join: those stored, as this list has changed them, and
        those it opened."""
        nearby = {case["id"]: self._cases.get(case["id"], CaseChange(None, case, [])).after for case in stored}
        nearby.update((change.after["id"], change.after) for change in self._cases.values())
        return [case for case in nearby.values() if case["category"] == category]

    def record(self, step: Step, stored: list[dict], correlation_id: str | None) -> None:
        """A report's step, over the case as `joinable_cases` showed it (a new case is at version 0)."""
        if not step.actions:
            return
        case_id = step.case["id"]
        first_read = next((case for case in stored if case["id"] == case_id), None)
        before, _, events = self._cases.get(case_id) or (first_read, None, [])
        after, step_events = _at_version(step, step.case["version"] + 1, correlation_id)
        self._cases[case_id] = CaseChange(before, after, [*events, *step_events])

    def changed(self) -> list[CaseChange]:
        return list(self._cases.values())


def _at_version(step: Step, version: int, correlation_id: str | None) -> tuple[dict, list[Event]]:
    """The case as the step leaves it, at `version`, and the step's events, which carry that version."""
    after = {**step.case, "version": version}
    return after, domain.case_events(replace(step, case=after), correlation_id)
