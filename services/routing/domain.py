"""Routing's rules: which department gets a case, by when, and which transitions a case allows.

Plain Python over plain dicts: no Flask, no pymongo, no kombu. Every command takes the case as it
is and returns a `Step`: the case as it becomes and the event actions to publish
(`case.<action>.<department>`). A command that the case's state or the actor's scope forbids
raises, and nothing changes.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shared.auth import Caller
from shared.errors import IllegalTransition, InvalidFields, NotVisible
from shared.events import Event, MalformedEvent
from shared.geo import nearest_within
from shared.reference import Category
from shared.scope import Scope

from .clock import CALENDAR, WORKING, DeadlineClock

PENDING_TRIAGE, DISPATCHED, ACCEPTED, RECTIFIED, CLOSED, REJECTED = (
    "pending_triage", "dispatched", "accepted", "rectified", "closed", "rejected")
STATUSES = (PENDING_TRIAGE, DISPATCHED, ACCEPTED, RECTIFIED, CLOSED, REJECTED)
OPEN_STATUSES = (PENDING_TRIAGE, DISPATCHED, ACCEPTED, RECTIFIED)
# The office dispatches from triage, or reassigns while a department holds the case.
DISPATCHABLE_STATUSES = (PENDING_TRIAGE, DISPATCHED, ACCEPTED)
# The deadline runs while the department holds the case and has not yet fed back.
RUNNING_STATUSES = (DISPATCHED, ACCEPTED)
REJECT_REASONS = ("duplicate", "invalid", "out_of_scope")
# What a case's history records, one entry per step.
HISTORY_ACTIONS = ("opened", "dispatched", "accepted", "disputed", "rectified", "verified_passed", "verified_failed",
                   "rejected", "extension_requested", "extension_decided", "overdue", "merged_into", "merged_from")
BASES = (CALENDAR, WORKING)
# Who may read the routing rules, and so where they would send a case.
RULE_READERS = ("office", "service")


@dataclass(frozen=True)
class Actor:
    id: str
    role: str
    dept: str | None = None


@dataclass(frozen=True)
class Rule:
    category: str
    department: str
    deadline_hours: float
    district: str | None = None
    basis: str = "calendar"


@dataclass(frozen=True)
class Step:
    case: dict
    actions: tuple[str, ...]
    # The report a `joined` step is about: the one that joined the case.
    joined_report_id: str | None = None
    # A merge's target: the reports that came from the merged case (one `joined` action each, in order) and its id.
    merged_report_ids: tuple[str, ...] = ()
    merged_from: str | None = None


@dataclass(frozen=True)
class Merge:
    """Both sides of a merge, stored together: the duplicate that ends and the case its reports join."""
    source: Step
    target: Step


def visible_to(caller: Caller) -> Scope:
    """A department sees its own cases, a grid leader its grid's, the office (and association, service) all."""
    if caller.role == "department":
        return Scope.any_of({"department": caller.dept})
    if caller.role == "grid_leader":
        return Scope.any_of({"grid_id": caller.grid})
    return Scope.everything()


def default_rules(categories: Iterable[Category]) -> list[Rule]:
    """The city's own table: each category to its default department and time limit."""
    return [Rule(category=c.code, department=c.department, deadline_hours=c.deadline_hours)
            for c in categories if c.department and c.deadline_hours]


def match_rule(rules: list[Rule], category: str, district: str | None) -> Rule | None:
    """A district's own rule wins over the city-wide rule for the category."""
    for rule in rules:
        if rule.category == category and rule.district and rule.district == district:
            return rule
    return next((r for r in rules if r.category == category and not r.district), None)


def suggestion(case: dict, rules: list[Rule], caller: Caller) -> dict | None:
    """Where the rules would send the case, for a caller who may read them, while it can still be dispatched."""
    if caller.role not in RULE_READERS or case["status"] not in DISPATCHABLE_STATUSES:
        return None
    rule = match_rule(rules, case["category"], case.get("district"))
    return {"department": rule.department, "deadline_hours": rule.deadline_hours} if rule else None


def check_rules(rules: list[Rule], categories: set[str], departments: set[str]) -> None:
    errors: dict[str, list[str]] = {}
    seen: set[tuple[str, str | None]] = set()
    for index, rule in enumerate(rules):
        problems = []
        if rule.category not in categories:
            problems.append(f"unknown category {rule.category!r}")
        if rule.department not in departments:
            problems.append(f"unknown department {rule.department!r}")
        if not 0 < rule.deadline_hours <= 24 * 365:
            problems.append("deadline_hours must be between 0 and 8760")
        if rule.basis not in BASES:
            problems.append(f"basis must be one of {', '.join(BASES)}")
        scope = (rule.category, rule.district or None)  # "" is city-wide, as match_rule reads it
        if scope in seen:
            problems.append("a second rule for the same category and district")
        seen.add(scope)
        if problems:
            errors[f"items.{index}"] = problems
    if errors:
        raise InvalidFields("Some rules are invalid; see errors.", errors)


