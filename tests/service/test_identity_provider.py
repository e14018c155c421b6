"""Tokens from a real OpenID Connect provider (tests/identity_provider.py), verified by our own code: the discovery
document and the keys fetched over HTTP, key rotation and the once-a-minute bound on fetches, every refusal and what
it says, the Keycloak-style claim mapping, and a provider that cannot be reached (docs/identity.md).

The provider signs with its own private keys; nothing here stands in for our verification. Where a test needs time
to pass (a minute between fetches, ten before keys are old), it moves the keys' own clock forward; token times are
set by the provider.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.intake.app import create_app
from shared.auth import Tokens, issue_token
from shared.config import Settings
from shared.errors import Unauthorized
from shared.oidc import (
    CLOCK_SKEW_S,
    KEYS_MAX_AGE_S,
    REFRESH_INTERVAL_S,
    ProviderKeys,
    ProviderTokens,
    ProviderUnavailable,
)
from tests.conftest import TEST_JWT_SECRET, provider_env, provider_settings, settings_for_test
from tests.identity_provider import KEYCLOAK_MAPPING, IdentityProvider, keycloak_claims

OFFICE = keycloak_claims("office")
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """The keys' clock (time.monotonic's stand-in), moved on by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tokens_for(provider: IdentityProvider, clock: Clock, issuers: str = "local,oidc") -> Tokens:
    """What a web process of the service builds at start (shared/web.py), on `clock`: the keys fetched once."""
    settings = replace(Settings.from_env("intake", provider_env(provider, issuers, **KEYCLOAK_MAPPING)),
                       jwt_secret=TEST_JWT_SECRET)
    keys = ProviderKeys(settings.oidc, "intake", clock)
    keys.refresh()
    return Tokens(settings, ProviderTokens(settings.oidc, keys))


def refusal(tokens: Tokens, token: str) -> str:
    with pytest.raises(Unauthorized) as refused:
        tokens.caller(token)
    return refused.value.detail


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged_hs256(header: dict, claims: dict, secret: bytes) -> str:
    """An HS256 token made by hand, as an attacker makes one: PyJWT itself refuses a PEM key as an HMAC secret."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', **header})}.{b64(claims)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def outsiders_token(claims: dict, kid: str, algorithm: str = "RS256") -> str:
    """A token signed with a key the provider never made."""
    key = rsa.generate_private_key(65537, 2048) if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def tampered(token: str, **changed: str) -> str:
    """The provider's token with claims changed after it was signed."""
    header, claims, signature = token.split(".")
    return ".".join([header, b64({**jwt.decode(token, options={"verify_signature": False}), **changed}), signature])


def valid_claims(provider: IdentityProvider, sub: str = "kc-user") -> dict:
    now = int(time.time())
    return {"iss": provider.issuer, "aud": provider.audience, "sub": sub, "iat": now, "exp": now + 300, **OFFICE}


# --- discovery, keys, rotation ------------------------------------------------------------------

def test_a_provider_token_is_checked_with_the_keys_its_discovery_document_leads_to(identity_provider):
    tokens = tokens_for(identity_provider, Clock())
    caller = tokens.caller(identity_provider.token("kc-office-1", OFFICE))
    assert (caller.id, caller.role) == ("kc-office-1", "office")
    assert identity_provider.requests["/.well-known/openid-configuration"] == 1
    assert identity_provider.jwks_requests == 1


def test_es256_keys_are_accepted_as_rs256_ones():
    with IdentityProvider(algorithm="ES256") as provider:
        tokens = tokens_for(provider, Clock())
        assert jwt.get_unverified_header(token := provider.token("kc-2", OFFICE))["alg"] == "ES256"
        assert tokens.caller(token).role == "office"


def test_a_rotated_key_works_at_once_and_the_withdrawn_one_is_refused_after_the_refresh(identity_provider):
    clock = Clock()
    tokens = tokens_for(identity_provider, clock)
    old = identity_provider.current_kid
    signed_with_old = identity_provider.token("kc-1", OFFICE)
    assert tokens.caller(signed_with_old).role == "office"
    clock.advance(REFRESH_INTERVAL_S)  # the keys were fetched at start, a minute or more ago

    new = identity_provider.add_key()
    identity_provider.withdraw_key(old)
    assert tokens.caller(identity_provider.token("kc-1", OFFICE, kid=new)).role == "office"
    assert identity_provider.jwks_requests == 2  # the unknown kid made it fetch the keys again

    assert f"key {old!r} is not one the identity provider publishes" in refusal(tokens, signed_with_old)
    assert identity_provider.jwks_requests == 2


