"""POST/GET /v1/reports through HTTP: validation, idempotency, duplicates, visibility, paging."""
import base64

import pytest

from deploy.migrations import migrate
from services.intake.store import ReportStore
from shared.store import connect
from tests.conftest import bearer
from tests.service.conftest import HEDONG_03, LANSHAN_01, submit_report, upload_photo


@pytest.fixture
def photo_id(intake, volunteer):
    return upload_photo(intake.client, volunteer)["id"]


def body(photos, **overrides):
    return {"category": "env.garbage", "description": "小区门口垃圾堆积多日无人清运", "location": HEDONG_03,
            "photo_ids": photos, **overrides}


def test_submitted_report_has_grid_status_and_timeline(intake, volunteer, photo_id):
    report = submit_report(intake.client, volunteer, [photo_id], observed_at="2026-01-05T09:00:00+08:00")
    assert report["grid_id"] == "lanshan-01"
    assert report["status"] == "submitted" and report["case_id"] is None
    assert report["photo_ids"] == [photo_id]
    assert report["observed_at"] == "2026-01-05T01:00:00.000Z"
    assert report["submitted_at"].endswith("Z")
    assert [step["status"] for step in report["timeline"]] == ["submitted"]
    fetched = intake.client.get(f"/v1/reports/{report['id']}", headers=volunteer)
    assert fetched.status_code == 200 and fetched.json == report


@pytest.mark.parametrize("change, field", [
    ({"description": "短"}, "description"),
    ({"description": "x" * 2001}, "description"),
    ({"category": "not.a.category"}, "category"),
    ({"photo_ids": []}, "photo_ids"),
    ({"location": {"lat": 91, "lng": 118.3}}, "location.lat"),
    ({"location": {"lat": 35.06}}, "location.lng"),
    ({"location": {"lat": 35.06, "lng": 118.37}}, "location"),  # the Yi river: between the districts
    ({"observed_at": "yesterday"}, "observed_at"),
    ({"observed_at": "2099-01-01T00:00:00Z"}, "observed_at"),
    ({"unexpected": 1}, "unexpected"),
])
def test_invalid_fields_are_422_with_per_field_messages(intake, volunteer, photo_id, change, field):
    response = intake.client.post("/v1/reports", headers=volunteer, json=body([photo_id], **change))
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"], response.json


def test_too_many_photos_is_422(intake, volunteer, photo_id):
    response = intake.client.post("/v1/reports", headers=volunteer, json=body([photo_id] * 10))
    assert response.status_code == 422 and "photo_ids" in response.json["errors"]


@pytest.mark.parametrize("whose", ["another volunteer", "a department", "never issued"])
def test_a_photo_the_reporter_did_not_upload_is_422(intake, volunteer, whose):
    theirs = {"another volunteer": lambda: upload_photo(intake.client, bearer("volunteer"))["id"],
              "a department": lambda: upload_photo(intake.client, bearer("department", dept="sanitation"))["id"],
              "never issued": lambda: "k2x9V0aQf3Rz8LwYb1NcDg.Jq4uT7sWm0ZpE2Ha"}[whose]()
    response = intake.client.post("/v1/reports", headers=volunteer, json=body([theirs]))
    assert response.status_code == 422 and list(response.json["errors"]) == ["photo_ids"]


def test_photo_ids_are_unguessable(intake, volunteer):
    """Consecutive uploads once differed in their last bytes (ObjectIds): now 128 random bits each."""
    first, second = (upload_photo(intake.client, volunteer)["id"] for _ in range(2))
    nonce_a, nonce_b = first.split(".")[0], second.split(".")[0]
    assert len(base64.urlsafe_b64decode(nonce_a + "==")) * 8 >= 128
    assert sum(a == b for a, b in zip(nonce_a, nonce_b, strict=False)) < len(nonce_a) // 2


def test_malformed_json_is_400(intake, volunteer):
    response = intake.client.post("/v1/reports", headers=volunteer, data="{not json",
                                  content_type="application/json")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


