"""Hours through HTTP with the real broker, beside intake and routing: volunteers, patrols evidenced by their
reports, the append-only ledger, adjustments and reversals, and verified reports counted when cases close."""
import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import Workbook

from services.intake.domain import GridMap
from shared import reference
from shared.events import Event
from tests.conftest import bearer
from tests.service.conftest import upload_photo
from tests.service.test_routing import fresh_spot
from tests.support import publish_raw, wait_for

OFFICE = bearer("office", "office-1")
ASSOCIATION = bearer("association", "assoc-1")
POLICE = bearer("department", "police-1", dept="traffic-police")
GRIDS = GridMap(reference.load(None).grids)


@pytest.fixture(scope="module")
def city(intake_routing_hours):
    return intake_routing_hours


def phone() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


def register(city, grid_id="lanshan-01", **fields) -> tuple[dict, dict]:
    """A new volunteer, and their token."""
    body = {"name": "王小明", "phone": phone(), "organization": "金雀山街道志愿服务队", "grid_id": grid_id, **fields}
    response = city["hours"].client.post("/v1/volunteers", headers=ASSOCIATION, json=body)
    assert response.status_code == 201, response.json
    return response.json, bearer("volunteer", response.json["id"])


def spot_and_grid() -> tuple[tuple[float, float], str]:
    spot = fresh_spot()
    return spot, GRIDS.locate(*spot).id


def report_by(city, token: dict, spot: tuple[float, float] | None = None) -> dict:
    lat, lng = spot or fresh_spot()
    photo = upload_photo(city["intake"].client, token)["id"]
    response = city["intake"].client.post("/v1/reports", headers=token, json={
        "category": "traffic.parking", "description": "路口乱停车辆堵塞通道", "location": {"lat": lat, "lng": lng},
        "photo_ids": [photo]})
    assert response.status_code == 201, response.json
    return response.json


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def patrol(city, token: dict, grid_id: str, start: datetime, end: datetime, **headers):
    return city["hours"].client.post("/v1/patrols", headers={**token, **headers},
                                     json={"grid_id": grid_id, "started_at": iso(start), "ended_at": iso(end)})


def summary(city, volunteer_id: str, token=OFFICE) -> dict:
    response = city["hours"].client.get(f"/v1/volunteers/{volunteer_id}/summary", headers=token)
    assert response.status_code == 200, response.json
    return response.json


def ledger(city, volunteer_id: str, token=OFFICE) -> list[dict]:
    response = city["hours"].client.get(f"/v1/volunteers/{volunteer_id}/ledger", headers=token)
    assert response.status_code == 200, response.json
    return response.json["items"]


def now() -> datetime:
    return datetime.now(UTC)


# --- volunteers -------------------------------------------------------------------------------

def test_a_registered_volunteer_reads_their_own_record_with_the_phone_masked(city):
    volunteer, token = register(city)
    assert volunteer["phone"].isdigit() and volunteer["star_level"] == 0  # the association sees it in full
    own = city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}", headers=token).json
    assert own["phone"] == f"{volunteer['phone'][:3]}****{volunteer['phone'][-4:]}"
    assert own["name"] == "王小明"


def test_a_phone_registers_once_per_organization(city):
    volunteer, _ = register(city)
    again = city["hours"].client.post("/v1/volunteers", headers=OFFICE, json={
        "name": "王小明", "phone": volunteer["phone"], "organization": volunteer["organization"],
        "grid_id": "lanshan-02"})
    assert again.status_code == 409 and volunteer["id"] in again.json["detail"]
    elsewhere = city["hours"].client.post("/v1/volunteers", headers=OFFICE, json={
        "name": "王小明", "phone": volunteer["phone"], "organization": "另一支服务队", "grid_id": "lanshan-02"})
    assert elsewhere.status_code == 201


