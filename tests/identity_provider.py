"""A real OpenID Connect provider for the tests: what the services meet in a city that signs its staff in through
Keycloak or a province's platform, on a loopback port of this machine.

It serves a discovery document, the key set it publishes and a token endpoint (Authlib's OAuth 2.0 authorization
server) that gives confidential clients client-credentials tokens: JWT access tokens (RFC 9068) signed with its
current private key, carrying the claims registered for the client. For a browser's public client (the staff
console) it runs the authorization-code grant with PKCE (S256 only; a public client without it is refused), the
redirect URI checked exactly, `state` passed back, and an ID token carrying the `nonce`: its sign-in page is a form
where a test (or a developer) picks one of the registered users, and the tokens carry that user's claims; CORS lets
the client's registered origins read the discovery document, the key set and the token endpoint.

It can also sign any claims with one of its keys (a signed-in user's token, an expired one), add a key and sign
with it from then on, withdraw a key from what it publishes, and counts the requests each of its documents gets.
The keys are made here, RSA or EC, with joserfc, so that what signs the tokens shares no code with what verifies
them (PyJWT, shared/oidc.py).

`python -m tests.identity_provider` runs one until Ctrl-C, with the demo city's clients and users (for trying a
service, or the console's sign-in, by hand).
"""
from __future__ import annotations

import collections
import hmac
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, render_template_string, request
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

AUDIENCE = "woodpecker-api"
TOKEN_LIFETIME_S = 300
AUTHORIZATION_CODE_LIFETIME_S = 60
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


# The console's client, as docs/console.md says to register it, and the staff who sign in to it (username → claims).
CONSOLE_CLIENT_ID = "woodpecker-console"
CONSOLE_CALLBACK_PATH = "/sign-in/callback"


def keycloak_claims(role: str, *groups: str) -> dict:
    """The claims Keycloak puts in a token of a user (or a service account) with the realm role `woodpecker-<role>`
    (with Keycloak's own default roles beside it) in `groups`."""
    return {"realm_access": {"roles": ["offline_access", "uma_authorization", f"woodpecker-{role.replace('_', '-')}"]},
            "groups": list(groups)}


STAFF = {"office-wang": keycloak_claims("office"),
         "police-li": keycloak_claims("department", "/departments/traffic-police", "/staff"),
         "leader-lanshan-01": keycloak_claims("grid_leader", "/grids/lanshan-01")}


