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
from shared.errors import Conflict, Forbidden, InvalidFields, NotFound
from shared.events import Event, rfc3339
from shared.reference import ServiceHoursRules, WorkCalendar
from shared.scope import Scope

PATROL, ACTIVITY, ADJUSTMENT, REVERSAL = "patrol", "activity", "adjustment", "reversal"
KINDS = (PATROL, ACTIVITY, ADJUSTMENT, REVERSAL)

# A patrol's time is credited, waiting for a person, or declined, in parts (docs/hours.md, "The credit
# policy"): each distinct report that evidences it credits a bounded part at once; the rest waits in
# awaiting_confirmation (the grid's leader or the association) or awaiting_approval (the association alone).
# Its status says where its time is: waiting while any of it waits, else credited while any of it is credited,
# else declined.
CREDITED, AWAITING_CONFIRMATION, AWAITING_APPROVAL, DECLINED = (
    "credited", "awaiting_confirmation", "awaiting_approval", "declined")
PATROL_STATUSES = (CREDITED, AWAITING_CONFIRMATION, AWAITING_APPROVAL, DECLINED)
WAITING = (AWAITING_CONFIRMATION, AWAITING_APPROVAL)
# Who records the at-once credit that a report evidences.
BY_EVIDENCE = "system:evidence"
# Why a year's close declines the hours still waiting in it.
YEAR_CLOSED = "年度已结账"

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


def whole_hundredths(hours: float) -> bool:
    """Hours are counted in hundredths of an hour: 0.004 is not a figure anyone could credit, and rounding it
    silently to 0 would hide a caller's mistake."""
    return abs(hours * 100 - round(hours * 100)) < 1e-6


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
    """The patrol's time: actual time only, rounded down to the rounding step, at least the minimum, not in
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


def beyond_daily_cap(day_centihours: int, hours: float, rules: ServiceHoursRules) -> bool:
    """Policy row "a day's hours": past the daily limit a patrol is refused; past the daily cap it waits for the
    association, evidenced or not. `day_centihours`: what the day already holds, credited and waiting."""
    total = hours_of(day_centihours + centihours(hours))
    if total > rules.daily_limit_hours:
        raise InvalidFields(f"At most {rules.daily_limit_hours:g} hours of service count on one day; "
                            f"this patrol would make {total:g}.",
                            {"ended_at": [f"the day would hold {total:g} hours, over {rules.daily_limit_hours:g}"]})
    return total > rules.daily_cap_hours


def walked_by_its_grid_leader(caller: Caller, grid_id: str, grid_leader_id: str | None) -> bool:
    """A patrol of the grid's own leader (by their token's grid, or the grid's leader in the reference data)."""
    return (caller.role == "grid_leader" and caller.grid == grid_id) or caller.id == grid_leader_id


def waiting_status(beyond_cap: bool, by_its_grid_leader: bool) -> str:
    """Policy row "who confirms": a patrol's waiting time waits for the association alone beyond the daily cap,
    and when the grid's own leader walked it (nobody confirms their own); otherwise for the grid's leader or
    the association."""
    return AWAITING_APPROVAL if beyond_cap or by_its_grid_leader else AWAITING_CONFIRMATION


def patrol_status(patrol: dict) -> str:
    """Waiting while any of its time waits; else credited while any of it is credited; else declined."""
    if centihours(patrol["waiting_hours"]) > 0:
        return waiting_status(patrol["beyond_daily_cap"], patrol["by_its_grid_leader"])
    return CREDITED if centihours(patrol["credited_hours"]) > 0 else DECLINED


def patrol_sessions(patrol: dict) -> int:
    """A patrol counts as one session of service (in proofs) while any of its time is credited."""
    return 1 if centihours(patrol["credited_hours"]) > 0 else 0


