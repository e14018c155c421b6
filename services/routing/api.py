"""Routing's HTTP API: translate the request, call a use case (or a query of the store), translate back."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_smorest import Blueprint

from shared.auth import Caller, current_caller, requires
from shared.errors import Forbidden, InvalidFields, NotFound
from shared.logs import correlation_id
from shared.openapi import link, links
from shared.pagination import decode_cursor, page
from shared.photo_ids import PhotoIds, side_of
from shared.reference import ReferenceData
from shared.spreadsheets import AS_XLSX_TOO, xlsx_answer

from . import domain, schemas, sla, stats
from .clock import WORKING
from .domain import Actor, Rule, Step
from .spreadsheet import LEAGUE_TABLE
from .store import CaseStore
from .usecases.cases import act_on_case, merge_cases

# With no rule for the category, the office's dispatch falls back to the longest demo time limit.
FALLBACK_DEADLINE_HOURS = 72.0
CASE_READERS = ("office", "department", "grid_leader", "association", "service")

cases = Blueprint("cases", __name__, url_prefix="/v1/cases", description="Cases and their closed loop")
rules = Blueprint("rules", __name__, url_prefix="/v1", description="Routing rules and departments")
statistics = Blueprint("statistics", __name__, url_prefix="/v1/stats", description="League tables (排名通报)")


@dataclass
class Routing:
    store: CaseStore
    reference: ReferenceData
    clock_for: Callable[[str], domain.DeadlineClock]
    photo_ids: PhotoIds


def routing() -> Routing:
    return current_app.extensions["routing"]


def now() -> datetime:
    return datetime.now(UTC)


def actor(caller: Caller) -> Actor:
    return Actor(id=caller.id, role=caller.role, dept=caller.dept)


def _shown(case: dict) -> dict:
    """A case as its caller gets it: with the rules' suggestion for those who may read the rules."""
    return {**case, "suggestion": domain.suggestion(case, routing().store.rules_in_force(), current_caller())}


# Where a case leads (OpenAPI links): from the list's first case, or from a case, to each of its commands.
COMMANDS = {"Accept": "accept", "Dispute": "dispute", "Rectify": "rectify", "AskForExtension": "extension",
            "Dispatch": "dispatch", "Verify": "verify", "Reject": "reject", "DecideExtension": "extension/decision",
            "Merge": "merge"}


def _case_links(case_id: str) -> dict:
    return {"GetCase": link("/v1/cases/{case_id}", "get", case_id=case_id),
            **{name: link(f"/v1/cases/{{case_id}}/{path}", "post", case_id=case_id) for name, path in COMMANDS.items()}}


# --- reading cases ----------------------------------------------------------------------------

@cases.route("", methods=["GET"])
@requires(*CASE_READERS)
@cases.arguments(schemas.CaseQuerySchema, location="query")
@cases.response(200, schemas.CasePageSchema)
@cases.doc(**links(200, **_case_links("$response.body#/items/0/id")))
def list_cases(query: dict):
    """Cases you may see, newest (or oldest) first, filtered and cursor-paginated."""
    wanted = {k: query[k] for k in ("status", "department", "overdue", "grid_id", "category") if k in query}
    items = routing().store.list_cases(wanted, domain.visible_to(current_caller()), decode_cursor(query.get("cursor")),
                                       query["limit"], oldest=query["order"] == "oldest")
    return page([_shown(case) for case in items], query["limit"], "opened_at")


@cases.route("/<case_id>", methods=["GET"])
@requires(*CASE_READERS)
@cases.response(200, schemas.CaseSchema)
@cases.doc(**links(200, **_case_links("$response.body#/id")))
def get_case(case_id: str):
    """One case with its history (404 if it is not yours to see)."""
    case = routing().store.case(case_id)
    if case is None or not domain.visible_to(current_caller()).admits(case):
        raise NotFound(f"No case {case_id}.")
    return _shown(case)


# --- the office's commands --------------------------------------------------------------------

@cases.route("/<case_id>/dispatch", methods=["POST"])
@requires("office")
@cases.arguments(schemas.DispatchSchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="Not in a state that allows dispatch")
def dispatch_case(body: dict, case_id: str):
    """Send a case from triage to a department, or reassign it, with a deadline."""
    ctx, caller = routing(), current_caller()
    if body["department"] not in ctx.reference.departments:
        raise InvalidFields("Unknown department.", {"department": [f"one of {', '.join(ctx.reference.departments)}"]})

    def decide(case: dict) -> Step:
        rule = domain.match_rule(ctx.store.all_rules(), case["category"], case.get("district"))
        hours = body["deadline_hours"] or (rule.deadline_hours if rule else FALLBACK_DEADLINE_HOURS)
        basis = rule.basis if rule else "calendar"
        return domain.dispatch(case, actor(caller), body["department"], hours=hours, basis=basis,
                               clock=ctx.clock_for(basis), now=now(), note=body["note"])

    return _shown(act_on_case(ctx.store, caller, case_id, decide, correlation_id=correlation_id.get()))


