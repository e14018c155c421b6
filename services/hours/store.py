"""Hours' collections, indexes and queries: volunteers (with their running totals), the ledger's entries,
patrols, each volunteer's service per day, and the reports hours has heard of.

Every change to a volunteer's hours is one transaction that starts by writing the volunteer's document:
two changes for one volunteer (a patrol recorded twice at once, a credit racing a reversal) serialize
there, so overlaps and daily caps are checked against everything already recorded, and the running totals
always equal the sum of the ledger.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import idempotency
from shared.errors import Conflict, Forbidden, IdempotencyConflict, InvalidFields, NotFound
from shared.events import Event, utcnow
from shared.outbox import (
    OUTBOX_FIELDS,
    OutboxRelay,
    ensure_outbox_index,
    publish_after_commit,
    push_events,
    with_events,
)
from shared.pagination import Position, newest_first
from shared.reference import ServiceHoursRules
from shared.scope import Scope
from shared.store import LostRace, in_transaction, optimistically, public_document

from . import domain
from .domain import ACTIVITY, CREDITED, DECLINED, PATROL, PatrolClaim, centihours

log = logging.getLogger(__name__)
HIDDEN_FIELDS = ("_id", "version", "phone_key", idempotency.KEY_FIELD, idempotency.FINGERPRINT_FIELD, *OUTBOX_FIELDS)
VOLUNTEERS_LISTED_BY = ((), ("organization",), ("grid_id",), ("star_level",), ("organization", "grid_id"),
                        ("grid_id", "star_level"), ("organization", "star_level"))
PATROLS_LISTED_BY = ((), ("volunteer_id",), ("grid_id",), ("status",), ("volunteer_id", "status"),
                     ("grid_id", "status"), ("volunteer_id", "grid_id"))
ACTIVITIES_LISTED_BY = ((), ("status",), ("grid_id",), ("grid_id", "status"))
# Kinds of service that fill a day (adjustments correct the ledger; they are not time spent on a day).
DAY_KINDS = (PATROL, ACTIVITY)
IMPORT_BATCH = 500
# What changes in a patrol once it is recorded: where its time is, and who decided it.
PATROL_STATE = ("status", "credited_hours", "waiting_hours", "declined_hours", "credits", "beyond_daily_cap",
                "by_its_grid_leader", "evidence_report_id", "entry_id", "decided_by", "decided_at", "decision_note")
# What rankings order by, and the field of a year row that holds it.
RANKED_BY = {"hours": "centihours", "reports": "verified_reports"}
# Rankings walk down from the top in bands of the measure: [2^k, 2^(k+1)), highest first, then everything below 1.
TOP_BAND = 2 ** 20
FINE_BELOW = 64
BAND_RATIO = 2 ** 0.25


def _patrol(document: dict | None) -> dict | None:
    public = _public(document)
    return None if public is None else domain.parted_patrol(public)


_public = partial(public_document, hidden=HIDDEN_FIELDS)


def _stored(document: dict) -> dict:
    return {"_id": document["id"], **{k: v for k, v in document.items() if k != "id"}}


def _bands_from_the_top() -> Iterator[dict]:
    """Ranges of a measure from the top down: everything from TOP_BAND, then bands a quarter-octave wide (a
    year's hours crowd around their mean, so wide bands would hold most volunteers) down to FINE_BELOW, one
    value at a time below it (small counts such as verified reports tie a lot), then everything under 1."""
    yield {"$gte": TOP_BAND}
    upper = TOP_BAND
    while upper > FINE_BELOW:
        lower = max(FINE_BELOW, math.floor(upper / BAND_RATIO))
        yield {"$gte": lower, "$lt": upper}
        upper = lower
    for value in range(upper - 1, 0, -1):
        yield {"$gte": value, "$lt": value + 1}
    yield {"$lt": 1}


def _year_id(volunteer_id: str, year: int) -> str:
    return f"{volunteer_id}|{year}"


def _day_id(volunteer_id: str, day: date | str) -> str:
    return f"{volunteer_id}|{day if isinstance(day, str) else day.isoformat()}"


class HoursStore:
    def __init__(self, db: Database, rules: ServiceHoursRules, relay: OutboxRelay | None = None):
        self.db = db
        self.rules = rules
        self.relay = relay
        self.volunteers = db["volunteers"]
        self.entries = db["entries"]
        self.patrols = db["patrols"]
        self.days = db["service_days"]
        self.reports = db["reports"]
        # One row per volunteer and year: their figures for rankings and proofs, kept with every entry.
        self.year_totals = db["year_totals"]
        self.years = db["closed_years"]
        self.proofs = db["proofs"]
        self.activities = db["activities"]
        self.spot_checks = db["spot_checks"]
        # One document per closed case and reporter: what counted a verified report.
        self.verified_cases = db["verified_cases"]

    @classmethod
    def prepared(cls, db: Database, rules: ServiceHoursRules, relay: OutboxRelay | None = None) -> HoursStore:
        """The store with its indexes in place; the events it stores go to `relay`, the process's own."""
        store = cls(db, rules, relay)
        store.ensure_indexes()
        return store

    def ensure_indexes(self) -> None:
        """Every query below is an equality prefix and at most one range over one of these."""
        idempotency.ensure_index(self.activities)
        self.activities.create_index([("participants.volunteer_id", ASCENDING), ("starts_at", ASCENDING)])
        self.activities.create_index([("status", ASCENDING), ("publicity_ends", ASCENDING)])
        for prefix in ACTIVITIES_LISTED_BY:
            self.activities.create_index([*((f, ASCENDING) for f in prefix), ("starts_at", DESCENDING)])
        for collection in (self.volunteers, self.entries, self.patrols):
            ensure_outbox_index(collection)
        idempotency.ensure_index(self.volunteers)
        idempotency.ensure_index(self.patrols)
        idempotency.ensure_index(self.entries)
        # Phone and organisation identify a volunteer: a re-imported roster registers nobody twice.
        self.volunteers.create_index("phone_key", unique=True)
        for prefix in VOLUNTEERS_LISTED_BY:
            self.volunteers.create_index([*((f, ASCENDING) for f in prefix), ("registered_at", DESCENDING)])
        # A source credits a volunteer once: a redelivered event or a retried request credits nothing twice.
        self.entries.create_index([("source", ASCENDING), ("source_id", ASCENDING), ("volunteer_id", ASCENDING)],
                                  unique=True)
        self.entries.create_index([("volunteer_id", ASCENDING), ("year", ASCENDING), ("recorded_at", DESCENDING)])
        self.entries.create_index([("year", ASCENDING), ("draw", ASCENDING)])
        idempotency.ensure_index(self.spot_checks)
        for prefix in ((), ("year",)):
            self.spot_checks.create_index([*((f, ASCENDING) for f in prefix), ("created_at", DESCENDING)])
        self.patrols.create_index([("volunteer_id", ASCENDING), ("started_at", ASCENDING)])
        for prefix in PATROLS_LISTED_BY:
            self.patrols.create_index([*((f, ASCENDING) for f in prefix), ("started_at", DESCENDING)])
        self.reports.create_index([("reporter_id", ASCENDING), ("grid_id", ASCENDING), ("submitted_at", ASCENDING)])
        for measure in RANKED_BY.values():
            for prefix in ((), ("organization",), ("grid_id",)):
                self.year_totals.create_index([("year", ASCENDING), *((f, ASCENDING) for f in prefix),
                                               (measure, DESCENDING)])
        self.proofs.create_index([("volunteer_id", ASCENDING), ("year", ASCENDING), ("centihours", ASCENDING)])

    # --- volunteers -------------------------------------------------------------------------------

    def register(self, volunteer: dict, key: str | None, fingerprint: str, event: Event) -> tuple[dict, bool]:
        """Store a new volunteer; the same Idempotency-Key answers with the first; a known phone is a 409."""
        if key is not None and (earlier := self.volunteers.find_one({idempotency.KEY_FIELD: key})) is not None:
            return _replayed(earlier, fingerprint), False
        document = {**_stored(volunteer), "phone_key": domain.phone_key(volunteer["organization"], volunteer["phone"]),
                    "star_level": 0, "version": 0, idempotency.FINGERPRINT_FIELD: fingerprint,
                    **({idempotency.KEY_FIELD: key} if key else {})}
        try:
            self.volunteers.insert_one(with_events(document, event))
        except DuplicateKeyError:
            if key is not None and (earlier := self.volunteers.find_one({idempotency.KEY_FIELD: key})) is not None:
                return _replayed(earlier, fingerprint), False
            known = self.volunteers.find_one({"phone_key": document["phone_key"]}, {"_id": 1})
            raise Conflict(f"This phone number is already registered in {volunteer['organization']}"
                           + (f" as volunteer {known['_id']}." if known else ".")) from None
        publish_after_commit(self.relay, self.volunteers, document["_id"], [event])
        return _public(document), True

    def register_many(self, volunteers: list[tuple[dict, Event]]) -> tuple[list[str], list[int]]:
        """Register a roster's volunteers in batches; returns the new ids and the positions already known."""
        created, known = [], []
        for start in range(0, len(volunteers), IMPORT_BATCH):
            batch = volunteers[start:start + IMPORT_BATCH]
            documents = [with_events({**_stored(v), "phone_key": domain.phone_key(v["organization"], v["phone"]),
                                      "star_level": 0, "version": 0}, event) for v, event in batch]
            duplicates: set[int] = set()
            try:
                self.volunteers.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                for error in exc.details.get("writeErrors", []):
                    if error.get("code") != 11000:
                        raise
                    duplicates.add(error["index"])
            for index, (document, (_, event)) in enumerate(zip(documents, batch, strict=True)):
                if index in duplicates:
                    known.append(start + index)
                else:
                    created.append(document["_id"])
                    publish_after_commit(self.relay, self.volunteers, document["_id"], [event])
        return created, known

    def volunteer(self, volunteer_id: str) -> dict | None:
        return _public(self.volunteers.find_one({"_id": volunteer_id}, {"outbox": 0}))

    def list_volunteers(self, wanted: dict, scope: Scope, after: Position | None, limit: int) -> list[dict]:
        documents = newest_first(self.volunteers, scope.within(wanted), "registered_at", limit, after,
                                 projection={"outbox": 0})
        return [_public(d) for d in documents]

    # --- the ledger -------------------------------------------------------------------------------

    def entry(self, entry_id: str) -> dict | None:
        return _public(self.entries.find_one({"_id": entry_id}, {"outbox": 0}))

    def ledger(self, volunteer_id: str, year: int | None, after: Position | None, limit: int) -> list[dict]:
        wanted = {"volunteer_id": volunteer_id, **({"year": year} if year is not None else {})}
        if year is None:
            # Without a year the (volunteer, year, time) index has no equality on the year; one query a year
            # keeps each an equality prefix and a range.
            filters = [{**wanted, "year": y} for y in self._years_of(volunteer_id)]
        else:
            filters = [wanted]
        return [_public(d) for d in newest_first(self.entries, filters, "recorded_at", limit, after,
                                                 projection={"outbox": 0})]

    def _years_of(self, volunteer_id: str) -> list[int]:
        document = self.volunteers.find_one({"_id": volunteer_id}, {"totals.years": 1}) or {}
        return sorted(int(y) for y in document.get("totals", {}).get("years", {}))

    def record_entry(self, document: dict, key: str | None, fingerprint: str,
                     correlation_id: str | None) -> tuple[dict, bool]:
        """An adjustment: credit it, or answer with the entry its Idempotency-Key already made. The key is the
        entry's own (a unique index), so a key used for one volunteer credits nobody else: the same key with
        another body is a 409."""
        if key is not None and (earlier := self.entries.find_one({idempotency.KEY_FIELD: key})) is not None:
            return _replayed(earlier, fingerprint), False
        document = {**document, idempotency.FINGERPRINT_FIELD: fingerprint,
                    **({idempotency.KEY_FIELD: key} if key else {})}

        def work(session: ClientSession) -> tuple[dict, bool]:
            self._lock_volunteer(document["volunteer_id"], session)
            if self._credit(session, document, correlation_id):
                return _stored(document), True
            return self._entry_of_source(document, session), False

        try:
            stored, created = in_transaction(self.db, work)
        except DuplicateKeyError:
            earlier = self.entries.find_one({idempotency.KEY_FIELD: key}) if key else None
            if earlier is None:
                raise
            return _replayed(earlier, fingerprint), False
        return (_public(stored), True) if created else (_replayed(stored, fingerprint), False)

    def reverse(self, entry_id: str, make_reversal: Callable[[dict], dict], correlation_id: str | None) -> dict:
        """Reverse an entry once: a second request for the same entry is a 409 naming the first reversal. A
        patrol's entry reversed this way is declined in the patrol too (a person decided it)."""
        original = self.entry(entry_id)
        if original is None:
            raise NotFound(f"No ledger entry {entry_id}.")
        reversal = make_reversal(original)

        def work(session: ClientSession) -> dict:
            self._lock_volunteer(original["volunteer_id"], session)
            patrol = self._patrol_in(original["patrol_id"], session) if original.get("patrol_id") else None
            after = domain.credit_reversed(patrol, reversal) if patrol else None
            sessions = (domain.patrol_sessions(after) - domain.patrol_sessions(patrol)) if after else None
            if not self._credit(session, reversal, correlation_id, sessions=sessions):
                earlier = self._entry_of_source(reversal, session)
                raise Conflict(f"Entry {entry_id} was already reversed by entry {earlier['_id']}.")
            if after:
                self._store_patrol(session, patrol, after)
            return reversal

        return in_transaction(self.db, work)

    def _entry_of_source(self, document: dict, session: ClientSession) -> dict:
        return self.entries.find_one({k: document[k] for k in ("source", "source_id", "volunteer_id")},
                                     {"outbox": 0}, session=session)

    def _lock_volunteer(self, volunteer_id: str, session: ClientSession) -> None:
        """The first write of every change to a volunteer's hours: concurrent ones conflict here and rerun."""
        locked = self.volunteers.update_one({"_id": volunteer_id}, {"$inc": {"version": 1}}, session=session)
        if locked.matched_count == 0:
            raise NotFound(f"No volunteer {volunteer_id}.")

    def _credit(self, session: ClientSession, document: dict, correlation_id: str | None,
                waiting_moves: bool = False, sessions: int | None = None) -> bool:
        """Append the entry and add it to the totals, once per source; False when its source already credited.
        `waiting_moves`: its hours move between waiting and credited (a confirmation, evidence taken back), so
        the day already holds them; `sessions`: the sessions of service it adds (by default one, or minus one
        for a reversal)."""
        if self._entry_of_source(document, session) is not None:
            return False
        self._refuse_closed_year(document["year"], session)
        credited = domain.credited_event(document, correlation_id)
        self.entries.insert_one(with_events(_stored(document), credited), session=session)
        publish_after_commit(self.relay, self.entries, document["id"], [credited])
        amount = centihours(document["hours"])
        if sessions is None:
            sessions = -1 if document["kind"] == domain.REVERSAL else 1
        self._add_to_totals(session, document, amount, pending=-amount if waiting_moves else 0, sessions=sessions,
                            correlation_id=correlation_id)
        if domain.counted_kind(document) in DAY_KINDS and not waiting_moves:
            self._add_to_day(session, document["volunteer_id"], document["service_date"], amount)
        return True

    def _add_to_totals(self, session: ClientSession, document: dict, amount: int, pending: int, sessions: int,
                       correlation_id: str | None) -> None:
        """The volunteer's running totals and their year's row (rankings, proofs), in the entry's transaction."""
        volunteer_id, year = document["volunteer_id"], document["year"]
        before = self.volunteers.find_one({"_id": volunteer_id}, {"totals.total": 1, "name": 1, "organization": 1,
                                                                  "grid_id": 1}, session=session)
        before_total = before.get("totals", {}).get("total", 0)
        increments = {"totals.total": amount, f"totals.years.{year}": amount}
        if pending:
            increments["totals.pending"] = pending
        update: dict[str, Any] = {"$inc": increments,
                                  "$set": {"star_level": domain.star_level((before_total + amount) / 100, self.rules)}}
        event = domain.level_changed(volunteer_id, before_total, before_total + amount, self.rules, correlation_id)
        self.volunteers.update_one({"_id": volunteer_id}, push_events(update, event) if event else update,
                                   session=session)
        if event:
            publish_after_commit(self.relay, self.volunteers, volunteer_id, [event])
        kind = domain.counted_kind(document)
        self.year_totals.update_one(
            {"_id": _year_id(volunteer_id, year)},
            {"$inc": {"centihours": amount, f"kinds.{kind}.centihours": amount, f"kinds.{kind}.sessions": sessions},
             "$min": {"first_service": document["service_date"]}, "$max": {"last_service": document["service_date"]},
             "$setOnInsert": {**self._year_row(before, year), "verified_reports": 0}}, upsert=True, session=session)

    @staticmethod
    def _year_row(volunteer: dict, year: int) -> dict:
        return {"volunteer_id": volunteer["_id"], "year": year, "name": volunteer["name"],
                "organization": volunteer["organization"], "grid_id": volunteer["grid_id"]}

    def _year_closed(self, year: int, session: ClientSession | None = None) -> bool:
        return self.years.find_one({"_id": year}, {"_id": 1}, session=session) is not None

    def _refuse_closed_year(self, year: int, session: ClientSession) -> None:
        if self._year_closed(year, session):
            raise Conflict(f"{year} has been closed: its figures are sealed. Record a correction in the current year.")

    def _add_to_day(self, session: ClientSession, volunteer_id: str, day: str, amount: int) -> None:
        self.days.update_one({"_id": _day_id(volunteer_id, day)}, {"$inc": {"centihours": amount}}, upsert=True,
                             session=session)

    def _move_waiting(self, session: ClientSession, volunteer_id: str, day: str, amount: int) -> None:
        """Hours that start (positive) or stop (negative) waiting for a person: the volunteer's pending hours,
        and the day, which holds waiting hours as well as credited ones."""
        self.volunteers.update_one({"_id": volunteer_id}, {"$inc": {"totals.pending": amount}}, session=session)
        self._add_to_day(session, volunteer_id, day, amount)

    # --- patrols ----------------------------------------------------------------------------------

    def patrol(self, patrol_id: str) -> dict | None:
        return _patrol(self.patrols.find_one({"_id": patrol_id}))

    def _patrol_in(self, patrol_id: str, session: ClientSession) -> dict | None:
        return _patrol(self.patrols.find_one({"_id": patrol_id}, session=session))

    def list_patrols(self, wanted: dict, scope: Scope, after: Position | None, limit: int) -> list[dict]:
        return [_patrol(d) for d in newest_first(self.patrols, scope.within(wanted), "started_at", limit, after)]

    def record_patrol(self, claim: PatrolClaim, by_its_grid_leader: bool, recorded_by: str, now: datetime,
                      key: str | None, fingerprint: str, correlation_id: str | None) -> tuple[dict, bool]:
        """Record a patrol: refused if it overlaps the volunteer's other service; what its reports evidence is
        credited at once, within the policy's bound, and the rest waits for a person."""
        if key is not None and (earlier := self.patrols.find_one({idempotency.KEY_FIELD: key})) is not None:
            return domain.parted_patrol(_replayed(earlier, fingerprint)), False

        def work(session: ClientSession) -> dict:
            try:
                self._lock_volunteer(claim.volunteer_id, session)
            except NotFound:
                raise Forbidden("Only a registered volunteer records patrols: ask your association to register "
                                "you.") from None
            domain.refuse_overlap(claim.started_at, claim.ended_at,
                                  self._busy(claim.volunteer_id, claim.started_at, claim.ended_at, session))
            walked = {"volunteer_id": claim.volunteer_id, "grid_id": claim.grid_id, "started_at": claim.started_at,
                      "ended_at": claim.ended_at}
            evidence = [r["_id"] for r in self._reports_during(claim.volunteer_id, claim.grid_id, claim.started_at,
                                                               claim.ended_at, session)
                        if domain.evidences({**r, "id": r["_id"]}, walked)]
            day = self.days.find_one({"_id": _day_id(claim.volunteer_id, claim.service_date)}, session=session)
            patrol, credits = domain.new_patrol(claim, evidence, (day or {}).get("centihours", 0), by_its_grid_leader,
                                                recorded_by, now, self.rules)
            sessions = domain.patrol_sessions(patrol)
            for credit in credits:
                self._claim_report(session, credit["source_id"], patrol["id"])
                self._credit_strictly(session, credit, correlation_id, sessions=sessions)
                sessions = 0
            self._move_waiting(session, claim.volunteer_id, patrol["service_date"], centihours(patrol["waiting_hours"]))
            self.patrols.insert_one({**_stored(patrol), "version": 0, idempotency.FINGERPRINT_FIELD: fingerprint,
                                     **({idempotency.KEY_FIELD: key} if key else {})}, session=session)
            return patrol

        try:
            return in_transaction(self.db, work), True
        except DuplicateKeyError:
            earlier = self.patrols.find_one({idempotency.KEY_FIELD: key}) if key else None
            if earlier is None:
                raise
            return domain.parted_patrol(_replayed(earlier, fingerprint)), False

    def _reports_during(self, reporter_id: str, grid_id: str, start: datetime, end: datetime,
                        session: ClientSession) -> list[dict]:
        """The reporter's reports in the grid submitted from `start` to `end`, oldest first."""
        found = self.reports.find({"reporter_id": reporter_id, "grid_id": grid_id,
                                   "submitted_at": {"$gte": start, "$lte": end}}, session=session)
        return sorted(found, key=lambda r: (r["submitted_at"], r["_id"]))

    def _claim_report(self, session: ClientSession, report_id: str, patrol_id: str) -> None:
        """A report evidences one patrol only: the report names the patrol it evidences, once."""
        claimed = self.reports.update_one({"_id": report_id, "patrol_id": None, "withdrawn": None},
                                          {"$set": {"patrol_id": patrol_id}}, session=session)
        if claimed.modified_count == 0:
            raise Conflict(f"Report {report_id} changed meanwhile; try again.")

    def _credit_strictly(self, session: ClientSession, document: dict, correlation_id: str | None,
                         waiting_moves: bool = False, sessions: int | None = None) -> None:
        """Credit an entry that a patrol's new state needs: its source having credited already means the
        patrol and the ledger disagree, and nothing of the change is stored."""
        if not self._credit(session, document, correlation_id, waiting_moves=waiting_moves, sessions=sessions):
            raise Conflict(f"The ledger already holds {document['source']} {document['source_id']}; try again.")

    def _store_patrol(self, session: ClientSession, before: dict, after: dict) -> None:
        """Write a patrol's new state, unless it was decided meanwhile."""
        changes = {k: after[k] for k in PATROL_STATE}
        written = self.patrols.update_one({"_id": before["id"], "status": before["status"]},
                                          {"$set": changes, "$inc": {"version": 1}}, session=session)
        if written.matched_count == 0:
            raise Conflict(f"Patrol {before['id']} was decided meanwhile.")

    def _busy(self, volunteer_id: str, start: datetime, end: datetime, session: ClientSession,
              except_activity: str | None = None) -> list[dict]:
        """The volunteer's patrols and activities that may overlap [start, end) (none lasts longer than a day)."""
        earliest = start - domain.LONGEST_ACTIVITY
        patrols = self.patrols.find({"volunteer_id": volunteer_id, "started_at": {"$gte": earliest, "$lt": end}},
                                    {"started_at": 1, "ended_at": 1, "status": 1}, session=session)
        busy = [{"what": "patrol", **d} for d in patrols if d["status"] != DECLINED]
        activities = self.activities.find({"participants.volunteer_id": volunteer_id,
                                           "starts_at": {"$gte": earliest, "$lt": end}},
                                          {"starts_at": 1, "ends_at": 1, "participants": 1}, session=session)
        for activity in activities:
            mine = next(p for p in activity["participants"] if p["volunteer_id"] == volunteer_id)
            if activity["_id"] != except_activity and mine["status"] != DECLINED:
                busy.append({"what": "activity", "started_at": activity["starts_at"], "ended_at": activity["ends_at"]})
        return busy

    def decide_patrol(self, patrol_id: str, check: Callable[[dict], None], confirm: bool, by: str, note: str,
                      now: datetime, correlation_id: str | None) -> dict:
        """Confirm (credit) or decline a waiting patrol's time; `check` refuses callers who may not decide it."""
        def work(session: ClientSession) -> dict:
            patrol = self._patrol_in(patrol_id, session)
            if patrol is None:
                raise NotFound(f"No patrol {patrol_id}.")
            check(patrol)
            self._lock_volunteer(patrol["volunteer_id"], session)
            if confirm:
                after, credit = domain.confirmed(patrol, by, note, now, self.rules)
                self._credit_strictly(session, credit, correlation_id, waiting_moves=True,
                                      sessions=domain.patrol_sessions(after) - domain.patrol_sessions(patrol))
            else:
                after, reversals = domain.declined(patrol, by, note, now, self.rules)
                sessions = domain.patrol_sessions(after) - domain.patrol_sessions(patrol)
                for reversal in reversals:
                    self._credit_strictly(session, reversal, correlation_id, sessions=sessions)
                    sessions = 0
                self._move_waiting(session, patrol["volunteer_id"], patrol["service_date"],
                                   -centihours(patrol["waiting_hours"]))
            self._store_patrol(session, patrol, after)
            return after

        return in_transaction(self.db, work)

    # --- activities -------------------------------------------------------------------------------

    def create_activity(self, activity: dict, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        stored, created = idempotency.insert_once(self.activities, {**_stored(activity), "version": 0}, key,
                                                  fingerprint)
        return _public(stored), created

    def activity(self, activity_id: str, session: ClientSession | None = None) -> dict | None:
        return _public(self.activities.find_one({"_id": activity_id}, session=session))

    def list_activities(self, wanted: dict, after: Position | None, limit: int) -> list[dict]:
        return [_public(d) for d in newest_first(self.activities, [wanted], "starts_at", limit, after)]

    def complete_activity(self, activity_id: str, complete: Callable[[dict], dict]) -> dict:
        """Publicise the participants' hours: each waits (pending) until the window ends. Refused as a whole if
        a participant is not registered, was elsewhere at the time, or would pass the day's limit."""
        def work(session: ClientSession) -> dict:
            activity = self.activity(activity_id, session)
            if activity is None:
                raise NotFound(f"No activity {activity_id}.")
            changes = complete(activity)
            unknown = []
            for participant in changes["participants"]:
                try:
                    self._lock_volunteer(participant["volunteer_id"], session)
                except NotFound:
                    unknown.append(participant["volunteer_id"])
            if unknown:
                raise InvalidFields("Participants must be registered volunteers.",
                                    {"participants": [f"not registered: {', '.join(unknown)}"]})
            for participant in changes["participants"]:
                self._publicise(session, activity, changes["service_date"], participant)
            written = self.activities.update_one({"_id": activity_id, "status": domain.PLANNED},
                                                 {"$set": changes, "$inc": {"version": 1}}, session=session)
            if written.matched_count == 0:
                raise Conflict(f"Activity {activity_id} was completed meanwhile.")
            return {**activity, **changes}

        return in_transaction(self.db, work)

    def _publicise(self, session: ClientSession, activity: dict, service_date: str, participant: dict) -> None:
        volunteer_id, amount = participant["volunteer_id"], centihours(participant["hours"])
        domain.refuse_overlap(activity["starts_at"], activity["ends_at"],
                              self._busy(volunteer_id, activity["starts_at"], activity["ends_at"], session,
                                         except_activity=activity["id"]), who=volunteer_id)
        day = self.days.find_one({"_id": _day_id(volunteer_id, service_date)}, session=session)
        domain.refuse_over_daily_limit((day or {}).get("centihours", 0), participant["hours"], self.rules,
                                       volunteer_id)
        self.volunteers.update_one({"_id": volunteer_id}, {"$inc": {"totals.pending": amount}}, session=session)
        self._add_to_day(session, volunteer_id, service_date, amount)

    def raise_objection(self, activity_id: str, make: Callable[[dict], dict]) -> dict:
        def attempt() -> dict:
            stored = self.activities.find_one({"_id": activity_id})
            if stored is None:
                raise NotFound(f"No activity {activity_id}.")
            objection = make(_public(stored))
            written = self.activities.update_one(
                {"_id": activity_id, "version": stored["version"]},
                {"$push": {"objections": objection}, "$inc": {"version": 1},
                 "$set": {"participants.$[held].status": domain.HELD}},
                array_filters=[{"held.volunteer_id": objection["volunteer_id"]}])
            if written.matched_count == 0:
                raise LostRace(activity_id)
            return objection

        return optimistically(attempt, f"Activity {activity_id}")

    def decide_objection(self, activity_id: str, objection_id: str, upheld: bool, by: str, note: str,
                         now: datetime) -> dict:
        """Upheld: the participant's hours are declined. Dismissed: they are publicised again, and credited
        with the others once the window is over."""
        def work(session: ClientSession) -> dict:
            stored = self.activities.find_one({"_id": activity_id}, session=session)
            activity = _public(stored)
            objection = next((o for o in (activity or {}).get("objections", []) if o["id"] == objection_id), None)
            if activity is None or objection is None:
                raise NotFound(f"No objection {objection_id} to activity {activity_id}.")
            if objection["status"] != domain.OPEN:
                raise Conflict(f"This objection was {objection['status']} already.")
            participant = next(p for p in activity["participants"] if p["volunteer_id"] == objection["volunteer_id"])
            if upheld:
                amount = centihours(participant["hours"])
                self._lock_volunteer(participant["volunteer_id"], session)
                self.volunteers.update_one({"_id": participant["volunteer_id"]}, {"$inc": {"totals.pending": -amount}},
                                           session=session)
                self._add_to_day(session, participant["volunteer_id"], activity["service_date"], -amount)
            decided = {**objection, "status": domain.UPHELD if upheld else domain.DISMISSED, "decided_by": by,
                       "decided_at": now, "note": note}
            written = self.activities.update_one(
                {"_id": activity_id, "version": stored["version"]},
                {"$set": {"objections.$[o]": decided,
                          "participants.$[p].status": DECLINED if upheld else domain.PUBLICISED},
                 "$inc": {"version": 1}},
                array_filters=[{"o.id": objection_id}, {"p.volunteer_id": objection["volunteer_id"]}],
                session=session)
            if written.matched_count == 0:
                raise Conflict(f"Activity {activity_id} changed meanwhile; try again.")
            return decided

        return in_transaction(self.db, work)

    def due_activities(self, today: date) -> list[dict]:
        """Activities whose publicity window ended before `today` and that still hold publicised hours."""
        return [_public(d) for d in self.activities.find({"status": domain.PUBLICISED,
                                                          "publicity_ends": {"$lt": today.isoformat()}})]

    def confirm_participant(self, activity_id: str, volunteer_id: str, now: datetime,
                            correlation_id: str | None) -> bool:
        """Credit one participant's publicised hours; True when this call credited them."""
        def work(session: ClientSession) -> bool:
            activity = self.activity(activity_id, session)
            participant = next((p for p in activity["participants"] if p["volunteer_id"] == volunteer_id), None)
            if participant is None or participant["status"] != domain.PUBLICISED:
                return False
            self._lock_volunteer(volunteer_id, session)
            document = domain.participant_credit(activity, participant, now, self.rules)
            self._credit(session, document, correlation_id, waiting_moves=True)
            settled = all(p["status"] in (CREDITED, DECLINED) for p in activity["participants"]
                          if p["volunteer_id"] != volunteer_id)
            self.activities.update_one(
                {"_id": activity_id},
                {"$set": {"participants.$[p].status": CREDITED, "participants.$[p].entry_id": document["id"],
                          **({"status": domain.CONFIRMED, "confirmed_at": now} if settled else {})},
                 "$inc": {"version": 1}},
                array_filters=[{"p.volunteer_id": volunteer_id}], session=session)
            return True

        return in_transaction(self.db, work)

    def settle_declined(self, activity_id: str, now: datetime) -> None:
        """An activity whose every participant is credited or declined is confirmed."""
        activity = self.activity(activity_id)
        if activity and all(p["status"] in (CREDITED, DECLINED) for p in activity["participants"]):
            self.activities.update_one({"_id": activity_id, "status": domain.PUBLICISED},
                                       {"$set": {"status": domain.CONFIRMED, "confirmed_at": now}})

    # --- spot checks ------------------------------------------------------------------------------

    def sample(self, year: int, size: int, seed: int) -> list[dict]:
        """Up to `size` credit entries of the year, drawn reproducibly: for each point the seed gives, the entry
        whose draw comes first at or after it (wrapping round). Each lookup is the year and one range over an
        index, widened until it holds an entry, so a sample costs what it draws, not what the year holds."""
        chosen: dict[str, dict] = {}
        points = domain.sample_points(seed)
        misses = 0
        while len(chosen) < size and misses < size * 4:
            found = self._first_credit_from(year, next(points), set(chosen))
            if found is None:
                break  # the year holds no credit entry, or every one is chosen already
            if found["_id"] in chosen:
                misses += 1
                continue
            chosen[found["_id"]] = found
        return [domain.checked_item(_public(d)) for d in chosen.values()]

    def _first_credit_from(self, year: int, point: int, taken: set[str]) -> dict | None:
        width, start, wrapped = 4096, point, False
        while True:
            end = min(start + width, domain.DRAWS)
            window = sorted(self.entries.find({"year": year, "draw": {"$gte": start, "$lt": end}}, {"outbox": 0}),
                            key=lambda d: (d["draw"], d["_id"]))
            for document in window:
                if document["kind"] != domain.REVERSAL and document["_id"] not in taken:
                    return document
            if end == domain.DRAWS:
                if wrapped:
                    return None
                start, wrapped = 0, True
            else:
                start = end
            if wrapped and start >= point:
                return None
            width *= 2

    def create_spot_check(self, check: dict, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        stored, created = idempotency.insert_once(self.spot_checks, {**_stored(check), "version": 0}, key,
                                                  fingerprint)
        return _public(stored), created

    def spot_check(self, check_id: str) -> dict | None:
        return _public(self.spot_checks.find_one({"_id": check_id}))

    def list_spot_checks(self, year: int | None, after: Position | None, limit: int) -> list[dict]:
        """Every check drawn (of `year`), newest first: a redraw stays visible to anyone auditing."""
        wanted = {} if year is None else {"year": year}
        return [_public(d) for d in newest_first(self.spot_checks, [wanted], "created_at", limit, after)]

    def record_result(self, check_id: str, entry_id: str, result: dict) -> bool:
        """Record one entry's result unless it has one; False when it had (or is not in the check)."""
        written = self.spot_checks.update_one(
            {"_id": check_id, "items": {"$elemMatch": {"entry_id": entry_id, "result": None}}},
            {"$set": {**{f"items.$[i].{k}": v for k, v in result.items()}}, "$inc": {"version": 1}},
            array_filters=[{"i.entry_id": entry_id}])
        return written.matched_count == 1

    # --- reminders --------------------------------------------------------------------------------

    def reminders_done(self, week: str) -> bool:
        return self.db["reminder_weeks"].find_one({"_id": week}, {"_id": 1}) is not None

    def remind(self, week: str, year: int, minimum: int, reminders: list[tuple[str, Event]]) -> int:
        """Mark each volunteer reminded in `week`, with its event, unless another process reminded them or their
        year's hours reached `minimum` meanwhile (the conditions again, in the write); returns how many this
        call reminded."""
        year_field = f"totals.years.{year}"
        written = self.volunteers.bulk_write([
            UpdateOne({"_id": volunteer_id, "reminded_week": {"$ne": week}, year_field: {"$not": {"$gte": minimum}}},
                      push_events({"$set": {"reminded_week": week}}, event))
            for volunteer_id, event in reminders], ordered=False)
        if written.modified_count:
            # Which conditional writes took: the documents that now hold their event.
            sent = {event.id: (volunteer_id, event) for volunteer_id, event in reminders}
            for document in self.volunteers.find({"_id": {"$in": [v for v, _ in reminders]},
                                                  "outbox.id": {"$in": list(sent)}}, {"outbox.id": 1}):
                for volunteer_id, event in (sent[e["id"]] for e in document["outbox"] if e["id"] in sent):
                    publish_after_commit(self.relay, self.volunteers, volunteer_id, [event])
        return written.modified_count

    def record_reminders_done(self, week: str, at: datetime) -> None:
        self.db["reminder_weeks"].update_one({"_id": week}, {"$setOnInsert": {"done_at": at}}, upsert=True)

    # --- years, rankings and proofs ---------------------------------------------------------------

    def year_row(self, volunteer_id: str, year: int) -> dict | None:
        return self.year_totals.find_one({"_id": _year_id(volunteer_id, year)})

    def ranking(self, year: int, by: str, wanted: dict, limit: int | None) -> list[dict]:
        """The year's rows highest first by `by` (ties by volunteer id), at most `limit` (None: all of them).

        The rows are read in bands of the measure from the top down, each an equality prefix and one range
        over an index: a store that reads a whole index range before it limits reads little more than the
        rows it returns."""
        field = RANKED_BY[by]
        found: list[dict] = []
        for band in _bands_from_the_top():
            rows = list(self.year_totals.find({"year": year, **wanted, field: band}))
            found.extend(sorted(rows, key=lambda r: (-r[field], r["volunteer_id"])))
            if limit is not None and len(found) >= limit:
                break
        return found if limit is None else found[:limit]

    def closed_year(self, year: int) -> dict | None:
        return self.years.find_one({"_id": year})

    def close_year(self, year: int, span: tuple[datetime, datetime], by: str, at: datetime) -> dict:
        """Seal the year: nothing is credited into it any more, what still waits in it is declined (the policy's
        year-close rule), and each volunteer's figures are kept as sealed. A close that stopped halfway (the
        process died) is finished by the next request to close."""
        try:
            self.years.insert_one({"_id": year, "closed_at": at, "closed_by": by, "complete": False})
        except DuplicateKeyError:
            earlier = self.years.find_one({"_id": year})
            if earlier.get("complete", True):
                raise Conflict(f"{year} is already closed.") from None
            at, by = earlier["closed_at"], earlier["closed_by"]
        patrols, participants = self._decline_waiting(span, at)
        sealed = self.year_totals.update_many(
            {"year": year}, [{"$set": {"sealed_centihours": "$centihours",
                                       "sealed_verified_reports": "$verified_reports"}}])
        figures = {"volunteers": sealed.matched_count, "declined_patrols": patrols,
                   "declined_participants": participants}
        self.years.update_one({"_id": year}, {"$set": {**figures, "complete": True}})
        return {"year": year, "closed_at": at, "closed_by": by, **figures}

    def _decline_waiting(self, span: tuple[datetime, datetime], at: datetime) -> tuple[int, int]:
        """Decline every patrol's time still waiting, and every activity's hours still publicised or held, that
        started within `span`; returns how many patrols and participants were declined."""
        start, end = span
        patrols = participants = 0
        for status in domain.WAITING:
            for found in self.patrols.find({"status": status, "started_at": {"$gte": start, "$lt": end}}, {"_id": 1}):
                patrols += self._close_patrol(found["_id"], at)
        for found in self.activities.find({"status": domain.PUBLICISED, "starts_at": {"$gte": start, "$lt": end}},
                                          {"_id": 1}):
            participants += self._close_activity(found["_id"], at)
        return patrols, participants

    def _close_patrol(self, patrol_id: str, at: datetime) -> int:
        def work(session: ClientSession) -> int:
            patrol = self._patrol_in(patrol_id, session)
            if patrol is None or patrol["status"] not in domain.WAITING:
                return 0
            self._lock_volunteer(patrol["volunteer_id"], session)
            self._move_waiting(session, patrol["volunteer_id"], patrol["service_date"],
                               -centihours(patrol["waiting_hours"]))
            self._store_patrol(session, patrol, domain.closed_with_its_year(patrol, at))
            return 1

        return in_transaction(self.db, work)

    def _close_activity(self, activity_id: str, at: datetime) -> int:
        def work(session: ClientSession) -> int:
            stored = self.activities.find_one({"_id": activity_id}, session=session)
            if stored is None or stored["status"] != domain.PUBLICISED:
                return 0
            activity = _public(stored)
            changes, released = domain.activity_closed_with_its_year(activity, at)
            for volunteer_id, hours in released:
                self._lock_volunteer(volunteer_id, session)
                self._move_waiting(session, volunteer_id, activity["service_date"], -centihours(hours))
            written = self.activities.update_one({"_id": activity_id, "version": stored["version"]},
                                                 {"$set": changes, "$inc": {"version": 1}}, session=session)
            if written.matched_count == 0:
                raise Conflict(f"Activity {activity_id} changed meanwhile; close the year again.")
            return len(released)

        return in_transaction(self.db, work)

    def proof_for(self, volunteer_id: str, year: int, centihours: int, issue: Callable[[int], dict]) -> dict:
        """The proof already issued for these figures, or a new one numbered in the year's sequence."""
        existing = self.proofs.find_one({"volunteer_id": volunteer_id, "year": year, "centihours": centihours})
        if existing is not None:
            return {"code": existing["_id"], **_without_id(existing)}
        # A tiny collection of counters: find_one_and_update's scan costs nothing here.
        counter = self.db["counters"].find_one_and_update({"_id": f"proofs-{year}"}, {"$inc": {"next": 1}},
                                                          upsert=True, return_document=True)
        proof = issue(counter["next"])
        self.proofs.insert_one({"_id": proof["code"], **{k: v for k, v in proof.items() if k != "code"}})
        return proof

    def proof_pdf(self, code: str, verify_url: str) -> bytes | None:
        """The PDF kept for this proof, if it was rendered with this verification link."""
        found = self.db["proof_pdfs"].find_one({"_id": code, "verify_url": verify_url})
        return found["pdf"] if found else None

    def keep_proof_pdf(self, code: str, verify_url: str, pdf: bytes) -> None:
        """Keep a proof's PDF (tens of kilobytes) apart from its record, which the public check reads."""
        self.db["proof_pdfs"].replace_one({"_id": code}, {"verify_url": verify_url, "pdf": pdf}, upsert=True)

    def proof(self, code: str) -> dict | None:
        found = self.proofs.find_one({"_id": code})
        return {"code": found["_id"], **_without_id(found)} if found else None

    # --- what hours hears -------------------------------------------------------------------------

    def reports_submitted(self, reports: list[tuple[dict, str | None]]) -> None:
        """Remember the reports (each once), and credit the waiting patrols they evidence (a report's event may
        arrive after its patrol was recorded). `reports`: each report with its event's correlation id."""
        self.reports.bulk_write([UpdateOne({"_id": report["id"]}, {"$setOnInsert": {
            "reporter_id": report["reporter_id"], "grid_id": report["grid_id"], "submitted_at": report["submitted_at"],
            "year": report["year"]}}, upsert=True) for report, _ in reports], ordered=False)
        longest = timedelta(hours=self.rules.patrol_longest_hours)
        # One read for the whole batch: the patrols of its reporters over the span of its reports (seconds, as a
        # rule; an old event swept up late widens it to days of those few volunteers' patrols, still few).
        candidates = [_patrol(found) for found in self.patrols.find({
            "volunteer_id": {"$in": sorted({report["reporter_id"] for report, _ in reports})},
            "started_at": {"$gte": min(report["submitted_at"] for report, _ in reports) - longest,
                           "$lte": max(report["submitted_at"] for report, _ in reports)}})]
        for report, correlation_id in reports:
            for patrol in candidates:
                if patrol["status"] in domain.WAITING and domain.evidences(report, patrol):
                    try:
                        self._evidence_patrol(patrol["id"], report["id"], correlation_id)
                    except Conflict as refused:  # e.g. its year closed: the patrol stays waiting for a person
                        log.warning("evidence not credited", extra={"patrol_id": patrol["id"],
                                                                    "reason": refused.detail})

    def _evidence_patrol(self, patrol_id: str, report_id: str, correlation_id: str | None) -> None:
        def work(session: ClientSession) -> None:
            patrol = self._patrol_in(patrol_id, session)
            report = self.reports.find_one({"_id": report_id}, session=session)
            if patrol is None or report is None or not domain.evidences(report, patrol):
                return  # the report evidences another patrol already, or was withdrawn meanwhile
            evidenced = domain.with_evidence(patrol, report_id, utcnow(), self.rules)
            if evidenced is None:
                return  # nothing of it waits for evidence: decided meanwhile, or beyond the daily cap
            self._lock_volunteer(patrol["volunteer_id"], session)
            after, credit = evidenced
            self._claim_report(session, report_id, patrol_id)
            self._credit_strictly(session, credit, correlation_id, waiting_moves=True,
                                  sessions=domain.patrol_sessions(after) - domain.patrol_sessions(patrol))
            self._store_patrol(session, patrol, after)

        in_transaction(self.db, work)

    def withdraw_report(self, report_id: str, why: str, now: datetime, correlation_id: str | None) -> bool:
        """The report is withdrawn as evidence (its case rejected, or a duplicate of its reporter's own): it
        evidences nothing from now on, and what it credited at once is taken back, its time waiting for a
        person again. Once per report: a redelivered event changes nothing. False: the report is not known yet."""
        def work(session: ClientSession) -> bool:
            report = self.reports.find_one({"_id": report_id}, session=session)
            if report is None:
                return False
            if report.get("withdrawn") is not None:
                return True
            with contextlib.suppress(NotFound):  # not a registered volunteer: nothing of theirs was credited
                self._lock_volunteer(report["reporter_id"], session)
            self.reports.update_one({"_id": report_id}, {"$set": {"withdrawn": {"reason": why, "at": now}}},
                                    session=session)
            patrol = self._patrol_in(report["patrol_id"], session) if report.get("patrol_id") else None
            taken = domain.evidence_withdrawn(patrol, report_id, why, now, self.rules) if patrol else None
            if taken is None:
                return True
            after, reversal = taken
            if self._year_closed(reversal["year"], session):
                log.info("evidence withdrawn in a closed year: its credit stays sealed",
                         extra={"report_id": report_id, "patrol_id": patrol["id"]})
                return True
            self._credit_strictly(session, reversal, correlation_id, waiting_moves=True,
                                  sessions=domain.patrol_sessions(after) - domain.patrol_sessions(patrol))
            self._store_patrol(session, patrol, after)
            return True

        return in_transaction(self.db, work)

    def reports_of(self, report_ids: list[str]) -> dict[str, dict]:
        """The reports hours has heard of, by id: who reported them, when."""
        return {found["_id"]: {**found, "id": found["_id"]} for found in self.reports.find(
            {"_id": {"$in": report_ids}}, {"reporter_id": 1, "submitted_at": 1, "year": 1})}

    def count_verified(self, case_id: str, reporter_id: str, year: int) -> None:
        """One verified report for the reporter of a closed case, once per case and reporter: the first write
        is the (case, reporter) key, so a redelivered case.closed, or a case closed again, counts nothing twice."""
        def work(session: ClientSession) -> None:
            self.verified_cases.insert_one({"_id": f"{case_id}|{reporter_id}", "case_id": case_id,
                                            "reporter_id": reporter_id, "year": year}, session=session)
            reporter = self.volunteers.find_one({"_id": reporter_id}, {"name": 1, "organization": 1, "grid_id": 1},
                                                session=session)
            if reporter is None:
                return  # reported by someone who is not a registered volunteer
            self.volunteers.update_one({"_id": reporter_id},
                                       {"$inc": {"totals.verified_reports": 1,
                                                 f"totals.verified_reports_years.{year}": 1}}, session=session)
            self.year_totals.update_one({"_id": _year_id(reporter_id, year)},
                                        {"$inc": {"verified_reports": 1},
                                         "$setOnInsert": {**self._year_row(reporter, year), "centihours": 0}},
                                        upsert=True, session=session)

        with contextlib.suppress(DuplicateKeyError):  # counted before
            in_transaction(self.db, work)


def _without_id(document: dict) -> dict:
    return {k: v for k, v in document.items() if k != "_id"}


def _replayed(earlier: dict, fingerprint: str) -> dict:
    if earlier.get(idempotency.FINGERPRINT_FIELD) != fingerprint:
        raise IdempotencyConflict("This Idempotency-Key was already used with a different request.")
    return _public(earlier)