def evidences(report: dict, patrol: dict) -> bool:
    """Policy row "evidence": a report by the patrolling volunteer, in the patrol's grid, submitted while it
    ran, that evidences no patrol yet (a report evidences one patrol only) and was not withdrawn (its case
    rejected, or a duplicate of its reporter's own report)."""
    return (report["reporter_id"] == patrol["volunteer_id"] and report["grid_id"] == patrol["grid_id"]
            and patrol["started_at"] <= report["submitted_at"] <= patrol["ended_at"]
            and report.get("patrol_id") is None and report.get("withdrawn") is None)


def evidence_credit(waiting_centihours: int, rules: ServiceHoursRules) -> int:
    """Policy row "credited at once": each distinct evidencing report credits at once up to
    `evidence_hours_per_report` of the patrol's waiting time (centihours); the rest waits for a person."""
    return min(waiting_centihours, centihours(rules.evidence_hours_per_report))


def parted_patrol(patrol: dict) -> dict:
    """A patrol stored before its time was kept in parts, read as one: all of it credited, waiting or declined."""
    if "credits" in patrol:
        return patrol
    amount = patrol["hours"]
    return {**patrol, "beyond_daily_cap": patrol["status"] == AWAITING_APPROVAL, "by_its_grid_leader": False,
            "credits": [], "credited_hours": amount if patrol["status"] == CREDITED else 0.0,
            "waiting_hours": amount if patrol["status"] in WAITING else 0.0,
            "declined_hours": amount if patrol["status"] == DECLINED else 0.0}


def _with_parts(patrol: dict, credited: int, waiting: int, declined: int, **changes) -> dict:
    changed = {**patrol, **changes, "credited_hours": hours_of(credited), "waiting_hours": hours_of(waiting),
               "declined_hours": hours_of(declined)}
    return {**changed, "status": patrol_status(changed)}


def _parts_of(patrol: dict) -> tuple[int, int, int]:
    return (centihours(patrol["credited_hours"]), centihours(patrol["waiting_hours"]),
            centihours(patrol["declined_hours"]))


def new_patrol(claim: PatrolClaim, evidence: list[str], *, day_centihours: int, by_its_grid_leader: bool,
               recorded_by: str, now: datetime, rules: ServiceHoursRules) -> tuple[dict, list[dict]]:
    """A recorded patrol and the entries that credit at once what its reports (`evidence`, oldest first)
    evidence; the rest of its time waits. Beyond the daily cap nothing is credited at once."""
    beyond_cap = beyond_daily_cap(day_centihours, claim.hours, rules)
    patrol = _with_parts({
        "id": new_id(), "volunteer_id": claim.volunteer_id, "grid_id": claim.grid_id,
        "started_at": claim.started_at, "ended_at": claim.ended_at, "hours": claim.hours,
        "service_date": claim.service_date.isoformat(), "recorded_at": now, "recorded_by": recorded_by,
        "beyond_daily_cap": beyond_cap, "by_its_grid_leader": by_its_grid_leader, "credits": [],
        "evidence_report_id": None, "entry_id": None, "decided_by": None, "decided_at": None,
        "decision_note": None}, 0, centihours(claim.hours), 0)
    entries = []
    for report_id in evidence:
        evidenced = with_evidence(patrol, report_id, now, rules)
        if evidenced is None:
            break
        patrol, credit = evidenced
        entries.append(credit)
    return patrol, entries


def _part(credit: dict, report_id: str | None) -> dict:
    return {"entry_id": credit["id"], "hours": credit["hours"], "report_id": report_id,
            "recorded_at": credit["recorded_at"], "recorded_by": credit["recorded_by"], "reversal_id": None,
            "reversal_note": None}