@cases.route("/<case_id>/verify", methods=["POST"])
@requires("office")
@cases.arguments(schemas.VerifySchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="The case is not rectified")
def verify_case(body: dict, case_id: str):
    """Check the fix: passed closes the case; failed sends it back for rework with a new deadline."""
    ctx, caller = routing(), current_caller()
    return _shown(act_on_case(ctx.store, caller, case_id, lambda case: domain.verify(
        case, actor(caller), body["passed"], note=body["note"], hours=body["deadline_hours"],
        clock=ctx.clock_for(case["basis"]), now=now()), correlation_id=correlation_id.get()))


@cases.route("/<case_id>/reject", methods=["POST"])
@requires("office")
@cases.arguments(schemas.RejectSchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="The case is already closed or rejected")
def reject_case(body: dict, case_id: str):
    """Reject a case as a duplicate, invalid or out of scope."""
    caller = current_caller()
    return _shown(act_on_case(routing().store, caller, case_id, lambda case: domain.reject(
        case, actor(caller), body["reason"], body["note"], now()), correlation_id=correlation_id.get()))


@cases.route("/<case_id>/merge", methods=["POST"])
@requires("office")
@cases.arguments(schemas.MergeSchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(404, response="NOT_FOUND", description="No such case, or no such case to merge into")
@cases.alt_response(409, response="CONFLICT",
                    description="Either case is not open, they are the same case, or of different categories")
def merge_case(body: dict, case_id: str):
    """Merge a duplicate into another open case of its category: its reports and photos join that case (each
    publishes `case.joined`), and it ends rejected as a duplicate with `merged_into`. Answers the merged case."""
    caller = current_caller()
    merged = merge_cases(routing().store, case_id, body["into"], lambda source, target: domain.merge(
        source, target, actor(caller), body["note"], now()), correlation_id=correlation_id.get())
    return _shown(merged)


@cases.route("/<case_id>/extension/decision", methods=["POST"])
@requires("office")
@cases.arguments(schemas.ExtensionDecisionSchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="No extension request is waiting")
def decide_extension(body: dict, case_id: str):
    """Approve (the deadline moves, the case counts as deferred) or refuse an extension."""
    ctx, caller = routing(), current_caller()
    return _shown(act_on_case(ctx.store, caller, case_id, lambda case: domain.decide_extension(
        case, actor(caller), body["approved"], note=body["note"], clock=ctx.clock_for(case["basis"]), now=now()),
        correlation_id=correlation_id.get()))


# --- the department's commands ----------------------------------------------------------------

@cases.route("/<case_id>/accept", methods=["POST"])
@requires("department")
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="The case is not dispatched")
def accept_case(case_id: str):
    """Take the case on."""
    caller = current_caller()
    return _shown(act_on_case(routing().store, caller, case_id, lambda case: domain.accept(case, actor(caller), now()),
                              correlation_id=correlation_id.get()))


@cases.route("/<case_id>/dispute", methods=["POST"])
@requires("department")
@cases.arguments(schemas.DisputeSchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="The case is not with the department")
def dispute_case(body: dict, case_id: str):
    """"Not ours": the case goes back to the office's triage with the reason."""
    caller = current_caller()
    return _shown(act_on_case(routing().store, caller, case_id, lambda case: domain.dispute(
        case, actor(caller), body["reason"], now()), correlation_id=correlation_id.get()))


@cases.route("/<case_id>/rectify", methods=["POST"])
@requires("department")
@cases.arguments(schemas.RectifySchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="The case is not accepted")
def rectify_case(body: dict, case_id: str):
    """Report the fix with a note and after-photos the department itself uploaded (POST intake's /v1/photos)."""
    ctx, caller = routing(), current_caller()
    not_theirs = ctx.photo_ids.not_issued_to(body["photo_ids"], side_of(caller))
    return _shown(act_on_case(ctx.store, caller, case_id, lambda case: domain.rectify(
        case, actor(caller), body["note"], body["photo_ids"], now(), not_theirs), correlation_id=correlation_id.get()))