def test_a_retried_registration_with_its_key_registers_nobody_twice(city):
    body = {"name": "李四", "phone": phone(), "organization": "金雀山街道志愿服务队", "grid_id": "lanshan-01"}
    headers = {**ASSOCIATION, "Idempotency-Key": uuid.uuid4().hex}
    first = city["hours"].client.post("/v1/volunteers", headers=headers, json=body)
    again = city["hours"].client.post("/v1/volunteers", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = city["hours"].client.post("/v1/volunteers", headers=headers, json={**body, "name": "张三"})
    assert other.status_code == 409


@pytest.mark.parametrize("who", [bearer("volunteer"), bearer("grid_leader", grid="lanshan-01"), POLICE])
def test_only_the_association_and_the_office_register_volunteers(city, who):
    response = city["hours"].client.post("/v1/volunteers", headers=who, json={
        "name": "王小明", "phone": phone(), "organization": "队", "grid_id": "lanshan-01"})
    assert response.status_code == 403


def test_bad_registrations_are_422_naming_the_field(city):
    response = city["hours"].client.post("/v1/volunteers", headers=OFFICE, json={
        "name": "", "phone": "12345", "organization": "队", "grid_id": "nowhere"})
    assert response.status_code == 422
    assert {"name", "phone"} <= set(response.json["errors"])
    unknown_grid = city["hours"].client.post("/v1/volunteers", headers=OFFICE, json={
        "name": "王", "phone": phone(), "organization": "队", "grid_id": "nowhere"})
    assert unknown_grid.status_code == 422 and "grid_id" in unknown_grid.json["errors"]


def test_a_grid_leader_lists_only_their_grids_volunteers_and_a_volunteer_lists_nobody(city):
    mine, _ = register(city, grid_id="hedong-02")
    theirs, _ = register(city, grid_id="hedong-03")
    leader = bearer("grid_leader", grid="hedong-02")
    listed = city["hours"].client.get("/v1/volunteers?limit=200", headers=leader).json["items"]
    ids = {v["id"] for v in listed}
    assert mine["id"] in ids and theirs["id"] not in ids
    assert all(v["grid_id"] == "hedong-02" and "****" in v["phone"] for v in listed)
    assert city["hours"].client.get(f"/v1/volunteers/{theirs['id']}", headers=leader).status_code == 404
    assert city["hours"].client.get("/v1/volunteers", headers=bearer("volunteer")).status_code == 403


def test_a_volunteer_cannot_read_another_volunteers_summary_or_ledger(city):
    volunteer, _ = register(city)
    stranger = bearer("volunteer")
    for path in ("", "/summary", "/ledger"):
        response = city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}{path}", headers=stranger)
        assert response.status_code == 404, path