def with_evidence(patrol: dict, report_id: str, now: datetime,
                  rules: ServiceHoursRules) -> tuple[dict, dict] | None:
    """The patrol with the part that one more evidencing report credits at once, and that part's entry; None
    when none of its time waits, or it waits beyond the daily cap (for the association, evidenced or not)."""
    credited, waiting, declined = _parts_of(patrol)
    amount = evidence_credit(waiting, rules)
    if patrol["beyond_daily_cap"] or amount <= 0:
        return None
    credit = entry(patrol["volunteer_id"], hours_of(amount), PATROL, source="report", source_id=report_id,
                   service_date=date.fromisoformat(patrol["service_date"]), recorded_at=now, recorded_by=BY_EVIDENCE,
                   rules=rules, note=f"网格巡访 {patrol['grid_id']}：上报 {report_id} 佐证", patrol_id=patrol["id"])
    changed = _with_parts(patrol, credited + amount, waiting - amount, declined,
                          credits=[*patrol["credits"], _part(credit, report_id)],
                          evidence_report_id=patrol["evidence_report_id"] or report_id,
                          entry_id=patrol["entry_id"] or credit["id"])
    return changed, credit


def confirmed(patrol: dict, by: str, note: str, now: datetime, rules: ServiceHoursRules) -> tuple[dict, dict]:
    """A person confirms the patrol's waiting time: credited in one entry. A patrol confirmed before, some of
    whose credit was taken back since, is confirmed again under a numbered source (`<patrol id>/2`)."""
    credited, waiting, declined = _parts_of(patrol)
    confirmations = sum(1 for part in patrol["credits"] if part["report_id"] is None)
    source_id = patrol["id"] if confirmations == 0 else f"{patrol['id']}/{confirmations + 1}"
    credit = entry(patrol["volunteer_id"], hours_of(waiting), PATROL, source="patrol", source_id=source_id,
                   service_date=date.fromisoformat(patrol["service_date"]), recorded_at=now, recorded_by=by,
                   rules=rules, note=f"网格巡访 {patrol['grid_id']}",
                   patrol_id=patrol["id"])
    changed = _with_parts(patrol, credited + waiting, 0, declined,
                          credits=[*patrol["credits"], _part(credit, None)],
                          entry_id=patrol["entry_id"] or credit["id"], decided_by=by, decided_at=now,
                          decision_note=note)
    return changed, credit


def _taken_back(patrol: dict, part: dict, note: str, by: str, now: datetime, rules: ServiceHoursRules) -> dict:
    original = {"id": part["entry_id"], "volunteer_id": patrol["volunteer_id"], "hours": part["hours"],
                "kind": PATROL, "service_date": patrol["service_date"]}
    return {**reversal_of(original, note, by, now, rules), "patrol_id": patrol["id"]}


def _with_part_reversed(credits: list[dict], entry_id: str, reversal: dict) -> list[dict]:
    return [{**part, "reversal_id": reversal["id"], "reversal_note": reversal["note"]}
            if part["entry_id"] == entry_id else part for part in credits]


def declined(patrol: dict, by: str, note: str, now: datetime, rules: ServiceHoursRules) -> tuple[dict, list[dict]]:
    """A person declines the patrol: its waiting time is declined, and what its reports credited at once is
    taken back (reversals), since a person's judgement of the patrol overrides the automatic one; what a
    person confirmed before stands (the association reverses an entry itself if need be)."""
    credited, waiting, refused = _parts_of(patrol)
    credits, reversals = patrol["credits"], []
    for part in patrol["credits"]:
        if part["report_id"] is not None and part["reversal_id"] is None:
            reversal = _taken_back(patrol, part, f"巡访 {patrol['id']} 未获确认：{note}", by, now, rules)
            credits = _with_part_reversed(credits, part["entry_id"], reversal)
            reversals.append(reversal)
    taken = sum(centihours(-reversal["hours"]) for reversal in reversals)
    changed = _with_parts(patrol, credited - taken, 0, refused + waiting + taken, credits=credits, decided_by=by,
                          decided_at=now, decision_note=note)
    return changed, reversals


