"""Intake's HTTP API: translate the request, call the domain and the store, translate back."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Response, current_app, request
from flask_smorest import Blueprint

from shared import idempotency
from shared.admission import BacklogGate
from shared.auth import current_caller, requires
from shared.errors import Forbidden, NotFound, NotVisible
from shared.logs import correlation_id
from shared.openapi import RETRY_AFTER_HEADER, link, links
from shared.pagination import decode_cursor, page
from shared.photo_ids import PhotoIds, side_of
from shared.reference import ReferenceData
from shared.spreadsheets import AS_XLSX_TOO, xlsx_answer
from shared.web import accepts_multipart

from . import domain, schemas
from .photos import PhotoCleaner
from .spreadsheet import WEEKLY, weekly_figures
from .store import ReportStore, new_id

REPORTERS = ("volunteer", "grid_leader")

photos = Blueprint("photos", __name__, url_prefix="/v1/photos", description="Report photos")
reports = Blueprint("reports", __name__, url_prefix="/v1/reports", description="Volunteers' reports")
grids = Blueprint("grids", __name__, url_prefix="/v1", description="Grid cells, categories, weekly summaries")


@dataclass
class Intake:
    store: ReportStore
    reference: ReferenceData
    grid_map: domain.GridMap
    photo_cleaner: PhotoCleaner
    photo_ids: PhotoIds
    admission: BacklogGate


def intake() -> Intake:
    return current_app.extensions["intake"]


def now() -> datetime:
    return datetime.now(UTC)


# --- photos -----------------------------------------------------------------------------------

@photos.route("", methods=["POST"])
@accepts_multipart
@requires()
@photos.arguments(schemas.PhotoUploadSchema, location="files")
@photos.response(201, schemas.PhotoSchema)
@photos.doc(**links(201, idempotency.REPLAYED,
                   GetPhoto=link("/v1/photos/{photo_id}", "get", photo_id="$response.body#/id")))
@photos.alt_response(413, description="Larger than 10 MiB, or more pixels than its format's budget")
@photos.alt_response(415, description="Not a JPEG, PNG or WebP image (judged by content)")
@photos.alt_response(409, description="Idempotency-Key reused with another photo")
@photos.doc(parameters=[idempotency.HEADER_PARAMETER])
def upload_photo(form):
    """Upload a photo; it is stored with its long side at most 2560 px, without EXIF (GPS included)."""
    caller = current_caller()
    raw = form["file"].read()
    photo = intake().photo_cleaner.clean(raw)
    key = idempotency.requested_key(caller.id)
    side = side_of(caller)
    record = {"id": intake().photo_ids.issue(side), "owner_id": caller.id, "side": side,
              "content_type": photo.content_type, "size": photo.size, "sha256": photo.sha256,
              "width": photo.width, "height": photo.height, "uploaded_at": now()}
    # A retry sends the same bytes; the hash of what arrived identifies the request.
    stored, created = intake().store.add_photo(record, photo.content, key, idempotency.fingerprint(photo.sha256))
    return stored, 201, idempotency.replay_header(created)


@photos.route("/<photo_id>", methods=["GET"])
@requires()
@photos.response(200, content_type="image/jpeg", description="The stored (EXIF-free) image")
@photos.doc(responses={200: {"content": {media: {"schema": {"type": "string", "format": "binary"}}
                                         for media in ("image/jpeg", "image/png", "image/webp")}}})
def get_photo(photo_id: str):
    """The image. Visible to its uploader and to whoever may see a report it belongs to."""
    caller = current_caller()
    store = intake().store
    photo = store.photo(photo_id)
    if photo is None:
        raise NotFound(f"No photo {photo_id}.")
    scope = domain.visible_to(caller)
    if photo["owner_id"] != caller.id and not scope.unlimited and not store.photo_in_reports(photo_id, scope):
        raise NotVisible(f"No photo {photo_id}.")
    response = Response(store.photo_content(photo_id), mimetype=photo["content_type"])
    response.headers["ETag"] = f'"{photo["sha256"]}"'
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


# --- reports ----------------------------------------------------------------------------------

@reports.route("", methods=["POST"])
@requires(*REPORTERS)
@reports.arguments(schemas.ReportCreateSchema)
@reports.response(201, schemas.ReportSchema)
@reports.doc(**links(201, idempotency.REPLAYED,
                    GetReport=link("/v1/reports/{report_id}", "get", report_id="$response.body#/id")))
@reports.alt_response(409, description="Idempotency-Key reused with a different body")
@reports.alt_response(503, description="The services behind intake are far behind (their queues hold more than "
                      "WOODPECKER_ADMISSION_BACKLOG messages), or the database briefly away: nothing was done; "
                      "send the same request again after Retry-After seconds", headers=RETRY_AFTER_HEADER)
@reports.doc(parameters=[idempotency.HEADER_PARAMETER])
def submit_report(fields: dict):
    """Submit a report; the grid comes from the location, likely duplicates are linked."""
    caller = current_caller()
    ctx = intake()
    ctx.admission.admit()
    at = now()
    location = fields["location"]
    grid = ctx.grid_map.locate(location["lat"], location["lng"])
    not_theirs = ctx.photo_ids.not_issued_to(fields["photo_ids"], side_of(caller))
    domain.check_new_report(fields, ctx.reference.categories, grid, not_theirs, at)
    key = idempotency.requested_key(caller.id)
    fingerprint = idempotency.fingerprint(request.get_json())
    nearby = ctx.store.open_reports_near(fields["category"], location["lat"], location["lng"])
    duplicate_of = domain.likely_duplicate(location["lat"], location["lng"], nearby)
    report = domain.new_report(new_id(), caller.id, fields, grid, duplicate_of=duplicate_of, now=at)
    event = domain.report_submitted(report, correlation_id.get())
    stored, created = ctx.store.add_report(report, event, key, fingerprint)
    return stored, 201, idempotency.replay_header(created)


@reports.route("/<report_id>", methods=["GET"])
@requires()
@reports.response(200, schemas.ReportSchema)
def get_report(report_id: str):
    """One report with its timeline (404 if it is not yours to see)."""
    report = intake().store.visible_report(report_id, domain.visible_to(current_caller()))
    if report is None:
        raise NotFound(f"No report {report_id}.")
    return report


@reports.route("", methods=["GET"])
@requires()
@reports.arguments(schemas.ReportQuerySchema, location="query")
@reports.response(200, schemas.ReportPageSchema)
def list_reports(query: dict):
    """Reports you may see, newest first, filtered and cursor-paginated."""
    wanted = {k: query[k] for k in ("grid_id", "status", "category", "reporter_id") if k in query}
    items = intake().store.list_reports(wanted, domain.visible_to(current_caller()), decode_cursor(query.get("cursor")),
                                        query["limit"], since=query.get("from_"), until=query.get("to"))
    return page(items, query["limit"], "submitted_at")


# --- grids and categories ---------------------------------------------------------------------

def _grid_view(grid) -> dict:
    return {"id": grid.id, "name": grid.name, "district": grid.district, "district_name": grid.district_name,
            "leader_id": grid.leader_id, "geometry": grid.geometry}


@grids.route("/grids", methods=["GET"])
@requires()
@grids.response(200, schemas.GridListSchema)
def list_grids():
    """Every grid cell with its GeoJSON polygon."""
    return {"items": [_grid_view(g) for g in intake().reference.grids.values()]}


@grids.route("/grids/locate", methods=["GET"])
@requires()
@grids.arguments(schemas.LocateQuerySchema, location="query")
@grids.response(200, schemas.GridSchema)
def locate_grid(query: dict):
    """The grid cell holding a point (404 if the point is outside every cell)."""
    grid = intake().grid_map.locate(query["lat"], query["lng"])
    if grid is None:
        raise NotFound(f"({query['lat']}, {query['lng']}) is outside every grid cell.")
    return _grid_view(grid)


@grids.route("/categories", methods=["GET"])
@requires()
@grids.response(200, schemas.CategoryListSchema)
def list_categories():
    """Problem categories a report may name, with their default department and time limit."""
    return {"items": list(vars(c) for c in intake().reference.categories.values())}


@grids.route("/grids/<grid_id>/weekly", methods=["GET"])
@requires("grid_leader", "office", "service")
@grids.arguments(schemas.WeeklyQuerySchema, location="query")
@grids.response(200, schemas.WeeklySummarySchema)
@grids.doc(**AS_XLSX_TOO)
def weekly_summary(query: dict, grid_id: str):
    """The grid's week: counts by category and status, still open, fixed (JSON or XLSX)."""
    ctx = intake()
    grid = ctx.reference.grids.get(grid_id)
    if grid is None:
        raise NotFound(f"No grid {grid_id}.")
    caller = current_caller()
    if caller.role == "grid_leader" and caller.grid != grid_id:
        raise Forbidden("A grid leader sees the weekly summary of their own grid only.")
    zone = ctx.reference.timezone
    week = domain.Week.parse(query["week"], zone) if query.get("week") else domain.Week.containing(now(), zone)
    reports_of_week = ctx.store.grid_week_reports(grid_id, week.start, week.end)
    summary = domain.weekly_summary(grid, week, reports_of_week, ctx.reference.categories)
    if query["format"] == "xlsx":
        return xlsx_answer(WEEKLY, f"weekly-{grid_id}-{week.label}.xlsx", now(),
                           **weekly_figures(summary, ctx.reference.categories, zone))
    return summary
