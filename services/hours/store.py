"""Hours' collections, indexes, queries and writes: volunteers (with their running totals), the ledger's
entries, patrols, activities, each volunteer's service per day, spot checks, years, proofs and the reports
hours has heard of. No rules and no events are made here: the use cases (usecases/) decide with the domain,
and hand the store what to write with its events.

Every change to a volunteer's hours is one transaction (`HoursStore.transaction`) whose use case starts by
writing the volunteer's document (`lock_volunteer`): two changes for one volunteer (a patrol recorded twice
at once, a credit racing a reversal) serialize there, so overlaps and daily caps are checked against
everything already recorded, and the running totals always equal the sum of the ledger.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime
from functools import partial
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import idempotency
from shared.errors import Conflict, IdempotencyConflict
from shared.events import Event
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
from shared.store import in_transaction, public_document

from . import domain
from .domain import DECLINED

T = TypeVar("T")
HIDDEN_FIELDS = ("_id", "version", "phone_key", idempotency.KEY_FIELD, idempotency.FINGERPRINT_FIELD, *OUTBOX_FIELDS)
VOLUNTEERS_LISTED_BY = ((), ("organization",), ("grid_id",), ("star_level",), ("organization", "grid_id"),
                        ("grid_id", "star_level"), ("organization", "star_level"))
PATROLS_LISTED_BY = ((), ("volunteer_id",), ("grid_id",), ("status",), ("volunteer_id", "status"),
                     ("grid_id", "status"), ("volunteer_id", "grid_id"))
ACTIVITIES_LISTED_BY = ((), ("status",), ("grid_id",), ("grid_id", "status"))
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

    def transaction(self, work: Callable[[HoursTransaction], T]) -> T:
        """Run `work` as one transaction; the driver may run it again from the start, so `work` reads what it
        decides on through the transaction it is given."""
        return in_transaction(self.db, lambda session: work(HoursTransaction(self, session)))

    def idempotently(self, collection: str, key: str | None, fingerprint: str,
                     work: Callable[[HoursTransaction], T]) -> tuple[T | dict, bool]:
        """Run `work` in a transaction unless `key` made a document of `collection` already: then that
        document, as the API shows it (another body with the same key is a 409), and False."""
        documents = self.db[collection]
        if key is not None and (earlier := documents.find_one({idempotency.KEY_FIELD: key})) is not None:
            return replayed(earlier, fingerprint), False
        try:
            return self.transaction(work), True
        except DuplicateKeyError:
            earlier = documents.find_one({idempotency.KEY_FIELD: key}) if key else None
            if earlier is None:
                raise
            return replayed(earlier, fingerprint), False

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
            return replayed(earlier, fingerprint), False
        document = {**_stored(volunteer), "phone_key": domain.phone_key(volunteer["organization"], volunteer["phone"]),
                    "star_level": 0, "version": 0, idempotency.FINGERPRINT_FIELD: fingerprint,
                    **({idempotency.KEY_FIELD: key} if key else {})}
        try:
            self.volunteers.insert_one(with_events(document, event))
        except DuplicateKeyError:
            if key is not None and (earlier := self.volunteers.find_one({idempotency.KEY_FIELD: key})) is not None:
                return replayed(earlier, fingerprint), False
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

    # --- patrols ----------------------------------------------------------------------------------

    def patrol(self, patrol_id: str) -> dict | None:
        return _patrol(self.patrols.find_one({"_id": patrol_id}))

    def list_patrols(self, wanted: dict, scope: Scope, after: Position | None, limit: int) -> list[dict]:
        return [_patrol(d) for d in newest_first(self.patrols, scope.within(wanted), "started_at", limit, after)]

    # --- activities -------------------------------------------------------------------------------

    def create_activity(self, activity: dict, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        stored, created = idempotency.insert_once(self.activities, {**_stored(activity), "version": 0}, key,
                                                  fingerprint)
        return _public(stored), created

    def activity(self, activity_id: str) -> dict | None:
        return _public(self.activities.find_one({"_id": activity_id}))

    def list_activities(self, wanted: dict, after: Position | None, limit: int) -> list[dict]:
        return [_public(d) for d in newest_first(self.activities, [wanted], "starts_at", limit, after)]

    def activity_and_version(self, activity_id: str) -> tuple[dict | None, int]:
        found = self.activities.find_one({"_id": activity_id})
        return (_public(found), found["version"]) if found else (None, -1)

    def add_objection(self, activity_id: str, version: int, objection: dict) -> bool:
        """Hold the participant's hours with the objection, unless the activity changed since `version`."""
        written = self.activities.update_one(
            {"_id": activity_id, "version": version},
            {"$push": {"objections": objection}, "$inc": {"version": 1},
             "$set": {"participants.$[held].status": domain.HELD}},
            array_filters=[{"held.volunteer_id": objection["volunteer_id"]}])
        return written.matched_count == 1

    def confirm_activity(self, activity_id: str, now: datetime) -> None:
        """A publicised activity whose every participant is settled is confirmed."""
        self.activities.update_one({"_id": activity_id, "status": domain.PUBLICISED},
                                   {"$set": {"status": domain.CONFIRMED, "confirmed_at": now}})

    def due_activities(self, today: date) -> list[dict]:
        """Activities whose publicity window ended before `today` and that still hold publicised hours."""
        return [_public(d) for d in self.activities.find({"status": domain.PUBLICISED,
                                                          "publicity_ends": {"$lt": today.isoformat()}})]

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

    def begin_year_close(self, year: int, by: str, at: datetime) -> dict:
        """The year's close record: a new one, or the one a close before began (`complete` says whether it
        finished)."""
        try:
            self.years.insert_one({"_id": year, "closed_at": at, "closed_by": by, "complete": False})
        except DuplicateKeyError:
            return {"complete": True, **self.years.find_one({"_id": year})}
        return {"_id": year, "closed_at": at, "closed_by": by, "complete": False}

    def waiting_patrol_ids(self, span: tuple[datetime, datetime]) -> list[str]:
        """The patrols started within `span` whose time still waits for a person."""
        start, end = span
        return [found["_id"] for status in domain.WAITING
                for found in self.patrols.find({"status": status, "started_at": {"$gte": start, "$lt": end}},
                                               {"_id": 1})]

    def publicised_activity_ids(self, span: tuple[datetime, datetime]) -> list[str]:
        """The activities started within `span` that still hold publicised (or held) hours."""
        start, end = span
        return [found["_id"] for found in self.activities.find(
            {"status": domain.PUBLICISED, "starts_at": {"$gte": start, "$lt": end}}, {"_id": 1})]

    def seal_year(self, year: int) -> int:
        """Keep each volunteer's figures of the year as sealed; returns how many volunteers served in it."""
        sealed = self.year_totals.update_many(
            {"year": year}, [{"$set": {"sealed_centihours": "$centihours",
                                       "sealed_verified_reports": "$verified_reports"}}])
        return sealed.matched_count

    def finish_year_close(self, year: int, figures: dict) -> None:
        self.years.update_one({"_id": year}, {"$set": {**figures, "complete": True}})

    def issued_proof(self, volunteer_id: str, year: int, centihours: int) -> dict | None:
        """The proof already issued for these figures."""
        existing = self.proofs.find_one({"volunteer_id": volunteer_id, "year": year, "centihours": centihours})
        return {"code": existing["_id"], **_without_id(existing)} if existing else None

    def next_proof_number(self, year: int) -> int:
        """The next number in the year's sequence of proofs."""
        # A tiny collection of counters: find_one_and_update's scan costs nothing here.
        counter = self.db["counters"].find_one_and_update({"_id": f"proofs-{year}"}, {"$inc": {"next": 1}},
                                                          upsert=True, return_document=True)
        return counter["next"]

    def keep_proof(self, proof: dict) -> None:
        self.proofs.insert_one({"_id": proof["code"], **{k: v for k, v in proof.items() if k != "code"}})

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

    def remember_reports(self, reports: list[dict]) -> None:
        """Remember the reports hours heard of, each once."""
        self.reports.bulk_write([UpdateOne({"_id": report["id"]}, {"$setOnInsert": {
            "reporter_id": report["reporter_id"], "grid_id": report["grid_id"], "submitted_at": report["submitted_at"],
            "year": report["year"]}}, upsert=True) for report in reports], ordered=False)

    def patrols_of_reporters(self, reporter_ids: list[str], start: datetime, end: datetime) -> list[dict]:
        """The patrols of these volunteers that started from `start` to `end`."""
        return [_patrol(found) for found in self.patrols.find({
            "volunteer_id": {"$in": sorted(reporter_ids)}, "started_at": {"$gte": start, "$lte": end}})]

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
                                         "$setOnInsert": {**_year_row({**reporter, "id": reporter_id}, year),
                                                          "centihours": 0}},
                                        upsert=True, session=session)

        with contextlib.suppress(DuplicateKeyError):  # counted before
            in_transaction(self.db, work)


