"""Registering volunteers, one at a time or a whole roster, and reading them: who they are, their summary and
their ledger."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import Forbidden, InvalidFields, NotFound
from shared.pagination import decode_cursor, page

from .. import domain
from ..roster import RosterUnreadable, read_roster
from . import Hours, actor_label


def refuse_unknown_grid(hours: Hours, grid_id: str, field: str = "grid_id") -> None:
    if grid_id not in hours.reference.grids:
        raise InvalidFields("Unknown grid cell.", {field: [f"one of {', '.join(hours.reference.grids)}"]})


def readable_volunteer(hours: Hours, caller: Caller, volunteer_id: str) -> dict:
    """The volunteer, if the caller may see them; one they may not see is as unknown as one that is not."""
    volunteer = hours.store.volunteer(volunteer_id)
    if volunteer is None or not domain.may_read_volunteer(caller, volunteer):
        raise NotFound(f"No volunteer {volunteer_id}.")
    return volunteer


def register_volunteer(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                       correlation_id: str | None, now: datetime) -> tuple[dict, bool]:
    """Register a volunteer; returns them as the caller sees them, and whether this request registered them."""
    refuse_unknown_grid(hours, fields["grid_id"])
    volunteer = domain.new_volunteer(fields["name"].strip(), fields["phone"], fields["organization"],
                                     fields["grid_id"], now, actor_label(caller))
    stored, created = hours.store.register(volunteer, key, fingerprint,
                                           domain.registered_event(volunteer, correlation_id))
    return domain.shown_volunteer(stored, caller), created


def import_roster(hours: Hours, caller: Caller, content: bytes, correlation_id: str | None,
                  now: datetime) -> dict:
    """Register a roster's good rows; rows already registered change nothing; bad rows are listed."""
    try:
        roster = read_roster(content, {g.id: g.name for g in hours.reference.grids.values()})
    except RosterUnreadable as exc:
        raise InvalidFields(str(exc), {"file": [str(exc)]}) from None
    by = actor_label(caller)
    registrations = []
    for row in roster.rows:
        volunteer = domain.new_volunteer(row.name, row.phone, row.organization, row.grid_id, now, by)
        registrations.append((volunteer, domain.registered_event(volunteer, correlation_id)))
    created, known = hours.store.register_many(registrations)
    return {"rows": len(roster.rows) + len(roster.errors), "registered": len(created),
            "already_registered": len(known), "errors": [{"row": e.row, "reason": e.reason} for e in roster.errors]}


def volunteers_page(hours: Hours, caller: Caller, query: dict) -> dict:
    """Volunteers the caller may see, newest registration first."""
    scope = domain.volunteers_visible_to(caller)
    if scope is None:
        raise Forbidden("You may not list volunteers.")
    wanted = {k: query[k] for k in ("organization", "grid_id", "star_level") if k in query}
    items = hours.store.list_volunteers(wanted, scope, decode_cursor(query.get("cursor")), query["limit"])
    result = page(items, query["limit"], "registered_at")
    result["items"] = [domain.shown_volunteer(v, caller) for v in result["items"]]
    return result


def shown_volunteer(hours: Hours, caller: Caller, volunteer_id: str) -> dict:
    return domain.shown_volunteer(readable_volunteer(hours, caller, volunteer_id), caller)


def summary(hours: Hours, caller: Caller, volunteer_id: str, year: int | None, now: datetime) -> dict:
    volunteer = readable_volunteer(hours, caller, volunteer_id)
    return domain.summary(volunteer, year or now.astimezone(hours.zone).year, hours.rules)


def ledger_page(hours: Hours, caller: Caller, volunteer_id: str, query: dict) -> dict:
    """The volunteer's ledger entries, newest first."""
    readable_volunteer(hours, caller, volunteer_id)
    items = hours.store.ledger(volunteer_id, query.get("year"), decode_cursor(query.get("cursor")), query["limit"])
    return page(items, query["limit"], "recorded_at")
