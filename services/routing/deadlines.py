"""The deadline watch: a case whose deadline passes is flagged overdue and escalated, once.

Several routing processes may watch at once and a process may restart at any time: the overdue
flag is part of the case, and the change is a conditional write on the case's version, so exactly
one watcher wins and `case.overdue.<dept>` is published once per deadline.
"""
from __future__ import annotations

from datetime import datetime

from shared.errors import Conflict, NotFound

from . import domain
from .store import CaseStore
from .usecases.cases import change_case


class OverdueWatch:
    def __init__(self, store: CaseStore):
        self.store = store

    def check(self, now: datetime) -> int:
        """Flag every case whose deadline has passed by `now`; returns how many this watcher flagged."""
        flagged = 0
        for case in self.store.newly_overdue(now):
            written: list[str] = []

            def decide(current: dict, written: list[str] = written) -> domain.Step:
                step = domain.mark_overdue(current, now)
                written[:] = step.actions  # the last decision is the one stored, if any
                return step

            try:
                change_case(self.store, case["id"], decide, correlation_id=None)
            except (Conflict, NotFound):
                continue
            flagged += bool(written)
        return flagged
