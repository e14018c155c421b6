"""A real OpenID Connect provider for the tests: what the services meet in a city that signs its staff in through
Keycloak or a province's platform, on a loopback port of this machine.

It serves a discovery document, the key set it publishes and a token endpoint (Authlib's OAuth 2.0 authorization
server) that gives confidential clients client-credentials tokens: JWT access tokens (RFC 9068) signed with its
current private key, carrying the claims registered for the client. It can also sign any claims with one of its keys
(a signed-in user's token, an expired one), add a key and sign with it from then on, withdraw a key from what it
publishes, and counts the requests each of its documents gets. The keys are made here, RSA or EC, with joserfc, so
that what signs the tokens shares no code with what verifies them (PyJWT, shared/oidc.py).

`python -m tests.identity_provider` runs one until Ctrl-C, with the demo city's clients (for trying a service by
hand); the console's sign-in will add its authorization-code grant here.
"""
from __future__ import annotations

import collections
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

AUDIENCE = "woodpecker-api"
TOKEN_LIFETIME_S = 300
# Keycloak-style claims: realm roles under realm_access.roles, group paths under groups (docs/identity.md); the
# settings that map them to ours.
KEYCLOAK_MAPPING = {
    "WOODPECKER_OIDC_ROLE_CLAIM": "realm_access.roles",
    "WOODPECKER_OIDC_ROLES": "woodpecker-office=office,woodpecker-department=department,"
                             "woodpecker-grid-leader=grid_leader,woodpecker-association=association,"
                             "woodpecker-service=service,woodpecker-volunteer=volunteer",
    "WOODPECKER_OIDC_DEPT_CLAIM": "groups", "WOODPECKER_OIDC_DEPT_PREFIX": "/departments/",
    "WOODPECKER_OIDC_GRID_CLAIM": "groups", "WOODPECKER_OIDC_GRID_PREFIX": "/grids/",
}


def keycloak_claims(role: str, *groups: str) -> dict:
    """The claims Keycloak puts in a token of a user (or a service account) with the realm role `woodpecker-<role>`
    (with Keycloak's own default roles beside it) in `groups`."""
    return {"realm_access": {"roles": ["offline_access", "uma_authorization", f"woodpecker-{role.replace('_', '-')}"]},
            "groups": list(groups)}


@dataclass
class Client(ClientMixin):
    """A confidential client of the provider (a department's system, another service): its secret and the claims
    its tokens carry."""

    client_id: str
    client_secret: str
    claims: dict = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""


class _AccessTokens(JWTBearerTokenGenerator):
    """RFC 9068 access tokens, signed with the provider's current key, for the provider's audience."""

    def __init__(self, provider: IdentityProvider):
        super().__init__(issuer=None)  # the provider's, once its server has a port
        self.provider = provider

    def get_jwks(self) -> KeySet:
        return KeySet([self.provider.private_key()])

    def get_audiences(self, client: Client, user: Any, scope: str) -> str:
        return self.provider.audience

    def get_extra_claims(self, client: Client, grant_type: str, user: Any, scope: str) -> dict:
        return client.claims

    def _get_expires_in(self, client: Client, grant_type: str) -> int:
        return TOKEN_LIFETIME_S


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        """The provider's requests are counted (IdentityProvider.requests), not logged."""