def roster_xlsx(rows: list[list]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["姓名", "手机号", "所属组织", "网格"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def import_roster(city, content: bytes, name="roster.xlsx"):
    return city["hours"].client.post("/v1/volunteers/import", headers=ASSOCIATION,
                                     data={"file": (io.BytesIO(content), name)}, content_type="multipart/form-data")


def test_a_roster_imports_its_good_rows_reports_its_bad_ones_and_imports_nothing_twice(city):
    good = [["赵一", phone(), "沂河街道服务队", "hedong-01"], ["钱二", phone(), "沂河街道服务队", "hedong-01"]]
    content = roster_xlsx([good[0], ["孙三", "12345", "沂河街道服务队", "hedong-01"], good[1],
                           ["李四", phone(), "沂河街道服务队", "atlantis"]])
    first = import_roster(city, content)
    assert first.status_code == 200, first.json
    assert (first.json["rows"], first.json["registered"], first.json["already_registered"]) == (4, 2, 0)
    assert [e["row"] for e in first.json["errors"]] == [3, 5]
    assert "phone" in first.json["errors"][0]["reason"] and "grid" in first.json["errors"][1]["reason"]
    again = import_roster(city, content)
    assert (again.json["registered"], again.json["already_registered"]) == (0, 2)


def test_a_file_that_is_not_a_roster_is_422(city):
    response = import_roster(city, b"\x89PNG\r\n\x1a\n" + bytes(200), name="roster.png")
    assert response.status_code == 422 and "file" in response.json["errors"]


# --- patrols ----------------------------------------------------------------------------------

def test_a_patrol_evidenced_by_a_report_is_credited_at_once(city, subscribe):
    credited = subscribe("hours.credited")
    volunteer, token = register(city)
    started = now() - timedelta(hours=1, minutes=10)
    report = report_by(city, token)
    wait_for(lambda: city["hours"].app.extensions["hours"].store.reports.find_one({"_id": report["id"]}),
             what="hours hears of the report")
    response = patrol(city, token, report["grid_id"], started, now())
    assert response.status_code == 201, response.json
    assert response.json["status"] == "credited" and response.json["hours"] == 1.0
    assert response.json["evidence_report_id"] == report["id"]
    entries = ledger(city, volunteer["id"], token)
    # The part a report evidences has the report as its source, and names its patrol.
    assert [(e["kind"], e["hours"], e["source"], e["source_id"], e["patrol_id"]) for e in entries] == [
        ("patrol", 1.0, "report", report["id"], response.json["id"])]
    assert entries[0]["rule_version"] == "linyi-2026.2" and entries[0]["id"] == response.json["entry_id"]
    assert summary(city, volunteer["id"], token)["year_hours"] == 1.0
    events = wait_for(lambda: credited.events("hours.credited", lambda e: e["data"]["volunteer_id"] == volunteer["id"]),
                      what="hours.credited")
    assert events[0]["data"]["hours"] == 1.0 and events[0]["source"] == "hours"


def test_a_report_that_arrives_after_the_patrol_was_recorded_still_evidences_it(city):
    volunteer, token = register(city)
    spot, grid_id = spot_and_grid()
    waiting = patrol(city, token, grid_id, now() - timedelta(minutes=50), now() + timedelta(minutes=1))
    assert waiting.status_code == 201 and waiting.json["status"] == "awaiting_confirmation", waiting.json
    assert summary(city, volunteer["id"])["pending_hours"] == 0.5
    # A report in the patrol's grid while it runs: intake's event reaches hours after the patrol was recorded.
    evidence = report_by(city, token, spot)

    def credited():
        found = city["hours"].client.get(f"/v1/patrols/{waiting.json['id']}", headers=token).json
        return found if found["status"] == "credited" else None

    assert wait_for(credited, what="the patrol credited by its late evidence")["evidence_report_id"] == evidence["id"]
    got = summary(city, volunteer["id"])
    assert (got["pending_hours"], got["year_hours"]) == (0, 0.5)


def test_concurrent_overlapping_patrols_record_one(city):
    from concurrent.futures import ThreadPoolExecutor

    volunteer, token = register(city)
    start = now() - timedelta(hours=6)
    app = city["hours"].app

    def record(offset: int):
        return app.test_client().post("/v1/patrols", headers=token, json={
            "grid_id": "lanshan-02", "started_at": iso(start + timedelta(minutes=offset)),
            "ended_at": iso(start + timedelta(minutes=offset + 90))}).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(record, (0, 5, 10, 15)))
    assert statuses == [201, 409, 409, 409]
    assert len(city["hours"].client.get("/v1/patrols", headers=token).json["items"]) == 1


@pytest.mark.parametrize("start, end", [
    ("2026-11-24T10:00:00Z", "2026-11-24T09:00:00Z"),     # ends before it starts
    ("yesterday", "2026-11-24T09:00:00Z"),                # not a time
    ("2026-11-24T10:00:00", "2026-11-24T11:00:00"),       # no offset
    ("2099-01-01T00:00:00Z", "2099-01-01T02:00:00Z"),     # the future
    ("2026-01-05T00:00:00Z", "2026-01-05T02:00:00Z"),     # months late
    ("2026-11-20T00:00:00Z", "2026-11-21T23:00:00Z"),     # absurdly long
])
def test_hostile_patrols_are_422_and_the_ledger_is_untouched(city, start, end):
    volunteer, token = register(city)
    response = city["hours"].client.post("/v1/patrols", headers=token,
                                         json={"grid_id": "lanshan-01", "started_at": start, "ended_at": end})
    assert response.status_code == 422 and response.headers["Content-Type"] == "application/problem+json"
    assert ledger(city, volunteer["id"]) == [] and summary(city, volunteer["id"])["pending_hours"] == 0


def test_only_a_registered_volunteer_records_patrols(city):
    # The rule itself (a registered volunteer) is tested in tests/unit/test_hours_patrols.py; here its answer.
    response = patrol(city, bearer("volunteer"), "lanshan-01", now() - timedelta(hours=1), now())
    assert response.status_code == 403 and "register" in response.json["detail"]
    assert patrol(city, ASSOCIATION, "lanshan-01", now() - timedelta(hours=1), now()).status_code == 403


# --- adjustments, reversals, levels -----------------------------------------------------------

def adjust(city, volunteer_id: str, hours: float, who=ASSOCIATION, **headers):
    return city["hours"].client.post("/v1/adjustments", headers={**who, **headers},
                                     json={"volunteer_id": volunteer_id, "hours": hours, "reason": "补录纸质签到时长"})


def test_an_adjustment_is_a_new_entry_and_a_retry_credits_it_once(city):
    volunteer, _ = register(city)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = adjust(city, volunteer["id"], 3.5, **key)
    again = adjust(city, volunteer["id"], 3.5, **key)
    assert first.status_code == again.status_code == 201 and first.json["id"] == again.json["id"]
    assert first.json["kind"] == "adjustment" and first.json["recorded_by"] == "association:assoc-1"
    assert adjust(city, volunteer["id"], 4, **key).status_code == 409
    assert summary(city, volunteer["id"])["total_hours"] == 3.5


def test_an_adjustments_key_reused_for_another_volunteer_is_409_and_credits_nobody_twice(city):
    (one, _), (other, _) = register(city), register(city)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert adjust(city, one["id"], 5, **key).status_code == 201
    reused = adjust(city, other["id"], 5, **key)
    assert reused.status_code == 409 and "Idempotency-Key" in reused.json["detail"], reused.json
    assert ledger(city, other["id"]) == [] and summary(city, other["id"])["total_hours"] == 0
    assert summary(city, one["id"])["total_hours"] == 5


@pytest.mark.parametrize("hours", [0.004, 1.005, -0.001])
def test_hours_that_are_not_whole_hundredths_are_422_not_rounded_away(city, hours):
    volunteer, _ = register(city)
    response = adjust(city, volunteer["id"], hours)
    assert response.status_code == 422 and "hundredths" in response.json["detail"], response.json
    assert "hours" in response.json["errors"] and ledger(city, volunteer["id"]) == []
    activity = plan(city)
    odd = complete(city, activity, [{"volunteer_id": volunteer["id"], "hours": hours}])
    assert odd.status_code == 422 and "participants.0.hours" in odd.json["errors"]
    assert summary(city, volunteer["id"])["pending_hours"] == 0


@pytest.mark.parametrize("who", [bearer("volunteer"), OFFICE, bearer("grid_leader", grid="lanshan-01")])
def test_only_the_association_adjusts_hours(city, who):
    volunteer, token = register(city)
    assert adjust(city, volunteer["id"], 5, who=who).status_code == 403
    assert adjust(city, volunteer["id"], 5, who=token).status_code == 403  # not even their own
    assert ledger(city, volunteer["id"]) == []


def test_a_volunteer_cannot_reverse_their_entries(city):
    volunteer, token = register(city)
    entry = adjust(city, volunteer["id"], 2).json
    response = city["hours"].client.post(f"/v1/entries/{entry['id']}/reverse", headers=token, json={"reason": "不要"})
    assert response.status_code == 403 and summary(city, volunteer["id"])["total_hours"] == 2


def test_crossing_a_star_level_publishes_the_change(city, subscribe):
    levels = subscribe("volunteer.level_changed")
    volunteer, _ = register(city)
    adjust(city, volunteer["id"], 99.5)
    adjust(city, volunteer["id"], 1)
    got = summary(city, volunteer["id"])
    assert (got["star_level"], got["next_level_at"], got["total_hours"]) == (1, 300, 100.5)
    events = wait_for(lambda: levels.events("volunteer.level_changed",
                                            lambda e: e["data"]["volunteer_id"] == volunteer["id"]),
                      what="volunteer.level_changed")
    assert len(events) == 1 and events[0]["data"]["star_level"] == 1
    listed = city["hours"].client.get("/v1/volunteers?star_level=1&limit=200", headers=OFFICE).json["items"]
    assert volunteer["id"] in {v["id"] for v in listed}


# --- verified reports -------------------------------------------------------------------------

def test_a_report_whose_case_closes_after_recheck_counts_once_for_its_reporter(city):
    volunteer, token = register(city)
    submitted = report_by(city, token)

    def case():
        items = city["routing"].client.get("/v1/cases?limit=200", headers=OFFICE).json["items"]
        return next((c for c in items if submitted["id"] in c["report_ids"]), None)

    case_id = wait_for(case, what="the report's case")["id"]
    routing = city["routing"].client
    assert routing.post(f"/v1/cases/{case_id}/accept", headers=POLICE, json={}).status_code == 200
    after = upload_photo(city["intake"].client, POLICE)["id"]
    assert routing.post(f"/v1/cases/{case_id}/rectify", headers=POLICE,
                        json={"note": "已拖移", "photo_ids": [after]}).status_code == 200
    assert routing.post(f"/v1/cases/{case_id}/verify", headers=OFFICE,
                        json={"passed": True, "note": "已整改"}).json["status"] == "closed"
    wait_for(lambda: summary(city, volunteer["id"])["verified_reports"] == 1, what="the verified report counted")
    assert summary(city, volunteer["id"])["year_verified_reports"] == 1


def test_events_hours_hears_twice_change_nothing_the_second_time(city, amqp_url):
    """No marker of handled events: the credit's source key and the report's verified flag make a redelivered
    report.submitted or case.closed a no-op (each queue is first in, first out, so the event sent after the
    copies is handled after them)."""
    volunteer, token = register(city)
    _, grid_id = spot_and_grid()
    first = patrol(city, token, grid_id, now() - timedelta(hours=4), now() - timedelta(hours=3)).json
    second = patrol(city, token, grid_id, now() - timedelta(hours=2), now() - timedelta(hours=1)).json
    assert first["status"] == second["status"] == "awaiting_confirmation"

    def submitted(report_id: str, at: datetime) -> Event:
        return Event.new("report.submitted", "intake", {"id": report_id, "reporter_id": volunteer["id"],
                                                        "grid_id": grid_id, "submitted_at": iso(at)})

    def closed(report_id: str) -> Event:
        return Event.new("case.closed.traffic-police", "routing", {"case_id": f"case-{report_id}",
                                                                   "report_ids": [report_id]})

    reports = [f"r-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    evidence = submitted(reports[0], now() - timedelta(hours=3, minutes=30))
    for event in (evidence, evidence, submitted(reports[1], now() - timedelta(hours=1, minutes=30))):
        publish_raw(amqp_url, event.type, event.to_dict(), event.id)
    wait_for(lambda: summary(city, volunteer["id"])["year_hours"] == 2.0, what="the second patrol credited")
    assert sorted(entry["source_id"] for entry in ledger(city, volunteer["id"])) == sorted(reports)
    assert sorted(entry["patrol_id"] for entry in ledger(city, volunteer["id"])) == sorted((first["id"],
                                                                                           second["id"]))
    verified = closed(reports[0])
    for event in (verified, verified, closed(reports[1])):
        publish_raw(amqp_url, event.type, event.to_dict(), event.id)
    wait_for(lambda: summary(city, volunteer["id"])["verified_reports"] >= 2, what="both reports counted")
    assert summary(city, volunteer["id"])["verified_reports"] == 2


def test_reports_heard_together_each_evidence_their_own_reporters_patrol(city, amqp_url):
    """Hours reads the waiting patrols of a whole batch of reports at once; each report still evidences only the
    patrol of its reporter, in its grid, while it ran."""
    _, grid_id = spot_and_grid()
    walkers = [register(city) for _ in range(2)]
    started = [now() - timedelta(hours=5), now() - timedelta(hours=2)]
    patrols = [patrol(city, token, grid_id, start, start + timedelta(hours=1)).json
               for (_, token), start in zip(walkers, started, strict=True)]
    assert [p["status"] for p in patrols] == ["awaiting_confirmation"] * 2
    reports = {f"r-{uuid.uuid4().hex[:12]}": (volunteer["id"], start + timedelta(minutes=30))
               for (volunteer, _), start in zip(walkers, started, strict=True)}
    for report_id, (reporter_id, at) in reports.items():
        event = Event.new("report.submitted", "intake", {"id": report_id, "reporter_id": reporter_id,
                                                          "grid_id": grid_id, "submitted_at": iso(at)})
        publish_raw(amqp_url, event.type, event.to_dict(), event.id)

    def evidence_of(walked: dict, token: dict) -> str | None:
        found = city["hours"].client.get(f"/v1/patrols/{walked['id']}", headers=token).json
        return found["evidence_report_id"] if found["status"] == "credited" else None

    for (report_id, _), walked, (_, token) in zip(reports.items(), patrols, walkers, strict=True):
        assert wait_for(lambda walked=walked, token=token: evidence_of(walked, token),
                        what="the patrol credited") == report_id


# --- rankings, proofs, closing a year ---------------------------------------------------------

def test_rankings_order_by_hours_with_shared_ranks_and_masked_names(city):
    organization = f"排名测试服务队{uuid.uuid4().hex[:6]}"
    credited = {}
    for name, hours in (("张三丰", 12), ("李四", 30), ("王五", 12), ("赵六", 4)):
        volunteer, _ = register(city, name=name, organization=organization)
        adjust(city, volunteer["id"], hours)
        credited[name] = volunteer["id"]
    response = city["hours"].client.get(f"/v1/rankings?organization={organization}", headers=bearer("volunteer"))
    assert response.status_code == 200, response.json
    table = [(row["rank"], row["name"], row["hours"], row["volunteer_id"]) for row in response.json["items"]]
    assert table[0] == (1, "李*", 30, None)
    assert {table[1][1], table[2][1]} == {"张*丰", "王*"} and table[1][0] == table[2][0] == 2
    assert table[3][:3] == (4, "赵*", 4)
    staff = city["hours"].client.get(f"/v1/rankings?organization={organization}&limit=1", headers=OFFICE).json
    assert [row["volunteer_id"] for row in staff["items"]] == [credited["李四"]]


def test_rankings_as_a_spreadsheet_hold_every_row(city):
    from openpyxl import load_workbook

    organization = f"表格测试服务队{uuid.uuid4().hex[:6]}"
    for hours in (3, 5):
        volunteer, _ = register(city, organization=organization)
        adjust(city, volunteer["id"], hours)
    response = city["hours"].client.get(f"/v1/rankings?organization={organization}&format=xlsx&limit=1",
                                        headers=ASSOCIATION)
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = [row for row in sheet.iter_rows(min_row=4, values_only=True) if row[0] is not None]
    assert [(row[0], row[1], row[4]) for row in rows] == [(1, "王*明", 5), (2, "王*明", 3)]


def test_a_proof_of_service_is_checkable_by_its_code_until_the_ledger_changes(city):
    from pypdf import PdfReader

    volunteer, token = register(city, name="陈小春")
    entry = adjust(city, volunteer["id"], 6.5).json
    response = city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}/proof", headers=token)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    assert "志愿服务证明" in text and "陈小春" in text and "6.5" in text
    code = re.search(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", text).group()
    anyone = city["hours"].client.get(f"/v1/proofs/{code}")  # no token
    assert anyone.status_code == 200, anyone.json
    assert anyone.json["valid"] is True and anyone.json["name"] == "陈*春" and anyone.json["hours"] == 6.5
    assert "phone" not in anyone.json and volunteer["id"] not in str(anyone.json)
    again = city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}/proof", headers=token)
    assert code in "".join(page.extract_text() for page in PdfReader(io.BytesIO(again.data)).pages)
    city["hours"].client.post(f"/v1/entries/{entry['id']}/reverse", headers=OFFICE, json={"reason": "抽查不符"})
    stale = city["hours"].client.get(f"/v1/proofs/{code}").json
    assert stale["valid"] is False and "changed" in stale["detail"]
    assert city["hours"].client.get("/v1/proofs/0000-0000-0000").status_code == 404


def test_proofs_are_for_the_volunteer_and_staff_only(city):
    volunteer, _ = register(city)
    adjust(city, volunteer["id"], 2)
    assert city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}/proof",
                                    headers=bearer("volunteer")).status_code in (403, 404)
    leader = bearer("grid_leader", grid=volunteer["grid_id"])
    assert city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}/proof", headers=leader).status_code == 403