def nearest_open_case(lat: float, lng: float, candidates: list[dict]) -> dict | None:
    """The nearest open case within the duplicate radius (candidates: same category)."""
    return nearest_within(lat, lng, [c for c in candidates if c["status"] in OPEN_STATUSES])


# --- commands ---------------------------------------------------------------------------------

def _entry(at: datetime, actor: Actor, action: str, note: str | None = None) -> dict:
    return {"at": at, "actor": f"{actor.role}:{actor.id}", "action": action, "note": note or ""}


def _with(case: dict, entry: dict, **changes) -> dict:
    return {**case, **changes, "history": [*case["history"], entry]}


def _require(case: dict, allowed: tuple[str, ...], command: str) -> None:
    if case["status"] not in allowed:
        raise IllegalTransition(f"Cannot {command} a case that is {case['status']} "
                                f"(allowed from: {', '.join(allowed)}).")


def _require_holder(case: dict, actor: Actor) -> None:
    """A department acts on its own cases only; to it, another's case does not exist."""
    if actor.role == "department" and case.get("department") != actor.dept:
        raise NotVisible(f"No case {case['id']}.")


SYSTEM = Actor(id="routing", role="service")


def open_case(case_id: str, report: dict, rule: Rule | None, clock: DeadlineClock, now: datetime) -> Step:
    case = {
        "id": case_id, "report_ids": [report["id"]], "category": report["category"], "department": None,
        "status": PENDING_TRIAGE, "grid_id": report["grid_id"], "district": report.get("district"),
        "location": report["location"], "description": report["description"], "photo_ids": report["photo_ids"],
        "opened_at": now, "dispatched_at": None, "due_at": None, "deadline_hours": None, "basis": "calendar",
        "overdue": False, "escalation_level": 0, "rework_count": 0, "extension": None, "deferred": False,
        "accepted_at": None, "rectified_at": None, "closed_at": None, "after_photo_ids": [],
        "rejection": None, "merged_into": None, "merged_report_ids": [], "history": [], "version": 0,
    }
    opened = _with(case, _entry(now, SYSTEM, "opened", "由巡访报告立案"))
    if rule is None:
        return Step(opened, ("opened",))
    dispatched = _dispatch(opened, SYSTEM, rule.department, hours=rule.deadline_hours, basis=rule.basis, clock=clock,
                           now=now, note=f"按规则自动派遣（{rule.deadline_hours:g} 小时）")
    return Step(dispatched, ("opened", "dispatched"))


def submitted_report(data: dict) -> dict:
    """The report a `report.submitted` carries, if it is one routing can work with. One that is not can
    never be: MalformedEvent parks it at once instead of retrying it for a minute."""
    problems = [f"{name} is not {kind.__name__}" for name, kind in
                (("id", str), ("category", str), ("grid_id", str), ("description", str), ("photo_ids", list),
                 ("location", dict)) if not isinstance(data.get(name), kind)]
    location = data.get("location") if isinstance(data.get("location"), dict) else {}
    for name, bound in (("lat", 90), ("lng", 180)):
        value = location.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not -bound <= value <= bound:
            problems.append(f"location.{name} is not a coordinate")
    if problems:
        raise MalformedEvent(f"report.submitted cannot be routed: {'; '.join(problems)}")
    return data


@dataclass(frozen=True)
class Submitted:
    """A report to route, from its `report.submitted`."""
    report: dict
    correlation_id: str | None


def route_report(report: dict, nearby: list[dict], rule: Rule | None, clock: DeadlineClock, now: datetime) -> Step:
    """A new report joins the nearest open case of its kind within the duplicate radius, or opens one."""
    location = report["location"]
    existing = nearest_open_case(location["lat"], location["lng"], nearby)
    if existing is not None:
        return join_case(existing, report["id"])
    return open_case(f"case-{report['id']}", report, rule, clock, now)


def join_case(case: dict, report_id: str) -> Step:
    """A likely duplicate joins the open case, which goes on as it is: `joined`, never a second `opened`, so
    that a department is not told of a case it already works as if it were new."""
    if report_id in case["report_ids"]:
        return Step(case, ())
    _require(case, OPEN_STATUSES, "join a report to")
    return Step({**case, "report_ids": [*case["report_ids"], report_id]}, ("joined",), report_id)