def test_a_flood_of_unknown_kids_makes_at_most_one_fetch_a_minute(identity_provider):
    clock = Clock()
    tokens = tokens_for(identity_provider, clock)
    claims = valid_claims(identity_provider)

    def flood(count: int) -> list[str]:
        made_up = [outsiders_token(claims, f"made-up-{uuid.uuid4().hex[:6]}") for _ in range(count)]
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda token: refusal(tokens, token), made_up))

    clock.advance(REFRESH_INTERVAL_S)
    assert all("is not one the identity provider publishes" in said for said in flood(40))
    assert identity_provider.jwks_requests == 2  # the one at start and one for the whole flood
    clock.advance(REFRESH_INTERVAL_S - 1)
    flood(10)
    assert identity_provider.jwks_requests == 2
    clock.advance(1)
    flood(10)
    assert identity_provider.jwks_requests == 3


def test_keys_are_fetched_again_once_old_so_that_a_withdrawn_key_stops_working(identity_provider):
    clock = Clock()
    tokens = tokens_for(identity_provider, clock)
    old = identity_provider.current_kid
    identity_provider.add_key()
    identity_provider.withdraw_key(old)
    signed_with_old = identity_provider.token("kc-1", OFFICE, kid=old)
    assert tokens.caller(signed_with_old).role == "office"  # held keys serve without a fetch until they are old
    assert identity_provider.jwks_requests == 1
    clock.advance(KEYS_MAX_AGE_S)
    assert "is not one the identity provider publishes" in refusal(tokens, signed_with_old)
    assert identity_provider.jwks_requests == 2


def test_a_token_expired_within_the_clock_skew_is_still_accepted(identity_provider):
    tokens = tokens_for(identity_provider, Clock())
    issued = time.time() - 300
    just_expired = identity_provider.token("kc-1", OFFICE, issued_at=issued, lifetime_s=300 - CLOCK_SKEW_S + 5)
    assert tokens.caller(just_expired).role == "office"
    long_expired = identity_provider.token("kc-1", OFFICE, issued_at=issued, lifetime_s=300 - CLOCK_SKEW_S - 5)
    assert "has expired" in refusal(tokens, long_expired)


def logged_errors(caplog) -> str:
    return "\n".join(record.error for record in caplog.records if hasattr(record, "error"))


def test_a_discovery_document_naming_another_issuer_gives_no_keys(identity_provider, caplog):
    settings = Settings.from_env("intake", {**provider_env(identity_provider, "oidc"),
                                            "WOODPECKER_OIDC_ISSUER": f"{identity_provider.issuer}/"})
    keys = ProviderKeys(settings.oidc, "intake", Clock())
    keys.refresh()
    assert "WOODPECKER_OIDC_ISSUER must be exactly the provider's" in logged_errors(caplog)
    assert identity_provider.jwks_requests == 0
    with pytest.raises(ProviderUnavailable):
        Tokens(settings, ProviderTokens(settings.oidc, keys)).caller(identity_provider.token("kc-1", OFFICE))


def test_a_key_set_outside_https_and_this_machine_is_never_fetched(identity_provider, caplog):
    identity_provider.discovery_changes["jwks_uri"] = "http://sso.example.gov.cn/jwks"
    settings = Settings.from_env("intake", provider_env(identity_provider, "oidc"))
    ProviderKeys(settings.oidc, "intake", Clock()).refresh()
    assert "jwks_uri 'http://sso.example.gov.cn/jwks' is unusable: it must be https://" in logged_errors(caplog)


# --- a provider away ----------------------------------------------------------------------------