def evidence_withdrawn(patrol: dict, report_id: str, why: str, now: datetime,
                       rules: ServiceHoursRules) -> tuple[dict, dict] | None:
    """Policy row "withdrawn evidence": what a report credited at once is taken back when the report is
    withdrawn (a reversal whose note says which report and why), and that time waits for a person again: the
    patrol may still have been walked. None when the report's part stands no more (or never did)."""
    part = next((p for p in patrol["credits"] if p["report_id"] == report_id and p["reversal_id"] is None), None)
    if part is None:
        return None
    note = f"上报 {report_id} {why}：其佐证自动计入的 {part['hours']:g} 小时退回待人工确认"
    reversal = _taken_back(patrol, part, note, BY_EVIDENCE, now, rules)
    credited, waiting, declined_ = _parts_of(patrol)
    amount = centihours(part["hours"])
    changed = _with_parts(patrol, credited - amount, waiting + amount, declined_,
                          credits=_with_part_reversed(patrol["credits"], part["entry_id"], reversal))
    return changed, reversal


def credit_reversed(patrol: dict, reversal: dict) -> dict | None:
    """A person reversed one of the patrol's entries (`POST /v1/entries/{id}/reverse`, a failed spot check):
    that part is declined, not returned to waiting. None when the entry is no part of the patrol."""
    part = next((p for p in patrol["credits"] if p["entry_id"] == reversal["reverses"]), None)
    if part is None or part["reversal_id"] is not None:
        return None
    credited, waiting, declined_ = _parts_of(patrol)
    amount = centihours(part["hours"])
    return _with_parts(patrol, credited - amount, waiting, declined_ + amount,
                       credits=_with_part_reversed(patrol["credits"], part["entry_id"], reversal))


def closed_with_its_year(patrol: dict, now: datetime) -> dict:
    """Policy row "a year's close": the time still waiting is declined, "年度已结账"; what was credited stays."""
    credited, waiting, declined_ = _parts_of(patrol)
    return _with_parts(patrol, credited, 0, declined_ + waiting, decided_by="system:year-close", decided_at=now,
                       decision_note=YEAR_CLOSED)


def may_decide_patrol(caller: Caller, patrol: dict) -> None:
    """Policy row "who confirms": nobody decides their own patrol; grid leaders confirm their grid's patrols;
    beyond the daily cap, and for a grid leader's patrol in their own grid, only the association decides."""
    if caller.id == patrol["volunteer_id"]:
        raise Forbidden("Nobody confirms or declines their own patrol: a grid leader's own patrol is decided by "
                        "the association.")
    if patrol["status"] not in WAITING:
        raise Conflict(f"This patrol is {patrol['status']}; only a waiting patrol can be confirmed or declined.")
    if caller.role == "association":
        return
    if patrol["status"] == AWAITING_APPROVAL:
        raise Forbidden("This patrol's hours need the association's approval (beyond the daily cap, or walked "
                        "by the grid's own leader).")
    if caller.role == "grid_leader" and caller.grid == patrol["grid_id"]:
        return
    raise Forbidden("Only the grid's leader or the association can confirm or decline this patrol.")


# --- withdrawn reports and verified reports -----------------------------------------------------

def rejection_reason(reason: object) -> str:
    """Why a rejected case's reports are withdrawn, as a reversal's note says it."""
    return f"所在案卷被驳回（{reason}）" if isinstance(reason, str) and reason else "所在案卷被驳回"


def self_duplicate_of(joining: dict, others: list[dict]) -> str | None:
    """Policy row "distinct evidence": a report that joins a case in which its reporter already has a report
    is no distinct evidence; the id of that earlier report (the first submitted), else None."""
    earlier = sorted((r for r in others if r["reporter_id"] == joining["reporter_id"] and r["id"] != joining["id"]),
                     key=lambda r: (r["submitted_at"], r["id"]))
    return earlier[0]["id"] if earlier else None


def self_duplicate_reason(case_id: str, earlier_report_id: str) -> str:
    return f"与本人在案卷 {case_id} 中的上报 {earlier_report_id} 重复"