def test_wrong_media_type_is_415(intake, volunteer):
    response = intake.client.post("/v1/reports", headers=volunteer, data="category=x", content_type="text/plain")
    assert response.status_code == 415


@pytest.mark.parametrize("role", ["office", "department", "association"])
def test_only_volunteers_and_grid_leaders_submit(intake, role, photo_id):
    response = intake.client.post("/v1/reports", headers=bearer(role, dept="sanitation"), json=body([photo_id]))
    assert response.status_code == 403


def test_bad_token_is_401(intake, photo_id):
    response = intake.client.post("/v1/reports", headers={"Authorization": "Bearer nonsense"}, json=body([photo_id]))
    assert response.status_code == 401 and response.json["title"]


def test_same_idempotency_key_and_body_returns_the_same_report(intake, volunteer, photo_id):
    headers = {**volunteer, "Idempotency-Key": "report-abc"}
    first = intake.client.post("/v1/reports", headers=headers, json=body([photo_id]))
    again = intake.client.post("/v1/reports", headers=headers, json=body([photo_id]))
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    mine = intake.client.get("/v1/reports?limit=200", headers=volunteer).json["items"]
    assert [r["id"] for r in mine].count(first.json["id"]) == 1 and len(mine) == 1


def test_same_idempotency_key_with_another_body_is_409(intake, volunteer, photo_id):
    headers = {**volunteer, "Idempotency-Key": "report-def"}
    assert intake.client.post("/v1/reports", headers=headers, json=body([photo_id])).status_code == 201
    response = intake.client.post("/v1/reports", headers=headers, json=body([photo_id], category="env.flyers"))
    assert response.status_code == 409


def test_nearby_open_report_of_same_category_is_linked_as_duplicate(intake, volunteer, photo_id):
    first = submit_report(intake.client, volunteer, [photo_id], category="infra.damaged",
                          location={"lat": 35.0900, "lng": 118.4200})
    near = submit_report(intake.client, volunteer, [photo_id], category="infra.damaged",
                         location={"lat": 35.0915, "lng": 118.4200})  # ~167 m north
    far = submit_report(intake.client, volunteer, [photo_id], category="infra.damaged",
                        location={"lat": 35.0930, "lng": 118.4200})  # ~334 m north
    other_kind = submit_report(intake.client, volunteer, [photo_id], category="env.flyers",
                               location={"lat": 35.0900, "lng": 118.4200})
    assert first["duplicate_of"] is None
    assert near["duplicate_of"] == first["id"]
    assert near["status"] == "submitted"  # linked, not lost
    assert far["duplicate_of"] in (None, near["id"])  # 334 m from the first, 167 m from the second
    assert other_kind["duplicate_of"] is None


def test_an_open_report_stored_before_reports_carried_their_area_is_linked_after_the_migration_gives_it_one(
        fresh_intake, volunteer, photo_id):
    here = {"lat": 35.0900, "lng": 118.4200}
    first = submit_report(fresh_intake.client, volunteer, [photo_id], category="infra.damaged", location=here)
    store = ReportStore(connect(fresh_intake.settings.mongo_url, fresh_intake.settings.database))
    store.reports.update_one({"_id": first["id"]}, {"$unset": {"area": ""}})
    assert migrate(store.db, "intake") == ["2026-11-reports-place-keys", "2026-12-rate-limit-windows-intake"]
    near = submit_report(fresh_intake.client, volunteer, [photo_id], category="infra.damaged",
                         location={**here, "lat": 35.0905})
    assert near["duplicate_of"] == first["id"]


def test_the_migration_drops_the_nearby_index_that_reports_no_longer_use_once(fresh_intake):
    store = ReportStore(connect(fresh_intake.settings.mongo_url, fresh_intake.settings.database))
    store.reports.create_index([("category", 1), ("open", 1), ("location.lat", 1)])
    migrate(store.db, "intake")
    assert "category_1_open_1_location.lat_1" not in store.reports.index_information()
    assert migrate(store.db, "intake") == []  # recorded: a second run has nothing to do
    assert {r["_id"] for r in store.db["migrations"].find()} >= {"2026-11-reports-place-keys"}


