"""The hours domain: the credit policy, the append-only ledger's entries, levels and what people may see.

Pure: no I/O. Hours travel as decimal hours in the API and as whole hundredths of an hour ("centihours")
in running totals, so that a year of additions and reversals sums exactly.

The rules come from the jurisdiction's reference data (`shared.reference.ServiceHoursRules`), and every
ledger entry carries the version of the rules it was computed under.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.auth import Caller
from shared.errors import Conflict, Forbidden, InvalidFields
from shared.events import Event, rfc3339
from shared.reference import ServiceHoursRules, WorkCalendar
from shared.scope import Scope

PATROL, ACTIVITY, ADJUSTMENT, REVERSAL = "patrol", "activity", "adjustment", "reversal"
KINDS = (PATROL, ACTIVITY, ADJUSTMENT, REVERSAL)

# A patrol is credited at once when a report evidences it; otherwise it waits for a grid leader or the
# association; one that would take its day past the daily cap waits for the association alone.
CREDITED, AWAITING_CONFIRMATION, AWAITING_APPROVAL, DECLINED = (
    "credited", "awaiting_confirmation", "awaiting_approval", "declined")
PATROL_STATUSES = (CREDITED, AWAITING_CONFIRMATION, AWAITING_APPROVAL, DECLINED)
WAITING = (AWAITING_CONFIRMATION, AWAITING_APPROVAL)

# A client's clock may run a little ahead of ours; beyond this a patrol "ending" later is in the future.
CLOCK_SKEW = timedelta(minutes=2)
# Adjustments correct mistakes; anything larger than this is surely a typing error.
LARGEST_ADJUSTMENT_HOURS = 1000.0
HOUR = timedelta(hours=1)

STAFF = ("association", "office")


def centihours(hours: float) -> int:
    return round(hours * 100)


def hours_of(centi: int) -> float:
    return centi / 100


# --- patrols ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatrolClaim:
    """A patrol as the volunteer recorded it, checked against the policy."""
    volunteer_id: str
    grid_id: str
    started_at: datetime
    ended_at: datetime
    hours: float
    service_date: date


def claim_patrol(volunteer_id: str, grid_id: str, started_at: datetime, ended_at: datetime, now: datetime,
                 rules: ServiceHoursRules, calendar: WorkCalendar, zone: ZoneInfo) -> PatrolClaim:
    """The patrol's credit: actual time only, rounded down to the rounding step, at least the minimum, not in
    the future, recorded within the working-day window after the service date. Refused with the fields."""
    started_at, ended_at = started_at.astimezone(UTC), ended_at.astimezone(UTC)
    duration = ended_at - started_at
    if duration <= timedelta(0):
        raise InvalidFields("A patrol ends after it starts.", {"ended_at": ["must be after started_at"]})
    if ended_at > now + CLOCK_SKEW:
        raise InvalidFields("A patrol is recorded after it ends, not before.", {"ended_at": ["is in the future"]})
    if duration < timedelta(minutes=rules.patrol_minimum_minutes):
        raise InvalidFields(f"A patrol counts from {rules.patrol_minimum_minutes} minutes.",
                            {"ended_at": [f"at least {rules.patrol_minimum_minutes} minutes after started_at"]})
    if duration > rules.patrol_longest_hours * HOUR:
        raise InvalidFields(f"A patrol lasts at most {rules.patrol_longest_hours:g} hours; record separate patrols.",
                            {"ended_at": [f"at most {rules.patrol_longest_hours:g} hours after started_at"]})
    service_date = started_at.astimezone(zone).date()
    last_day = calendar.working_days_after(service_date, rules.record_within_working_days)
    if now.astimezone(zone).date() > last_day:
        raise InvalidFields(
            f"Service is recorded within {rules.record_within_working_days} working days; "
            f"this patrol of {service_date} could be recorded until {last_day}.",
            {"started_at": [f"recorded too late: the last day was {last_day}"]})
    step = timedelta(minutes=rules.patrol_rounding_minutes)
    hours = (duration // step) * step / HOUR
    return PatrolClaim(volunteer_id, grid_id, started_at, ended_at, hours, service_date)


def overlaps(start: datetime, end: datetime, other_start: datetime, other_end: datetime) -> bool:
    return start < other_end and other_start < end


def refuse_overlap(claim_start: datetime, claim_end: datetime, busy: list[dict], who: str | None = None) -> None:
    """409 when the volunteer was already patrolling or at an activity in part of this time."""
    whose = f"volunteer {who}'s" if who else "your"
    for session in busy:
        if overlaps(claim_start, claim_end, session["started_at"], session["ended_at"]):
            raise Conflict(f"This overlaps {whose} {session['what']} from {rfc3339(session['started_at'])} "
                           f"to {rfc3339(session['ended_at'])}.")


def refuse_over_daily_limit(day_centihours: int, hours: float, rules: ServiceHoursRules, who: str) -> None:
    total = hours_of(day_centihours + centihours(hours))
    if total > rules.daily_limit_hours:
        raise InvalidFields(f"At most {rules.daily_limit_hours:g} hours of service count on one day; volunteer "
                            f"{who} would have {total:g}.",
                            {"participants": [f"{who}: the day would hold {total:g} hours"]})


def daily_status(day_centihours: int, hours: float, rules: ServiceHoursRules, evidenced: bool) -> str:
    """Where a new patrol goes given what its day already holds (credited and waiting)."""
    total = hours_of(day_centihours + centihours(hours))
    if total > rules.daily_limit_hours:
        raise InvalidFields(f"At most {rules.daily_limit_hours:g} hours of service count on one day; "
                            f"this patrol would make {total:g}.",
                            {"ended_at": [f"the day would hold {total:g} hours, over {rules.daily_limit_hours:g}"]})
    if total > rules.daily_cap_hours:
        return AWAITING_APPROVAL
    return CREDITED if evidenced else AWAITING_CONFIRMATION


def evidences(report: dict, patrol: dict) -> bool:
    """A report by the patrolling volunteer, in the patrol's grid, submitted while the patrol ran."""
    return (report["reporter_id"] == patrol["volunteer_id"] and report["grid_id"] == patrol["grid_id"]
            and patrol["started_at"] <= report["submitted_at"] <= patrol["ended_at"])