def verified_reporters(reports: list[dict]) -> dict[str, int]:
    """Policy row "verified reports": a case closed after re-check counts once for each of its reporters,
    however many of its reports are theirs, in the year of their first report in it (reporter → year)."""
    years: dict[str, int] = {}
    for report in sorted(reports, key=lambda r: (r["submitted_at"], r["id"])):
        years.setdefault(report["reporter_id"], report["year"])
    return years


# --- the ledger -------------------------------------------------------------------------------

# Each entry draws a number at random when it is recorded; spot checks sample entries by these numbers.
DRAWS = 2 ** 32


def new_id() -> str:
    return secrets.token_hex(12)


def entry(volunteer_id: str, hours: float, kind: str, *, source: str, source_id: str, service_date: date,
          recorded_at: datetime, recorded_by: str, rules: ServiceHoursRules, note: str,
          reverses: str | None = None, patrol_id: str | None = None) -> dict:
    """A ledger entry. Entries are never changed: a correction is another entry that reverses it. A patrol's
    entries name it (`patrol_id`): the part its reports credited at once has the report as its source."""
    document = {"id": new_id(), "volunteer_id": volunteer_id, "hours": hours, "kind": kind, "source": source,
                "source_id": source_id, "service_date": service_date.isoformat(), "year": service_date.year,
                "recorded_at": recorded_at, "recorded_by": recorded_by, "rule_version": rules.rule_version,
                "note": note, "draw": secrets.randbelow(DRAWS)}
    if reverses is not None:
        document["reverses"] = reverses
    if patrol_id is not None:
        document["patrol_id"] = patrol_id
    return document


def reversal_of(original: dict, reason: str, by: str, now: datetime, rules: ServiceHoursRules) -> dict:
    """The entry that cancels `original`, in the year `original` counted in."""
    if original["kind"] == REVERSAL:
        raise Conflict("A reversal cannot itself be reversed; record an adjustment instead.")
    reversal = entry(original["volunteer_id"], -original["hours"], REVERSAL, source=REVERSAL, source_id=original["id"],
                     service_date=date.fromisoformat(original["service_date"]), recorded_at=now, recorded_by=by,
                     rules=rules, note=reason, reverses=original["id"],
                     patrol_id=original.get("patrol_id"))
    return {**reversal, "reversed_kind": original["kind"]}


def counted_kind(document: dict) -> str:
    """The kind of service an entry counts under: a reversal counts against the kind it reverses."""
    return document.get("reversed_kind", document["kind"]) if document["kind"] == REVERSAL else document["kind"]


def check_adjustment(hours: float) -> None:
    """Policy row "adjustments": whole hundredths of an hour, non-zero, at most 1,000 either way."""
    if not whole_hundredths(hours):
        raise InvalidFields(f"Hours are whole hundredths of an hour (e.g. 2.25); {hours!r} is not.",
                            {"hours": ["whole hundredths of an hour, at most two decimals"]})
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
    for optional in ("reverses", "patrol_id"):
        if optional in document:
            shown[optional] = document[optional]
    return shown


# Kinds of service that fill a day (adjustments correct the ledger; they are not time spent on a day).
DAY_KINDS = (PATROL, ACTIVITY)


def refuse_closed_year(year: int, closed: bool) -> None:
    """Policy row "a year's close": nothing is credited into a closed year, its figures are sealed."""
    if closed:
        raise Conflict(f"{year} has been closed: its figures are sealed. Record a correction in the current year.")


@dataclass(frozen=True)
class Posting:
    """An entry as the ledger takes it: the entry, what it adds to the volunteer's running totals, and the
    events it publishes (`credited` with the entry, `level_changed` with the volunteer)."""
    entry: dict
    centihours: int
    pending: int
    sessions: int
    fills_day: bool
    star_level: int
    credited: Event
    level_changed: Event | None


