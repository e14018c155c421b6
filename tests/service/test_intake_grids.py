"""Grids, categories, weekly summaries (JSON and XLSX), and the endpoints every service has."""
import io
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from services.intake.domain import Week
from tests.conftest import bearer
from tests.service.conftest import HEDONG_03, LANSHAN_01, submit_report, upload_photo
from tests.support import wait_for


def test_grids_cover_two_districts_with_polygons(intake, volunteer):
    grids = intake.client.get("/v1/grids", headers=volunteer).json["items"]
    assert len(grids) >= 6
    assert len({g["district"] for g in grids}) >= 2
    for grid in grids:
        assert grid["geometry"]["type"] == "Polygon" and grid["leader_id"] and grid["name"]


def test_locate_finds_the_cell(intake, volunteer):
    response = intake.client.get("/v1/grids/locate?lat=35.1&lng=118.395", headers=volunteer)
    assert response.status_code == 200 and response.json["id"] == "hedong-03"


def test_locate_outside_every_cell_is_404(intake, volunteer):
    response = intake.client.get("/v1/grids/locate?lat=35.06&lng=118.37", headers=volunteer)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("query", ["lat=35.06", "lat=abc&lng=118.3", "lat=95&lng=118.3"])
def test_locate_with_bad_coordinates_is_422(intake, volunteer, query):
    assert intake.client.get(f"/v1/grids/locate?{query}", headers=volunteer).status_code == 422


def test_grids_need_a_token(intake):
    assert intake.client.get("/v1/grids").status_code == 401


def test_categories_carry_department_and_time_limit(intake, volunteer):
    categories = {c["code"]: c for c in intake.client.get("/v1/categories", headers=volunteer).json["items"]}
    assert categories["traffic.parking"]["department"] == "traffic-police"
    assert categories["traffic.parking"]["deadline_hours"] == 24
    assert categories["other"]["department"] is None


class TestWeekly:
    @pytest.fixture
    def week_of_reports(self, fresh_intake):
        client = fresh_intake.client
        reporter = bearer("volunteer")
        photo = upload_photo(client, reporter)["id"]
        made = [submit_report(client, reporter, [photo], category="env.garbage", location=LANSHAN_01),
                submit_report(client, reporter, [photo], category="env.garbage",
                              location={"lat": 35.045, "lng": 118.305}),
                submit_report(client, reporter, [photo], category="traffic.parking", location=LANSHAN_01),
                submit_report(client, reporter, [photo], category="env.flyers", location=HEDONG_03)]
        return fresh_intake, made

    def test_counts_by_category_and_status_for_the_grid(self, week_of_reports):
        service, made = week_of_reports
        leader = bearer("grid_leader", grid="lanshan-01")
        summary = service.client.get("/v1/grids/lanshan-01/weekly", headers=leader).json
        city_zone = service.app.extensions["intake"].reference.timezone
        assert summary["week"] == Week.containing(datetime.now(UTC), city_zone).label
        assert summary["submitted"] == 3  # the hedong report is another grid's
        counts = {row["category"]: row for row in summary["by_category"]}
        assert counts["env.garbage"]["total"] == 2 and counts["env.garbage"]["submitted"] == 2
        assert counts["traffic.parking"]["total"] == 1
        assert summary["by_status"]["submitted"] == 3
        assert {r["id"] for r in summary["open"]} == {r["id"] for r in made[:3]}
        assert summary["fixed"] == []

    def test_a_past_week_is_empty_of_this_weeks_reports(self, week_of_reports):
        service, _ = week_of_reports
        summary = service.client.get("/v1/grids/lanshan-01/weekly?week=2026-W01", headers=bearer("office")).json
        assert summary["submitted"] == 0 and summary["from"] == "2025-12-28T16:00:00.000Z"

    def test_xlsx_has_a_summary_and_one_row_per_report(self, week_of_reports):
        service, made = week_of_reports
        response = service.client.get("/v1/grids/lanshan-01/weekly?format=xlsx",
                                      headers=bearer("grid_leader", grid="lanshan-01"))
        assert response.status_code == 200
        assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert "attachment" in response.headers["Content-Disposition"]
        book = load_workbook(io.BytesIO(response.data))
        assert book.sheetnames == ["汇总", "本周上报明细", "未办结问题", "本周已办结"]
        summary = book["汇总"]
        assert "金雀山街道一网格" in summary["A1"].value
        assert [c.value for c in summary[5]][:3] == ["问题类别", "合计", "已提交"]
        detail = book["本周上报明细"]
        assert detail["A1"].value == "序号" and detail["E1"].value == "问题描述"
        ids = [detail.cell(row=r, column=2).value for r in range(2, detail.max_row + 1)]
        assert sorted(ids) == sorted(r["id"] for r in made[:3])

    def test_xlsx_holds_a_description_with_control_characters_xlsx_cannot_store(self, fresh_intake):
        reporter = bearer("volunteer")
        photo = upload_photo(fresh_intake.client, reporter)["id"]
        submit_report(fresh_intake.client, reporter, [photo], description="垃圾\x04堆放\x1b在路边", location=LANSHAN_01)
        response = fresh_intake.client.get("/v1/grids/lanshan-01/weekly?format=xlsx", headers=bearer("office"))
        assert response.status_code == 200
        assert load_workbook(io.BytesIO(response.data))["本周上报明细"]["E2"].value == "垃圾堆放在路边"

    @pytest.mark.parametrize("headers, status", [
        ({"role": "grid_leader", "grid": "hedong-01"}, 403),
        ({"role": "volunteer"}, 403),
        ({"role": "department", "dept": "sanitation"}, 403),
    ])
    def test_only_the_grids_leader_and_the_office_may_read_it(self, intake, headers, status):
        response = intake.client.get("/v1/grids/lanshan-01/weekly", headers=bearer(**headers))
        assert response.status_code == status

    def test_unknown_grid_is_404_and_bad_week_is_422(self, intake):
        office = bearer("office")
        assert intake.client.get("/v1/grids/atlantis/weekly", headers=office).status_code == 404
        response = intake.client.get("/v1/grids/lanshan-01/weekly?week=2026-W99", headers=office)
        assert response.status_code == 422 and "week" in response.json["errors"]
        assert intake.client.get("/v1/grids/lanshan-01/weekly?format=pdf", headers=office).status_code == 422