def may_decide_patrol(caller: Caller, patrol: dict) -> None:
    """Grid leaders confirm their grid's patrols; beyond the daily cap only the association decides."""
    if patrol["status"] not in WAITING:
        raise Conflict(f"This patrol is {patrol['status']}; only a waiting patrol can be confirmed or declined.")
    if caller.role == "association":
        return
    if patrol["status"] == AWAITING_APPROVAL:
        raise Forbidden("Hours beyond the daily cap need the association's approval.")
    if caller.role == "grid_leader" and caller.grid == patrol["grid_id"]:
        return
    raise Forbidden("Only the grid's leader or the association can confirm or decline this patrol.")


# --- the ledger -------------------------------------------------------------------------------

# Each entry draws a number at random when it is recorded; spot checks sample entries by these numbers.
DRAWS = 2 ** 32


def new_id() -> str:
    return secrets.token_hex(12)


def entry(volunteer_id: str, hours: float, kind: str, source: str, source_id: str, service_date: date,
          recorded_at: datetime, recorded_by: str, rules: ServiceHoursRules, note: str,
          reverses: str | None = None) -> dict:
    """A ledger entry. Entries are never changed: a correction is another entry that reverses it."""
    document = {"id": new_id(), "volunteer_id": volunteer_id, "hours": hours, "kind": kind, "source": source,
                "source_id": source_id, "service_date": service_date.isoformat(), "year": service_date.year,
                "recorded_at": recorded_at, "recorded_by": recorded_by, "rule_version": rules.rule_version,
                "note": note, "draw": secrets.randbelow(DRAWS)}
    if reverses is not None:
        document["reverses"] = reverses
    return document