def test_a_year_closes_once_after_it_ends_and_its_proofs_stay_valid(city):
    volunteer, token = register(city)
    last_year = now().year - 1
    entry = city["hours"].client.post("/v1/adjustments", headers=ASSOCIATION, json={
        "volunteer_id": volunteer["id"], "hours": 8, "reason": "补录去年活动时长",
        "service_date": f"{last_year}-12-20"}).json
    assert city["hours"].client.post(f"/v1/years/{now().year}/close", headers=OFFICE).status_code == 409
    assert city["hours"].client.post(f"/v1/years/{last_year}/close", headers=ASSOCIATION).status_code == 403
    closed = city["hours"].client.post(f"/v1/years/{last_year}/close", headers=OFFICE)
    assert closed.status_code == 200 and closed.json["volunteers"] >= 1
    assert city["hours"].client.post(f"/v1/years/{last_year}/close", headers=OFFICE).status_code == 409
    proof = city["hours"].client.get(f"/v1/volunteers/{volunteer['id']}/proof?year={last_year}", headers=token)
    assert proof.status_code == 200
    # Nothing more is credited into a closed year; a correction goes into the current one.
    late = city["hours"].client.post(f"/v1/entries/{entry['id']}/reverse", headers=OFFICE, json={"reason": "更正"})
    assert late.status_code == 409 and "closed" in late.json["detail"]
    assert summary(city, volunteer["id"])["total_hours"] == 8