def console_origins(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


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


@dataclass
class PublicClient(ClientMixin):
    """A browser's client (the staff console): no secret, so the authorization-code grant with PKCE S256 only, to
    exactly its registered redirect URIs; its web origins may read the provider's documents and token endpoint."""

    client_id: str
    redirect_uris: tuple[str, ...]
    web_origins: tuple[str, ...] = ()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # the request must name one: a public client's redirect is never guessed

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(word for word in (scope or "").split() if word in ("openid", "profile"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exactly: no prefix, no pattern

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class User:
    """A person who can sign in at the provider's page: their username (the tokens' `sub`) and the claims their
    tokens carry."""

    username: str
    claims: dict = field(default_factory=dict)

    def get_user_id(self) -> str:
        return self.username


@dataclass
class AuthorizationCode:
    """An authorization code the provider handed out, kept until it is exchanged (once) or expires."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    def is_expired(self) -> bool:
        return time.time() > self.auth_time + AUTHORIZATION_CODE_LIFETIME_S


class _S256Only(CodeChallenge):
    """PKCE as a public client must use it (RFC 9700, 2.1.1): a challenge always, and S256, never `plain` (which
    shows the verifier to whoever sees the authorization request)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("A public client must send a PKCE 'code_challenge' (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only the S256 'code_challenge_method' is accepted; 'plain' is refused.")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.code_challenge_method


class _IdTokens(OpenIDCode):
    """ID tokens for the `openid` scope: signed with the provider's current key, for the client, with the nonce."""

    def __init__(self, provider: IdentityProvider):
        super().__init__(require_nonce=False)
        self.provider = provider

    def resolve_client_private_key(self, client: PublicClient) -> RSAKey | ECKey:
        return self.provider.private_key()

    def get_client_algorithm(self, client: PublicClient) -> str:
        return self.provider.signing_algorithm

    def get_encode_header(self, client: PublicClient) -> dict:
        return {"alg": self.provider.signing_algorithm, "kid": self.provider.current_kid, "typ": "JWT"}

    def get_client_claims(self, client: PublicClient) -> dict:
        now = int(time.time())
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()], "iat": now,
                "exp": now + self.provider.token_lifetime_s}

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return self.provider.nonce_used(nonce)

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(sub=user.username, preferred_username=user.username)


class _CodeGrant(AuthorizationCodeGrant):
    """The authorization-code grant for public clients; the provider keeps its codes in memory."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    provider: IdentityProvider  # set on the subclass each provider registers

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.provider._codes[code] = AuthorizationCode(
            code=code, client_id=request.client.get_client_id(), redirect_uri=request.payload.redirect_uri,
            scope=request.payload.scope or "", user=request.user, code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"], nonce=data.get("nonce"), auth_time=int(time.time()))

    def query_authorization_code(self, code: str, client: PublicClient) -> AuthorizationCode | None:
        found = self.provider._codes.get(code)
        if found and found.client_id == client.get_client_id() and not found.is_expired():
            return found
        return None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.provider._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return authorization_code.user


# The provider's sign-in page: pick a user (a test clicks one), or refuse.
SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: test identity provider</title></head>
<body><main>
<h1>Sign in to {{ client_id }}</h1>
<p>A test identity provider: choose who signs in.</p>
<form method="post">
{% for user in users %}<p><button type="submit" name="username" value="{{ user }}">{{ user }}</button></p>
{% endfor %}<p><button type="submit" name="deny" value="1">Refuse</button></p>
</form>
</main></body></html>
"""


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
        return user.claims if isinstance(user, User) else client.claims

    def _get_expires_in(self, client: Client, grant_type: str) -> int:
        return self.provider.token_lifetime_s


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        """The provider's requests are counted (IdentityProvider.requests), not logged."""


class IdentityProvider:
    """The provider, served on 127.0.0.1 (on `port`, or any free one) from a thread of this process (`start`, `stop`,
    or `with`)."""

    def __init__(self, audience: str = AUDIENCE, algorithm: str = "RS256", port: int = 0):
        self.audience = audience
        self.token_lifetime_s = TOKEN_LIFETIME_S  # of the tokens its endpoint gives (a test of expiry shortens it)
        self.requests: collections.Counter[str] = collections.Counter()  # path → requests served
        self._keys: dict[str, RSAKey | ECKey] = {}  # every key it made, by kid
        self._published: list[str] = []  # the kids of the keys it publishes
        self._current: str | None = None  # the kid it signs with
        self._clients: dict[str, Client | PublicClient] = {}
        self._users: dict[str, User] = {}
        self._codes: dict[str, AuthorizationCode] = {}  # authorization codes not yet exchanged
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

    def add_public_client(self, client_id: str, redirect_uris: list[str], web_origins: list[str] = ()) -> None:
        """A browser's public client (no secret): the authorization-code grant with PKCE S256, redirecting only to
        exactly `redirect_uris`; `web_origins` may read the provider's documents and token endpoint (CORS)."""
        self._clients[client_id] = PublicClient(client_id, tuple(redirect_uris), tuple(web_origins))

    def add_user(self, username: str, claims: dict | None = None) -> None:
        """Someone who can sign in at the provider's page: their access tokens carry `claims`, `sub` the username."""
        self._users[username] = User(username, dict(claims or {}))

    def nonce_used(self, nonce: str) -> bool:
        return any(code.nonce == nonce for code in self._codes.values())

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
        server.register_grant(type("CodeGrant", (_CodeGrant,), {"provider": self}),
                              [_S256Only(required=True), _IdTokens(self)])
        server.register_token_generator("default", self._access_tokens)

        @app.before_request
        def count():
            self.requests[request.path] += 1

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks",
                            "token_endpoint": f"{self.issuer}/token",
                            "authorization_endpoint": f"{self.issuer}/authorize",
                            "grant_types_supported": ["client_credentials", "authorization_code"],
                            "code_challenge_methods_supported": ["S256"],
                            "scopes_supported": ["openid", "profile"],
                            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post",
                                                                      "none"],
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                            "response_types_supported": ["code"], "subject_types_supported": ["public"],
                            **self.discovery_changes})

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self._keys[kid] for kid in self._published]).as_dict(private=False))

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            # A request that names no known client or a redirect URI not registered exactly is answered here, never
            # redirected (RFC 6749, 4.1.2.1): the page would otherwise hand codes or errors to anyone's address.
            try:
                grant = server.get_consent_grant(end_user=None)
            except OAuth2Error as refused:
                if refused.redirect_uri:
                    return server.handle_error_response(None, refused)
                return Response(f"{refused.error}: {refused.description}", 400, mimetype="text/plain")
            if request.method == "GET":
                return render_template_string(SIGN_IN_PAGE, client_id=grant.client.get_client_id(),
                                              users=sorted(self._users))
            user = None if request.form.get("deny") else self._users.get(request.form.get("username", ""))
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.after_request
        def cors(response: Response) -> Response:
            # As Keycloak's "web origins": a public client's origin may read these from its page's scripts.
            origin = request.headers.get("Origin")
            allowed = {o for client in self._clients.values() if isinstance(client, PublicClient)
                       for o in client.web_origins}
            if origin in allowed and request.path in ("/token", "/jwks", "/.well-known/openid-configuration"):
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Allow-Headers"] = "Content-Type"
                response.headers["Access-Control-Allow-Methods"] = "GET, POST"
                response.headers["Vary"] = "Origin"
            return response

        return app

    @property
    def jwks_requests(self) -> int:
        return self.requests["/jwks"]


def main() -> None:
    """Run a provider (on the port the first argument names, else any) with one confidential client per kind of
    caller, Keycloak-style, the console's public client and its staff, and print how to use them."""
    provider = IdentityProvider(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    clients = {"office-system": keycloak_claims("office"),
               "traffic-police-system": keycloak_claims("department", "/departments/traffic-police")}
    print(f"Identity provider: {provider.issuer} (audience {provider.audience}). Start the services with:")
    print(" ".join(f"{name}={value!r}" for name, value in {
        "WOODPECKER_TOKEN_ISSUERS": "local,oidc", "WOODPECKER_OIDC_ISSUER": provider.issuer,
        "WOODPECKER_OIDC_AUDIENCE": provider.audience, **KEYCLOAK_MAPPING}.items()))
    for client_id, claims in clients.items():
        secret = provider.add_client(client_id, claims)
        print(f"  client {client_id}: secret {secret}")
    origins = console_origins(8000)
    provider.add_public_client(CONSOLE_CLIENT_ID, [origin + CONSOLE_CALLBACK_PATH for origin in origins], origins)
    for username, claims in STAFF.items():
        provider.add_user(username, claims)
    print(f"  the console (make up): CONSOLE_OIDC_ISSUER={provider.issuer} CONSOLE_OIDC_CLIENT_ID={CONSOLE_CLIENT_ID}; "
          f"users {', '.join(STAFF)}")
    sys.stdout.flush()  # before waiting: into a pipe or a log file too
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
