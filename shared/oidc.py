"""Tokens from the city's OpenID Connect provider: its published keys, fetched and kept, and its claims, mapped to
our caller (docs/identity.md).

The provider signs with a private key and publishes the public halves (its JWKS, found through its discovery
document). Each web process fetches them at start and keeps them; a token naming a key it does not hold (`kid`: the
provider rotated its keys) makes it fetch them again, and so do keys older than KEYS_MAX_AGE_S (a withdrawn key
stops being accepted within that time); but never more than one fetch per REFRESH_INTERVAL_S, so that a flood of
tokens naming made-up keys costs the provider one request a minute per process, whatever it holds.

A provider that cannot be reached does not take the service down: /readyz stays ready (every instance shares the
one provider, so taking one out of a balancer helps nobody, and local tokens and public pages still work), the keys
already held keep verifying tokens, and a token that needs keys we cannot fetch is answered 503 with Retry-After
(the caller's token may be fine: a 401 would send a console back to sign-in for nothing). Failed fetches are logged
and counted (`woodpecker_identity_provider_fetches_total`).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import InvalidKeyError, PyJWKError

from shared import metrics
from shared.auth import Caller
from shared.config import PROVIDER_ALGORITHMS, ROLES, ClaimSource, OidcSettings, provider_url_problem
from shared.errors import DomainError, Forbidden, Unauthorized
from shared.outbound import TargetPolicy, fetch, plain_address

log = logging.getLogger(__name__)

ALGORITHMS = PROVIDER_ALGORITHMS
# How far our clock and the provider's may disagree about `exp`, `nbf` and `iat` (NTP keeps servers well within it).
CLOCK_SKEW_S = 30
# At most one fetch of the provider's documents per this many seconds per process, whatever asks for it.
REFRESH_INTERVAL_S = 60
# Keys older than this are fetched again at the next token, so that a key the provider withdrew stops working.
KEYS_MAX_AGE_S = 600
# Connecting, TLS, sending and reading one document; a request waiting on it waits at most this long.
FETCH_DEADLINE_S = 5.0
# Discovery documents and key sets are a few KiB (Entra's key set, the largest we know, about 15).
MAX_DOCUMENT_BYTES = 256 * 1024
MIN_RSA_BITS = 2048
# The provider is the operator's setting, not a URL anyone typed, and a city's provider often sits on its intranet:
# private, carrier-grade NAT and loopback addresses are allowed beside public ones. Link-local (cloud metadata
# services), multicast and reserved addresses stay refused: no provider lives there. Plain http is allowed only to
# a loopback address (a developer's or a test's provider; provider_url_problem), whatever a name resolves to.
OPERATOR_NETWORKS = tuple(ipaddress.ip_network(network) for network in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "fc00::/7", "::1/128"))
PROVIDER_POLICY = TargetPolicy(allowed_networks=OPERATOR_NETWORKS, deadline_s=FETCH_DEADLINE_S)
LONGEST_SHOWN = 80  # characters of a token's own value (a kid, an issuer) repeated in an answer


class ProviderUnavailable(DomainError):
    """The token needs keys we cannot fetch now: nothing is known about it yet; the same request may be sent again
    after `retry_after_s` seconds."""

    status, slug, title = 503, "identity-provider-unavailable", "Identity provider unreachable"

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ProviderProblem(Exception):
    """Why a fetch of the provider's documents did not give us its keys, in words for the operator's log."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str  # the one algorithm a token signed with this key may name
    jwk: jwt.PyJWK


def signing_keys(key_set: Any) -> dict[str, SigningKey]:
    """The keys of a JWKS we verify tokens with, by kid: RS256 (RSA, at least MIN_RSA_BITS) and ES256 (EC P-256)
    signing keys that have a kid. Any other key (for encryption, another algorithm, too weak) is passed over."""
    keys: dict[str, SigningKey] = {}
    for entry in key_set.get("keys", []) if isinstance(key_set, dict) else []:
        if key := _signing_key(entry):
            keys.setdefault(key.kid, key)
    return keys


def _signing_key(entry: Any) -> SigningKey | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
        return None
    kty, crv = entry.get("kty"), entry.get("crv")
    algorithm = entry.get("alg") or {"RSA": "RS256", "EC": "ES256"}.get(kty)
    if ALGORITHMS.get(algorithm) != kty or (kty == "EC" and crv != "P-256"):
        return None
    try:
        jwk = jwt.PyJWK(entry, algorithm)
    except (PyJWKError, InvalidKeyError):
        return None
    if kty == "RSA" and jwk.key.key_size < MIN_RSA_BITS:
        return None
    return SigningKey(entry["kid"], algorithm, jwk)


def loopback_only(host: str, port: int, **kwargs: Any) -> Sequence[tuple[Any, ...]]:
    """Name resolution for a plain-http provider URL: only the loopback addresses a name stands for."""
    return [answer for answer in socket.getaddrinfo(host, port, **kwargs)
            if plain_address(answer[4][0]).is_loopback]