# --- activities -------------------------------------------------------------------------------

def plan(city, who=ASSOCIATION, grid_id="lanshan-01", start=None, hours=3):
    start = start or now() - timedelta(hours=hours + 1)
    response = city["hours"].client.post("/v1/activities", headers=who, json={
        "title": "文明交通劝导志愿服务活动", "grid_id": grid_id, "starts_at": iso(start),
        "ends_at": iso(start + timedelta(hours=hours))})
    assert response.status_code == 201, response.json
    return response.json


def photos_of(city, who=ASSOCIATION, count=4) -> list[str]:
    return [upload_photo(city["intake"].client, who)["id"] for _ in range(count)]


def complete(city, activity, participants, who=ASSOCIATION, photos=None):
    return city["hours"].client.post(f"/v1/activities/{activity['id']}/complete", headers=who, json={
        "participants": participants, "summary": "劝导行人闯红灯 126 人次",
        "photo_ids": photos or photos_of(city, who)})


def publicity_watch(city):
    from services.hours.publicity import PublicityWatch

    hours = city["hours"].app.extensions["hours"]
    return PublicityWatch(hours.store, hours.zone)


def test_an_activitys_hours_are_publicised_then_credited_once_the_window_ends(city, subscribe):
    credited = subscribe("hours.credited")
    (one, _), (two, _) = register(city), register(city)
    activity = plan(city)
    done = complete(city, activity, [{"volunteer_id": one["id"], "hours": 3}, {"volunteer_id": two["id"], "hours": 2}])
    assert done.status_code == 200, done.json
    assert done.json["status"] == "publicised" and done.json["publicity_ends"] > now().date().isoformat()
    assert summary(city, one["id"])["pending_hours"] == 3 and ledger(city, one["id"]) == []
    assert complete(city, activity, [{"volunteer_id": one["id"], "hours": 3}]).status_code == 409
    watch = publicity_watch(city)
    assert watch.check(now()) == 0  # the window is still open
    later = now() + timedelta(days=10)
    assert watch.check(later) >= 2
    assert watch.check(later) == 0  # nothing twice
    got = summary(city, one["id"])
    assert (got["pending_hours"], got["year_hours"]) == (0, 3)
    entries = ledger(city, two["id"])
    assert [(e["kind"], e["hours"], e["source_id"]) for e in entries] == [("activity", 2, activity["id"])]
    final = city["hours"].client.get(f"/v1/activities/{activity['id']}", headers=bearer("volunteer")).json
    assert final["status"] == "confirmed" and {p["status"] for p in final["participants"]} == {"credited"}
    wait_for(lambda: credited.events("hours.credited", lambda e: e["data"]["source_id"] == activity["id"]),
             what="hours.credited for the activity")


