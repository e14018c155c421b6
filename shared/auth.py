"""Bearer tokens (JWT, docs/contract.md, "Tokens") and the role check every endpoint makes.

A deployment accepts tokens from one issuer or both (WOODPECKER_TOKEN_ISSUERS): `local`, HS256 signed with
WOODPECKER_JWT_SECRET (`make token`, development); `oidc`, RS256/ES256 from the city's OpenID Connect provider,
checked against its published keys (shared/oidc.py).
"""
from __future__ import annotations

import argparse
import copy
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import jwt
from flask import current_app, g, request

from shared.config import PROVIDER_ALGORITHMS, ROLES, Settings
from shared.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from shared.oidc import ProviderTokens

LOCAL_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Caller:
    id: str
    role: str
    dept: str | None = None
    grid: str | None = None

    def is_(self, *roles: str) -> bool:
        return self.role in roles


def decode_token(token: str, secret: str, issuer: str | None = None, audience: str | None = None) -> Caller:
    """The caller a token names; a token we cannot trust is a 401 that says why in our words (the JWT
    library's own messages describe its internals, and a caller can do nothing with them)."""
    required = ["sub", "role", "exp", *(["iss"] if issuer else []), *(["aud"] if audience else [])]
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=issuer, audience=audience,
                            options={"require": required, "verify_aud": audience is not None})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired; get a new one.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The token lacks the '{exc.claim}' claim.") from None
    except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
        raise Unauthorized("The token was not issued for this system.") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("The token's signature does not match; it was not issued by this system.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is not a valid JWT.") from None
    role = claims["role"]
    if role not in ROLES:
        raise Unauthorized(f"The token's role is not one of {', '.join(ROLES)}.")
    if role == "department" and not claims.get("dept"):
        raise Unauthorized("A department token must carry a 'dept' claim.")
    if role == "grid_leader" and not claims.get("grid"):
        raise Unauthorized("A grid_leader token must carry a 'grid' claim.")
    return Caller(id=str(claims["sub"]), role=role, dept=claims.get("dept"), grid=claims.get("grid"))


def issue_token(secret: str, sub: str, role: str, *, dept: str | None = None, grid: str | None = None,
                ttl: timedelta = timedelta(hours=12), issuer: str | None = None, audience: str | None = None) -> str:
    claims = {"sub": sub, "role": role, "exp": datetime.now(UTC) + ttl}
    optional = {"dept": dept, "grid": grid, "iss": issuer, "aud": audience}
    claims.update({name: value for name, value in optional.items() if value})
    return jwt.encode(claims, secret, algorithm="HS256")


class Tokens:
    """The bearer tokens this deployment accepts. A token's header says which issuer it claims to come from (its
    algorithm); it is then checked as that issuer's, or refused if the deployment does not accept that issuer."""

    def __init__(self, settings: Settings, provider: ProviderTokens | None = None):
        self.settings, self.provider = settings, provider
        self.local = "local" in settings.token_issuers

    def caller(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("The token is not a valid JWT.") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise Unauthorized("The token is not signed (its algorithm is 'none'); unsigned tokens are refused.")
        if algorithm.upper().startswith("HS") and self.provider \
                and self.provider.names_provider(header, _unverified(token)):
            raise Unauthorized(f"The token is {algorithm[:10]} but names the identity provider, which signs with "
                               "its private key only (RS256/ES256): refused, as a token signed with the provider's "
                               "public key as a shared secret would be (algorithm confusion).")
        if algorithm == LOCAL_ALGORITHM and self.local:
            settings = self.settings
            return decode_token(token, settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience)
        if self.provider and self.provider.accepts(algorithm):
            return self.provider.caller(token, header)
        raise Unauthorized(f"The token's algorithm {algorithm[:10]!r} is not accepted here. "
                           f"{accepted_tokens(self.settings)}")


def accepted_tokens(settings: Settings) -> str:
    """What a caller must send, in a sentence (the start log, `make up`, the OpenAPI documents, a refusal)."""
    accepted = []
    if "local" in settings.token_issuers:
        accepted.append("HS256, signed with the deployment's WOODPECKER_JWT_SECRET (`make token`)")
    if settings.oidc and "oidc" in settings.token_issuers:
        accepted.append(f"{' or '.join(PROVIDER_ALGORITHMS)} from the OpenID Connect provider {settings.oidc.issuer}, "
                        f"for the audience {settings.oidc.audience}")
    return "A JWT: " + "; or ".join(accepted) + "."


def _unverified(token: str) -> dict:
    """A token's claims before any check, only to say why it is refused."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims if isinstance(claims, dict) else {}


def current_caller() -> Caller:
    if "caller" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send 'Authorization: Bearer <token>'.")
        g.caller = current_app.extensions["tokens"].caller(token.strip())
    return g.caller


def requires(*roles: str) -> Callable:
    """Authenticate the caller and allow only `roles` (none given: any authenticated role)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            caller = current_caller()
            if roles and caller.role not in roles:
                raise Forbidden(f"Role {caller.role!r} may not do this; allowed: {', '.join(roles)}.")
            return view(*args, **kwargs)

        _document(guarded, view, roles)
        return guarded

    return decorate


def _document(guarded: Callable, view: Callable, roles: tuple[str, ...]) -> None:
    """Put the roles and the 401/403 answers in the endpoint's OpenAPI entry (flask-smorest's `_apidoc`)."""
    doc = copy.deepcopy(getattr(view, "_apidoc", {}))
    responses = doc.setdefault("response", {}).setdefault("responses", {})
    responses.setdefault(401, []).append("UNAUTHORIZED")
    if roles:
        responses.setdefault(403, []).append("FORBIDDEN")
    guarded._apidoc = doc
    allowed = ", ".join(f"`{r}`" for r in roles) if roles else "any authenticated role"
    guarded.__doc__ = f"{(view.__doc__ or '').rstrip()}\n\nRoles: {allowed}."


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a Woodpecker bearer token (signed with WOODPECKER_JWT_SECRET).")
    parser.add_argument("--role", choices=ROLES, default="office")
    parser.add_argument("--sub", default="office-1")
    parser.add_argument("--dept")
    parser.add_argument("--grid")
    parser.add_argument("--hours", type=float, default=12)
    args = parser.parse_args()
    settings = Settings.from_env("intake")
    if "local" not in settings.token_issuers:
        sys.exit("The services accept only the identity provider's tokens (WOODPECKER_TOKEN_ISSUERS="
                 f"{','.join(settings.token_issuers)}): a token signed here would be refused. Get one from "
                 f"{settings.oidc.issuer if settings.oidc else 'the provider'} (docs/identity.md).")
    print(issue_token(settings.jwt_secret, args.sub, args.role, dept=args.dept, grid=args.grid,
                      ttl=timedelta(hours=args.hours), issuer=settings.jwt_issuer, audience=settings.jwt_audience))


if __name__ == "__main__":
    main()