def reversal_of(original: dict, reason: str, by: str, now: datetime, rules: ServiceHoursRules) -> dict:
    """The entry that cancels `original`, in the year `original` counted in."""
    if original["kind"] == REVERSAL:
        raise Conflict("A reversal cannot itself be reversed; record an adjustment instead.")
    reversal = entry(original["volunteer_id"], -original["hours"], REVERSAL, REVERSAL, original["id"],
                     date.fromisoformat(original["service_date"]), now, by, rules, reason, reverses=original["id"])
    return {**reversal, "reversed_kind": original["kind"]}


def counted_kind(document: dict) -> str:
    """The kind of service an entry counts under: a reversal counts against the kind it reverses."""
    return document.get("reversed_kind", document["kind"]) if document["kind"] == REVERSAL else document["kind"]


def check_adjustment(hours: float) -> None:
    if hours == 0 or abs(hours) > LARGEST_ADJUSTMENT_HOURS:
        raise InvalidFields("An adjustment is a non-zero number of hours, at most 1000 either way.",
                            {"hours": [f"non-zero, between -{LARGEST_ADJUSTMENT_HOURS:g} and "
                                       f"{LARGEST_ADJUSTMENT_HOURS:g}"]})


def credited_event(document: dict, correlation_id: str | None) -> Event:
    kind = "hours.reversed" if document["kind"] == REVERSAL else "hours.credited"
    return Event.new(kind, "hours", public_entry(document), correlation_id)


def public_entry(document: dict) -> dict:
    shown = {k: document[k] for k in ("id", "volunteer_id", "hours", "kind", "source", "source_id", "service_date",
                                      "recorded_by", "rule_version", "note")}
    shown["recorded_at"] = rfc3339(document["recorded_at"])
    if "reverses" in document:
        shown["reverses"] = document["reverses"]
    return shown


# --- levels and the summary -------------------------------------------------------------------

def star_level(total_hours: float, rules: ServiceHoursRules) -> int:
    return sum(1 for threshold in rules.star_levels_hours if total_hours >= threshold)


def next_level_at(total_hours: float, rules: ServiceHoursRules) -> float | None:
    return next((threshold for threshold in rules.star_levels_hours if total_hours < threshold), None)


def level_changed(volunteer_id: str, before_centi: int, after_centi: int, rules: ServiceHoursRules,
                  correlation_id: str | None) -> Event | None:
    before, after = star_level(hours_of(before_centi), rules), star_level(hours_of(after_centi), rules)
    if before == after:
        return None
    return Event.new("volunteer.level_changed", "hours",
                     {"volunteer_id": volunteer_id, "star_level": after, "previous_level": before,
                      "total_hours": hours_of(after_centi)}, correlation_id)


def summary(volunteer: dict, year: int, rules: ServiceHoursRules) -> dict:
    totals = volunteer.get("totals", {})
    total = hours_of(totals.get("total", 0))
    year_hours = hours_of(totals.get("years", {}).get(str(year), 0))
    return {"volunteer_id": volunteer["id"], "year": year, "total_hours": total, "year_hours": year_hours,
            "pending_hours": hours_of(totals.get("pending", 0)), "star_level": star_level(total, rules),
            "next_level_at": next_level_at(total, rules),
            "annual_minimum_met": year_hours >= rules.annual_minimum_hours,
            "verified_reports": totals.get("verified_reports", 0),
            "year_verified_reports": totals.get("verified_reports_years", {}).get(str(year), 0)}


# --- volunteers and who sees what -------------------------------------------------------------

def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "*" * len(phone)


def mask_name(name: str) -> str:
    """王小明 → 王*明, 李四 → 李*: enough for colleagues to recognise, not enough to identify a stranger."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return f"{name[0]}*"
    return f"{name[0]}{'*' * (len(name) - 2)}{name[-1]}"


def shown_volunteer(volunteer: dict, caller: Caller) -> dict:
    """A volunteer as this caller may see them: the phone in full only for the association and the office."""
    fields = ("id", "name", "phone", "organization", "grid_id", "registered_at", "star_level")
    shown = {k: volunteer[k] for k in fields}
    if caller.role not in STAFF:
        shown["phone"] = mask_phone(volunteer["phone"])
    return shown


def volunteers_visible_to(caller: Caller) -> Scope | None:
    """Who may read volunteer records; None: nobody beyond the volunteer's own."""
    if caller.role in (*STAFF, "service"):
        return Scope.everything()
    if caller.role == "grid_leader" and caller.grid:
        return Scope.any_of({"grid_id": caller.grid})
    return None


