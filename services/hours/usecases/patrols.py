"""Patrols (巡访): recording one (where a patrol is credited: what its reports evidence at once, the rest waits
for a person), reading them, and a person confirming or declining what waits."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import Conflict, Forbidden, NotFound
from shared.pagination import decode_cursor, page

from .. import domain
from ..store import HoursStore, HoursTransaction
from . import Hours, actor_label
from .ledger import credit_strictly, lock_volunteer, store_patrol
from .volunteers import refuse_unknown_grid


def record_patrol(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                  correlation_id: str | None, now: datetime) -> tuple[dict, bool]:
    """Record a patrol the caller walked; returns it and whether this request recorded it. Refused if it
    overlaps the volunteer's other service; what its reports evidence is credited at once, within the policy's
    bound, and the rest waits for a person."""
    refuse_unknown_grid(hours, fields["grid_id"])
    claim = domain.claim_patrol(caller.id, fields["grid_id"], fields["started_at"], fields["ended_at"], now,
                                hours.rules, hours.calendar, hours.zone)
    by_its_leader = domain.walked_by_its_grid_leader(caller, claim.grid_id,
                                                     hours.reference.grids[claim.grid_id].leader_id)
    return record_claim(hours.store, claim, by_its_grid_leader=by_its_leader, recorded_by=actor_label(caller), now=now,
                        key=key, fingerprint=fingerprint, correlation_id=correlation_id)


def record_claim(store: HoursStore, claim: domain.PatrolClaim, *, by_its_grid_leader: bool, recorded_by: str,
                 now: datetime, key: str | None, fingerprint: str, correlation_id: str | None) -> tuple[dict, bool]:
    """Record a patrol claimed and checked already (record_patrol; bench/hours.py records through this)."""
    rules = store.rules

    def work(tx: HoursTransaction) -> dict:
        if not tx.lock_volunteer(claim.volunteer_id):
            raise Forbidden("Only a registered volunteer records patrols: ask your association to register you.")
        domain.refuse_overlap(claim.started_at, claim.ended_at,
                              tx.busy(claim.volunteer_id, claim.started_at, claim.ended_at))
        walked = {"volunteer_id": claim.volunteer_id, "grid_id": claim.grid_id, "started_at": claim.started_at,
                  "ended_at": claim.ended_at}
        evidence = [r["id"] for r in tx.reports_during(claim.volunteer_id, claim.grid_id, claim.started_at,
                                                       claim.ended_at) if domain.evidences(r, walked)]
        day_centihours = tx.day_centihours(claim.volunteer_id, claim.service_date.isoformat())
        patrol, credits = domain.new_patrol(claim, evidence, day_centihours=day_centihours,
                                            by_its_grid_leader=by_its_grid_leader, recorded_by=recorded_by, now=now,
                                            rules=rules)
        sessions = domain.patrol_sessions(patrol)
        for entry in credits:
            claim_report(tx, entry["source_id"], patrol["id"])
            credit_strictly(tx, entry, rules, correlation_id, sessions=sessions)
            sessions = 0
        tx.move_waiting(claim.volunteer_id, patrol["service_date"], domain.centihours(patrol["waiting_hours"]))
        tx.insert_patrol(patrol, key, fingerprint)
        return patrol

    patrol, created = store.idempotently("patrols", key, fingerprint, work)
    return (patrol, True) if created else (domain.parted_patrol(patrol), False)


def claim_report(tx: HoursTransaction, report_id: str, patrol_id: str) -> None:
    """A report evidences one patrol only: the report names the patrol it evidences, once."""
    if not tx.claim_report(report_id, patrol_id):
        raise Conflict(f"Report {report_id} changed meanwhile; try again.")


def patrols_page(hours: Hours, caller: Caller, query: dict) -> dict:
    """Patrols the caller may see, newest first."""
    wanted = {k: query[k] for k in ("status", "grid_id", "volunteer_id") if k in query}
    items = hours.store.list_patrols(wanted, domain.patrols_visible_to(caller), decode_cursor(query.get("cursor")),
                                     query["limit"])
    return page(items, query["limit"], "started_at")


def readable_patrol(hours: Hours, caller: Caller, patrol_id: str) -> dict:
    patrol = hours.store.patrol(patrol_id)
    if patrol is None or not domain.patrols_visible_to(caller).admits(patrol):
        raise NotFound(f"No patrol {patrol_id}.")
    return patrol


def decide_patrol(hours: Hours, caller: Caller, patrol_id: str, confirm: bool, note: str,
                  correlation_id: str | None, now: datetime) -> dict:
    """Confirm (credit) or decline a waiting patrol's time."""
    readable_patrol(hours, caller, patrol_id)
    by = actor_label(caller)

    def work(tx: HoursTransaction) -> dict:
        patrol = tx.patrol(patrol_id)
        if patrol is None:
            raise NotFound(f"No patrol {patrol_id}.")
        domain.may_decide_patrol(caller, patrol)
        lock_volunteer(tx, patrol["volunteer_id"])
        if confirm:
            after, entry = domain.confirmed(patrol, by, note, now, hours.rules)
            credit_strictly(tx, entry, hours.rules, correlation_id, waiting_moves=True,
                            sessions=domain.patrol_sessions(after) - domain.patrol_sessions(patrol))
        else:
            after, reversals = domain.declined(patrol, by, note, now, hours.rules)
            sessions = domain.patrol_sessions(after) - domain.patrol_sessions(patrol)
            for reversal in reversals:
                credit_strictly(tx, reversal, hours.rules, correlation_id, sessions=sessions)
                sessions = 0
            tx.move_waiting(patrol["volunteer_id"], patrol["service_date"], -domain.centihours(patrol["waiting_hours"]))
        store_patrol(tx, patrol, after)
        return after

    return hours.store.transaction(work)


def close_patrol_with_its_year(tx: HoursTransaction, patrol_id: str, now: datetime) -> int:
    """Decline what the patrol still waits for (its year closes); 1 if it waited, else 0."""
    patrol = tx.patrol(patrol_id)
    if patrol is None or patrol["status"] not in domain.WAITING:
        return 0
    lock_volunteer(tx, patrol["volunteer_id"])
    tx.move_waiting(patrol["volunteer_id"], patrol["service_date"], -domain.centihours(patrol["waiting_hours"]))
    store_patrol(tx, patrol, domain.closed_with_its_year(patrol, now))
    return 1
