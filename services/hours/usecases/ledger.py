"""The ledger: how an entry is credited (the one way hours reach a volunteer's totals), adjustments, reversals,
and reading an entry. Entries are never changed or deleted: a correction is a new entry."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import Conflict, InvalidFields, NotFound
from shared.reference import ServiceHoursRules

from .. import domain
from ..store import HoursTransaction, replayed
from . import Hours, actor_label
from .volunteers import readable_volunteer


def credit(tx: HoursTransaction, document: dict, rules: ServiceHoursRules, correlation_id: str | None,
           waiting_moves: bool = False, sessions: int | None = None, key: str | None = None,
           fingerprint: str | None = None) -> bool:
    """Credit an entry once per source (False: its source credited already), with its events. The caller
    locked the volunteer first."""
    if tx.entry_of_source(document) is not None:
        return False
    volunteer = tx.volunteer_totals(document["volunteer_id"])
    tx.post(domain.posting(document, volunteer["total"], tx.year_closed(document["year"]), rules, correlation_id,
                           waiting_moves=waiting_moves, sessions=sessions), volunteer, key, fingerprint)
    return True


def credit_strictly(tx: HoursTransaction, document: dict, rules: ServiceHoursRules, correlation_id: str | None,
                    waiting_moves: bool = False, sessions: int | None = None) -> None:
    """Credit an entry that a patrol's new state needs: its source having credited already means the patrol and
    the ledger disagree, and nothing of the change is stored."""
    if not credit(tx, document, rules, correlation_id, waiting_moves=waiting_moves, sessions=sessions):
        raise Conflict(f"The ledger already holds {document['source']} {document['source_id']}; try again.")


def lock_volunteer(tx: HoursTransaction, volunteer_id: str) -> None:
    if not tx.lock_volunteer(volunteer_id):
        raise NotFound(f"No volunteer {volunteer_id}.")


def adjust_hours(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                 correlation_id: str | None, now: datetime) -> tuple[dict, bool]:
    """Credit an adjustment; returns the entry and whether this request credited it. The Idempotency-Key is
    the entry's own (a unique index), so a key used for one volunteer credits nobody else: the same key with
    another body is a 409."""
    domain.check_adjustment(fields["hours"])
    if hours.store.volunteer(fields["volunteer_id"]) is None:
        raise InvalidFields("No such volunteer.", {"volunteer_id": ["not a registered volunteer"]})
    # The source of an adjustment is its request: a retry with the same key credits nothing twice.
    service_date = fields.get("service_date") or domain.local_today(now, hours.zone)
    document = domain.entry(fields["volunteer_id"], round(fields["hours"], 2), domain.ADJUSTMENT,
                            source="adjustment", source_id=key or domain.new_id(), service_date=service_date,
                            recorded_at=now, recorded_by=actor_label(caller), rules=hours.rules, note=fields["reason"])

    def work(tx: HoursTransaction) -> tuple[dict, bool]:
        lock_volunteer(tx, document["volunteer_id"])
        if credit(tx, document, hours.rules, correlation_id, key=key, fingerprint=fingerprint):
            return document, True
        return replayed(tx.entry_of_source(document), fingerprint), False

    answer, _ = hours.store.idempotently("entries", key, fingerprint, work)
    return answer if isinstance(answer, tuple) else (answer, False)


def readable_entry(hours: Hours, caller: Caller, entry_id: str) -> dict:
    """One ledger entry of a volunteer the caller may see."""
    found = hours.store.entry(entry_id)
    if found is None:
        raise NotFound(f"No ledger entry {entry_id}.")
    readable_volunteer(hours, caller, found["volunteer_id"])
    return found


def reverse_entry(hours: Hours, by: str, entry_id: str, reason: str, correlation_id: str | None,
                  now: datetime) -> dict:
    """Reverse an entry once, with a reason: a new entry of the opposite hours, pointing at it. A second
    request for the same entry is a 409 naming the first reversal. A patrol's entry reversed this way is
    declined in the patrol too (a person decided it)."""
    original = hours.store.entry(entry_id)
    if original is None:
        raise NotFound(f"No ledger entry {entry_id}.")
    reversal = domain.reversal_of(original, reason, by, now, hours.rules)

    def work(tx: HoursTransaction) -> dict:
        lock_volunteer(tx, original["volunteer_id"])
        patrol = tx.patrol(original["patrol_id"]) if original.get("patrol_id") else None
        after = domain.credit_reversed(patrol, reversal) if patrol else None
        sessions = (domain.patrol_sessions(after) - domain.patrol_sessions(patrol)) if after else None
        if not credit(tx, reversal, hours.rules, correlation_id, sessions=sessions):
            earlier = tx.entry_of_source(reversal)
            raise Conflict(f"Entry {entry_id} was already reversed by entry {earlier['_id']}.")
        if after:
            store_patrol(tx, patrol, after)
        return reversal

    return hours.store.transaction(work)


def store_patrol(tx: HoursTransaction, before: dict, after: dict) -> None:
    """Write a patrol's new state, unless it was decided meanwhile."""
    if not tx.update_patrol(before, after):
        raise Conflict(f"Patrol {before['id']} was decided meanwhile.")
