"""Service activities: planned, completed with their participants' hours publicised (公示), objected to, the
objections decided, and what nobody objected to credited once the window is over (the publicity watch,
publicity.py, calls `credit_participant`)."""
from __future__ import annotations

from datetime import datetime

from shared.auth import Caller
from shared.errors import Conflict, InvalidFields, NotFound
from shared.pagination import decode_cursor, page
from shared.photo_ids import side_of
from shared.store import LostRace, optimistically

from .. import domain
from ..store import HoursStore, HoursTransaction
from . import Hours, actor_label
from .ledger import credit, lock_volunteer
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
    """Publicise who took part and for how long: each participant's hours wait (pending) until the window
    ends. Refused as a whole if a participant is not registered, was elsewhere at the time, or would pass the
    day's limit."""
    domain.may_manage_activity(caller, known_activity(hours, activity_id))
    not_yours = hours.photo_ids.not_issued_to(body["photo_ids"], side_of(caller))
    if not_yours:
        raise InvalidFields("Activity photos must be ones you uploaded.", {"photo_ids": [
            f"not uploaded by you: {', '.join(not_yours)}"]})

    def work(tx: HoursTransaction) -> dict:
        activity, _ = tx.activity_and_version(activity_id)
        if activity is None:
            raise NotFound(f"No activity {activity_id}.")
        changes = {**domain.completion(activity, body["participants"], len(set(body["photo_ids"])), now,
                                       hours.rules, hours.calendar, hours.zone),
                   "summary": body["summary"], "photo_ids": body["photo_ids"], "completed_by": actor_label(caller)}
        unknown = [p["volunteer_id"] for p in changes["participants"] if not tx.lock_volunteer(p["volunteer_id"])]
        if unknown:
            raise InvalidFields("Participants must be registered volunteers.",
                                {"participants": [f"not registered: {', '.join(unknown)}"]})
        for participant in changes["participants"]:
            publicise(tx, hours, activity, changes["service_date"], participant)
        if not tx.update_activity(activity_id, changes, status=domain.PLANNED):
            raise Conflict(f"Activity {activity_id} was completed meanwhile.")
        return {**activity, **changes}

    return domain.shown_activity(hours.store.transaction(work), caller)


def publicise(tx: HoursTransaction, hours: Hours, activity: dict, service_date: str, participant: dict) -> None:
    volunteer_id = participant["volunteer_id"]
    domain.refuse_overlap(activity["starts_at"], activity["ends_at"],
                          tx.busy(volunteer_id, activity["starts_at"], activity["ends_at"],
                                  except_activity=activity["id"]), who=volunteer_id)
    domain.refuse_over_daily_limit(tx.day_centihours(volunteer_id, service_date), participant["hours"], hours.rules,
                                   volunteer_id)
    tx.move_waiting(volunteer_id, service_date, domain.centihours(participant["hours"]))


def object_to_activity(hours: Hours, caller: Caller, activity_id: str, body: dict, now: datetime) -> dict:
    """Hold a participant's publicised hours until the association decides."""
    def attempt() -> dict:
        activity, version = hours.store.activity_and_version(activity_id)
        if activity is None:
            raise NotFound(f"No activity {activity_id}.")
        objection = domain.new_objection(activity, body["volunteer_id"], body["reason"], actor_label(caller), now,
                                         hours.zone)
        if not hours.store.add_objection(activity_id, version, objection):
            raise LostRace(activity_id)
        return objection

    return domain.shown_objection(optimistically(attempt, f"Activity {activity_id}"), caller)


def decide_objection(hours: Hours, caller: Caller, activity_id: str, objection_id: str, body: dict,
                     now: datetime) -> dict:
    """Upheld: the participant's hours are declined. Dismissed: they are publicised again, and credited with
    the others once the window is over."""
    def work(tx: HoursTransaction) -> dict:
        activity, version = tx.activity_and_version(activity_id)
        changes, decided = domain.objection_decided(activity, activity_id, objection_id, body["upheld"],
                                                    actor_label(caller), body["note"], now)
        if body["upheld"]:
            participant = next(p for p in activity["participants"] if p["volunteer_id"] == decided["volunteer_id"])
            lock_volunteer(tx, participant["volunteer_id"])
            tx.move_waiting(participant["volunteer_id"], activity["service_date"],
                            -domain.centihours(participant["hours"]))
        if not tx.update_activity(activity_id, changes, version=version):
            raise Conflict(f"Activity {activity_id} changed meanwhile; try again.")
        return decided

    return hours.store.transaction(work)


def credit_participant(store: HoursStore, activity_id: str, volunteer_id: str, now: datetime,
                       correlation_id: str | None) -> bool:
    """Credit one participant's publicised hours; True when this call credited them."""
    def work(tx: HoursTransaction) -> bool:
        activity, _ = tx.activity_and_version(activity_id)
        participant = next((p for p in activity["participants"] if p["volunteer_id"] == volunteer_id), None)
        if participant is None or participant["status"] != domain.PUBLICISED:
            return False
        lock_volunteer(tx, volunteer_id)
        document = domain.participant_credit(activity, participant, now, store.rules)
        credit(tx, document, store.rules, correlation_id, waiting_moves=True)
        tx.update_activity(activity_id, domain.participant_credited(activity, volunteer_id, document["id"], now))
        return True

    return store.transaction(work)


def settle(store: HoursStore, activity_id: str, now: datetime) -> None:
    """An activity whose every participant is credited or declined is confirmed."""
    activity = store.activity(activity_id)
    if activity and domain.settled(activity):
        store.confirm_activity(activity_id, now)


def close_with_its_year(tx: HoursTransaction, activity_id: str, now: datetime) -> int:
    """Decline what the activity still publicises or holds (its year closes); returns how many participants."""
    activity, version = tx.activity_and_version(activity_id)
    if activity is None or activity["status"] != domain.PUBLICISED:
        return 0
    changes, released = domain.activity_closed_with_its_year(activity, now)
    for volunteer_id, hours_released in released:
        lock_volunteer(tx, volunteer_id)
        tx.move_waiting(volunteer_id, activity["service_date"], -domain.centihours(hours_released))
    if not tx.update_activity(activity_id, changes, version=version):
        raise Conflict(f"Activity {activity_id} changed meanwhile; close the year again.")
    return len(released)