@cases.route("/<case_id>/extension", methods=["POST"])
@requires("department")
@cases.arguments(schemas.ExtensionRequestSchema)
@cases.response(200, schemas.CaseSchema)
@cases.alt_response(409, response="CONFLICT", description="Not running, or a request is already waiting")
def request_extension(body: dict, case_id: str):
    """Ask the office for more time."""
    caller = current_caller()
    return _shown(act_on_case(routing().store, caller, case_id, lambda case: domain.request_extension(
        case, actor(caller), body["hours"], body["reason"], now()), correlation_id=correlation_id.get()))


# --- rules and departments --------------------------------------------------------------------

@rules.route("/rules", methods=["GET"])
@requires(*domain.RULE_READERS)
@rules.response(200, schemas.RuleListSchema)
def list_rules():
    """Category (and optionally district) → department, time limit and how it is counted."""
    return {"items": [vars(rule) for rule in routing().store.all_rules()]}


@rules.route("/rules", methods=["PUT"])
@requires("office")
@rules.arguments(schemas.RuleListSchema)
@rules.response(200, schemas.RuleListSchema)
def replace_rules(body: dict):
    """Replace the whole rule table; categories without a rule wait for the office's triage. New reports are
    routed by the new table from at most a second after the answer."""
    ctx = routing()
    new_rules = [Rule(**item) for item in body["items"]]
    domain.check_rules(new_rules, set(ctx.reference.categories), set(ctx.reference.departments))
    ctx.store.replace_rules(new_rules)
    return {"items": [vars(rule) for rule in ctx.store.all_rules()]}


@rules.route("/departments", methods=["GET"])
@requires()
@rules.response(200, schemas.DepartmentListSchema)
def list_departments():
    """The responsible departments cases are routed to."""
    return {"items": [vars(d) for d in routing().reference.departments.values()]}


# --- statistics -------------------------------------------------------------------------------