class ProviderKeys:
    """The provider's signing keys, as this process last fetched them (see the module's docstring for when)."""

    def __init__(self, settings: OidcSettings, service: str, clock: Callable[[], float] = time.monotonic):
        self.settings, self.service, self._clock = settings, service, clock
        try:
            self._tls = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"WOODPECKER_OIDC_CA_FILE {settings.ca_file!r} holds no PEM certificate we can read "
                             f"({error})") from None
        self._keys: dict[str, SigningKey] | None = None
        self._fetched_at: float | None = None  # the last fetch that gave us keys
        self._tried_at: float | None = None  # the last fetch, whatever it gave
        self._failure: str | None = None  # why the last fetch failed; None when it did not
        self._lock = threading.Lock()

    def publishes(self, kid: object) -> bool:
        """Whether `kid` names one of the keys we hold (no fetch)."""
        return isinstance(kid, str) and kid in (self._keys or {})

    def key(self, kid: str) -> SigningKey:
        """The provider's key `kid`; fetched anew if we do not hold it, or hold only old keys, and may fetch now."""
        keys = self._keys
        if keys is not None and kid in keys and not self._old():
            return keys[kid]
        with self._lock:
            if self._may_fetch() and (self._keys is None or kid not in self._keys or self._old()):
                self.refresh()
            keys = self._keys or {}
            if kid in keys:
                return keys[kid]
            if self._failure is not None:
                raise ProviderUnavailable(
                    "The identity provider's keys cannot be fetched now, so the token cannot be checked; "
                    "retry shortly.", self._seconds_to_next_fetch())
            ago = math.floor(self._clock() - (self._fetched_at or 0))
            raise Unauthorized(f"The token's key {_shown(kid)!r} is not one the identity provider publishes "
                               f"(its keys were fetched {ago} s ago).")

    def refresh(self) -> None:
        """Fetch the discovery document and the key set now; on failure keep the keys we hold, and say why in the
        log. Callers keep to the once-a-minute bound (`key`); the service calls it once at start."""
        self._tried_at = self._clock()
        try:
            keys = self._fetched_keys()
        except ProviderProblem as problem:
            self._failure = str(problem)
            metrics.identity_provider_fetches.labels(self.service, "failed").inc()
            log.warning("identity provider's keys not fetched; tokens that need them are answered 503 meanwhile",
                        extra={"issuer": self.settings.issuer, "error": self._failure,
                               "keys_held": sorted(self._keys or ())})
            return
        metrics.identity_provider_fetches.labels(self.service, "fetched").inc()
        if keys.keys() != (self._keys or {}).keys():
            log.info("identity provider's keys fetched", extra={"issuer": self.settings.issuer, "kids": sorted(keys)})
        self._keys, self._fetched_at, self._failure = keys, self._tried_at, None

    def _old(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= KEYS_MAX_AGE_S

    def _may_fetch(self) -> bool:
        return self._tried_at is None or self._clock() - self._tried_at >= REFRESH_INTERVAL_S

    def _seconds_to_next_fetch(self) -> int:
        return max(1, math.ceil(REFRESH_INTERVAL_S - (self._clock() - (self._tried_at or 0))))

    def _fetched_keys(self) -> dict[str, SigningKey]:
        discovery = self._document(self.settings.discovery_url, "discovery document")
        if discovery.get("issuer") != self.settings.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the document must name exactly the issuer it was asked for.
            raise ProviderProblem(f"the discovery document names the issuer {discovery.get('issuer')!r}, not "
                                  f"{self.settings.issuer!r}: WOODPECKER_OIDC_ISSUER must be exactly the provider's")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or (problem := provider_url_problem(jwks_uri)):
            raise ProviderProblem(f"the discovery document's jwks_uri {jwks_uri!r} is unusable: "
                                  f"{problem if isinstance(jwks_uri, str) else 'missing'}")
        keys = signing_keys(self._document(jwks_uri, "key set"))
        if not keys:
            raise ProviderProblem(f"the key set {jwks_uri} has no RS256 or ES256 signing key with a kid")
        return keys

    def _document(self, url: str, what: str) -> dict:
        plain_http = urlsplit(url).scheme == "http"
        answer = fetch("GET", url, PROVIDER_POLICY, headers={"Accept": "application/json"},
                       resolve=loopback_only if plain_http else socket.getaddrinfo, tls_context=self._tls,
                       max_answer_bytes=MAX_DOCUMENT_BYTES + 1)
        if answer.error:
            raise ProviderProblem(f"{what} {url}: {answer.error}")
        if answer.status_code != 200:
            raise ProviderProblem(f"{what} {url}: HTTP {answer.status_code}")
        if len(answer.body) > MAX_DOCUMENT_BYTES:
            raise ProviderProblem(f"{what} {url}: larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
        try:
            document = json.loads(answer.body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProviderProblem(f"{what} {url}: not a JSON object")
        return document


class ProviderTokens:
    """Who a token from the provider names: its signature checked with the provider's key, its `iss`, `aud`, `exp`,
    `nbf` and `iat` checked (CLOCK_SKEW_S allowed), and its claims mapped to our role, department and grid."""

    def __init__(self, settings: OidcSettings, keys: ProviderKeys):
        self.settings, self.keys = settings, keys

    @classmethod
    def from_settings(cls, settings: OidcSettings, service: str) -> ProviderTokens:
        return cls(settings, ProviderKeys(settings, service))

    def accepts(self, algorithm: str) -> bool:
        return algorithm in ALGORITHMS

    def names_provider(self, header: dict, unverified_claims: dict) -> bool:
        """Whether a token says it is the provider's (its key or its issuer), whatever its signature."""
        return self.keys.publishes(header.get("kid")) or unverified_claims.get("iss") == self.settings.issuer

    def caller(self, token: str, header: dict) -> Caller:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The token's header names no key ('kid'); the identity provider's tokens do.")
        key = self.keys.key(kid)
        if header.get("alg") != key.algorithm:
            raise Unauthorized(f"The token says it is {_shown(header.get('alg'))}, but the identity provider's key "
                               f"{_shown(kid)!r} is for {key.algorithm}.")
        return mapped_caller(self._claims(token, key), self.settings)

    def _claims(self, token: str, key: SigningKey) -> dict:
        settings = self.settings
        try:
            return jwt.decode(token, key.jwk, algorithms=[key.algorithm], issuer=settings.issuer,
                              audience=settings.audience, leeway=CLOCK_SKEW_S,
                              options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired; get a new one from the identity provider.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized(f"The token is not valid yet: its nbf or iat is more than {CLOCK_SKEW_S} s ahead of "
                               "our clock.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"The token lacks the '{exc.claim}' claim.") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The token was not issued by this deployment's identity provider (its 'iss').") \
                from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"The token is not meant for Woodpecker: its 'aud' does not name "
                               f"{settings.audience!r}.") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized(f"The token's signature does not match the identity provider's key "
                               f"{_shown(key.kid)!r}.") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The token is not a valid JWT.") from None


def claim_values(claims: dict, source: ClaimSource) -> list[str]:
    """The strings `source` finds in the claims: the claim named `path`, else the dotted path walked through nested
    objects; a string is one value, a list gives its strings; with a prefix, only the values under it, less it."""
    value: Any = claims.get(source.path)
    if source.path not in claims:
        value = claims
        for part in source.path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    values = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
        if isinstance(value, list) else []
    if source.prefix:
        values = [v.removeprefix(source.prefix) for v in values if v.startswith(source.prefix)]
    return list(dict.fromkeys(v for v in values if v))


def mapped_caller(claims: dict, settings: OidcSettings) -> Caller:
    """Our caller from a verified token's claims: a role (403 if none), and the department or grid that role needs
    (401 without exactly one, as a local token without its `dept` or `grid`)."""
    role = _role(claims, settings)
    depts, grids = claim_values(claims, settings.dept), claim_values(claims, settings.grid)
    if role == "department":
        _exactly_one(depts, "department", "a department", settings.dept)
    if role == "grid_leader":
        _exactly_one(grids, "grid_leader", "a grid", settings.grid)
    return Caller(id=str(claims["sub"]), role=role, dept=depts[0] if len(depts) == 1 else None,
                  grid=grids[0] if len(grids) == 1 else None)


def _role(claims: dict, settings: OidcSettings) -> str:
    values = claim_values(claims, settings.role)
    if settings.roles:
        roles = [role for value, role in settings.roles if value in values]
        known = ", ".join(value for value, _ in settings.roles)
    else:
        roles = [value for value in values if value in ROLES]
        known = ", ".join(ROLES)
        if len(roles) > 1:
            raise Forbidden(f"The token names several roles in '{settings.role.path}' ({', '.join(roles)}); a caller "
                            "has one (WOODPECKER_OIDC_ROLES can say which comes first).")
    if not roles:
        raise Forbidden(f"The token maps to no Woodpecker role: its {_where(settings.role)} holds none of "
                        f"{known}.")
    return roles[0]


def _exactly_one(values: list[str], role: str, what: str, source: ClaimSource) -> None:
    if not values:
        raise Unauthorized(f"A {role} token must name {what} (in {_where(source)}).")
    if len(values) > 1:
        shown = ", ".join(_shown(value) for value in values[:5])
        raise Unauthorized(f"A {role} token must name one {what.split()[-1]}, and this one names several "
                           f"in {_where(source)} ({shown}).")


def _where(source: ClaimSource) -> str:
    return f"'{source.path}'" + (f" (values under '{source.prefix}')" if source.prefix else "")


def _shown(value: object) -> str:
    """A token's own value, cut short, for an answer."""
    return str(value)[:LONGEST_SHOWN]