def test_a_provider_away_at_start_is_a_503_until_the_next_fetch_may_reach_it():
    with IdentityProvider() as gone:
        port = gone.port
    clock = Clock()
    settings = Settings.from_env("intake", provider_env(gone, "oidc", **KEYCLOAK_MAPPING))
    keys = ProviderKeys(settings.oidc, "intake", clock)
    keys.refresh()
    tokens = Tokens(settings, ProviderTokens(settings.oidc, keys))
    with IdentityProvider(port=port) as provider:
        token = provider.token("kc-1", OFFICE)
        with pytest.raises(ProviderUnavailable) as unavailable:
            tokens.caller(token)
        assert (unavailable.value.status, unavailable.value.retry_after_s) == (503, REFRESH_INTERVAL_S)
        clock.advance(REFRESH_INTERVAL_S / 2)
        with pytest.raises(ProviderUnavailable) as unavailable:
            tokens.caller(token)
        assert unavailable.value.retry_after_s == REFRESH_INTERVAL_S / 2
        assert provider.jwks_requests == 0  # no fetch before its minute is up
        clock.advance(REFRESH_INTERVAL_S / 2)
        assert tokens.caller(token).role == "office"


def test_keys_already_held_keep_working_while_the_provider_is_away(identity_provider):
    clock = Clock()
    tokens = tokens_for(identity_provider, clock)
    held = identity_provider.token("kc-1", OFFICE)
    unknown = outsiders_token(valid_claims(identity_provider), "rotated-while-away")
    identity_provider.stop()
    clock.advance(KEYS_MAX_AGE_S)  # old keys: a fetch is due, and fails
    assert tokens.caller(held).role == "office"
    with pytest.raises(ProviderUnavailable):  # it may be the provider's new key: nobody can tell now
        tokens.caller(unknown)


# --- through a service's HTTP API ---------------------------------------------------------------

@pytest.fixture(scope="module")
def provider():
    with IdentityProvider() as running:
        yield running


@pytest.fixture(scope="module")
def intake(provider, amqp_url, mongo_url):
    """Intake's web process, accepting local tokens and the provider's, with Keycloak's claims mapped."""
    settings = settings_for_test("intake", amqp_url, mongo_url, **provider_settings(provider, **KEYCLOAK_MAPPING))
    return create_app(settings).test_client()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_client_credentials_token_from_the_provider_works_on_a_service(provider, intake):
    secret = provider.add_client("linyi-office-system", keycloak_claims("office"))
    token = provider.client_credentials("linyi-office-system", secret)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "linyi-office-system"
    answer = intake.get("/v1/reports", headers=bearer(token))
    assert answer.status_code == 200, answer.json


def test_a_locally_signed_token_still_works_beside_the_provider(intake):
    answer = intake.get("/v1/reports", headers=bearer(issue_token(TEST_JWT_SECRET, "office-1", "office")))
    assert answer.status_code == 200, answer.json


