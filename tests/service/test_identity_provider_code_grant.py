"""The test provider's authorization-code grant with PKCE (tests/identity_provider.py), as the staff console meets it
(a browser's public client, docs/console.md): a code for the user picked at the provider's page, exchanged once
with the verifier for an access token a service accepts, and an ID token with the nonce; everything a public
client must not get away with refused (no PKCE, `plain`, a wrong verifier, a redirect URI not registered exactly,
a code used twice); a refusal at the provider's page sent back as `access_denied` with the state. And the console's
server letting its page reach the provider's issuer and token endpoint (its CSP), found through discovery.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from deploy.console import ConsoleSettings
from deploy.console import create_app as create_console
from services.intake.app import create_app
from tests.conftest import provider_settings, settings_for_test
from tests.identity_provider import (
    CONSOLE_CALLBACK_PATH,
    CONSOLE_CLIENT_ID,
    KEYCLOAK_MAPPING,
    STAFF,
    IdentityProvider,
)

CONSOLE = "http://127.0.0.1:8000"
CALLBACK = CONSOLE + CONSOLE_CALLBACK_PATH


@pytest.fixture(scope="module")
def provider():
    with IdentityProvider() as running:
        running.add_public_client(CONSOLE_CLIENT_ID, [CALLBACK], [CONSOLE])
        for username, claims in STAFF.items():
            running.add_user(username, claims)
        yield running


@pytest.fixture(scope="module")
def intake(provider, amqp_url, mongo_url):
    settings = settings_for_test("intake", amqp_url, mongo_url, **provider_settings(provider, **KEYCLOAK_MAPPING))
    return create_app(settings).test_client()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorization(provider: IdentityProvider, **changes: str) -> dict:
    verifier = secrets.token_urlsafe(48)
    query = {"response_type": "code", "client_id": CONSOLE_CLIENT_ID, "redirect_uri": CALLBACK,
             "scope": "openid", "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
             "code_challenge": s256(verifier), "code_challenge_method": "S256", **changes}
    return {"query": {k: v for k, v in query.items() if v is not None}, "verifier": verifier}


def sign_in(provider: IdentityProvider, query: dict, **form: str) -> requests.Response:
    """The provider's page, then the user's choice on it: the answer is the redirect back (not followed)."""
    page = requests.get(f"{provider.issuer}/authorize", params=query, timeout=10)
    assert page.status_code == 200, page.text
    return requests.post(page.url, data=form, allow_redirects=False, timeout=10)


def returned(answer: requests.Response) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(provider: IdentityProvider, code: str, verifier: str, redirect_uri: str = CALLBACK) -> requests.Response:
    return requests.post(f"{provider.issuer}/token", timeout=10, headers={"Origin": CONSOLE}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": CONSOLE_CLIENT_ID, "code_verifier": verifier})


def test_the_office_user_signs_in_and_its_access_token_works_on_a_service(provider, intake):
    asked = authorization(provider)
    back = returned(sign_in(provider, asked["query"], username="office-wang"))
    assert back["state"] == asked["query"]["state"]
    answer = exchange(provider, back["code"], asked["verifier"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == CONSOLE  # a browser's fetch may read it
    tokens = answer.json()
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["sub"] == "office-wang" and access["aud"] == provider.audience
    assert "woodpecker-office" in access["realm_access"]["roles"]
    identity = jwt.decode(tokens["id_token"], options={"verify_signature": False}, audience=CONSOLE_CLIENT_ID)
    assert identity["nonce"] == asked["query"]["nonce"] and identity["sub"] == "office-wang"
    listed = intake.get("/v1/reports", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert listed.status_code == 200, listed.json
    again = exchange(provider, back["code"], asked["verifier"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # a code works once


def test_a_department_user_gets_a_department_token(provider):
    asked = authorization(provider)
    back = returned(sign_in(provider, asked["query"], username="police-li"))
    access = jwt.decode(exchange(provider, back["code"], asked["verifier"]).json()["access_token"],
                        options={"verify_signature": False})
    assert "/departments/traffic-police" in access["groups"]


def test_a_wrong_verifier_is_refused(provider):
    asked = authorization(provider)
    back = returned(sign_in(provider, asked["query"], username="office-wang"))
    answer = exchange(provider, back["code"], secrets.token_urlsafe(48))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_no_pkce_or_plain_pkce_is_refused_back_at_the_client(provider):
    for changes in ({"code_challenge": None, "code_challenge_method": None}, {"code_challenge_method": "plain"}):
        asked = authorization(provider, **changes)
        answer = requests.get(f"{provider.issuer}/authorize", params=asked["query"], allow_redirects=False, timeout=10)
        back = returned(answer)
        assert back["error"] == "invalid_request" and back["state"] == asked["query"]["state"], changes


@pytest.mark.parametrize("redirect_uri", [CALLBACK + "/more", CALLBACK + "?next=/x", "https://evil.example/cb"])
def test_a_redirect_uri_not_registered_exactly_is_answered_at_the_provider_never_redirected(provider, redirect_uri):
    asked = authorization(provider, redirect_uri=redirect_uri)
    answer = requests.get(f"{provider.issuer}/authorize", params=asked["query"], allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_refusing_at_the_provider_sends_access_denied_with_the_state(provider):
    asked = authorization(provider)
    back = returned(sign_in(provider, asked["query"], deny="1"))
    assert back["error"] == "access_denied" and back["state"] == asked["query"]["state"] and "code" not in back


def test_another_origin_gets_no_cors_from_the_token_endpoint(provider):
    answer = requests.post(f"{provider.issuer}/token", headers={"Origin": "https://evil.example"}, timeout=10,
                           data={"grant_type": "authorization_code", "code": "x", "client_id": CONSOLE_CLIENT_ID})
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_the_consoles_page_may_reach_the_providers_issuer_and_token_endpoint_and_no_more(provider, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><div id=app></div>")
    settings = ConsoleSettings.from_env({"CONSOLE_OIDC_ISSUER": provider.issuer,
                                         "CONSOLE_OIDC_CLIENT_ID": CONSOLE_CLIENT_ID})
    provider.discovery_changes["token_endpoint"] = "http://localhost:1/token"  # on another origin than the issuer
    try:
        headers = create_console(settings, dist=tmp_path).test_client().get("/triage").headers
    finally:
        provider.discovery_changes.clear()
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    allowed = policy["connect-src"].split()
    assert provider.issuer in allowed and "http://localhost:1" in allowed
    assert len(allowed) == 1 + 4 + 2  # 'self', the four services, the provider's two origins


def test_a_provider_away_when_the_console_starts_leaves_its_issuer_alone_allowed(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><div id=app></div>")
    with IdentityProvider() as away:
        issuer = away.issuer
    settings = ConsoleSettings.from_env({"CONSOLE_OIDC_ISSUER": issuer, "CONSOLE_OIDC_CLIENT_ID": CONSOLE_CLIENT_ID})
    headers = create_console(settings, dist=tmp_path).test_client().get("/triage").headers
    assert issuer in headers["Content-Security-Policy"]
