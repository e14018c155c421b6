"""Hours' use cases, one module per family: each loads through the store, asks the domain, and stores what
was decided with its events. Views and event handlers call these and nothing else.

    volunteers.py   registering volunteers (one or a roster), reading them, their summary and ledger
    patrols.py      recording a patrol (where it is credited), confirming or declining it
    ledger.py       adjustments and reversals of ledger entries
    activities.py   service activities, their publicity (公示) and objections
    spot_checks.py  drawing a spot check (抽查) and recording its results
    records.py      rankings, proofs of service (志愿服务证明) and closing a year
"""
from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from shared.auth import Caller
from shared.photo_ids import PhotoIds
from shared.reference import ReferenceData, ServiceHoursRules, WorkCalendar

from ..store import HoursStore


@dataclass
class Hours:
    """What hours' use cases work with: the store, the city's reference data and the credit policy."""
    store: HoursStore
    reference: ReferenceData
    rules: ServiceHoursRules
    calendar: WorkCalendar
    photo_ids: PhotoIds

    @property
    def zone(self) -> ZoneInfo:
        return self.reference.timezone


def actor_label(caller: Caller) -> str:
    """How the ledger and the documents name who did something: role and id."""
    return f"{caller.role}:{caller.id}"