def may_read_volunteer(caller: Caller, volunteer: dict) -> bool:
    if caller.role == "volunteer":
        return caller.id == volunteer["id"]
    scope = volunteers_visible_to(caller)
    return scope is not None and scope.admits(volunteer)


def patrols_visible_to(caller: Caller) -> Scope:
    if caller.role == "volunteer":
        return Scope.any_of({"volunteer_id": caller.id})
    if caller.role == "grid_leader":
        return Scope.any_of({"grid_id": caller.grid})
    return Scope.everything()


def new_volunteer(name: str, phone: str, organization: str, grid_id: str, at: datetime, by: str) -> dict:
    return {"id": new_id(), "name": name, "phone": phone, "organization": " ".join(organization.split()),
            "grid_id": grid_id, "registered_at": at, "registered_by": by}


def registered_event(volunteer: dict, correlation_id: str | None) -> Event:
    return Event.new("volunteer.registered", "hours",
                     {"volunteer_id": volunteer["id"], "organization": volunteer["organization"],
                      "grid_id": volunteer["grid_id"]}, correlation_id)


def phone_key(organization: str, phone: str) -> str:
    """What identifies a volunteer across imports and registrations."""
    return f"{' '.join(organization.split())}|{phone}"


def local_today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()



# --- proofs of service ------------------------------------------------------------------------

# Crockford's base32: no I, L, O or U to misread when a code is typed from paper.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"
PROOF_KINDS = (PATROL, ACTIVITY, ADJUSTMENT)
KIND_CONTENT = {PATROL: "网格巡访 {n} 次（{grid}）", ACTIVITY: "参加志愿服务活动 {n} 次",
                ADJUSTMENT: "经核定的时长补录与调整 {n} 笔"}


def proof_code() -> str:
    """60 random bits, in three groups of four: unguessable, and short enough to type from paper."""
    characters = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))
    return f"{characters[:4]}-{characters[4:8]}-{characters[8:]}"


def proof_record(volunteer: dict, row: dict, number: int, code: str, grid_name: str, issuer: str,
                 sealed: bool, now: datetime, zone: ZoneInfo) -> dict:
    """What a proof certifies, kept so that anyone holding its code can check it later."""
    kinds = row.get("kinds", {})
    lines = []
    for kind in PROOF_KINDS:
        figures = kinds.get(kind, {})
        if figures.get("centihours", 0) or figures.get("sessions", 0) > 0:
            sessions = max(figures.get("sessions", 0), 0)
            lines.append({"kind": kind, "sessions": sessions, "hours": hours_of(figures.get("centihours", 0)),
                          "content": KIND_CONTENT[kind].format(n=sessions, grid=grid_name)})
    return {"code": code, "number": f"WP-{row['year']}-{number:06d}", "volunteer_id": volunteer["id"],
            "year": row["year"], "centihours": row["centihours"], "hours": hours_of(row["centihours"]),
            "name": volunteer["name"], "masked_name": mask_name(volunteer["name"]),
            "phone_masked": mask_phone(volunteer["phone"]), "organization": volunteer["organization"],
            "issuer": issuer, "issued_at": now, "issued_on": local_today(now, zone).isoformat(),
            "period_start": row.get("first_service"), "period_end": row.get("last_service"),
            "sealed": sealed, "lines": lines}