REFUSALS: dict[str, tuple[Callable[[IdentityProvider], str], str]] = {
    "unsigned": (lambda p: f"{b64({'alg': 'none', 'kid': p.current_kid})}.{b64(valid_claims(p))}.",
                 "is not signed (its algorithm is 'none')"),
    "hs256-under-the-providers-public-key": (
        lambda p: forged_hs256({"kid": p.current_kid}, valid_claims(p), p.public_pem()), "algorithm confusion"),
    "unknown-kid": (lambda p: outsiders_token(valid_claims(p), "not-the-providers"),
                    "key 'not-the-providers' is not one the identity provider publishes"),
    "expired": (lambda p: p.token("kc-1", OFFICE, issued_at=time.time() - 3600), "has expired"),
    "not-yet-valid": (lambda p: p.token("kc-1", OFFICE, nbf=int(time.time()) + 600), "is not valid yet"),
    "issued-in-the-future": (lambda p: p.token("kc-1", OFFICE, issued_at=time.time() + 600), "is not valid yet"),
    "wrong-issuer": (lambda p: p.token("kc-1", OFFICE, iss="https://sso.elsewhere.example/realms/x"),
                     "not issued by this deployment's identity provider"),
    "wrong-audience": (lambda p: p.token("kc-1", OFFICE, aud="city-hr-system"),
                       "not meant for Woodpecker: its 'aud' does not name 'woodpecker-api'"),
    "tampered": (lambda p: tampered(p.token("kc-1", OFFICE), sub="someone-else"),
                 "signature does not match the identity provider's key"),
    "another-algorithm-for-the-providers-key": (
        lambda p: outsiders_token(valid_claims(p), p.current_kid, "ES256"), "but the identity provider's key"),
    "no-kid": (lambda p: jwt.encode(valid_claims(p), rsa.generate_private_key(65537, 2048), algorithm="RS256"),
               "names no key ('kid')"),
    "no-subject": (lambda p: p.sign({k: v for k, v in valid_claims(p).items() if k != "sub"}),
                   "lacks the 'sub' claim"),
    "another-algorithm": (lambda p: jwt.encode({"sub": "office-1", "role": "office", "exp": int(time.time()) + 60},
                                               TEST_JWT_SECRET * 2, algorithm="HS512"),
                          "algorithm 'HS512' is not accepted here"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_token_we_cannot_trust_is_a_401_that_says_which_check_failed(provider, intake, case):
    make, says = REFUSALS[case]
    answer = intake.get("/v1/reports", headers=bearer(make(provider)))
    assert answer.status_code == 401, answer.json
    assert answer.mimetype == "application/problem+json"
    assert says in answer.json["detail"]


def test_a_token_that_maps_to_no_role_is_a_403_that_says_so(provider, intake):
    token = provider.token("kc-2", {"realm_access": {"roles": ["offline_access", "uma_authorization"]}})
    answer = intake.get("/v1/reports", headers=bearer(token))
    assert answer.status_code == 403
    assert "maps to no Woodpecker role: its 'realm_access.roles' holds none of" in answer.json["detail"]


def test_the_openapi_document_says_which_tokens_are_accepted(provider, intake):
    scheme = intake.get("/openapi.json").json["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert "HS256" in scheme["description"]
    assert f"RS256 or ES256 from the OpenID Connect provider {provider.issuer}" in scheme["description"]


def test_a_service_taking_both_kinds_of_token_warns_that_the_secret_still_signs_them(provider, amqp_url, mongo_url,
                                                                                   capsys):
    create_app(settings_for_test("intake", amqp_url, mongo_url, **provider_settings(provider)))
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert next(entry for entry in logged if entry["msg"] == "bearer tokens accepted")["issuers"] == "local,oidc"
    assert any(entry["level"] == "warning" and "set WOODPECKER_TOKEN_ISSUERS=oidc once" in entry["msg"]
               for entry in logged)


def test_a_service_whose_provider_is_away_stays_ready_and_answers_its_tokens_503(amqp_url, mongo_url):
    with IdentityProvider() as gone:
        token = gone.token("kc-1", OFFICE)
    settings = settings_for_test("intake", amqp_url, mongo_url, **provider_settings(gone, **KEYCLOAK_MAPPING))
    client = create_app(settings).test_client()
    assert client.get("/readyz").status_code == 200
    answer = client.get("/v1/reports", headers=bearer(token))
    assert answer.status_code == 503
    assert answer.json["type"].endswith("/identity-provider-unavailable")
    assert 1 <= int(answer.headers["Retry-After"]) <= REFRESH_INTERVAL_S
    local = client.get("/v1/reports", headers=bearer(issue_token(TEST_JWT_SECRET, "office-1", "office")))
    assert local.status_code == 200


def test_a_deployment_on_the_provider_alone_refuses_local_tokens_and_make_token_says_why(provider, amqp_url,
                                                                                         mongo_url, capsys):
    settings = settings_for_test("intake", amqp_url, mongo_url,
                                 **provider_settings(provider, "oidc", **KEYCLOAK_MAPPING))
    client = create_app(settings).test_client()
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    chosen = next(entry for entry in logged if entry["msg"] == "bearer tokens accepted")
    assert chosen["issuers"] == "oidc"
    assert chosen["tokens"].startswith(f"A JWT: RS256 or ES256 from the OpenID Connect provider {provider.issuer}")
    assert not any("WOODPECKER_JWT_SECRET are accepted beside" in entry["msg"] for entry in logged)
    local = client.get("/v1/reports", headers=bearer(issue_token(TEST_JWT_SECRET, "office-1", "office")))
    assert local.status_code == 401
    assert "algorithm 'HS256' is not accepted here" in local.json["detail"]
    assert client.get("/v1/reports", headers=bearer(provider.token("kc-1", OFFICE))).status_code == 200
    made = subprocess.run([sys.executable, "-m", "shared.auth"], capture_output=True, text=True, cwd=ROOT,
                          env={**provider_env(provider, "oidc"), "WOODPECKER_JWT_SECRET": TEST_JWT_SECRET})
    assert made.returncode != 0 and made.stdout == ""
    assert "accept only the identity provider's tokens" in made.stderr
