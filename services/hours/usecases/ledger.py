"""The ledger's own use cases: an adjustment credited (or debited) with a reason, an entry reversed, an entry
read. Entries are never changed or deleted: a correction is a new entry."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import InvalidFields, NotFound

from .. import domain
from . import Hours, actor_label
from .volunteers import readable_volunteer


def adjust_hours(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                 correlation_id: str | None, now: datetime) -> tuple[dict, bool]:
    """Credit an adjustment; returns the entry and whether this request credited it."""
    domain.check_adjustment(fields["hours"])
    if hours.store.volunteer(fields["volunteer_id"]) is None:
        raise InvalidFields("No such volunteer.", {"volunteer_id": ["not a registered volunteer"]})
    # The source of an adjustment is its request: a retry with the same key credits nothing twice.
    service_date = fields.get("service_date") or domain.local_today(now, hours.zone)
    document = domain.entry(fields["volunteer_id"], round(fields["hours"], 2), domain.ADJUSTMENT, "adjustment",
                            key or domain.new_id(), service_date, now, actor_label(caller), hours.rules,
                            fields["reason"])
    return hours.store.record_entry(document, key, fingerprint, correlation_id)


def readable_entry(hours: Hours, caller: Caller, entry_id: str) -> dict:
    """One ledger entry of a volunteer the caller may see."""
    found = hours.store.entry(entry_id)
    if found is None:
        raise NotFound(f"No ledger entry {entry_id}.")
    readable_volunteer(hours, caller, found["volunteer_id"])
    return found


def reverse_entry(hours: Hours, by: str, entry_id: str, reason: str, correlation_id: str | None,
                  now: datetime) -> dict:
    """Reverse an entry once, with a reason: a new entry of the opposite hours, pointing at it."""
    return hours.store.reverse(entry_id, lambda original: domain.reversal_of(original, reason, by, now, hours.rules),
                               correlation_id)