def proof_verdict(proof: dict, row: dict | None, closed: bool) -> dict:
    """A proof checked against the ledger, without personal data beyond the masked name."""
    current = None if row is None else row.get("sealed_centihours" if closed else "centihours", row["centihours"])
    valid = current == proof["centihours"]
    if valid:
        detail = (f"The figures match the sealed {proof['year']} ledger." if closed
                  else "The figures match the ledger as of now.")
    else:
        detail = "The ledger has changed since this proof was issued; ask the volunteer for a new one."
    return {"valid": valid, "code": proof["code"], "number": proof["number"], "year": proof["year"],
            "hours": proof["hours"], "issuer": proof["issuer"], "name": proof["masked_name"],
            "issued_on": proof["issued_on"], "sealed": closed, "detail": detail}


def refuse_open_year(year: int, now: datetime, zone: ZoneInfo, rules: ServiceHoursRules,
                     calendar: WorkCalendar) -> None:
    """A year closes once nothing more can be credited into it: its last day's service may still be recorded
    for the recording window, and an activity's hours then publicised."""
    last_day = calendar.working_days_after(date(year, 12, 31),
                                           rules.record_within_working_days + rules.publicity_working_days)
    if local_today(now, zone) <= last_day:
        raise Conflict(f"{year} can be closed from {last_day + timedelta(days=1)}: until then its service may "
                       "still be recorded and publicised.")


def ranked(rows: list[dict], by: str) -> list[dict]:
    """Competition ranking (1, 2, 2, 4) over rows already in order."""
    field = "centihours" if by == "hours" else "verified_reports"
    ranks, previous, rank = [], None, 0
    for position, row in enumerate(rows, start=1):
        if row[field] != previous:
            rank, previous = position, row[field]
        ranks.append({**row, "rank": rank})
    return ranks


def ranking_row(row: dict, caller: Caller) -> dict:
    return {"rank": row["rank"], "name": mask_name(row["name"]),
            "volunteer_id": row["volunteer_id"] if caller.role in STAFF else None,
            "organization": row["organization"], "grid_id": row["grid_id"], "hours": hours_of(row["centihours"]),
            "verified_reports": row.get("verified_reports", 0)}


# --- activities (publicised before they are confirmed) ----------------------------------------

PLANNED, PUBLICISED, CONFIRMED = "planned", "publicised", "confirmed"
ACTIVITY_STATUSES = (PLANNED, PUBLICISED, CONFIRMED)
# A participant's hours: publicised, held by an objection, credited, or declined when an objection is upheld.
HELD = "held"
PARTICIPANT_STATUSES = (PUBLICISED, HELD, CREDITED, DECLINED)
OPEN, UPHELD, DISMISSED = "open", "upheld", "dismissed"
OBJECTION_STATUSES = (OPEN, UPHELD, DISMISSED)
LONGEST_ACTIVITY = timedelta(hours=24)
ACTIVITY_ORGANISERS = ("association", "office", "grid_leader")


def check_activity(fields: dict, caller: Caller) -> None:
    if fields["ends_at"] <= fields["starts_at"]:
        raise InvalidFields("An activity ends after it starts.", {"ends_at": ["must be after starts_at"]})
    if fields["ends_at"] - fields["starts_at"] > LONGEST_ACTIVITY:
        raise InvalidFields("An activity lasts at most 24 hours; record each day as its own activity.",
                            {"ends_at": ["at most 24 hours after starts_at"]})
    if not fields.get("grid_id") and not fields.get("place"):
        raise InvalidFields("Say where: a grid cell or a place.", {"place": ["a grid_id or a place is required"]})
    if caller.role == "grid_leader" and fields.get("grid_id") != caller.grid:
        raise Forbidden("A grid leader organises activities in their own grid cell.")


def may_manage_activity(caller: Caller, activity: dict) -> None:
    if caller.role in STAFF:
        return
    if caller.role == "grid_leader" and activity.get("grid_id") == caller.grid:
        return
    raise Forbidden("Only the association, the office or the activity's grid leader can complete it.")