def test_who_objected_is_shown_to_the_association_and_the_office_only(city):
    (objected, objected_token), (objector, objector_token) = register(city), register(city)
    activity = plan(city)
    complete(city, activity, [{"volunteer_id": objected["id"], "hours": 2}])
    raised = city["hours"].client.post(f"/v1/activities/{activity['id']}/objections", headers=objector_token,
                                       json={"volunteer_id": objected["id"], "reason": "该志愿者当天未到场"})
    assert raised.status_code == 201 and raised.json["raised_by"] is None
    path = f"/v1/activities/{activity['id']}"
    for reader in (objected_token, bearer("grid_leader", grid="lanshan-01"), bearer("volunteer")):
        shown = city["hours"].client.get(path, headers=reader).json["objections"]
        assert [o["raised_by"] for o in shown] == [None]
        listed = city["hours"].client.get("/v1/activities?status=publicised&limit=200", headers=reader).json["items"]
        assert [o["raised_by"] for a in listed if a["id"] == activity["id"] for o in a["objections"]] == [None]
    for staff in (OFFICE, ASSOCIATION):
        shown = city["hours"].client.get(path, headers=staff).json["objections"]
        assert [o["raised_by"] for o in shown] == [f"volunteer:{objector['id']}"]


def test_activities_answer_roles_and_hostile_hours_before_any_rule(city):
    """What only HTTP decides about activities (roles, the body's shape); their rules are unit-tested in
    tests/unit/test_hours_activities.py."""
    (volunteer, token) = register(city)
    assert city["hours"].client.post("/v1/activities", headers=bearer("volunteer"), json={
        "title": "清理小广告", "place": "广场", "starts_at": iso(now()),
        "ends_at": iso(now() + timedelta(hours=2))}).status_code == 403
    activity = plan(city)
    odd = complete(city, activity, [{"volunteer_id": volunteer["id"], "hours": 0.7}])
    assert odd.status_code == 422 and "participants.0.hours" in odd.json["errors"]
    assert complete(city, activity, [{"volunteer_id": volunteer["id"], "hours": 2}]).status_code == 200
    path = f"/v1/activities/{activity['id']}/objections"
    raised = city["hours"].client.post(path, headers=OFFICE, json={"volunteer_id": volunteer["id"], "reason": "未到场"})
    assert raised.status_code == 201, raised.json
    decision = {"upheld": False, "note": "经核实签到表"}
    assert city["hours"].client.post(f"{path}/{raised.json['id']}/decision", headers=token,
                                     json=decision).status_code == 403
    assert city["hours"].client.post(f"{path}/{raised.json['id']}/decision", headers=ASSOCIATION,
                                     json=decision).json["status"] == "dismissed"