def _dispatch(case: dict, actor: Actor, department: str, *, hours: float, basis: str, clock: DeadlineClock,
              now: datetime, note: str | None) -> dict:
    return _with(case, _entry(now, actor, "dispatched", note), status=DISPATCHED, department=department,
                 dispatched_at=case["dispatched_at"] or now, due_at=clock.add(now, hours), deadline_hours=hours,
                 basis=basis, overdue=False, escalation_level=0, extension=None, deferred=False)


def dispatch(case: dict, actor: Actor, department: str, *, hours: float, basis: str, clock: DeadlineClock,
             now: datetime, note: str | None = None) -> Step:
    """The office sends a case from triage, or reassigns one still with a department."""
    _require(case, DISPATCHABLE_STATUSES, "dispatch")
    return Step(_dispatch(case, actor, department, hours=hours, basis=basis, clock=clock, now=now, note=note),
                ("dispatched",))


def accept(case: dict, actor: Actor, now: datetime) -> Step:
    _require_holder(case, actor)
    _require(case, (DISPATCHED,), "accept")
    return Step(_with(case, _entry(now, actor, "accepted"), status=ACCEPTED, accepted_at=now), ("accepted",))


def dispute(case: dict, actor: Actor, reason: str, now: datetime) -> Step:
    """"Not ours": back to the office's triage, with the reason."""
    _require_holder(case, actor)
    _require(case, (DISPATCHED, ACCEPTED), "dispute")
    changed = _with(case, _entry(now, actor, "disputed", reason), status=PENDING_TRIAGE, department=None,
                    due_at=None, overdue=False, escalation_level=0, extension=None, deferred=False)
    return Step(changed, ("disputed",))


def rectify(case: dict, actor: Actor, note: str, photo_ids: list[str], now: datetime,
            not_theirs: list[str] = ()) -> Step:
    """`not_theirs`: the photo ids the department did not upload itself (or that were never issued)."""
    _require_holder(case, actor)
    _require(case, (ACCEPTED,), "rectify")
    if not_theirs:
        raise InvalidFields("After-photos must be photos your department uploaded.",
                            {"photo_ids": [f"Not a photo your department uploaded: {', '.join(not_theirs)}."]})
    changed = _with(case, _entry(now, actor, "rectified", note), status=RECTIFIED,
                    rectified_at=case["rectified_at"] or now, after_photo_ids=list(photo_ids))
    return Step(changed, ("rectified",))


def verify(case: dict, actor: Actor, passed: bool, *, note: str, hours: float | None, clock: DeadlineClock,
           now: datetime) -> Step:
    """The office checks the fix: pass closes the case; fail sends it back for rework with a new deadline."""
    _require(case, (RECTIFIED,), "verify")
    if passed:
        return Step(_with(case, _entry(now, actor, "verified_passed", note), status=CLOSED, closed_at=now),
                    ("closed",))
    hours = hours or case["deadline_hours"]
    changed = _with(case, _entry(now, actor, "verified_failed", note), status=ACCEPTED,
                    rework_count=case["rework_count"] + 1, due_at=clock.add(now, hours), overdue=False,
                    escalation_level=0, extension=None, deferred=False)
    return Step(changed, ("reopened",))


def reject(case: dict, actor: Actor, reason: str, note: str, now: datetime) -> Step:
    _require(case, OPEN_STATUSES, "reject")
    changed = _with(case, _entry(now, actor, "rejected", f"{reason}: {note}" if note else reason),
                    status=REJECTED, rejection={"reason": reason, "note": note}, closed_at=now)
    return Step(changed, ("rejected",))


