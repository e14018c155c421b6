"""The publicity watch: once an activity's publicity window (公示期) has ended, the hours nobody objected to
are credited. Hours still publicised when their year closes are declined by the close (usecases/records.py), so
nothing stays for the watch to try forever.

Several hours processes may watch at once and restart at any time: each participant is credited in a
transaction that first writes their volunteer's document, and the ledger takes one entry per activity and
volunteer, so every participant is credited exactly once.
"""
from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.errors import DomainError

from . import domain
from .store import HoursStore
from .usecases import activities

log = logging.getLogger(__name__)


class PublicityWatch:
    def __init__(self, store: HoursStore, zone: ZoneInfo):
        self.store = store
        self.zone = zone
        # What this watcher has warned of already: it tries again every round, and warns once.
        self.warned: set[tuple[str, str]] = set()

    def check(self, now: datetime) -> int:
        """Credit what is due by `now`; returns how many participants this watcher credited."""
        credited = 0
        for activity in self.store.due_activities(domain.local_today(now, self.zone)):
            for participant in activity["participants"]:
                if participant["status"] != domain.PUBLICISED:
                    continue
                try:
                    credited += activities.credit_participant(self.store, activity["id"], participant["volunteer_id"],
                                                               now, None)
                except DomainError as refused:  # e.g. the year is being closed: its close declines these hours
                    if (activity["id"], participant["volunteer_id"]) not in self.warned:
                        self.warned.add((activity["id"], participant["volunteer_id"]))
                        log.warning("publicised hours not credited", extra={
                            "activity_id": activity["id"], "volunteer_id": participant["volunteer_id"],
                            "reason": refused.detail})
            activities.settle(self.store, activity["id"], now)
        return credited