def posting(document: dict, total_before: int, year_closed: bool, rules: ServiceHoursRules,
            correlation_id: str | None, waiting_moves: bool = False, sessions: int | None = None) -> Posting:
    """Post an entry to a volunteer whose running total is `total_before` (centihours). `waiting_moves`: its
    hours move between waiting and credited (a confirmation, evidence taken back), so its day already holds
    them; `sessions`: the sessions of service it adds (by default one, or minus one for a reversal)."""
    refuse_closed_year(document["year"], year_closed)
    amount = centihours(document["hours"])
    if sessions is None:
        sessions = -1 if document["kind"] == REVERSAL else 1
    return Posting(entry=document, centihours=amount, pending=-amount if waiting_moves else 0, sessions=sessions,
                   fills_day=counted_kind(document) in DAY_KINDS and not waiting_moves,
                   star_level=star_level(hours_of(total_before + amount), rules),
                   credited=credited_event(document, correlation_id),
                   level_changed=level_changed(document["volunteer_id"], total_before, total_before + amount, rules,
                                               correlation_id))


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
    """Everyone reads their own record (a grid leader is a volunteer too); staff and grid leaders more."""
    if caller.id == volunteer["id"]:
        return True
    if caller.role == "volunteer":
        return False
    scope = volunteers_visible_to(caller)
    return scope is not None and scope.admits(volunteer)


def patrols_visible_to(caller: Caller) -> Scope:
    """A volunteer's own patrols; a grid leader's grid's and their own (walked anywhere); everything for staff."""
    if caller.role == "volunteer":
        return Scope.any_of({"volunteer_id": caller.id})
    if caller.role == "grid_leader":
        return Scope.any_of({"grid_id": caller.grid}, {"volunteer_id": caller.id})
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


