"""Spot checks (抽查): a sample of a year's credited entries drawn with a seed the server draws and records, every
check listed, and a failed entry reversed."""
import pytest

from tests.conftest import bearer

OFFICE = bearer("office", "office-1")
ASSOCIATION = bearer("association", "assoc-1")


@pytest.fixture
def ledger_of_ten(fresh_hours):
    """Ten adjustments in 2026 and one in 2025 over two volunteers; one of the 2026 ones reversed."""
    client = fresh_hours.client
    volunteers = [client.post("/v1/volunteers", headers=ASSOCIATION, json={
        "name": "王小明", "phone": f"1360000000{n}", "organization": "金雀山街道志愿服务队",
        "grid_id": "lanshan-01"}).json["id"] for n in range(2)]
    entries = []
    for n in range(10):
        response = client.post("/v1/adjustments", headers=ASSOCIATION, json={
            "volunteer_id": volunteers[n % 2], "hours": n + 1, "reason": "补录活动时长", "service_date": "2026-05-01"})
        entries.append(response.json["id"])
    client.post("/v1/adjustments", headers=ASSOCIATION, json={
        "volunteer_id": volunteers[0], "hours": 2, "reason": "补录活动时长", "service_date": "2025-05-01"})
    reversed_ = client.post(f"/v1/entries/{entries[0]}/reverse", headers=OFFICE, json={"reason": "重复录入"})
    assert reversed_.status_code == 201
    return fresh_hours, entries


def draw(service, size=4, year=2026, who=OFFICE):
    return service.client.post("/v1/spot-checks", headers=who, json={"year": year, "size": size})


def store_of(service):
    return service.app.extensions["hours"].store


def test_the_server_draws_the_seed_and_records_it_and_the_seed_redraws_the_same_entries(ledger_of_ten):
    service, entries = ledger_of_ten
    first = draw(service)
    assert first.status_code == 201, first.json
    drawn = [item["entry_id"] for item in first.json["items"]]
    assert len(drawn) == len(set(drawn)) == 4 and set(drawn) <= set(entries)
    assert all(item["kind"] == "adjustment" and item["result"] is None for item in first.json["items"])
    # Anyone auditing can redraw a check from its recorded seed: the same seed over the same ledger.
    redrawn = store_of(service).sample(2026, 4, first.json["seed"])
    assert [item["entry_id"] for item in redrawn] == drawn
    assert len({draw(service).json["seed"] for _ in range(3)} | {first.json["seed"]}) > 1
    everything = draw(service, size=50).json["items"]
    assert sorted(item["entry_id"] for item in everything) == sorted(entries)  # 10 credits; no reversal drawn


@pytest.mark.parametrize("seed", [7, None, "7"])
def test_a_seed_the_caller_chooses_is_422(ledger_of_ten, seed):
    service, _ = ledger_of_ten
    response = service.client.post("/v1/spot-checks", headers=OFFICE, json={"year": 2026, "size": 4, "seed": seed})
    assert response.status_code == 422 and "server draws" in str(response.json["errors"]["seed"]), response.json
    assert store_of(service).spot_checks.count_documents({}) == 0


def test_every_check_drawn_stays_listed_so_a_redraw_is_visible(ledger_of_ten):
    service, _ = ledger_of_ten
    checks = [draw(service, size=size).json for size in (2, 3, 4)]
    draw(service, year=2025)
    for reader in (OFFICE, ASSOCIATION):
        first = service.client.get("/v1/spot-checks?year=2026&limit=2", headers=reader)
        assert first.status_code == 200, first.json
        second = service.client.get(f"/v1/spot-checks?year=2026&limit=2&cursor={first.json['next_cursor']}",
                                    headers=reader).json
        listed = first.json["items"] + second["items"]
        assert second["next_cursor"] is None
        assert [c["id"] for c in listed] == [c["id"] for c in reversed(checks)]  # newest first
        assert [(c["seed"], c["drawn"], c["checked"]) for c in listed] == [
            (c["seed"], len(c["items"]), 0) for c in reversed(checks)]
    everything = service.client.get("/v1/spot-checks", headers=OFFICE).json["items"]
    assert len(everything) == 4 and {c["year"] for c in everything} == {2025, 2026}
    assert service.client.get("/v1/spot-checks", headers=bearer("volunteer")).status_code == 403


def test_a_failed_entry_is_reversed_with_the_check_as_its_reason(ledger_of_ten):
    service, entries = ledger_of_ten
    check = draw(service, size=3).json
    # Which entries a check draws differs from one run of the test to the next; the one the office already
    # reversed cannot fail a check.
    failing, passing = [item for item in check["items"] if item["entry_id"] != entries[0]][:2]
    path = f"/v1/spot-checks/{check['id']}/results"
    failed = service.client.post(path, headers=OFFICE, json={"entry_id": failing["entry_id"], "passed": False,
                                                             "note": "签到表无该志愿者签名"})
    assert failed.status_code == 200, failed.json
    item = next(i for i in failed.json["items"] if i["entry_id"] == failing["entry_id"])
    assert item["result"] == "failed" and item["reversal_id"]
    reversal = service.client.get(f"/v1/entries/{item['reversal_id']}", headers=OFFICE).json
    assert reversal["reverses"] == failing["entry_id"] and reversal["hours"] == -failing["hours"]
    assert check["id"] in reversal["note"]
    passed = service.client.post(path, headers=OFFICE, json={"entry_id": passing["entry_id"], "passed": True,
                                                             "note": "核对无误"})
    assert next(i for i in passed.json["items"] if i["entry_id"] == passing["entry_id"])["result"] == "passed"
    again = service.client.post(path, headers=OFFICE, json={"entry_id": passing["entry_id"], "passed": False,
                                                            "note": "再查"})
    assert again.status_code == 409
    stranger = service.client.post(path, headers=OFFICE, json={"entry_id": "0" * 24, "passed": True, "note": "核对"})
    assert stranger.status_code == 422


def test_only_the_office_draws_and_records(ledger_of_ten):
    service, _ = ledger_of_ten
    assert draw(service, who=ASSOCIATION).status_code == 403
    assert draw(service, who=bearer("volunteer")).status_code == 403
    check = draw(service).json
    assert service.client.get(f"/v1/spot-checks/{check['id']}", headers=ASSOCIATION).status_code == 200
    assert service.client.post(f"/v1/spot-checks/{check['id']}/results", headers=ASSOCIATION, json={
        "entry_id": check["items"][0]["entry_id"], "passed": True, "note": "核对无误"}).status_code == 403


def test_a_year_without_entries_draws_an_empty_sample(ledger_of_ten):
    service, _ = ledger_of_ten
    assert draw(service, year=2024).json["items"] == []