def merge(source: dict, target: dict, actor: Actor, note: str | None, now: datetime) -> Merge:
    """The office finds that two open cases are one problem (the automatic join missed it: farther apart than the
    duplicate radius, or one waited in triage): the source's reports and photos move to the target, which goes on
    as it is, and the source ends as a rejected duplicate that says where its reports went.

    Same category only: a case's category names the responsible department and its time limit, so a report of
    another kind merged in would be handled by a department that is not responsible for it (the office dispatches
    or rejects a mis-filed report instead)."""
    if source["id"] == target["id"]:
        raise IllegalTransition("A case cannot be merged into itself.")
    _require(source, OPEN_STATUSES, "merge")
    if target["status"] not in OPEN_STATUSES:
        raise IllegalTransition(f"Cannot merge into a case that is {target['status']} "
                                f"(allowed into: {', '.join(OPEN_STATUSES)}).")
    if source["category"] != target["category"]:
        raise IllegalTransition(f"Cannot merge a {source['category']} case into a {target['category']} case: "
                                "a duplicate is of the same category.")
    moved = [r for r in source["report_ids"] if r not in target["report_ids"]]
    photos = [*target["photo_ids"], *(p for p in source["photo_ids"] if p not in target["photo_ids"])]
    said = f"：{note}" if note else ""
    grown = _with(target, _entry(now, actor, "merged_from", f"案卷 {source['id']} 并入本案卷{said}"),
                  report_ids=[*target["report_ids"], *moved], photo_ids=photos)
    ended = _with(source, _entry(now, actor, "merged_into", f"并入案卷 {target['id']}{said}"), status=REJECTED,
                  rejection={"reason": "duplicate", "note": note or ""}, merged_into=target["id"],
                  merged_report_ids=list(source["report_ids"]), report_ids=[], closed_at=now)
    return Merge(source=Step(ended, ("rejected",)),
                 target=Step(grown, ("joined",) * len(moved), merged_report_ids=tuple(moved),
                             merged_from=source["id"]))


def request_extension(case: dict, actor: Actor, hours: float, reason: str, now: datetime) -> Step:
    _require_holder(case, actor)
    _require(case, RUNNING_STATUSES, "ask for an extension of")
    if case["extension"] and case["extension"]["status"] == "requested":
        raise IllegalTransition("An extension request is already waiting for the office's decision.")
    extension = {"hours": hours, "reason": reason, "status": "requested", "requested_at": now,
                 "requested_by": actor.id, "decided_at": None, "note": None}
    return Step(_with(case, _entry(now, actor, "extension_requested", reason), extension=extension),
                ("extension_requested",))


def decide_extension(case: dict, actor: Actor, approved: bool, *, note: str | None, clock: DeadlineClock,
                     now: datetime) -> Step:
    extension = case["extension"]
    if not extension or extension["status"] != "requested":
        raise IllegalTransition("There is no extension request waiting for a decision.")
    if case["status"] not in RUNNING_STATUSES:
        raise IllegalTransition(f"The case is {case['status']}; its deadline no longer runs.")
    decided = {**extension, "status": "approved" if approved else "refused", "decided_at": now, "note": note}
    changes: dict = {"extension": decided}
    if approved:
        due_at = clock.add(case["due_at"], extension["hours"])
        changes.update(due_at=due_at, deferred=True, overdue=due_at <= now)
    verdict = "同意延期" if approved else "不同意延期"
    entry = _entry(now, actor, "extension_decided", verdict + (f"：{note}" if note else ""))
    return Step(_with(case, entry, **changes), ("extension_decided",))


def mark_overdue(case: dict, now: datetime) -> Step:
    """Once per deadline: the flag, an escalation level, and an event the office is notified by."""
    if case["status"] not in RUNNING_STATUSES or case["overdue"] or case["due_at"] is None or case["due_at"] > now:
        return Step(case, ())
    changed = _with(case, _entry(now, SYSTEM, "overdue", "超过整改期限，升级督办"), overdue=True,
                    escalation_level=case["escalation_level"] + 1)
    return Step(changed, ("overdue",))


def case_events(step: Step, correlation_id: str | None) -> list[Event]:
    """One event per action of a step: `case.<action>.<department or none>`; a merge's target publishes one
    `joined` per report that came over, as if each had joined by itself."""
    holder = step.case["department"] or "none"
    joining = iter(step.merged_report_ids or (step.joined_report_id,))
    return [Event.new(f"case.{action}.{holder}", "routing",
                      event_data(step.case, action, next(joining) if action == "joined" else None, step.merged_from),
                      correlation_id)
            for action in step.actions]


def _reports_at(case: dict, action: str, joined_report_id: str | None) -> list[str]:
    """The case's reports as a step left them. A `joined` names those up to the one that joined (each report
    moved by a merge joins after the previous one: a reader counts what the reporter had in the case before).
    A merged case names the reports it held, which now follow the case it was merged into."""
    if action == "joined" and joined_report_id in case["report_ids"]:
        return case["report_ids"][:case["report_ids"].index(joined_report_id) + 1]
    if action == "rejected" and case.get("merged_into"):
        return case["merged_report_ids"]
    return case["report_ids"]