def proof_record(volunteer: dict, row: dict, *, number: int, code: str, grid_name: str, issuer: str,
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


def year_span(year: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The city's local year as [start, end) in UTC: service dates are the city's local dates."""
    return (datetime(year, 1, 1, tzinfo=zone).astimezone(UTC), datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC))


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
# An objection lapses when its year closes before the association decides it (the hours are declined then).
OPEN, UPHELD, DISMISSED, LAPSED = "open", "upheld", "dismissed", "lapsed"
OBJECTION_STATUSES = (OPEN, UPHELD, DISMISSED, LAPSED)
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
    if any(o["volunteer_id"] == volunteer_id and o["status"] == DISMISSED for o in activity.get("objections", [])):
        raise Conflict("The association already decided on an objection to this participant's hours and dismissed "
                       "it: they cannot be objected to again.")
    if participant["status"] != PUBLICISED:
        raise Conflict(f"This participant's hours are {participant['status']} already.")
    return {"id": new_id(), "volunteer_id": volunteer_id, "reason": reason, "raised_by": by, "raised_at": now,
            "status": OPEN, "decided_by": None, "decided_at": None, "note": None}


def shown_objection(objection: dict, caller: Caller) -> dict:
    """Who raised an objection is for the association and the office only: not for other readers, and so never
    for the participant objected to."""
    return objection if caller.role in STAFF else {**objection, "raised_by": None}


def shown_activity(activity: dict, caller: Caller) -> dict:
    return {**activity, "objections": [shown_objection(o, caller) for o in activity.get("objections", [])]}


def activity_closed_with_its_year(activity: dict, now: datetime) -> tuple[dict, list[tuple[str, float]]]:
    """Policy row "a year's close": the activity's hours still publicised or held are declined, "年度已结账",
    and its open objections lapse; returns the changes and each declined participant's hours."""
    released = [(p["volunteer_id"], p["hours"]) for p in activity["participants"] if p["status"] in (PUBLICISED, HELD)]
    participants = [{**p, "status": DECLINED} if p["status"] in (PUBLICISED, HELD) else p
                    for p in activity["participants"]]
    objections = [{**o, "status": LAPSED, "decided_by": "system:year-close", "decided_at": now, "note": YEAR_CLOSED}
                  if o["status"] == OPEN else o for o in activity.get("objections", [])]
    changes = {"participants": participants, "objections": objections, "status": CONFIRMED, "confirmed_at": now}
    return changes, released


def participant_credit(activity: dict, participant: dict, now: datetime, rules: ServiceHoursRules) -> dict:
    return entry(participant["volunteer_id"], participant["hours"], ACTIVITY, source="activity",
                 source_id=activity["id"], service_date=date.fromisoformat(activity["service_date"]), recorded_at=now,
                 recorded_by="system:publicity", rules=rules, note=f"志愿服务活动：{activity['title']}")


# --- spot checks (抽查) --------------------------------------------------------------------------

PASSED, FAILED = "passed", "failed"


# Seeds are drawn from [0, 2^53): any of them fits a JSON number exactly.
SEEDS = 2 ** 53


def spot_check_seed() -> int:
    """Policy row "spot checks": the server draws the seed (and records it on the check), so that nobody can
    redraw until a sample suits them unseen; every check drawn stays listed."""
    return secrets.randbelow(SEEDS)


def spot_check_listed(check: dict) -> dict:
    """A check as the list shows it: what was drawn, by whom and with which seed, and how far it got."""
    items = check["items"]
    return {**{k: check[k] for k in ("id", "year", "size", "seed", "created_by", "created_at")},
            "drawn": len(items), "checked": sum(1 for i in items if i["result"] is not None),
            "failed": sum(1 for i in items if i["result"] == FAILED)}


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


def unchecked_item(check: dict, entry_id: str) -> dict:
    """Policy row "spot checks": a result is recorded for an entry the check drew, once."""
    item = next((i for i in check["items"] if i["entry_id"] == entry_id), None)
    if item is None:
        raise InvalidFields("Not an entry of this spot check.", {"entry_id": ["not in this sample"]})
    if item["result"] is not None:
        raise Conflict(f"Entry {entry_id} was checked already in this spot check.")
    return item


def spot_check_result(passed: bool, note: str, by: str, now: datetime) -> dict:
    return {"result": PASSED if passed else FAILED, "note": note, "checked_by": by, "checked_at": now,
            "reversal_id": None}


def settled(activity: dict) -> bool:
    """An activity is settled (confirmed) once every participant is credited or declined."""
    return all(p["status"] in (CREDITED, DECLINED) for p in activity["participants"])


def objection_decided(activity: dict | None, activity_id: str, objection_id: str, upheld: bool, by: str, note: str,
                      now: datetime) -> tuple[dict, dict]:
    """An objection decided once: upheld, the participant's hours are declined; dismissed, they are publicised
    again. Returns the activity's changes and the objection as decided."""
    objection = next((o for o in (activity or {}).get("objections", []) if o["id"] == objection_id), None)
    if activity is None or objection is None:
        raise NotFound(f"No objection {objection_id} to activity {activity_id}.")
    if objection["status"] != OPEN:
        raise Conflict(f"This objection was {objection['status']} already.")
    decided = {**objection, "status": UPHELD if upheld else DISMISSED, "decided_by": by, "decided_at": now,
               "note": note}
    status = DECLINED if upheld else PUBLICISED
    return {"objections": [decided if o["id"] == objection_id else o for o in activity["objections"]],
            "participants": [{**p, "status": status} if p["volunteer_id"] == objection["volunteer_id"] else p
                             for p in activity["participants"]]}, decided


def participant_credited(activity: dict, volunteer_id: str, entry_id: str, now: datetime) -> dict:
    """The activity's changes once a participant's hours are credited: settled, it is confirmed."""
    participants = [{**p, "status": CREDITED, "entry_id": entry_id} if p["volunteer_id"] == volunteer_id else p
                    for p in activity["participants"]]
    confirmed = {"status": CONFIRMED, "confirmed_at": now} if settled({**activity, "participants": participants}) \
        else {}
    return {"participants": participants, **confirmed}
