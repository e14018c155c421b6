"""End to end: the system as `make up` starts it, signing callers in through a real OpenID Connect provider
(tests/identity_provider.py): its tokens work on every service, beside locally signed ones, and a department's system
works its cases with client credentials through deploy/examples/department_client.py."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.conftest import bearer, provider_env
from tests.e2e.conftest import running_system, system_env
from tests.identity_provider import KEYCLOAK_MAPPING, IdentityProvider, keycloak_claims
from tests.support import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "deploy" / "examples" / "department_client.py"


@pytest.fixture(scope="module")
def provider():
    with IdentityProvider() as running:
        yield running


@pytest.fixture(scope="module")
def system(provider, amqp_url, mongo_url, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    env, urls = system_env(amqp_url, mongo_url, run_dir, "oidc")
    env.update(provider_env(provider, "local,oidc", **KEYCLOAK_MAPPING))
    with running_system(env) as printed:
        yield urls, printed, run_dir


def client_token(provider: IdentityProvider, client_id: str, claims: dict) -> dict:
    """A confidential client's token from the provider's token endpoint, as an Authorization header."""
    token = provider.client_credentials(client_id, provider.add_client(client_id, claims))
    return {"Authorization": f"Bearer {token}"}


def test_up_and_every_web_process_say_which_tokens_they_accept(provider, system):
    urls, printed, run_dir = system
    assert f"RS256 or ES256 from the OpenID Connect provider {provider.issuer}" in printed
    assert "export TOKEN=" in printed  # local tokens stay on beside the provider's
    for service in urls:
        logged = [json.loads(line) for line in (run_dir / f"{service}-web.log").read_text().splitlines()
                  if line.startswith("{")]
        assert any(entry["msg"] == "bearer tokens accepted" and entry["issuers"] == "local,oidc" for entry in logged)
        assert any(entry["msg"] == "identity provider's keys fetched" for entry in logged)


def test_a_provider_token_works_on_every_service(provider, system):
    urls, _, _ = system
    office = client_token(provider, "linyi-office-system", keycloak_claims("office"))
    for service, path in [("intake", "/v1/reports"), ("routing", "/v1/cases"), ("hours", "/v1/volunteers"),
                          ("notify", "/v1/inbox")]:
        answer = requests.get(f"{urls[service]}{path}", headers=office, timeout=10)
        assert answer.status_code == 200, (service, answer.text)
    forged = {"Authorization": f"Bearer {provider.token('kc-1', keycloak_claims('office'), aud='city-hr-system')}"}
    for url in urls.values():
        refused = requests.get(f"{url}/v1/audit", headers=forged, timeout=10)
        assert refused.status_code == 401 and "not meant for Woodpecker" in refused.json()["detail"]


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), "gray").save(out, "JPEG")
    return out.getvalue()


def department_client(provider: IdentityProvider, client_id: str, secret: str, routing: str,
                      *extra: str) -> subprocess.CompletedProcess:
    """deploy/examples/department_client.py, run as a department's IT team runs it."""
    return subprocess.run([sys.executable, str(CLIENT), "--issuer", provider.issuer, "--client-id", client_id,
                           "--routing-url", routing, *extra], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WOODPECKER_CLIENT_SECRET": secret, "PYTHONIOENCODING": "utf-8"})


def test_a_department_system_takes_on_its_case_with_client_credentials(provider, system):
    urls, _, _ = system
    volunteer = bearer("volunteer")
    photo = requests.post(f"{urls['intake']}/v1/photos", headers=volunteer, timeout=10,
                          files={"file": ("p.jpg", jpeg(), "image/jpeg")}).json()["id"]
    report = requests.post(f"{urls['intake']}/v1/reports", headers=volunteer, timeout=10, json={
        "category": "traffic.parking", "description": "人行道上停放多辆机动车，影响通行", "photo_ids": [photo],
        "location": {"lat": 35.060, "lng": 118.315}}).json()
    police = provider.add_client("traffic-police-system", keycloak_claims("department", "/departments/traffic-police"))
    case_id = wait_for(lambda: requests.get(f"{urls['intake']}/v1/reports/{report['id']}", headers=volunteer,
                                            timeout=5).json()["case_id"], what="the report's case")

    def listed_by_police() -> subprocess.CompletedProcess | None:
        listed = department_client(provider, "traffic-police-system", police, urls["routing"])
        assert listed.returncode == 0, listed.stderr
        return listed if case_id in listed.stdout else None

    listed = wait_for(listed_by_police, what="the department's system listing its dispatched case")
    assert f"dispatched case {case_id} (traffic.parking): 人行道上停放多辆机动车，影响通行" in listed.stdout
    accepted = department_client(provider, "traffic-police-system", police, urls["routing"], "--accept", case_id)
    assert accepted.returncode == 0, accepted.stderr
    assert f"accepted case {case_id}" in accepted.stdout

    sanitation = provider.add_client("sanitation-system", keycloak_claims("department", "/departments/sanitation"))
    theirs = department_client(provider, "sanitation-system", sanitation, urls["routing"], "--status", "accepted")
    assert theirs.returncode == 0, theirs.stderr
    assert case_id not in theirs.stdout  # another department's token sees only its own cases
    refused = department_client(provider, "sanitation-system", sanitation, urls["routing"], "--accept", case_id)
    assert refused.returncode == 1 and "404" in refused.stderr

    wrong = department_client(provider, "traffic-police-system", "not-the-secret", urls["routing"])
    assert wrong.returncode == 1
    assert "invalid_client" in wrong.stderr
