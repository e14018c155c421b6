"""An in-memory double of hours' store (HoursStore and HoursTransaction, as hours' use cases call them), so
that the use cases run with no database: a transaction is the double itself, and a use case that raises
leaves it as it was, as a MongoDB transaction would."""
from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date, datetime
from typing import TypeVar

from services.hours import domain
from services.hours.store import replayed
from shared import idempotency
from shared.events import Event
from shared.reference import ServiceHoursRules
from shared.store import public_document

T = TypeVar("T")
HIDDEN = ("_id", "version", idempotency.KEY_FIELD, idempotency.FINGERPRINT_FIELD)


def shown(document: dict | None) -> dict | None:
    return public_document(document, hidden=HIDDEN)


class HoursStoreDouble:
    def __init__(self, rules: ServiceHoursRules):
        self.rules = rules
        self.volunteers: dict[str, dict] = {}
        self.entries: dict[str, dict] = {}
        self.patrols: dict[str, dict] = {}
        self.days: dict[tuple[str, str], int] = {}
        self.reports: dict[str, dict] = {}
        self.year_rows: dict[tuple[str, int], dict] = {}
        self.years: dict[int, dict] = {}
        self.activities: dict[str, dict] = {}
        self.spot_checks: dict[str, dict] = {}
        self.proofs: dict[str, dict] = {}
        self.verified: set[tuple[str, str]] = set()
        self.published: list[Event] = []
        self.transactions = 0

    # --- what tests set up and look at ---------------------------------------------------------

    def add_volunteer(self, volunteer_id: str, grid_id: str = "lanshan-01", name: str = "王小明") -> dict:
        self.volunteers[volunteer_id] = {"_id": volunteer_id, "name": name, "organization": "金雀山街道志愿服务队",
                                         "grid_id": grid_id, "phone": "13900000000", "star_level": 0, "version": 0,
                                         "totals": {"total": 0, "pending": 0, "years": {}}}
        return shown(self.volunteers[volunteer_id])

    def add_report(self, report_id: str, reporter_id: str, grid_id: str, submitted_at: datetime) -> None:
        self.reports[report_id] = {"_id": report_id, "reporter_id": reporter_id, "grid_id": grid_id,
                                   "submitted_at": submitted_at, "year": submitted_at.year}

    def totals(self, volunteer_id: str) -> dict:
        return self.volunteers[volunteer_id]["totals"]

    def ledger_of(self, volunteer_id: str) -> list[dict]:
        return [shown(e) for e in self.entries.values() if e["volunteer_id"] == volunteer_id]

    # --- HoursStore ----------------------------------------------------------------------------

    def transaction(self, work: Callable[[HoursStoreDouble], T]) -> T:
        saved = copy.deepcopy({k: v for k, v in vars(self).items() if k != "rules"})
        try:
            result = work(self)
        except BaseException:
            vars(self).update(saved)
            raise
        self.transactions += 1
        return result

    def idempotently(self, collection: str, key: str | None, fingerprint: str, work: Callable) -> tuple:
        documents = {"entries": self.entries, "patrols": self.patrols}[collection]
        earlier = next((d for d in documents.values() if key and d.get(idempotency.KEY_FIELD) == key), None)
        if earlier is not None:
            return replayed(earlier, fingerprint), False
        return self.transaction(work), True

    def volunteer(self, volunteer_id: str) -> dict | None:
        return shown(self.volunteers.get(volunteer_id))

    def entry(self, entry_id: str) -> dict | None:
        return shown(self.entries.get(entry_id))

    def activity(self, activity_id: str) -> dict | None:
        return shown(self.activities.get(activity_id))

    def activity_and_version(self, activity_id: str) -> tuple[dict | None, int]:
        found = self.activities.get(activity_id)
        return (shown(found), found["version"]) if found else (None, -1)

    def create_activity(self, activity: dict, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        self.activities[activity["id"]] = {"_id": activity["id"], **activity, "version": 0}
        return activity, True

    def add_objection(self, activity_id: str, version: int, objection: dict) -> bool:
        stored = self.activities[activity_id]
        if stored["version"] != version:
            return False
        stored["objections"] = [*stored["objections"], objection]
        stored["participants"] = [{**p, "status": domain.HELD} if p["volunteer_id"] == objection["volunteer_id"]
                                  else p for p in stored["participants"]]
        stored["version"] += 1
        return True

    def confirm_activity(self, activity_id: str, now: datetime) -> None:
        stored = self.activities[activity_id]
        if stored["status"] == domain.PUBLICISED:
            stored.update(status=domain.CONFIRMED, confirmed_at=now)

    def due_activities(self, today: date) -> list[dict]:
        return [shown(a) for a in self.activities.values() if a["status"] == domain.PUBLICISED
                and a["publicity_ends"] < today.isoformat()]

    def create_spot_check(self, check: dict, key: str | None, fingerprint: str) -> tuple[dict, bool]:
        self.spot_checks[check["id"]] = {"_id": check["id"], **check, "version": 0}
        return check, True

    def spot_check(self, check_id: str) -> dict | None:
        return shown(self.spot_checks.get(check_id))

    def record_result(self, check_id: str, entry_id: str, result: dict) -> bool:
        check = self.spot_checks.get(check_id)
        item = next((i for i in (check or {}).get("items", []) if i["entry_id"] == entry_id and i["result"] is None),
                    None)
        if item is None:
            return False
        item.update(result)
        return True

    def year_row(self, volunteer_id: str, year: int) -> dict | None:
        return self.year_rows.get((volunteer_id, year))

    def closed_year(self, year: int) -> dict | None:
        return self.years.get(year)

    def begin_year_close(self, year: int, by: str, at: datetime) -> dict:
        if year in self.years:
            return {"complete": True, **self.years[year]}
        self.years[year] = {"_id": year, "closed_at": at, "closed_by": by, "complete": False}
        return dict(self.years[year])

    def waiting_patrol_ids(self, span: tuple[datetime, datetime]) -> list[str]:
        return [p["_id"] for p in self.patrols.values()
                if p["status"] in domain.WAITING and span[0] <= p["started_at"] < span[1]]

    def publicised_activity_ids(self, span: tuple[datetime, datetime]) -> list[str]:
        return [a["_id"] for a in self.activities.values()
                if a["status"] == domain.PUBLICISED and span[0] <= a["starts_at"] < span[1]]

    def seal_year(self, year: int) -> int:
        rows = [row for (_, y), row in self.year_rows.items() if y == year]
        for row in rows:
            row.update(sealed_centihours=row["centihours"], sealed_verified_reports=row["verified_reports"])
        return len(rows)

    def finish_year_close(self, year: int, figures: dict) -> None:
        self.years[year].update(figures, complete=True)

    def remember_reports(self, reports: list[dict]) -> None:
        for report in reports:
            self.reports.setdefault(report["id"], {"_id": report["id"], **{k: report[k] for k in (
                "reporter_id", "grid_id", "submitted_at", "year")}})

    def patrols_of_reporters(self, reporter_ids: list[str], start: datetime, end: datetime) -> list[dict]:
        return [domain.parted_patrol(shown(p)) for p in self.patrols.values()
                if p["volunteer_id"] in reporter_ids and start <= p["started_at"] <= end]

    def reports_of(self, report_ids: list[str]) -> dict[str, dict]:
        return {r: {**self.reports[r], "id": r} for r in report_ids if r in self.reports}

    def count_verified(self, case_id: str, reporter_id: str, year: int) -> None:
        if (case_id, reporter_id) in self.verified:
            return
        self.verified.add((case_id, reporter_id))
        if reporter_id in self.volunteers:
            totals = self.totals(reporter_id)
            totals["verified_reports"] = totals.get("verified_reports", 0) + 1

    # --- HoursTransaction (the double is its own transaction) ----------------------------------

    def lock_volunteer(self, volunteer_id: str) -> bool:
        if volunteer_id not in self.volunteers:
            return False
        self.volunteers[volunteer_id]["version"] += 1
        return True

    def volunteer_totals(self, volunteer_id: str) -> dict:
        found = self.volunteers[volunteer_id]
        return {"id": volunteer_id, "total": found["totals"]["total"],
                **{k: found[k] for k in ("name", "organization", "grid_id")}}

    def year_closed(self, year: int) -> bool:
        return year in self.years

    def entry_of_source(self, document: dict) -> dict | None:
        return next((e for e in self.entries.values()
                     if all(e[k] == document[k] for k in ("source", "source_id", "volunteer_id"))), None)

    def post(self, posting: domain.Posting, volunteer: dict, key: str | None = None,
             fingerprint: str | None = None) -> None:
        document = posting.entry
        self.entries[document["id"]] = {"_id": document["id"], **document,
                                        **({idempotency.KEY_FIELD: key} if key else {}),
                                        **({idempotency.FINGERPRINT_FIELD: fingerprint} if fingerprint else {})}
        stored = self.volunteers[document["volunteer_id"]]
        totals, year = stored["totals"], str(document["year"])
        totals["total"] += posting.centihours
        totals["years"][year] = totals["years"].get(year, 0) + posting.centihours
        totals["pending"] += posting.pending
        stored["star_level"] = posting.star_level
        row = self.year_rows.setdefault((stored["_id"], document["year"]), {
            "volunteer_id": stored["_id"], "year": document["year"], "name": stored["name"],
            "organization": stored["organization"], "grid_id": stored["grid_id"], "centihours": 0,
            "verified_reports": 0, "kinds": {}})
        row["centihours"] += posting.centihours
        kind = row["kinds"].setdefault(domain.counted_kind(document), {"centihours": 0, "sessions": 0})
        kind["centihours"] += posting.centihours
        kind["sessions"] += posting.sessions
        self.published += [posting.credited, *([posting.level_changed] if posting.level_changed else [])]
        if posting.fills_day:
            self.add_to_day(document["volunteer_id"], document["service_date"], posting.centihours)

    def day_centihours(self, volunteer_id: str, day: str) -> int:
        return self.days.get((volunteer_id, day), 0)

    def add_to_day(self, volunteer_id: str, day: str, amount: int) -> None:
        self.days[(volunteer_id, day)] = self.days.get((volunteer_id, day), 0) + amount

    def move_waiting(self, volunteer_id: str, day: str, amount: int) -> None:
        self.totals(volunteer_id)["pending"] += amount
        self.add_to_day(volunteer_id, day, amount)

    def busy(self, volunteer_id: str, start: datetime, end: datetime,
             except_activity: str | None = None) -> list[dict]:
        earliest = start - domain.LONGEST_ACTIVITY
        busy = [{"what": "patrol", **p} for p in self.patrols.values() if p["volunteer_id"] == volunteer_id
                and earliest <= p["started_at"] < end and p["status"] != domain.DECLINED]
        for activity in self.activities.values():
            mine = next((p for p in activity["participants"] if p["volunteer_id"] == volunteer_id), None)
            if mine and activity["_id"] != except_activity and mine["status"] != domain.DECLINED \
                    and earliest <= activity["starts_at"] < end:
                busy.append({"what": "activity", "started_at": activity["starts_at"], "ended_at": activity["ends_at"]})
        return busy

    def patrol(self, patrol_id: str) -> dict | None:
        found = shown(self.patrols.get(patrol_id))
        return None if found is None else domain.parted_patrol(found)

    def insert_patrol(self, patrol: dict, key: str | None, fingerprint: str) -> None:
        self.patrols[patrol["id"]] = {"_id": patrol["id"], **patrol, "version": 0,
                                      idempotency.FINGERPRINT_FIELD: fingerprint,
                                      **({idempotency.KEY_FIELD: key} if key else {})}

    def update_patrol(self, before: dict, after: dict) -> bool:
        stored = self.patrols[before["id"]]
        if stored["status"] != before["status"]:
            return False
        stored.update({k: after[k] for k in ("status", "credited_hours", "waiting_hours", "declined_hours",
                                             "credits", "beyond_daily_cap", "by_its_grid_leader",
                                             "evidence_report_id", "entry_id", "decided_by", "decided_at",
                                             "decision_note") if k in after})
        stored["version"] += 1
        return True

    def report(self, report_id: str) -> dict | None:
        found = self.reports.get(report_id)
        return None if found is None else {**found, "id": report_id}

    def reports_during(self, reporter_id: str, grid_id: str, start: datetime, end: datetime) -> list[dict]:
        found = [{**r, "id": r["_id"]} for r in self.reports.values() if r["reporter_id"] == reporter_id
                 and r["grid_id"] == grid_id and start <= r["submitted_at"] <= end]
        return sorted(found, key=lambda r: (r["submitted_at"], r["id"]))

    def claim_report(self, report_id: str, patrol_id: str) -> bool:
        report = self.reports[report_id]
        if report.get("patrol_id") is not None or report.get("withdrawn") is not None:
            return False
        report["patrol_id"] = patrol_id
        return True

    def withdraw_report(self, report_id: str, why: str, now: datetime) -> None:
        self.reports[report_id]["withdrawn"] = {"reason": why, "at": now}

    def update_activity(self, activity_id: str, changes: dict, version: int | None = None,
                        status: str | None = None) -> bool:
        stored = self.activities[activity_id]
        if version is not None and stored["version"] != version:
            return False
        if status is not None and stored["status"] != status:
            return False
        stored.update(copy.deepcopy(changes))
        stored["version"] += 1
        return True
