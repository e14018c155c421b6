"""Service activities: planned, completed with their participants' hours publicised (公示), objected to,
and the objections decided. The publicity watch (publicity.py) credits what nobody objected to."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import InvalidFields, NotFound
from shared.pagination import decode_cursor, page
from shared.photo_ids import side_of

from .. import domain
from . import Hours, actor_label
from .volunteers import refuse_unknown_grid


def create_activity(hours: Hours, caller: Caller, fields: dict, key: str | None, fingerprint: str,
                    now: datetime) -> tuple[dict, bool]:
    if fields.get("grid_id"):
        refuse_unknown_grid(hours, fields["grid_id"])
    domain.check_activity(fields, caller)
    activity = {"id": domain.new_id(), **fields, "status": domain.PLANNED, "created_by": actor_label(caller),
                "created_at": now, "participants": [], "objections": []}
    return hours.store.create_activity(activity, key, fingerprint)


def activities_page(hours: Hours, caller: Caller, query: dict) -> dict:
    wanted = {k: query[k] for k in ("status", "grid_id") if k in query}
    items = hours.store.list_activities(wanted, decode_cursor(query.get("cursor")), query["limit"])
    result = page(items, query["limit"], "starts_at")
    result["items"] = [domain.shown_activity(a, caller) for a in result["items"]]
    return result


def known_activity(hours: Hours, activity_id: str) -> dict:
    found = hours.store.activity(activity_id)
    if found is None:
        raise NotFound(f"No activity {activity_id}.")
    return found


def shown_activity(hours: Hours, caller: Caller, activity_id: str) -> dict:
    return domain.shown_activity(known_activity(hours, activity_id), caller)


def complete_activity(hours: Hours, caller: Caller, activity_id: str, body: dict, now: datetime) -> dict:
    """Publicise who took part and for how long; their hours are credited when the window ends."""
    domain.may_manage_activity(caller, known_activity(hours, activity_id))
    not_yours = hours.photo_ids.not_issued_to(body["photo_ids"], side_of(caller))
    if not_yours:
        raise InvalidFields("Activity photos must be ones you uploaded.", {"photo_ids": [
            f"not uploaded by you: {', '.join(not_yours)}"]})

    def complete(activity: dict) -> dict:
        changes = domain.completion(activity, body["participants"], len(set(body["photo_ids"])), now, hours.rules,
                                    hours.calendar, hours.zone)
        return {**changes, "summary": body["summary"], "photo_ids": body["photo_ids"],
                "completed_by": actor_label(caller)}

    return domain.shown_activity(hours.store.complete_activity(activity_id, complete), caller)


def object_to_activity(hours: Hours, caller: Caller, activity_id: str, body: dict, now: datetime) -> dict:
    """Hold a participant's publicised hours until the association decides."""
    objection = hours.store.raise_objection(activity_id, lambda activity: domain.new_objection(
        activity, body["volunteer_id"], body["reason"], actor_label(caller), now, hours.zone))
    return domain.shown_objection(objection, caller)


def decide_objection(hours: Hours, caller: Caller, activity_id: str, objection_id: str, body: dict,
                     now: datetime) -> dict:
    return hours.store.decide_objection(activity_id, objection_id, body["upheld"], actor_label(caller),
                                        body["note"], now)
