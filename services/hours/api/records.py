"""/v1/rankings and /v1/years: the year's rankings, and closing a year (年度结账)."""
from __future__ import annotations

from shared.auth import current_caller, requires
from shared.reference import FIRST_YEAR, LAST_YEAR
from shared.spreadsheets import AS_XLSX_TOO

from .. import schemas
from ..usecases import records as use
from .blueprints import hours, now
from .blueprints import records as blueprint


@blueprint.route("/rankings", methods=["GET"])
@requires("volunteer", "grid_leader", "association", "office", "service")
@blueprint.arguments(schemas.RankingQuerySchema, location="query")
@blueprint.response(200, schemas.RankingSchema)
@blueprint.doc(**AS_XLSX_TOO)
def rankings(query: dict):
    """The year's volunteers ranked by hours or by verified reports, names masked; `format=xlsx` gives the
    whole table as the spreadsheet an association posts (排名表)."""
    return use.rankings(hours(), current_caller(), query, now())


@blueprint.route(f"/years/<int(min={FIRST_YEAR}, max={LAST_YEAR}):year>/close", methods=["POST"])
@requires("office")
@blueprint.response(200, schemas.ClosedYearSchema)
@blueprint.alt_response(409, description="Service of the year may still be recorded, or it is already closed")
def close_year(year: int):
    """Close a year once nothing more can be credited into it (its recording and publicity windows after
    31 December have passed): hours still waiting in it (patrols' waiting time, activities' publicised or held
    hours) are declined with the reason 年度已结账, each volunteer's figures are sealed, and proofs of it stay
    valid."""
    return use.close_year(hours(), current_caller(), year, now())