class TestVisibility:
    def test_another_volunteer_gets_404(self, intake, volunteer, photo_id):
        report = submit_report(intake.client, volunteer, [photo_id])
        assert intake.client.get(f"/v1/reports/{report['id']}", headers=bearer("volunteer")).status_code == 404

    def test_grid_leader_sees_own_grid_only(self, intake, volunteer, photo_id):
        report = submit_report(intake.client, volunteer, [photo_id], location=LANSHAN_01)
        own = bearer("grid_leader", grid="lanshan-01")
        other = bearer("grid_leader", grid="hedong-01")
        assert intake.client.get(f"/v1/reports/{report['id']}", headers=own).status_code == 200
        assert intake.client.get(f"/v1/reports/{report['id']}", headers=other).status_code == 404
        listed = intake.client.get("/v1/reports?limit=200", headers=other).json["items"]
        assert report["id"] not in [r["id"] for r in listed]

    def test_office_sees_everything_department_nothing_before_a_case(self, intake, volunteer, photo_id):
        report = submit_report(intake.client, volunteer, [photo_id])
        assert intake.client.get(f"/v1/reports/{report['id']}", headers=bearer("office")).status_code == 200
        dept = bearer("department", dept="traffic-police")
        assert intake.client.get(f"/v1/reports/{report['id']}", headers=dept).status_code == 404

    def test_photo_of_a_report_is_visible_to_its_grid_leader(self, intake, volunteer, photo_id):
        submit_report(intake.client, volunteer, [photo_id], location=LANSHAN_01)
        leader = bearer("grid_leader", grid="lanshan-01")
        assert intake.client.get(f"/v1/photos/{photo_id}", headers=leader).status_code == 200
        stranger = bearer("grid_leader", grid="hedong-02")
        assert intake.client.get(f"/v1/photos/{photo_id}", headers=stranger).status_code == 404


class TestListing:
    def test_filters_and_cursor_pagination(self, intake, photo_id, volunteer):
        made = [submit_report(intake.client, volunteer, [photo_id], category="civility.dogs")["id"] for _ in range(5)]
        seen, cursor = [], None
        while True:
            query = "/v1/reports?category=civility.dogs&limit=2" + (f"&cursor={cursor}" if cursor else "")
            response = intake.client.get(query, headers=volunteer)
            assert response.status_code == 200
            assert len(response.json["items"]) <= 2
            seen += [r["id"] for r in response.json["items"]]
            cursor = response.json["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(made))  # newest first, each exactly once

    def test_filter_by_status_and_time(self, intake, photo_id, volunteer):
        report = submit_report(intake.client, volunteer, [photo_id], category="market.disorder")
        hit = intake.client.get(f"/v1/reports?status=submitted&category=market.disorder&from={report['submitted_at']}",
                                headers=volunteer).json["items"]
        assert [r["id"] for r in hit] == [report["id"]]
        miss = intake.client.get(f"/v1/reports?category=market.disorder&to={report['submitted_at']}",
                                 headers=volunteer).json["items"]
        assert miss == []

    @pytest.mark.parametrize("query, field", [("limit=500", "limit"), ("limit=0", "limit"),
                                              ("status=lost", "status"), ("cursor=%%%", "cursor"),
                                              ("from=notatime", "from")])
    def test_bad_query_is_422(self, intake, volunteer, query, field):
        response = intake.client.get(f"/v1/reports?{query}", headers=volunteer)
        assert response.status_code == 422
        assert field in response.json["errors"]

    def test_volunteer_lists_only_own(self, intake, photo_id, volunteer):
        submit_report(intake.client, volunteer, [photo_id])
        someone = bearer("volunteer")
        assert intake.client.get("/v1/reports", headers=someone).json == {"items": [], "next_cursor": None}
