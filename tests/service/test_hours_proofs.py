"""Proofs of service through HTTP: their link leads to the configured public address whatever the request says
its host is, and each proof is rendered once, then served as kept until its figures change."""
import re
import uuid
from dataclasses import replace

import pytest

from services.hours.app import create_app
from services.hours.settings import HoursSettings
from services.hours.usecases import records
from shared.config import Rate
from tests.conftest import bearer, settings_for_test
from tests.unit.test_hours_proof import page_texts, qr_codes_by_page

ASSOCIATION = bearer("association", "assoc-1")
PUBLIC_URL = "https://woodpecker.linyi.example.cn/hours"
CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


@pytest.fixture(scope="module")
def settings(amqp_url, mongo_url):
    return settings_for_test("hours", amqp_url, mongo_url)


@pytest.fixture(scope="module")
def apps(settings):
    """Hours web apps made by the test (`make(settings, public_url)`): at the end of the module, before the session's
    database goes, their relays stop and their rate limit counts are written."""
    made = []

    def make(settings, public_url: str = PUBLIC_URL):
        made.append(create_app(settings, HoursSettings(public_url=public_url)))
        return made[-1].test_client()

    yield make
    for app in made:
        app.extensions["hours"].store.relay.stop()
        app.extensions["rate_limits"].flush()


@pytest.fixture(scope="module")
def hours(settings, apps):
    return apps(settings)


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """The proofs rendered during the test, by their verification link."""
    rendered = []
    render = records.render_proof

    def counted(proof):
        rendered.append(proof.verify_url)
        return render(proof)

    monkeypatch.setattr(records, "render_proof", counted)
    return rendered


def volunteer_with_hours(hours, credited: float) -> tuple[str, dict]:
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    volunteer = hours.post("/v1/volunteers", headers=ASSOCIATION, json={
        "name": "刘晓燕", "phone": phone, "organization": "金雀山街道志愿服务队", "grid_id": "lanshan-01"})
    assert volunteer.status_code == 201, volunteer.json
    credit(hours, volunteer.json["id"], credited)
    return volunteer.json["id"], bearer("volunteer", volunteer.json["id"])


def credit(hours, volunteer_id: str, credited: float) -> None:
    response = hours.post("/v1/adjustments", headers=ASSOCIATION,
                          json={"volunteer_id": volunteer_id, "hours": credited, "reason": "补录纸质签到时长"})
    assert response.status_code == 201, response.json


def proof(hours, volunteer_id: str, token: dict, **request) -> bytes:
    response = hours.get(f"/v1/volunteers/{volunteer_id}/proof", headers=token, **request)
    assert response.status_code == 200 and response.mimetype == "application/pdf", response.data[:200]
    return response.data


def code_of(pdf: bytes) -> str:
    return CODE.search(page_texts(pdf)[0]).group()


def test_the_proof_leads_to_the_configured_address_whatever_host_the_request_names(hours):
    volunteer_id, token = volunteer_with_hours(hours, 4)

    pdf = proof(hours, volunteer_id, {**token, "X-Forwarded-Host": "proofs.attacker.example"},
                base_url="http://proofs.attacker.example")

    verify_url = f"{PUBLIC_URL}/v1/proofs/{code_of(pdf)}"
    assert qr_codes_by_page(pdf) == [[verify_url]]
    assert verify_url in page_texts(pdf)[0].replace("\n", "")  # printed under the code, wrapped if long
    assert "attacker" not in page_texts(pdf)[0]


def test_a_proof_is_rendered_once_then_served_as_kept_until_its_figures_change(hours, renders):
    volunteer_id, token = volunteer_with_hours(hours, 3)

    first = proof(hours, volunteer_id, token)
    again = proof(hours, volunteer_id, token)

    assert again == first
    assert renders == [f"{PUBLIC_URL}/v1/proofs/{code_of(first)}"]

    credit(hours, volunteer_id, 1.5)
    changed = proof(hours, volunteer_id, token)
    changed_again = proof(hours, volunteer_id, token)

    assert code_of(changed) != code_of(first)
    assert "4.5" in page_texts(changed)[0]
    assert changed_again == changed
    assert renders == [f"{PUBLIC_URL}/v1/proofs/{code_of(first)}", f"{PUBLIC_URL}/v1/proofs/{code_of(changed)}"]


def test_a_proof_kept_under_another_public_address_is_rendered_anew_for_this_one(settings, apps, hours, renders):
    volunteer_id, token = volunteer_with_hours(hours, 2)
    kept = proof(hours, volunteer_id, token)
    moved = apps(settings, "https://hours.linyi.example.cn")

    anew = proof(moved, volunteer_id, token)

    assert code_of(anew) == code_of(kept)
    assert qr_codes_by_page(anew) == [[f"https://hours.linyi.example.cn/v1/proofs/{code_of(kept)}"]]
    assert len(renders) == 2


def test_hours_does_not_start_with_a_malformed_public_address(settings, monkeypatch):
    monkeypatch.setenv("HOURS_PUBLIC_URL", "https://hours.example.cn/?next=//attacker.example")

    with pytest.raises(ValueError, match="HOURS_PUBLIC_URL"):
        create_app(settings)


def test_proofs_count_against_the_downloads_limit_not_the_reads(settings, apps):
    limited = apps(replace(settings, rate_limit_exports=Rate(1, "day"), rate_limit_reads=Rate(1000, "day")))
    volunteer_id, token = volunteer_with_hours(limited, 2)

    assert limited.get(f"/v1/volunteers/{volunteer_id}/proof", headers=token).status_code == 200
    refused = limited.get(f"/v1/volunteers/{volunteer_id}/proof", headers=token)

    assert refused.status_code == 429
    assert "spreadsheet and PDF downloads" in refused.json["detail"]
    assert limited.get(f"/v1/volunteers/{volunteer_id}/summary", headers=token).status_code == 200