def event_data(case: dict, action: str, joined_report_id: str | None = None, merged_from: str | None = None) -> dict:
    """What `case.<action>.<department>` carries: the contract's fields (docs/contract.md), plus what the step adds."""
    last = case["history"][-1] if case["history"] else {}
    data = {
        "case_id": case["id"], "report_ids": _reports_at(case, action, joined_report_id), "category": case["category"],
        "department": case["department"], "status": case["status"], "due_at": case["due_at"],
        "grid_id": case["grid_id"], "location": case["location"], "description": case["description"],
        "photo_ids": case["photo_ids"], "overdue": case["overdue"], "escalation_level": case["escalation_level"],
        "rework_count": case["rework_count"], "case_version": case["version"], "note": last.get("note"),
    }
    if action == "rectified":
        data["after_photo_ids"] = case["after_photo_ids"]
    if action == "rejected":
        data["reason"] = case["rejection"]["reason"]
        data["note"] = case["rejection"]["note"]
        if case.get("merged_into"):
            data["merged_into"] = case["merged_into"]
    if action.startswith("extension"):
        data["extension"] = case["extension"]
        data["approved"] = case["extension"]["status"] == "approved"
    if action == "joined":
        data["report_id"] = joined_report_id
        data["note"] = None  # a join writes no history: the last entry's note belongs to an earlier step
        if merged_from:
            data["merged_from"] = merged_from
    return data


# --- the map: cases as light points in a box ---------------------------------------------------

# "Due soon" wherever the console colours a deadline: it falls within the next 24 working hours (the office's
# working day, holidays excluded), whatever clock the case's own time limit is counted by.
DUE_SOON_WORKING_HOURS = 24.0
# The widest box the map may ask for, in degrees of latitude and of longitude: a city with its counties.
MAX_BOX_SPAN_DEG = 2.0
# At most this many points in one answer; beyond it the answer says it is truncated and the map asks to zoom in.
MAX_POINTS = 10_000
# Closed and rejected cases are history that grows for ever: the map shows them only opened in a bounded period.
MAX_HISTORY_PERIOD_DAYS = 93
FINISHED_STATUSES = (CLOSED, REJECTED)
DEADLINE_STATES = ("overdue", "due_soon", "running", "none")


def due_soon_before(now: datetime, working: DeadlineClock) -> datetime:
    """The instant 24 working hours from now: a running deadline before it is due soon."""
    return working.add(now, DUE_SOON_WORKING_HOURS)


def deadline_state(case: dict, now: datetime, soon: datetime) -> str:
    """How the case stands against its deadline: overdue (flagged, or passed while it runs), due soon, running,
    or none (no deadline runs: awaiting triage, rectified, finished)."""
    due_at = case.get("due_at")
    if case["status"] not in RUNNING_STATUSES or due_at is None:
        return "overdue" if case.get("overdue") and case["status"] in OPEN_STATUSES else "none"
    if case.get("overdue") or due_at <= now:
        return "overdue"
    return "due_soon" if due_at <= soon else "running"


def map_point(case: dict, now: datetime, soon: datetime) -> dict:
    """A case as the map draws it: where, what, whose, and how its deadline stands."""
    state = deadline_state(case, now, soon)
    return {"id": case["id"], "lat": case["location"]["lat"], "lng": case["location"]["lng"],
            "status": case["status"], "category": case["category"], "department": case["department"],
            "grid_id": case["grid_id"], "due_at": case.get("due_at"), "overdue": state == "overdue",
            "due_soon": state == "due_soon", "deadline": state}


def grid_counts(points: list[dict]) -> list[dict]:
    """Per grid cell, how many of the points lie in it, how many are overdue and how many due soon."""
    counts: dict[str, dict] = {}
    for point in points:
        row = counts.setdefault(point["grid_id"], {"grid_id": point["grid_id"], "count": 0, "overdue": 0,
                                                   "due_soon": 0})
        row["count"] += 1
        row["overdue"] += point["overdue"]
        row["due_soon"] += point["due_soon"]
    return sorted(counts.values(), key=lambda row: row["grid_id"])


def check_map_period(status: str | None, opened_from: datetime | None, opened_to: datetime | None) -> None:
    """Open cases are the present and bounded; finished ones only for a period of at most MAX_HISTORY_PERIOD_DAYS."""
    if opened_from is not None and opened_to is not None and opened_from >= opened_to:
        raise InvalidFields("from must be before to.", {"from": ["must be before to"]})
    if status not in FINISHED_STATUSES:
        return
    if opened_from is None or opened_to is None:
        raise InvalidFields("Closed and rejected cases are shown for a period only: give from and to.",
                            {"from": ["required with a closed or rejected status"]})
    if (opened_to - opened_from).total_seconds() > MAX_HISTORY_PERIOD_DAYS * 86_400:
        raise InvalidFields(f"A period of at most {MAX_HISTORY_PERIOD_DAYS} days.",
                            {"to": [f"at most {MAX_HISTORY_PERIOD_DAYS} days after from"]})
