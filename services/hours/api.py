"""Hours' HTTP API: translate the request, call the domain through the store, translate back."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Response, current_app, request
from flask_smorest import Blueprint

from shared import idempotency
from shared.auth import Caller, current_caller, requires
from shared.errors import Conflict, Forbidden, InvalidFields, NotFound
from shared.logs import correlation_id
from shared.openapi import link, links
from shared.pagination import decode_cursor, page
from shared.photo_ids import PhotoIds, side_of
from shared.reference import FIRST_YEAR, LAST_YEAR, ReferenceData, ServiceHoursRules, WorkCalendar
from shared.spreadsheets import AS_XLSX_TOO, xlsx_answer
from shared.web import accepts_multipart, serves_export

from . import domain, schemas
from .proof import Proof, ProofLine, render_proof
from .roster import RosterUnreadable, read_roster
from .spreadsheet import RANKING, ranking_rows
from .store import HoursStore

STAFF = domain.STAFF
VOLUNTEER_READERS = ("association", "office", "grid_leader", "volunteer", "service")

volunteers = Blueprint("volunteers", __name__, url_prefix="/v1/volunteers",
                       description="Volunteers, their ledgers and summaries")
patrols = Blueprint("patrols", __name__, url_prefix="/v1/patrols", description="Patrol sessions (巡访)")
ledger = Blueprint("ledger", __name__, url_prefix="/v1", description="Adjustments and reversals of ledger entries")
activities = Blueprint("activities", __name__, url_prefix="/v1/activities",
                       description="Service activities, publicised (公示) before their hours are credited")
spot_checks = Blueprint("spot_checks", __name__, url_prefix="/v1/spot-checks",
                        description="Spot checks (抽查) of recorded hours")
records = Blueprint("records", __name__, url_prefix="/v1",
                    description="Rankings, proofs of service (志愿服务证明) and closing a year")


@dataclass
class Hours:
    store: HoursStore
    reference: ReferenceData
    rules: ServiceHoursRules
    calendar: WorkCalendar
    photo_ids: PhotoIds

    @property
    def zone(self) -> ZoneInfo:
        return self.reference.timezone


def hours() -> Hours:
    return current_app.extensions["hours"]


def now() -> datetime:
    return datetime.now(UTC)


def who(caller: Caller) -> str:
    return f"{caller.role}:{caller.id}"


def _readable_volunteer(volunteer_id: str) -> dict:
    volunteer = hours().store.volunteer(volunteer_id)
    if volunteer is None or not domain.may_read_volunteer(current_caller(), volunteer):
        raise NotFound(f"No volunteer {volunteer_id}.")
    return volunteer


def _known_grid(grid_id: str, field: str = "grid_id") -> None:
    if grid_id not in hours().reference.grids:
        raise InvalidFields("Unknown grid cell.", {field: [f"one of {', '.join(hours().reference.grids)}"]})


VOLUNTEER_LINKS = {name: link(f"/v1/volunteers/{{volunteer_id}}{path}", "get", volunteer_id="$response.body#/id")
                   for name, path in (("GetVolunteer", ""), ("GetSummary", "/summary"), ("GetLedger", "/ledger"))}


# --- volunteers -------------------------------------------------------------------------------

@volunteers.route("", methods=["POST"])
@requires(*STAFF)
@volunteers.arguments(schemas.VolunteerCreateSchema)
@volunteers.response(201, schemas.VolunteerSchema)
@volunteers.doc(**links(201, idempotency.REPLAYED, **VOLUNTEER_LINKS))
@volunteers.alt_response(409, description="The phone is already registered in this organisation, or the "
                                          "Idempotency-Key was used with another body")
@volunteers.doc(parameters=[idempotency.HEADER_PARAMETER])
def register_volunteer(fields: dict):
    """Register a volunteer; the phone and organisation identify them. Their token's `sub` is the returned id."""
    caller = current_caller()
    _known_grid(fields["grid_id"])
    volunteer = domain.new_volunteer(fields["name"].strip(), fields["phone"], fields["organization"],
                                     fields["grid_id"], now(), who(caller))
    stored, created = hours().store.register(
        volunteer, idempotency.requested_key(caller.id), idempotency.fingerprint(request.get_json()),
        domain.registered_event(volunteer, correlation_id.get()))
    return domain.shown_volunteer(stored, caller), 201, idempotency.replay_header(created)