class HoursTransaction:
    """What a use case reads and writes within one of the store's transactions: every read goes through the
    transaction's session, so what it decides on is what it writes against."""

    def __init__(self, store: HoursStore, session: ClientSession):
        self.store = store
        self.session = session

    # --- volunteers and the ledger -------------------------------------------------------------

    def lock_volunteer(self, volunteer_id: str) -> bool:
        """The first write of every change to a volunteer's hours: concurrent ones conflict here and rerun.
        False: no such volunteer."""
        locked = self.store.volunteers.update_one({"_id": volunteer_id}, {"$inc": {"version": 1}},
                                                  session=self.session)
        return locked.matched_count == 1

    def volunteer_totals(self, volunteer_id: str) -> dict:
        """A volunteer's running total (centihours) and what their year rows name."""
        found = self.store.volunteers.find_one({"_id": volunteer_id}, {"totals.total": 1, "name": 1,
                                                                      "organization": 1, "grid_id": 1},
                                               session=self.session)
        return {"id": found["_id"], "total": found.get("totals", {}).get("total", 0),
                **{k: found[k] for k in ("name", "organization", "grid_id")}}

    def year_closed(self, year: int) -> bool:
        return self.store.years.find_one({"_id": year}, {"_id": 1}, session=self.session) is not None

    def entry(self, entry_id: str) -> dict | None:
        return _public(self.store.entries.find_one({"_id": entry_id}, {"outbox": 0}, session=self.session))

    def entry_of_source(self, document: dict) -> dict | None:
        """The entry its source credited already, as stored (its Idempotency-Key's fingerprint included)."""
        return self.store.entries.find_one({k: document[k] for k in ("source", "source_id", "volunteer_id")},
                                           {"outbox": 0}, session=self.session)

    def post(self, posting: domain.Posting, volunteer: dict, key: str | None = None,
             fingerprint: str | None = None) -> None:
        """Append the entry with its event, add it to the volunteer's running totals (with their level and its
        event), to their year's row (rankings, proofs), and to its day when it fills one."""
        document, amount = posting.entry, posting.centihours
        store, session = self.store, self.session
        stored = {**_stored(document), **({idempotency.FINGERPRINT_FIELD: fingerprint} if fingerprint else {}),
                  **({idempotency.KEY_FIELD: key} if key else {})}
        store.entries.insert_one(with_events(stored, posting.credited), session=session)
        publish_after_commit(store.relay, store.entries, document["id"], [posting.credited])
        volunteer_id, year = document["volunteer_id"], document["year"]
        increments = {"totals.total": amount, f"totals.years.{year}": amount}
        if posting.pending:
            increments["totals.pending"] = posting.pending
        update: dict[str, Any] = {"$inc": increments, "$set": {"star_level": posting.star_level}}
        events = [posting.level_changed] if posting.level_changed else []
        store.volunteers.update_one({"_id": volunteer_id}, push_events(update, *events), session=session)
        if events:
            publish_after_commit(store.relay, store.volunteers, volunteer_id, events)
        kind = domain.counted_kind(document)
        store.year_totals.update_one(
            {"_id": _year_id(volunteer_id, year)},
            {"$inc": {"centihours": amount, f"kinds.{kind}.centihours": amount,
                      f"kinds.{kind}.sessions": posting.sessions},
             "$min": {"first_service": document["service_date"]}, "$max": {"last_service": document["service_date"]},
             "$setOnInsert": {**_year_row(volunteer, year), "verified_reports": 0}}, upsert=True, session=session)
        if posting.fills_day:
            self.add_to_day(volunteer_id, document["service_date"], amount)

    def day_centihours(self, volunteer_id: str, day: str) -> int:
        """What the volunteer's day holds already, credited or waiting."""
        found = self.store.days.find_one({"_id": _day_id(volunteer_id, day)}, session=self.session)
        return (found or {}).get("centihours", 0)

    def add_to_day(self, volunteer_id: str, day: str, amount: int) -> None:
        self.store.days.update_one({"_id": _day_id(volunteer_id, day)}, {"$inc": {"centihours": amount}},
                                   upsert=True, session=self.session)

    def move_waiting(self, volunteer_id: str, day: str, amount: int) -> None:
        """Hours that start (positive) or stop (negative) waiting for a person: the volunteer's pending hours,
        and the day, which holds waiting hours as well as credited ones."""
        self.store.volunteers.update_one({"_id": volunteer_id}, {"$inc": {"totals.pending": amount}},
                                         session=self.session)
        self.add_to_day(volunteer_id, day, amount)

    def busy(self, volunteer_id: str, start: datetime, end: datetime,
             except_activity: str | None = None) -> list[dict]:
        """The volunteer's patrols and activities that may overlap [start, end) (none lasts longer than a day)."""
        earliest = start - domain.LONGEST_ACTIVITY
        patrols = self.store.patrols.find({"volunteer_id": volunteer_id, "started_at": {"$gte": earliest, "$lt": end}},
                                          {"started_at": 1, "ended_at": 1, "status": 1}, session=self.session)
        busy = [{"what": "patrol", **d} for d in patrols if d["status"] != DECLINED]
        activities = self.store.activities.find({"participants.volunteer_id": volunteer_id,
                                                 "starts_at": {"$gte": earliest, "$lt": end}},
                                                {"starts_at": 1, "ends_at": 1, "participants": 1},
                                                session=self.session)
        for activity in activities:
            mine = next(p for p in activity["participants"] if p["volunteer_id"] == volunteer_id)
            if activity["_id"] != except_activity and mine["status"] != DECLINED:
                busy.append({"what": "activity", "started_at": activity["starts_at"], "ended_at": activity["ends_at"]})
        return busy

    # --- patrols and the reports that evidence them --------------------------------------------

    def patrol(self, patrol_id: str) -> dict | None:
        return _patrol(self.store.patrols.find_one({"_id": patrol_id}, session=self.session))

    def insert_patrol(self, patrol: dict, key: str | None, fingerprint: str) -> None:
        self.store.patrols.insert_one({**_stored(patrol), "version": 0, idempotency.FINGERPRINT_FIELD: fingerprint,
                                       **({idempotency.KEY_FIELD: key} if key else {})}, session=self.session)

    def update_patrol(self, before: dict, after: dict) -> bool:
        """Write a patrol's new state unless it was decided meanwhile (False)."""
        changes = {k: after[k] for k in PATROL_STATE}
        written = self.store.patrols.update_one({"_id": before["id"], "status": before["status"]},
                                                {"$set": changes, "$inc": {"version": 1}}, session=self.session)
        return written.matched_count == 1

    def report(self, report_id: str) -> dict | None:
        found = self.store.reports.find_one({"_id": report_id}, session=self.session)
        return None if found is None else {**found, "id": found["_id"]}

    def reports_during(self, reporter_id: str, grid_id: str, start: datetime, end: datetime) -> list[dict]:
        """The reporter's reports in the grid submitted from `start` to `end`, oldest first."""
        found = self.store.reports.find({"reporter_id": reporter_id, "grid_id": grid_id,
                                         "submitted_at": {"$gte": start, "$lte": end}}, session=self.session)
        return [{**r, "id": r["_id"]} for r in sorted(found, key=lambda r: (r["submitted_at"], r["_id"]))]

    def claim_report(self, report_id: str, patrol_id: str) -> bool:
        """The report names the patrol it evidences, unless it names one already or was withdrawn (False)."""
        claimed = self.store.reports.update_one({"_id": report_id, "patrol_id": None, "withdrawn": None},
                                                {"$set": {"patrol_id": patrol_id}}, session=self.session)
        return claimed.modified_count == 1

    def withdraw_report(self, report_id: str, why: str, now: datetime) -> None:
        self.store.reports.update_one({"_id": report_id}, {"$set": {"withdrawn": {"reason": why, "at": now}}},
                                      session=self.session)

    # --- activities -----------------------------------------------------------------------------

    def activity_and_version(self, activity_id: str) -> tuple[dict | None, int]:
        """The activity as the API shows it, and its version for `update_activity`."""
        found = self.store.activities.find_one({"_id": activity_id}, session=self.session)
        return (_public(found), found["version"]) if found else (None, -1)

    def update_activity(self, activity_id: str, changes: dict, version: int | None = None,
                        status: str | None = None) -> bool:
        """Set the activity's `changes` unless it changed meanwhile (its version, or its status, moved on):
        False."""
        wanted = {"_id": activity_id, **({"version": version} if version is not None else {}),
                  **({"status": status} if status is not None else {})}
        written = self.store.activities.update_one(wanted, {"$set": changes, "$inc": {"version": 1}},
                                                   session=self.session)
        return written.matched_count == 1


def _year_row(volunteer: dict, year: int) -> dict:
    return {"volunteer_id": volunteer["id"], "year": year, "name": volunteer["name"],
            "organization": volunteer["organization"], "grid_id": volunteer["grid_id"]}


def _without_id(document: dict) -> dict:
    return {k: v for k, v in document.items() if k != "_id"}


def replayed(earlier: dict, fingerprint: str) -> dict:
    """The document an Idempotency-Key made, for a retry of the same request."""
    if earlier.get(idempotency.FINGERPRINT_FIELD) != fingerprint:
        raise IdempotencyConflict("This Idempotency-Key was already used with a different request.")
    return _public(earlier)
