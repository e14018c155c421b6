"""Patrols (巡访): recording one (where a patrol is credited: what its reports evidence at once, the rest waits
for a person), reading them, and a person confirming or declining what waits."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import NotFound
from shared.pagination import decode_cursor, page

from .. import domain
from . import Hours, actor_label
from .volunteers import refuse_unknown_grid


def record_patrol(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                  correlation_id: str | None, now: datetime) -> tuple[dict, bool]:
    """Record a patrol the caller walked; returns it and whether this request recorded it."""
    refuse_unknown_grid(hours, fields["grid_id"])
    claim = domain.claim_patrol(caller.id, fields["grid_id"], fields["started_at"], fields["ended_at"], now,
                                hours.rules, hours.calendar, hours.zone)
    by_its_leader = domain.walked_by_its_grid_leader(caller, claim.grid_id,
                                                     hours.reference.grids[claim.grid_id].leader_id)
    return hours.store.record_patrol(claim, by_its_leader, actor_label(caller), now, key, fingerprint,
                                     correlation_id)


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
    return hours.store.decide_patrol(patrol_id, lambda patrol: domain.may_decide_patrol(caller, patrol), confirm,
                                     actor_label(caller), note, now, correlation_id)