class TestServiceEndpoints:
    def test_health_and_readiness(self, intake):
        assert intake.client.get("/healthz").json == {"status": "ok"}
        assert intake.client.get("/readyz").status_code == 200

    def test_metrics_count_requests(self, intake, volunteer):
        intake.client.get("/v1/grids", headers=volunteer)
        text = intake.client.get("/metrics").get_data(as_text=True)
        assert 'woodpecker_http_requests_total{endpoint="/v1/grids",method="GET",service="intake",status="200"}' in text

    def test_metrics_show_published_events(self, intake, volunteer, tap):
        photo = upload_photo(intake.client, volunteer)["id"]
        submit_report(intake.client, volunteer, [photo])
        wait_for(lambda: 'woodpecker_events_published_total{service="intake",type="report.submitted"}'
                 in intake.client.get("/metrics").get_data(as_text=True), what="published metric")

    def test_openapi_describes_every_intake_endpoint(self, intake):
        spec = intake.client.get("/openapi.json").json
        assert spec["openapi"].startswith("3.")
        paths = spec["paths"]
        for path, method in [("/v1/photos", "post"), ("/v1/photos/{photo_id}", "get"), ("/v1/reports", "post"),
                             ("/v1/reports", "get"), ("/v1/reports/{report_id}", "get"), ("/v1/grids", "get"),
                             ("/v1/grids/locate", "get"), ("/v1/grids/{grid_id}/weekly", "get")]:
            assert method in paths[path], f"{method} {path}"
        create = paths["/v1/reports"]["post"]
        assert {"201", "401", "403", "409", "422"} <= set(create["responses"])
        assert "`volunteer`, `grid_leader`" in create["description"]
        assert "403" not in paths["/v1/grids"]["get"]["responses"]  # any authenticated role
        assert set(spec["components"]["schemas"]["Problem"]["properties"]) == {"type", "title", "status", "detail",
                                                                              "errors"}
        assert "ReportCreate" in str(create["requestBody"])
        assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"

    def test_docs_page_and_its_assets_are_served_locally(self, intake):
        response = intake.client.get("/docs")
        assert response.status_code == 200 and b"/docs/assets/swagger-ui-bundle.js" in response.data
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
            assert intake.client.get(f"/docs/assets/{asset}").status_code == 200

    def test_unknown_path_and_method_are_problems(self, intake, volunteer):
        missing = intake.client.get("/v1/nothing", headers=volunteer)
        assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
        wrong = intake.client.delete("/v1/grids", headers=volunteer)
        assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]

    def test_request_id_is_echoed(self, intake):
        assert intake.client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