@volunteers.route("/import", methods=["POST"])
@accepts_multipart
@requires(*STAFF)
@volunteers.arguments(schemas.RosterUploadSchema, location="files")
@volunteers.response(200, schemas.RosterResultSchema)
@volunteers.alt_response(422, description="Not a readable roster (format, header, columns, over 10,000 rows, "
                                          "an XLSX unpacking to over 50 MiB); "
                                          "bad rows are not an error: they are listed in `errors`")
def import_roster(form):
    """Register an association's roster (XLSX or CSV): good rows are registered, rows already registered
    change nothing, and every bad row is reported with its row number and reason."""
    try:
        roster = read_roster(form["file"].read(), {g.id: g.name for g in hours().reference.grids.values()})
    except RosterUnreadable as exc:
        raise InvalidFields(str(exc), {"file": [str(exc)]}) from None
    at, by, correlation = now(), who(current_caller()), correlation_id.get()
    volunteers_ = []
    for row in roster.rows:
        volunteer = domain.new_volunteer(row.name, row.phone, row.organization, row.grid_id, at, by)
        volunteers_.append((volunteer, domain.registered_event(volunteer, correlation)))
    created, known = hours().store.register_many(volunteers_)
    return {"rows": len(roster.rows) + len(roster.errors), "registered": len(created),
            "already_registered": len(known), "errors": [{"row": e.row, "reason": e.reason} for e in roster.errors]}


@volunteers.route("", methods=["GET"])
@requires("association", "office", "grid_leader", "service")
@volunteers.arguments(schemas.VolunteerQuerySchema, location="query")
@volunteers.response(200, schemas.VolunteerPageSchema)
def list_volunteers(query: dict):
    """Volunteers you may see (a grid leader: their grid's), newest registration first."""
    caller = current_caller()
    wanted = {k: query[k] for k in ("organization", "grid_id", "star_level") if k in query}
    scope = domain.volunteers_visible_to(caller)
    if scope is None:
        raise Forbidden("You may not list volunteers.")
    items = hours().store.list_volunteers(wanted, scope, decode_cursor(query.get("cursor")), query["limit"])
    result = page(items, query["limit"], "registered_at")
    result["items"] = [domain.shown_volunteer(v, caller) for v in result["items"]]
    return result