def _local_month(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m")


def _local_date(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d")


def _league_response(rows: list[dict], start: datetime, end: datetime, *, fmt: str, kind: str, title: str,
                     period: str):
    if fmt == "xlsx":
        return xlsx_answer(LEAGUE_TABLE, f"{kind}-league.xlsx", now(), rows=rows, title=title, period_text=period,
                           kind=kind)
    return {"from": start, "to": end, "items": rows}


@statistics.route("/departments", methods=["GET"])
@requires("office", "service")
@statistics.arguments(schemas.PeriodQuerySchema, location="query")
@statistics.response(200, schemas.DepartmentLeagueSchema)
@statistics.doc(**AS_XLSX_TOO)
def department_league(query: dict):
    """Per department: due, closed on time, on-time rate (closed on time ÷ (due − deferred)), overdue,
    rework rate, average hours to rectify; ranked."""
    ctx = routing()
    zone = ctx.reference.timezone
    end = query.get("to") or now()
    start = query.get("from_") or stats.month_bounds(_local_month(end, zone), zone)[0]
    if start >= end:
        raise InvalidFields("from must be before to.", {"from": ["must be before to"]})
    names = {code: d.name_zh for code, d in ctx.reference.departments.items()}
    rows = stats.department_stats(ctx.store.cases_for_stats(start, end), names, start, end, now())
    period = f"{_local_date(start, zone)} 至 {_local_date(end, zone)}"
    return _league_response(rows, start, end, fmt=query["format"], kind="department", title="责任部门整改情况排名通报",
                            period=period)


@statistics.route("/grids", methods=["GET"])
@requires("office", "service")
@statistics.arguments(schemas.MonthQuerySchema, location="query")
@statistics.response(200, schemas.GridLeagueSchema)
@statistics.doc(**AS_XLSX_TOO)
def grid_league(query: dict):
    """The same measures per grid cell for a month; ranked."""
    ctx = routing()
    zone = ctx.reference.timezone
    month = query.get("month") or _local_month(now(), zone)
    start, end = stats.month_bounds(month, zone)
    names = {grid_id: grid.name for grid_id, grid in ctx.reference.grids.items()}
    rows = stats.grid_stats(ctx.store.cases_for_stats(start, end), names, start, end, now())
    return _league_response(rows, start, end, fmt=query["format"], kind="grid", title=f"{month} 网格问题整改情况排名",
                            period=month)



# --- the map ----------------------------------------------------------------------------------

@cases.route("/points", methods=["GET"])
@requires(*CASE_READERS)
@cases.arguments(schemas.PointQuerySchema, location="query")
@cases.response(200, schemas.MapPointsSchema)
def case_points(query: dict):
    """Cases inside a box as light points for the map (open ones unless a status says otherwise), with how each
    deadline stands and the count per grid cell; at most `limit`, and `truncated` when more match."""
    domain.check_map_period(query.get("status"), query.get("from_"), query.get("to"))
    wanted = {k: query[k] for k in ("status", "department", "grid_id", "category") if k in query}
    ctx = routing()
    found, truncated = ctx.store.open_points(wanted, domain.visible_to(current_caller()), query["bbox"],
                                             query["limit"], (query.get("from_"), query.get("to")))
    moment = now()
    soon = domain.due_soon_before(moment, ctx.clock_for(WORKING))
    points = [domain.map_point(case, moment, soon) for case in found]
    answer = {"items": points, "truncated": truncated, "grid_counts": domain.grid_counts(points),
              "due_soon_before": soon}
    return current_app.response_class(schemas.points_json(answer), mimetype="application/json")


# --- the SLA board (督办看板) and the monthly series, for the console's /sla and /stats ---------------

@cases.route("/sla", methods=["GET"])
@requires("office", "department", "grid_leader", "service")
@cases.arguments(schemas.SlaQuerySchema, location="query")
@cases.response(200, schemas.SlaBoardSchema)
def sla_board(query: dict):
    """Per department: the running cases overdue and those due within `within_hours` on their own clock, with
    hours left or overdue by and the escalation level. A department sees its own row, a grid leader the grid's
    cases, the office every department."""
    ctx, caller, moment = routing(), current_caller(), now()
    departments = list(ctx.reference.departments)
    if "department" in query:
        if query["department"] not in ctx.reference.departments:
            raise InvalidFields("Unknown department.", {"department": [f"one of {', '.join(departments)}"]})
        if caller.role == "department" and query["department"] != caller.dept:
            raise Forbidden("A department sees its own SLA board only.")
        departments = [query["department"]]
    elif caller.role == "department":
        departments = [caller.dept]
    scope = domain.visible_to(caller)
    # The office's board reads department by department; a grid leader's reads the grid's once.
    wanted = [{"department": code} for code in departments] if scope.unlimited or len(departments) == 1 else [{}]
    filters = [f for one in wanted for f in scope.within(one)]
    horizons = {basis: ctx.clock_for(basis).add(moment, query["within_hours"]) for basis in domain.BASES}
    found = ctx.store.sla_board(filters, max(horizons.values()))
    rows = sla.sla_board(found, departments, ctx.clock_for, moment, horizons, query["limit"])
    names = {code: d.name_zh for code, d in ctx.reference.departments.items()}
    return {"as_of": moment, "within_hours": query["within_hours"],
            "departments": [{**row, "department_name": names[row["department"]]} for row in rows]}


def _monthly(months: list[str], league: Callable[[list[dict], datetime, datetime], list[dict]]) -> dict:
    """One league table per month, from one read of the cases that can count in any of them."""
    zone = routing().reference.timezone
    bounds = [(month, *stats.month_bounds(month, zone)) for month in months]
    found = routing().store.cases_for_stats(bounds[0][1], bounds[-1][2])
    return {"months": [{"month": month, "from": start, "to": end, "items": league(found, start, end)}
                       for month, start, end in bounds]}


@statistics.route("/departments/monthly", methods=["GET"])
@requires("office", "service")
@statistics.arguments(schemas.MonthRangeQuerySchema, location="query")
@statistics.response(200, schemas.DepartmentMonthlySchema)
def department_league_monthly(query: dict):
    """The department league table month by month (at most 12 months): the series behind the console's charts.
    `overdue_open` is the same in every month: the cases overdue now."""
    months = stats.months_between(query["from_month"], query["to_month"], schemas.STATS_MAX_MONTHS)
    names = {code: d.name_zh for code, d in routing().reference.departments.items()}
    return _monthly(months, lambda found, start, end: stats.department_stats(found, names, start, end, now()))


@statistics.route("/grids/monthly", methods=["GET"])
@requires("office", "service")
@statistics.arguments(schemas.MonthRangeQuerySchema, location="query")
@statistics.response(200, schemas.GridMonthlySchema)
def grid_league_monthly(query: dict):
    """The grid league table month by month (at most 12 months). `overdue_open` is the cases overdue now."""
    months = stats.months_between(query["from_month"], query["to_month"], schemas.STATS_MAX_MONTHS)
    names = {grid_id: grid.name for grid_id, grid in routing().reference.grids.items()}
    return _monthly(months, lambda found, start, end: stats.grid_stats(found, names, start, end, now()))
