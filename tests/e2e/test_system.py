"""End to end: the system started the way `make up` starts it, driven over real HTTP and AMQP."""
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from PIL import Image

from tests.conftest import bearer
from tests.support import EventTap, wait_for

pytestmark = pytest.mark.e2e


def test_up_prints_every_url_and_an_office_token(system):
    urls, output = system
    for url in urls.values():
        assert url in output
    assert "export TOKEN=" in output


def test_every_service_is_healthy_ready_and_documented(system):
    urls, _ = system
    for url in urls.values():
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
        assert requests.get(f"{url}/openapi.json", timeout=5).json()["openapi"].startswith("3.")
        assert "woodpecker_http_requests_total" in requests.get(f"{url}/metrics", timeout=5).text


def test_the_closed_loop_through_the_running_services(system, amqp_url):
    """A registered volunteer patrols and reports → case dispatched → the department's subscriber → accept →
    rectify → verify → closed; the volunteer's summary shows the patrol's hours and one verified report, and
    their inbox the dispatch, the rectification and the closure."""
    urls, _ = system
    intake, routing, hours = urls["intake"], urls["routing"], urls["hours"]
    office, association = bearer("office"), bearer("association")
    registered = requests.post(f"{hours}/v1/volunteers", headers=association, timeout=10, json={
        "name": "王小明", "phone": "13912345678", "organization": "罗庄街道志愿服务队", "grid_id": "lanshan-04"})
    assert registered.status_code == 201, registered.text
    volunteer_id = registered.json()["id"]
    volunteer = bearer("volunteer", volunteer_id)
    patrol_started = datetime.now(UTC) - timedelta(hours=1, minutes=40)
    police = bearer("department", dept="traffic-police")
    department_system = EventTap(amqp_url, "case.*.traffic-police")
    try:
        photo = requests.post(f"{intake}/v1/photos", headers=volunteer, timeout=10,
                              files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}).json()["id"]
        report = requests.post(f"{intake}/v1/reports", headers=volunteer, timeout=10, json={
            "category": "traffic.parking", "description": "消防通道被私家车占用", "photo_ids": [photo],
            "location": {"lat": 35.110, "lng": 118.345}}).json()
        dispatched = wait_for(lambda: department_system.events(
            "case.dispatched.traffic-police", lambda e: report["id"] in e["data"]["report_ids"]),
            what="the department's subscriber receiving the case")
        case_id = dispatched[0]["data"]["case_id"]
        after = requests.post(f"{intake}/v1/photos", headers=police, timeout=10,
                              files={"file": ("after.jpg", jpeg_bytes(), "image/jpeg")}).json()["id"]
        for action, headers, body in [("accept", police, {}),
                                      ("rectify", police, {"note": "已联系车主挪车", "photo_ids": [after]}),
                                      ("verify", office, {"passed": True, "note": "复查通过"})]:
            response = requests.post(f"{routing}/v1/cases/{case_id}/{action}", headers=headers, json=body, timeout=10)
            assert response.status_code == 200, response.text
        assert response.json()["status"] == "closed"
        patrol = requests.post(f"{hours}/v1/patrols", headers=volunteer, timeout=10, json={
            "grid_id": report["grid_id"], "started_at": patrol_started.isoformat(),
            "ended_at": datetime.now(UTC).isoformat()})
        assert patrol.status_code == 201, patrol.text
    finally:
        department_system.close()
    summary = lambda: requests.get(f"{hours}/v1/volunteers/{volunteer_id}/summary", headers=volunteer,  # noqa: E731
                                   timeout=5).json()
    # The report credits an hour of the 1.5-hour patrol at once; the rest waits for the grid leader.
    wait_for(lambda: summary()["verified_reports"] == 1 and summary()["year_hours"] == 1.0,
             what="the patrol's evidenced hour and the verified report in the volunteer's summary")
    assert summary()["pending_hours"] == 0.5
    inbox = lambda: requests.get(f"{urls['notify']}/v1/inbox", headers=volunteer, timeout=5).json()["items"]  # noqa: E731
    wait_for(lambda: {"report.dispatched", "report.rectified", "report.closed"} <= {i["kind"] for i in inbox()},
             what="the outcome of the closed loop in the reporter's inbox")
    reported = lambda: requests.get(f"{intake}/v1/reports/{report['id']}", headers=volunteer, timeout=5).json()  # noqa: E731
    wait_for(lambda: reported()["status"] == "closed", what="the report closed in intake")
    assert [step["status"] for step in reported()["timeline"]] == [
        "submitted", "submitted", "in_progress", "in_progress", "rectified", "closed"]


def jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "orange").save(out, "JPEG")
    return out.getvalue()


def test_one_report_submitted_per_report_reaches_a_plain_subscriber(system, amqp_url):
    """A client's retry with the same Idempotency-Key creates nothing and publishes nothing."""
    urls, _ = system
    intake = urls["intake"]
    volunteer = bearer("volunteer")
    tap = EventTap(amqp_url, "report.#")
    try:
        photo = requests.post(f"{intake}/v1/photos", headers=volunteer, timeout=10,
                              files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")})
        assert photo.status_code == 201, photo.text
        body = {"category": "env.garbage", "description": "桥下垃圾堆放，气味很大", "photo_ids": [photo.json()["id"]],
                "location": {"lat": 35.1, "lng": 118.395}}
        headers = {**volunteer, "Idempotency-Key": uuid.uuid4().hex}
        report = requests.post(f"{intake}/v1/reports", json=body, headers=headers, timeout=10)
        retry = requests.post(f"{intake}/v1/reports", json=body, headers=headers, timeout=10)
        assert report.status_code == retry.status_code == 201 and report.json()["id"] == retry.json()["id"]
        rid = report.json()["id"]
        received = wait_for(lambda: tap.events("report.submitted", lambda e: e["data"]["id"] == rid),
                            what="report.submitted at the subscriber")
        assert received[0]["data"]["grid_id"] == "hedong-03"
        mine = requests.get(f"{intake}/v1/reports", headers=volunteer, timeout=5).json()["items"]
        assert [r["id"] for r in mine] == [rid]  # the retry created no report, so no second event
        assert len(tap.events("report.submitted", lambda e: e["data"]["id"] == rid)) == 1
    finally:
        tap.close()