class IdentityProvider:
    """The provider, served on 127.0.0.1 (on `port`, or any free one) from a thread of this process (`start`, `stop`,
    or `with`)."""

    def __init__(self, audience: str = AUDIENCE, algorithm: str = "RS256", port: int = 0):
        self.audience = audience
        self.requests: collections.Counter[str] = collections.Counter()  # path → requests served
        self._keys: dict[str, RSAKey | ECKey] = {}  # every key it made, by kid
        self._published: list[str] = []  # the kids of the keys it publishes
        self._current: str | None = None  # the kid it signs with
        self._clients: dict[str, Client] = {}
        self.discovery_changes: dict[str, Any] = {}  # what its discovery document says otherwise (a broken provider)
        self._access_tokens = _AccessTokens(self)
        self._server = make_server("127.0.0.1", port, self._app(), threaded=True, request_handler=_Quiet)
        self.issuer = self._access_tokens.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="identity-provider", daemon=True)
        self.add_key(algorithm)

    def start(self) -> IdentityProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_port

    def __enter__(self) -> IdentityProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- keys ---

    def add_key(self, algorithm: str = "RS256") -> str:
        """A new key, published and signed with from now on (the others stay published); returns its kid."""
        kid = f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
        parameters = {"kid": kid, "alg": algorithm, "use": "sig"}
        self._keys[kid] = RSAKey.generate_key(2048, parameters) if algorithm == "RS256" \
            else ECKey.generate_key("P-256", parameters)
        self._published.append(kid)
        self._current = kid
        self._access_tokens.alg = algorithm
        return kid

    def withdraw_key(self, kid: str) -> None:
        """Stop publishing `kid` (a key retired after a rotation, or one that leaked)."""
        self._published.remove(kid)

    @property
    def current_kid(self) -> str:
        return self._current

    @property
    def signing_algorithm(self) -> str:
        return self._keys[self._current].alg

    def private_key(self, kid: str | None = None) -> RSAKey | ECKey:
        return self._keys[kid or self._current]

    def public_pem(self, kid: str | None = None) -> bytes:
        """The public half of a key as PEM: what anyone can rebuild from the key set."""
        return self._keys[kid or self._current].as_pem(private=False)

    # --- tokens ---

    def sign(self, claims: dict, kid: str | None = None) -> str:
        """`claims` as a JWT signed with key `kid` (the current one by default), its kid in the header."""
        key = self._keys[kid or self._current]
        return jwt.encode({"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}, claims, key)

    def token(self, sub: str, claims: dict | None = None, *, lifetime_s: int = TOKEN_LIFETIME_S,
              issued_at: float | None = None, kid: str | None = None, **standard: Any) -> str:
        """An access token for the user `sub`, as the provider gives a signed-in user: its issuer, the audience,
        `iat` and `exp` (from `issued_at`, now by default), then `claims`; `standard` replaces any of those
        (e.g. iss=..., aud=..., nbf=...)."""
        now = int(time.time() if issued_at is None else issued_at)
        base = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + lifetime_s,
                "jti": uuid.uuid4().hex}
        return self.sign({**base, **(claims or {}), **standard}, kid)

    def add_client(self, client_id: str, claims: dict | None = None) -> str:
        """A confidential client allowed the client-credentials grant; returns its secret."""
        secret = secrets.token_urlsafe(24)
        self._clients[client_id] = Client(client_id, secret, dict(claims or {}))
        return secret

    def client_credentials(self, client_id: str, client_secret: str) -> str:
        """An access token from the token endpoint, asked for over HTTP as a client does (RFC 6749, 4.4)."""
        answer = requests.post(f"{self.issuer}/token", data={"grant_type": "client_credentials"},
                               auth=(client_id, client_secret), timeout=10)
        answer.raise_for_status()
        return answer.json()["access_token"]

    # --- the HTTP side ---

    def _app(self) -> Flask:
        app = Flask("identity-provider")
        server = AuthorizationServer(app, query_client=self._clients.get, save_token=lambda token, request: None)
        server.register_grant(ClientCredentialsGrant)
        server.register_token_generator("default", self._access_tokens)

        @app.before_request
        def count():
            self.requests[request.path] += 1

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks",
                            "token_endpoint": f"{self.issuer}/token",
                            "grant_types_supported": ["client_credentials"],
                            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                            "response_types_supported": ["code"], "subject_types_supported": ["public"],
                            **self.discovery_changes})

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self._keys[kid] for kid in self._published]).as_dict(private=False))

        @app.post("/token")
        def token():
            return server.create_token_response()

        return app

    @property
    def jwks_requests(self) -> int:
        return self.requests["/jwks"]


def main() -> None:
    """Run a provider with one confidential client per kind of caller, Keycloak-style, and print how to use it."""
    provider = IdentityProvider().start()
    clients = {"office-system": keycloak_claims("office"),
               "traffic-police-system": keycloak_claims("department", "/departments/traffic-police")}
    print(f"Identity provider: {provider.issuer} (audience {provider.audience}). Start the services with:")
    print(" ".join(f"{name}={value!r}" for name, value in {
        "WOODPECKER_TOKEN_ISSUERS": "local,oidc", "WOODPECKER_OIDC_ISSUER": provider.issuer,
        "WOODPECKER_OIDC_AUDIENCE": provider.audience, **KEYCLOAK_MAPPING}.items()))
    for client_id, claims in clients.items():
        secret = provider.add_client(client_id, claims)
        print(f"  client {client_id}: secret {secret}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