def completion(activity: dict, participants: list[dict], photo_count: int, now: datetime, rules: ServiceHoursRules,
               calendar: WorkCalendar, zone: ZoneInfo) -> dict:
    """The changes that complete an activity: participants' hours publicised until the window's last day."""
    if activity["status"] != PLANNED:
        raise Conflict(f"This activity is {activity['status']}; it was completed before.")
    if activity["ends_at"] > now:
        raise Conflict("An activity is completed after it ends.")
    service_date = activity["starts_at"].astimezone(zone).date()
    last_day = calendar.working_days_after(service_date, rules.record_within_working_days)
    if local_today(now, zone) > last_day:
        raise InvalidFields(f"Service is recorded within {rules.record_within_working_days} working days; this "
                            f"activity could be completed until {last_day}.",
                            {"participants": [f"recorded too late: the last day was {last_day}"]})
    if photo_count < rules.activity_minimum_photos:
        raise InvalidFields(f"An activity is evidenced by at least {rules.activity_minimum_photos} photos.",
                            {"photo_ids": [f"at least {rules.activity_minimum_photos} photos"]})
    ids = [p["volunteer_id"] for p in participants]
    if len(set(ids)) != len(ids):
        raise InvalidFields("Each volunteer takes part once.", {"participants": ["a volunteer is listed twice"]})
    longest = (activity["ends_at"] - activity["starts_at"]) / HOUR
    too_long = [p["volunteer_id"] for p in participants if p["hours"] > longest]
    if too_long:
        raise InvalidFields(f"Nobody serves longer than the activity ({longest:g} hours).",
                            {"participants": [f"more hours than the activity lasted: {', '.join(too_long)}"]})
    publicity_ends = calendar.working_days_after(local_today(now, zone), rules.publicity_working_days)
    return {"status": PUBLICISED, "completed_at": now, "service_date": service_date.isoformat(),
            "publicity_ends": publicity_ends.isoformat(),
            "participants": [{"volunteer_id": p["volunteer_id"], "hours": p["hours"], "status": PUBLICISED,
                              "entry_id": None} for p in participants]}


def publicity_over(activity: dict, today: date) -> bool:
    return today > date.fromisoformat(activity["publicity_ends"])


def new_objection(activity: dict, volunteer_id: str, reason: str, by: str, now: datetime, zone: ZoneInfo) -> dict:
    """An objection during the publicity window holds the participant's hours until the association decides."""
    if activity["status"] != PUBLICISED or publicity_over(activity, local_today(now, zone)):
        raise Conflict("Objections are raised while an activity's hours are publicised.")
    participant = next((p for p in activity["participants"] if p["volunteer_id"] == volunteer_id), None)
    if participant is None:
        raise InvalidFields("Not a participant of this activity.", {"volunteer_id": ["not listed as a participant"]})
    if participant["status"] != PUBLICISED:
        raise Conflict(f"This participant's hours are {participant['status']} already.")
    return {"id": new_id(), "volunteer_id": volunteer_id, "reason": reason, "raised_by": by, "raised_at": now,
            "status": OPEN, "decided_by": None, "decided_at": None, "note": None}


def participant_credit(activity: dict, participant: dict, now: datetime, rules: ServiceHoursRules) -> dict:
    return entry(participant["volunteer_id"], participant["hours"], ACTIVITY, "activity", activity["id"],
                 date.fromisoformat(activity["service_date"]), now, "system:publicity", rules,
                 f"志愿服务活动：{activity['title']}")


# --- spot checks (抽查) --------------------------------------------------------------------------

PASSED, FAILED = "passed", "failed"


def sample_points(seed: int):
    """The points a spot check draws at, in order: the same seed always gives the same points."""
    import random

    rng = random.Random(seed)
    while True:
        yield rng.randrange(DRAWS)


def checked_item(document: dict) -> dict:
    return {"entry_id": document["id"], "volunteer_id": document["volunteer_id"], "hours": document["hours"],
            "kind": document["kind"], "source": document["source"], "source_id": document["source_id"],
            "service_date": document["service_date"], "result": None, "note": None, "checked_by": None,
            "checked_at": None, "reversal_id": None}


def spot_check_reason(check_id: str, note: str) -> str:
    return f"抽查 {check_id} 未通过：{note}"