@volunteers.route("/<string(length=24):volunteer_id>", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@volunteers.response(200, schemas.VolunteerSchema)
@volunteers.doc(**links(200, **VOLUNTEER_LINKS))
def get_volunteer(volunteer_id: str):
    """One volunteer: yourself, or one you may see."""
    return domain.shown_volunteer(_readable_volunteer(volunteer_id), current_caller())


@volunteers.route("/<string(length=24):volunteer_id>/summary", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@volunteers.arguments(schemas.SummaryQuerySchema, location="query")
@volunteers.response(200, schemas.SummarySchema)
def volunteer_summary(query: dict, volunteer_id: str):
    """Hours in total and in the year, waiting hours, star level, the annual minimum, verified reports."""
    volunteer = _readable_volunteer(volunteer_id)
    year = query.get("year") or now().astimezone(hours().zone).year
    return domain.summary(volunteer, year, hours().rules)


@volunteers.route("/<string(length=24):volunteer_id>/ledger", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@volunteers.arguments(schemas.LedgerQuerySchema, location="query")
@volunteers.response(200, schemas.EntryPageSchema)
def volunteer_ledger(query: dict, volunteer_id: str):
    """The volunteer's ledger entries, newest first; entries are never changed or deleted."""
    _readable_volunteer(volunteer_id)
    items = hours().store.ledger(volunteer_id, query.get("year"), decode_cursor(query.get("cursor")), query["limit"])
    return page(items, query["limit"], "recorded_at")


# --- patrols ----------------------------------------------------------------------------------

PATROL_LINKS = {"GetPatrol": link("/v1/patrols/{patrol_id}", "get", patrol_id="$response.body#/id"),
                "ConfirmPatrol": link("/v1/patrols/{patrol_id}/confirm", "post", patrol_id="$response.body#/id"),
                "DeclinePatrol": link("/v1/patrols/{patrol_id}/decline", "post", patrol_id="$response.body#/id")}


@patrols.route("", methods=["POST"])
@requires("volunteer", "grid_leader")
@patrols.arguments(schemas.PatrolCreateSchema)
@patrols.response(201, schemas.PatrolSchema)
@patrols.doc(**links(201, idempotency.REPLAYED, **PATROL_LINKS))
@patrols.alt_response(403, description="Not a registered volunteer")
@patrols.alt_response(409, description="Overlaps another patrol of yours, or the Idempotency-Key was used with "
                                       "another body")
@patrols.doc(parameters=[idempotency.HEADER_PARAMETER])
def record_patrol(fields: dict):
    """Record a patrol you walked (a volunteer, or a grid leader registered as one). Each distinct report you
    submitted in its grid while it ran credits up to an hour of it at once (`evidence_hours_per_report`); the
    rest waits for the grid leader or the association (beyond 8 hours a day, or a grid leader's own patrol in
    their grid: the association)."""
    caller = current_caller()
    ctx = hours()
    _known_grid(fields["grid_id"])
    at = now()
    claim = domain.claim_patrol(caller.id, fields["grid_id"], fields["started_at"], fields["ended_at"], at,
                                ctx.rules, ctx.calendar, ctx.zone)
    by_its_leader = domain.walked_by_its_grid_leader(caller, claim.grid_id,
                                                     ctx.reference.grids[claim.grid_id].leader_id)
    stored, created = ctx.store.record_patrol(claim, by_its_leader, who(caller), at,
                                              idempotency.requested_key(caller.id),
                                              idempotency.fingerprint(request.get_json()), correlation_id.get())
    return stored, 201, idempotency.replay_header(created)


@patrols.route("", methods=["GET"])
@requires("volunteer", "grid_leader", "association", "office", "service")
@patrols.arguments(schemas.PatrolQuerySchema, location="query")
@patrols.response(200, schemas.PatrolPageSchema)
def list_patrols(query: dict):
    """Patrols you may see (yours; a grid leader's grid's; all for staff), newest first."""
    wanted = {k: query[k] for k in ("status", "grid_id", "volunteer_id") if k in query}
    items = hours().store.list_patrols(wanted, domain.patrols_visible_to(current_caller()),
                                       decode_cursor(query.get("cursor")), query["limit"])
    return page(items, query["limit"], "started_at")


def _readable_patrol(patrol_id: str) -> dict:
    patrol = hours().store.patrol(patrol_id)
    if patrol is None or not domain.patrols_visible_to(current_caller()).admits(patrol):
        raise NotFound(f"No patrol {patrol_id}.")
    return patrol


@patrols.route("/<patrol_id>", methods=["GET"])
@requires("volunteer", "grid_leader", "association", "office", "service")
@patrols.response(200, schemas.PatrolSchema)
def get_patrol(patrol_id: str):
    """One patrol you may see."""
    return _readable_patrol(patrol_id)


def _decide(patrol_id: str, confirm: bool, note: str) -> dict:
    caller = current_caller()
    _readable_patrol(patrol_id)

    def check(patrol: dict) -> None:
        domain.may_decide_patrol(caller, patrol)

    return hours().store.decide_patrol(patrol_id, check, confirm, who(caller), note, now(), correlation_id.get())


@patrols.route("/<patrol_id>/confirm", methods=["POST"])
@requires("grid_leader", "association")
@patrols.arguments(schemas.DecisionSchema)
@patrols.response(200, schemas.PatrolSchema)
@patrols.alt_response(403, description="Your own patrol, or one only the association decides")
@patrols.alt_response(409, description="The patrol is not waiting")
def confirm_patrol(body: dict, patrol_id: str):
    """Confirm a waiting patrol: its waiting hours are credited. Nobody confirms their own patrol; beyond the
    daily cap, and for a grid leader's patrol in their own grid, only the association may."""
    return _decide(patrol_id, True, body["note"])


@patrols.route("/<patrol_id>/decline", methods=["POST"])
@requires("grid_leader", "association")
@patrols.arguments(schemas.DeclineSchema)
@patrols.response(200, schemas.PatrolSchema)
@patrols.alt_response(403, description="Your own patrol, or one only the association decides")
@patrols.alt_response(409, description="The patrol is not waiting")
def decline_patrol(body: dict, patrol_id: str):
    """Decline a waiting patrol, saying why: its waiting hours are declined and what its reports credited at
    once is taken back (reversing entries); what a person confirmed before stands."""
    return _decide(patrol_id, False, body["note"])


# --- adjustments and reversals ----------------------------------------------------------------

@ledger.route("/adjustments", methods=["POST"])
@requires("association")
@ledger.arguments(schemas.AdjustmentSchema)
@ledger.response(201, schemas.EntrySchema)
@ledger.alt_response(409, description="The Idempotency-Key was used with another body (another volunteer, "
                                      "other hours)")
@ledger.doc(parameters=[idempotency.HEADER_PARAMETER])
def adjust_hours(fields: dict):
    """Credit (or, negative, debit) hours with a reason: a new ledger entry, never an edit. Hours are whole
    hundredths of an hour."""
    caller = current_caller()
    ctx = hours()
    domain.check_adjustment(fields["hours"])
    if ctx.store.volunteer(fields["volunteer_id"]) is None:
        raise InvalidFields("No such volunteer.", {"volunteer_id": ["not a registered volunteer"]})
    at = now()
    key = idempotency.requested_key(caller.id)
    fingerprint = idempotency.fingerprint(request.get_json())
    # The source of an adjustment is its request: a retry with the same key credits nothing twice.
    service_date = fields.get("service_date") or domain.local_today(at, ctx.zone)
    document = domain.entry(fields["volunteer_id"], round(fields["hours"], 2), domain.ADJUSTMENT, "adjustment",
                            key or domain.new_id(), service_date, at, who(caller), ctx.rules, fields["reason"])
    stored, created = ctx.store.record_entry(document, key, fingerprint, correlation_id.get())
    return stored, 201, idempotency.replay_header(created)


@ledger.route("/entries/<entry_id>", methods=["GET"])
@requires(*VOLUNTEER_READERS)
@ledger.response(200, schemas.EntrySchema)
def get_entry(entry_id: str):
    """One ledger entry of a volunteer you may see."""
    found = hours().store.entry(entry_id)
    if found is None:
        raise NotFound(f"No ledger entry {entry_id}.")
    _readable_volunteer(found["volunteer_id"])
    return found


@ledger.route("/entries/<entry_id>/reverse", methods=["POST"])
@requires(*STAFF)
@ledger.arguments(schemas.ReverseSchema)
@ledger.response(201, schemas.EntrySchema)
@ledger.alt_response(409, description="Already reversed, or itself a reversal")
def reverse_entry(body: dict, entry_id: str):
    """Reverse an entry with a reason: a new entry of the opposite hours, pointing at it."""
    caller = current_caller()
    ctx = hours()
    at = now()
    return ctx.store.reverse(entry_id, lambda original: domain.reversal_of(original, body["reason"], who(caller), at,
                                                                           ctx.rules), correlation_id.get()), 201


# --- rankings, proofs, years ------------------------------------------------------------------

def _this_year() -> int:
    return now().astimezone(hours().zone).year


@records.route("/rankings", methods=["GET"])
@requires("volunteer", "grid_leader", "association", "office", "service")
@records.arguments(schemas.RankingQuerySchema, location="query")
@records.response(200, schemas.RankingSchema)
@records.doc(**AS_XLSX_TOO)
def rankings(query: dict):
    """The year's volunteers ranked by hours or by verified reports, names masked; `format=xlsx` gives the
    whole table as the spreadsheet an association posts (排名表)."""
    ctx = hours()
    caller = current_caller()
    year, by = query.get("year") or _this_year(), query["by"]
    wanted = {k: query[v] for k, v in (("organization", "organization"), ("grid_id", "grid")) if v in query}
    spreadsheet = query["format"] == "xlsx"
    rows = domain.ranked(ctx.store.ranking(year, by, wanted, None if spreadsheet else query["limit"]), by)
    shown = [domain.ranking_row(row, caller) for row in rows]
    if spreadsheet:
        grid_names = {g.id: g.name for g in ctx.reference.grids.values()}
        scope = "、".join(filter(None, [wanted.get("organization"), grid_names.get(wanted.get("grid_id", ""))]))
        return xlsx_answer(RANKING, f"rankings-{year}-{by}.xlsx", now(), rows=ranking_rows(shown, grid_names),
                           year=year, by=by, scope_text=scope or "全市")
    return {"year": year, "by": by, "items": shown}


@volunteers.route("/<string(length=24):volunteer_id>/proof", methods=["GET"])
@serves_export
@requires("volunteer", "association", "office")
@volunteers.arguments(schemas.ProofQuerySchema, location="query")
@volunteers.response(200, content_type="application/pdf", description="The proof of service (志愿服务证明)")
@volunteers.doc(responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def proof_of_service(query: dict, volunteer_id: str):
    """A proof of the year's service, free of charge, with a number and a verification code that anyone can
    check at /v1/proofs/{code}. Asking again for unchanged figures gives the same proof, the same bytes."""
    ctx = hours()
    volunteer = _readable_volunteer(volunteer_id)
    year = query.get("year") or _this_year()
    row = ctx.store.year_row(volunteer_id, year)
    if row is None or row["centihours"] <= 0:
        raise NotFound(f"No service hours recorded for {year}.")
    closed = ctx.store.closed_year(year) is not None
    figures = row.get("sealed_centihours", row["centihours"]) if closed else row["centihours"]
    grid = ctx.reference.grids.get(volunteer["grid_id"])
    at = now()
    record = ctx.store.proof_for(volunteer_id, year, figures, lambda number: domain.proof_record(
        volunteer, {**row, "centihours": figures}, number, domain.proof_code(), grid.name if grid else "",
        ctx.rules.issuer, closed, at, ctx.zone))
    # The configured address, never the request's Host: a forged one would get a genuine proof leading elsewhere.
    verify_url = f"{current_app.config['HOURS_PUBLIC_URL']}/v1/proofs/{record['code']}"
    pdf = ctx.store.proof_pdf(record["code"], verify_url)
    if pdf is None:
        pdf = render_proof(_printable(record, verify_url))
        ctx.store.keep_proof_pdf(record["code"], verify_url, pdf)
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="proof-{record["number"]}.pdf"'})


def _printable(record: dict, verify_url: str) -> Proof:
    return Proof(number=record["number"], code=record["code"], verify_url=verify_url, name=record["name"],
                 volunteer_id=record["volunteer_id"], phone_masked=record["phone_masked"],
                 organization=record["organization"], year=record["year"],
                 period_start=date.fromisoformat(record["period_start"]),
                 period_end=date.fromisoformat(record["period_end"]), total_hours=record["hours"],
                 lines=[ProofLine(**line) for line in record["lines"]], issuer=record["issuer"],
                 issued_on=date.fromisoformat(record["issued_on"]), sealed=record["sealed"])


@records.route("/proofs/<code>", methods=["GET"])
@records.doc(security=[])
@records.response(200, schemas.ProofVerdictSchema)
@records.doc(parameters=[{"in": "path", "name": "code", "required": True,
                          "schema": {"type": "string", "pattern": domain.CODE_PATTERN}}])
def verify_proof(code: str):
    """Anyone may check a proof by its code (no token): whether its figures still match the ledger, with the
    name masked and nothing else personal."""
    ctx = hours()
    found = ctx.store.proof(code.upper())
    if found is None:
        raise NotFound("No proof has this code.")
    return domain.proof_verdict(found, ctx.store.year_row(found["volunteer_id"], found["year"]),
                                ctx.store.closed_year(found["year"]) is not None)


@records.route(f"/years/<int(min={FIRST_YEAR}, max={LAST_YEAR}):year>/close", methods=["POST"])
@requires("office")
@records.response(200, schemas.ClosedYearSchema)
@records.alt_response(409, description="Service of the year may still be recorded, or it is already closed")
def close_year(year: int):
    """Close a year once nothing more can be credited into it (its recording and publicity windows after
    31 December have passed): hours still waiting in it (patrols' waiting time, activities' publicised or held
    hours) are declined with the reason 年度已结账, each volunteer's figures are sealed, and proofs of it stay
    valid."""
    ctx = hours()
    domain.refuse_open_year(year, now(), ctx.zone, ctx.rules, ctx.calendar)
    return ctx.store.close_year(year, domain.year_span(year, ctx.zone), who(current_caller()), now())


# --- activities -------------------------------------------------------------------------------

ACTIVITY_READERS = ("volunteer", "grid_leader", "association", "office", "service")
ACTIVITY_LINKS = {name: link(f"/v1/activities/{{activity_id}}{path}", method, activity_id="$response.body#/id")
                  for name, path, method in (("GetActivity", "", "get"), ("CompleteActivity", "/complete", "post"),
                                             ("ObjectToActivity", "/objections", "post"))}


@activities.route("", methods=["POST"])
@requires(*domain.ACTIVITY_ORGANISERS)
@activities.arguments(schemas.ActivityCreateSchema)
@activities.response(201, schemas.ActivitySchema)
@activities.doc(**links(201, idempotency.REPLAYED, **ACTIVITY_LINKS))
@activities.alt_response(409, description="The Idempotency-Key was used with another body")
@activities.doc(parameters=[idempotency.HEADER_PARAMETER])
def create_activity(fields: dict):
    """Plan a service activity (a grid leader: in their own grid cell)."""
    caller = current_caller()
    if fields.get("grid_id"):
        _known_grid(fields["grid_id"])
    domain.check_activity(fields, caller)
    activity = {"id": domain.new_id(), **fields, "status": domain.PLANNED, "created_by": who(caller),
                "created_at": now(), "participants": [], "objections": []}
    stored, created = hours().store.create_activity(activity, idempotency.requested_key(caller.id),
                                                    idempotency.fingerprint(request.get_json()))
    return stored, 201, idempotency.replay_header(created)


@activities.route("", methods=["GET"])
@requires(*ACTIVITY_READERS)
@activities.arguments(schemas.ActivityQuerySchema, location="query")
@activities.response(200, schemas.ActivityPageSchema)
def list_activities(query: dict):
    """Activities, newest first: what is publicised now, for anyone in the association to see."""
    wanted = {k: query[k] for k in ("status", "grid_id") if k in query}
    items = hours().store.list_activities(wanted, decode_cursor(query.get("cursor")), query["limit"])
    result = page(items, query["limit"], "starts_at")
    result["items"] = [domain.shown_activity(a, current_caller()) for a in result["items"]]
    return result


def _activity(activity_id: str) -> dict:
    found = hours().store.activity(activity_id)
    if found is None:
        raise NotFound(f"No activity {activity_id}.")
    return found


@activities.route("/<activity_id>", methods=["GET"])
@requires(*ACTIVITY_READERS)
@activities.response(200, schemas.ActivitySchema)
@activities.doc(**links(200, **ACTIVITY_LINKS))
def get_activity(activity_id: str):
    """One activity, with its participants' hours and any objections (who raised one: for the association and
    the office only)."""
    return domain.shown_activity(_activity(activity_id), current_caller())


@activities.route("/<activity_id>/complete", methods=["POST"])
@requires(*domain.ACTIVITY_ORGANISERS)
@activities.arguments(schemas.CompletionSchema)
@activities.response(200, schemas.ActivitySchema)
@activities.alt_response(409, description="Completed before, not ended yet, or a participant was elsewhere then")
def complete_activity(body: dict, activity_id: str):
    """Record who took part and for how long, with a summary and at least 4 photos: the hours are publicised
    for the publicity window (3 working days by default) and credited when it ends without objection.
    Completing again credits nothing twice."""
    ctx = hours()
    caller = current_caller()
    domain.may_manage_activity(caller, _activity(activity_id))
    not_yours = ctx.photo_ids.not_issued_to(body["photo_ids"], side_of(caller))
    if not_yours:
        raise InvalidFields("Activity photos must be ones you uploaded.", {"photo_ids": [
            f"not uploaded by you: {', '.join(not_yours)}"]})
    at = now()

    def complete(activity: dict) -> dict:
        changes = domain.completion(activity, body["participants"], len(set(body["photo_ids"])), at, ctx.rules,
                                    ctx.calendar, ctx.zone)
        return {**changes, "summary": body["summary"], "photo_ids": body["photo_ids"], "completed_by": who(caller)}

    return domain.shown_activity(ctx.store.complete_activity(activity_id, complete), caller)


@activities.route("/<activity_id>/objections", methods=["POST"])
@requires("volunteer", "grid_leader", "association", "office")
@activities.arguments(schemas.ObjectionCreateSchema)
@activities.response(201, schemas.ObjectionSchema)
@activities.alt_response(409, description="The publicity window is over, the hours are held or decided, or an "
                                          "objection to them was dismissed already")
def object_to_activity(body: dict, activity_id: str):
    """Object to a participant's publicised hours (anyone in the association, during the window): the hours
    are held until the association decides. A participant's hours are objected to once: after a dismissal
    the association has decided. Who objected is shown to the association and the office only."""
    caller = current_caller()
    at = now()
    objection = hours().store.raise_objection(activity_id, lambda activity: domain.new_objection(
        activity, body["volunteer_id"], body["reason"], who(caller), at, hours().zone))
    return domain.shown_objection(objection, caller), 201


@activities.route("/<activity_id>/objections/<objection_id>/decision", methods=["POST"])
@requires("association")
@activities.arguments(schemas.ObjectionDecisionSchema)
@activities.response(200, schemas.ObjectionSchema)
@activities.alt_response(409, description="Decided before")
def decide_objection(body: dict, activity_id: str, objection_id: str):
    """Uphold an objection (the participant's hours are declined) or dismiss it (they are publicised again
    and credited with the others)."""
    return hours().store.decide_objection(activity_id, objection_id, body["upheld"], who(current_caller()),
                                          body["note"], now())


# --- spot checks ------------------------------------------------------------------------------

@spot_checks.route("", methods=["POST"])
@requires("office")
@spot_checks.arguments(schemas.SpotCheckCreateSchema)
@spot_checks.response(201, schemas.SpotCheckSchema)
@spot_checks.doc(**links(201, idempotency.REPLAYED, GetSpotCheck=link(
    "/v1/spot-checks/{check_id}", "get", check_id="$response.body#/id")))
@spot_checks.alt_response(409, description="The Idempotency-Key was used with another body")
@spot_checks.doc(parameters=[idempotency.HEADER_PARAMETER])
def draw_spot_check(fields: dict):
    """Draw a random sample of the year's credited entries to check; fewer than `size` when the year holds
    fewer. The server draws the seed and records it on the check (the same seed over the same ledger draws the
    same entries), and every check drawn stays listed (`GET /v1/spot-checks`)."""
    caller = current_caller()
    seed = domain.spot_check_seed()
    items = hours().store.sample(fields["year"], fields["size"], seed)
    check = {"id": domain.new_id(), **fields, "seed": seed, "created_by": who(caller), "created_at": now(),
             "items": items}
    stored, created = hours().store.create_spot_check(check, idempotency.requested_key(caller.id),
                                                      idempotency.fingerprint(request.get_json()))
    return stored, 201, idempotency.replay_header(created)


@spot_checks.route("", methods=["GET"])
@requires("office", "association")
@spot_checks.arguments(schemas.SpotCheckQuerySchema, location="query")
@spot_checks.response(200, schemas.SpotCheckPageSchema)
def list_spot_checks(query: dict):
    """Every spot check drawn (of `year`), newest first, with its seed and how far it got: a sample drawn
    again stays on the list for anyone auditing."""
    items = hours().store.list_spot_checks(query.get("year"), decode_cursor(query.get("cursor")), query["limit"])
    result = page(items, query["limit"], "created_at")
    result["items"] = [domain.spot_check_listed(check) for check in result["items"]]
    return result


@spot_checks.route("/<check_id>", methods=["GET"])
@requires("office", "association")
@spot_checks.response(200, schemas.SpotCheckSchema)
def get_spot_check(check_id: str):
    """A spot check with each drawn entry and its result so far."""
    found = hours().store.spot_check(check_id)
    if found is None:
        raise NotFound(f"No spot check {check_id}.")
    return found


@spot_checks.route("/<check_id>/results", methods=["POST"])
@requires("office")
@spot_checks.arguments(schemas.SpotCheckResultSchema)
@spot_checks.response(200, schemas.SpotCheckSchema)
@spot_checks.alt_response(409, description="This entry was checked already")
def record_spot_check_result(body: dict, check_id: str):
    """Record one drawn entry's result; a failed entry is reversed with the check as its reason."""
    ctx = hours()
    caller = current_caller()
    check = ctx.store.spot_check(check_id)
    if check is None:
        raise NotFound(f"No spot check {check_id}.")
    item = next((i for i in check["items"] if i["entry_id"] == body["entry_id"]), None)
    if item is None:
        raise InvalidFields("Not an entry of this spot check.", {"entry_id": ["not in this sample"]})
    if item["result"] is not None:
        raise Conflict(f"Entry {body['entry_id']} was checked already in this spot check.")
    at = now()
    result = {"result": domain.PASSED if body["passed"] else domain.FAILED, "note": body["note"],
              "checked_by": who(caller), "checked_at": at, "reversal_id": None}
    if not body["passed"]:
        reversal = ctx.store.reverse(body["entry_id"], lambda original: domain.reversal_of(
            original, domain.spot_check_reason(check_id, body["note"]), who(caller), at, ctx.rules),
            correlation_id.get())
        result["reversal_id"] = reversal["id"]
    return ctx.store.record_result(check_id, body["entry_id"], result)
