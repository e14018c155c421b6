"""Sign-in through an OpenID Connect provider, without I/O: its settings, the keys we take from a key set, and how
its claims map to our caller (docs/identity.md)."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.auth import Caller
from shared.config import ClaimSource, OidcSettings, Settings, provider_url_problem
from shared.errors import Forbidden, Unauthorized
from shared.oidc import PROVIDER_POLICY, mapped_caller, signing_keys
from shared.outbound import UnsafeTarget, checked_target
from tests.identity_provider import KEYCLOAK_MAPPING, keycloak_claims

ISSUER = "https://sso.linyi.example.gov.cn/realms/linyi"
PROVIDER = {"WOODPECKER_OIDC_ISSUER": ISSUER, "WOODPECKER_OIDC_AUDIENCE": "woodpecker-api"}


def settings(**env: str) -> Settings:
    return Settings.from_env("intake", env)


# --- settings ------------------------------------------------------------------------------------

def test_without_a_provider_only_local_tokens_are_accepted():
    assert settings().token_issuers == ("local",)
    assert settings().oidc is None


def test_with_a_provider_its_tokens_are_accepted_too_until_the_deployment_takes_only_them():
    assert settings(**PROVIDER).token_issuers == ("local", "oidc")
    assert settings(**PROVIDER, WOODPECKER_TOKEN_ISSUERS="oidc").token_issuers == ("oidc",)
    assert settings(**PROVIDER, WOODPECKER_TOKEN_ISSUERS=" OIDC, local").token_issuers == ("local", "oidc")


def test_no_mapping_reads_our_own_claim_names():
    oidc = settings(**PROVIDER).oidc
    assert (oidc.issuer, oidc.audience, oidc.roles) == (ISSUER, "woodpecker-api", ())
    assert (oidc.role, oidc.dept, oidc.grid) == (ClaimSource("role"), ClaimSource("dept"), ClaimSource("grid"))
    assert oidc.discovery_url == f"{ISSUER}/.well-known/openid-configuration"


def test_the_keycloak_mapping_is_read_in_its_order():
    oidc = settings(**PROVIDER, **KEYCLOAK_MAPPING).oidc
    assert oidc.role == ClaimSource("realm_access.roles")
    assert oidc.roles[:2] == (("woodpecker-office", "office"), ("woodpecker-department", "department"))
    assert oidc.dept == ClaimSource("groups", "/departments/")
    assert oidc.grid == ClaimSource("groups", "/grids/")


@pytest.mark.parametrize(("env", "says"), [
    pytest.param({"WOODPECKER_OIDC_ISSUER": "http://sso.example.gov.cn/realms/linyi",
                  "WOODPECKER_OIDC_AUDIENCE": "a"}, "must be https://", id="plain-http-elsewhere"),
    pytest.param({"WOODPECKER_OIDC_ISSUER": ISSUER}, "WOODPECKER_OIDC_AUDIENCE must be set", id="no-audience"),
    pytest.param({"WOODPECKER_OIDC_AUDIENCE": "woodpecker-api"}, "not WOODPECKER_OIDC_ISSUER", id="no-issuer"),
    pytest.param({**PROVIDER, "WOODPECKER_OIDC_ROLES": "kc-office=mayor"}, "the role one of", id="unknown-role"),
    pytest.param({**PROVIDER, "WOODPECKER_OIDC_ROLES": "kc-office"}, "provider-value=role", id="no-equals"),
    pytest.param({**PROVIDER, "WOODPECKER_OIDC_ROLES": "a=office,a=volunteer"}, "names 'a' twice", id="twice"),
    pytest.param({**PROVIDER, "WOODPECKER_OIDC_ROLE_CLAIM": "realm_access..roles"}, "dotted path", id="path"),
    pytest.param({**PROVIDER, "WOODPECKER_OIDC_CA_FILE": "/nowhere/ca.pem"}, "names no file", id="ca-file"),
    pytest.param({"WOODPECKER_TOKEN_ISSUERS": "oidc"}, "WOODPECKER_OIDC_ISSUER is not set", id="oidc-alone"),
    pytest.param({**PROVIDER, "WOODPECKER_TOKEN_ISSUERS": "local"}, "does not name oidc", id="provider-unused"),
    pytest.param({**PROVIDER, "WOODPECKER_TOKEN_ISSUERS": "ldap"}, "local, oidc or local,oidc", id="unknown"),
    pytest.param({**PROVIDER, "WOODPECKER_TOKEN_ISSUERS": "local,oidc", "WOODPECKER_JWT_ISSUER": ISSUER},
                 "must differ", id="local-tokens-posing-as-the-providers"),
])
def test_a_provider_setting_that_cannot_work_stops_the_service_and_says_why(env, says):
    with pytest.raises(ValueError, match=says):
        settings(**env)


@pytest.mark.parametrize("url", ["https://sso.example.gov.cn/realms/linyi", "http://127.0.0.1:9400",
                                 "http://localhost:8080/realms/dev", "http://[::1]:9400", "https://10.1.2.3/sso"])
def test_a_provider_is_reached_over_https_or_on_this_machine(url):
    assert provider_url_problem(url) is None


@pytest.mark.parametrize("url", ["http://sso.example.gov.cn/realms/linyi", "http://10.1.2.3/sso",
                                 "http://localhost.example.com/", "ftp://sso.example.gov.cn/",
                                 "https://user:pw@sso.example.gov.cn/", "https://sso.example.gov.cn/?realm=a",
                                 "https://sso.example.gov.cn:99999/", "sso.example.gov.cn"])
def test_any_other_provider_url_is_refused(url):
    assert provider_url_problem(url)


@pytest.mark.parametrize("url", ["https://10.1.2.3/sso", "https://172.20.0.5/sso", "https://192.168.1.9/sso",
                                 "https://100.64.1.1/sso", "https://[fd00::5]/sso", "https://127.0.0.1:8443/sso",
                                 "https://8.8.8.8/sso"])
def test_the_provider_may_sit_on_the_citys_intranet(url):
    checked_target(url, PROVIDER_POLICY)


@pytest.mark.parametrize("url", ["https://169.254.169.254/latest", "https://[fe80::1]/sso", "https://224.0.0.1/",
                                 "https://0.0.0.0/sso", "https://240.0.0.1/sso"])
def test_but_never_on_a_link_local_multicast_or_reserved_address(url):
    with pytest.raises(UnsafeTarget):
        checked_target(url, PROVIDER_POLICY)


# --- keys ----------------------------------------------------------------------------------------

def rsa_jwk(kid: str, bits: int = 2048, **extra: str) -> dict:
    public = rsa.generate_private_key(65537, bits).public_key()
    return {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": kid, **extra}


def ec_jwk(kid: str, curve: ec.EllipticCurve | None = None, **extra: str) -> dict:
    public = ec.generate_private_key(curve or ec.SECP256R1()).public_key()
    return {**ECAlgorithm.to_jwk(public, as_dict=True), "kid": kid, **extra}


def test_rs256_and_es256_signing_keys_are_taken_by_kid_with_their_one_algorithm():
    keys = signing_keys({"keys": [rsa_jwk("r1", alg="RS256", use="sig"), rsa_jwk("r2"), ec_jwk("e1")]})
    assert {kid: key.algorithm for kid, key in keys.items()} == {"r1": "RS256", "r2": "RS256", "e1": "ES256"}


@pytest.mark.parametrize("jwk", [
    pytest.param(rsa_jwk("enc", use="enc"), id="for-encryption"),
    pytest.param(rsa_jwk("ps", alg="PS256"), id="another-algorithm"),
    pytest.param(rsa_jwk("mismatch", alg="ES256"), id="rsa-key-said-to-be-es256"),
    pytest.param(rsa_jwk("weak", bits=1024), id="rsa-1024"),
    pytest.param(ec_jwk("p384", ec.SECP384R1()), id="ec-p384"),
    pytest.param({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, id="shared-secret"),
    pytest.param({k: v for k, v in rsa_jwk("x").items() if k != "kid"}, id="no-kid"),
    pytest.param({"kty": "RSA", "kid": "broken", "n": "AQAB"}, id="malformed"),
    pytest.param("not a key", id="not-an-object"),
])
def test_any_other_key_is_passed_over(jwk):
    assert signing_keys({"keys": [jwk, rsa_jwk("good")]}).keys() == {"good"}


@pytest.mark.parametrize("key_set", [None, [], {"keys": "none"}, {}])
def test_a_key_set_of_the_wrong_shape_gives_no_keys(key_set):
    assert signing_keys(key_set) == {}


# --- claims --------------------------------------------------------------------------------------

OURS = settings(**PROVIDER).oidc
KEYCLOAK = settings(**PROVIDER, **KEYCLOAK_MAPPING).oidc


def test_without_a_mapping_our_own_claims_name_the_caller():
    claims = {"sub": "u-1", "role": "department", "dept": "sanitation"}
    assert mapped_caller(claims, OURS) == Caller("u-1", "department", dept="sanitation")
    assert mapped_caller({"sub": "u-2", "role": ["grid_leader"], "grid": "lanshan-01"}, OURS) \
        == Caller("u-2", "grid_leader", grid="lanshan-01")


def test_keycloak_realm_roles_and_groups_name_the_caller():
    staff = {"sub": "kc-1", **keycloak_claims("department", "/departments/traffic-police", "/staff")}
    assert mapped_caller(staff, KEYCLOAK) == Caller("kc-1", "department", dept="traffic-police")
    leader = {"sub": "kc-2", **keycloak_claims("grid_leader", "/grids/hedong-03")}
    assert mapped_caller(leader, KEYCLOAK) == Caller("kc-2", "grid_leader", grid="hedong-03")


def test_the_first_role_of_the_table_the_token_carries_wins():
    claims = {"sub": "kc-3", "realm_access": {"roles": ["woodpecker-volunteer", "woodpecker-office"]}}
    assert mapped_caller(claims, KEYCLOAK).role == "office"


def test_a_claim_whose_name_has_dots_is_read_whole_before_as_a_path():
    namespaced = OidcSettings(ISSUER, "woodpecker-api", role=ClaimSource("https://linyi.example.gov.cn/role"))
    assert mapped_caller({"sub": "a", "https://linyi.example.gov.cn/role": "office"}, namespaced).role == "office"


@pytest.mark.parametrize(("claims", "mapping", "says"), [
    pytest.param({"sub": "u", "role": "mayor"}, OURS, "maps to no Woodpecker role: its 'role' holds none of",
                 id="not-our-role"),
    pytest.param({"sub": "u"}, OURS, "maps to no Woodpecker role", id="no-role-claim"),
    pytest.param({"sub": "u", **keycloak_claims("office")} | {"realm_access": {"roles": ["offline_access"]}},
                 KEYCLOAK, "its 'realm_access.roles' holds none of woodpecker-office", id="keycloak-default-roles"),
    pytest.param({"sub": "u", "realm_access": "woodpecker-office"}, KEYCLOAK, "maps to no Woodpecker role",
                 id="path-through-a-string"),
    pytest.param({"sub": "u", "role": ["office", "volunteer"]}, OURS, "names several roles", id="several"),
])
def test_a_token_that_maps_to_no_single_role_is_forbidden_and_says_so(claims, mapping, says):
    with pytest.raises(Forbidden) as refused:
        mapped_caller(claims, mapping)
    assert says in refused.value.detail
    assert refused.value.status == 403


@pytest.mark.parametrize(("claims", "says"), [
    pytest.param(keycloak_claims("department", "/staff"),
                 "A department token must name a department (in 'groups' (values under '/departments/'))",
                 id="department-without-department"),
    pytest.param(keycloak_claims("department", "/departments/sanitation", "/departments/traffic-police"),
                 "must name one department, and this one names several", id="two-departments"),
    pytest.param(keycloak_claims("grid_leader"), "A grid_leader token must name a grid", id="leader-without-grid"),
    pytest.param(keycloak_claims("grid_leader", "/grids/lanshan-01", "/grids/lanshan-02"),
                 "must name one grid", id="two-grids"),
])
def test_a_department_or_grid_leader_token_without_exactly_one_of_its_own_is_refused_as_today(claims, says):
    with pytest.raises(Unauthorized) as refused:
        mapped_caller({"sub": "u", **claims}, KEYCLOAK)
    assert says in refused.value.detail
