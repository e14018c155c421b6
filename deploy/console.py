"""The staff console (clients/console): built when its sources changed, and served as a static app.

The console reaches the four services across origins, through the CORS that `make up` configures
(WOODPECKER_CORS_ORIGINS), rather than through forwarded paths on its own origin: its server then holds no
logic and sees none of the API's traffic, and the services see each browser's own address, which their
per-address rate limits and their audit log rely on (a forwarding server would make every caller one address).
The browser learns where the services are, and the city's time zone, from /config.json, so one build serves
any deployment.

With CONSOLE_OIDC_CLIENT_ID set, the console also signs staff in through the city's OpenID Connect provider
(authorization code with PKCE, from the browser: docs/console.md); /config.json then names the provider, the
client and the scopes, and how the provider's claims give a caller's role, department and grid (the services'
own WOODPECKER_OIDC_*_CLAIM settings, so that the console shows what the services will allow). The page's CSP lets
it reach the provider's issuer (discovery) and token endpoint and nothing else of the provider's.

`gunicorn "deploy.console:create_app()"` serves the built app (clients/console/dist): /config.json, the hashed
assets (cached for good), and the app's page for every other path (history-mode routes).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from flask import Flask, Response, abort, send_from_directory

from shared import reference
from shared.config import SERVICE_PORTS, OidcSettings, provider_settings, provider_url_problem
from shared.oidc import MAX_DOCUMENT_BYTES, PROVIDER_POLICY, loopback_only
from shared.outbound import fetch

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "clients" / "console"
DEFAULT_PORT = 8000
# What a build is made from; the digest of these is written into dist/ beside the build.
SOURCES = ("index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json", "src", "public")
# Not among them: the types `npm run generate` writes from the running services for the type check. The console
# imports them as types only, which the build erases, so writing them again is no reason to build again.
GENERATED = Path("src") / "api" / "generated"
BUILT_FROM = ".woodpecker-sources"
INSTALLED = Path("node_modules") / ".woodpecker-installed"
NODE_NEEDED = (20, 19)
NODE_HOWTO = ("Node.js 20.19 or newer, with npm, builds it: from https://nodejs.org, or your distribution's "
              "`nodejs` and `npm` packages where they are that new (Debian 13: `apt-get install nodejs npm`).")
BUILD_TIMEOUT_S = 600
# Vite names every asset after its content: a name never changes meaning.
ASSET_MAX_AGE_S = 365 * 24 * 3600
_VERSION = re.compile(r"v(\d+)\.(\d+)")


@dataclass(frozen=True)
class ConsoleProvider:
    """The city's OpenID Connect provider as the console's browser client uses it (a public client: no secret)."""

    issuer: str
    client_id: str
    scopes: str
    # What the sign-in button calls it ("Sign in with <name>"); empty: the console's own words for it.
    name: str
    # How its tokens' claims give our role, department and grid: the services' own mapping (docs/identity.md).
    claims: OidcSettings | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleProvider | None:
        client_id = (env.get("CONSOLE_OIDC_CLIENT_ID") or "").strip()
        services = provider_settings(env)
        issuer = (env.get("CONSOLE_OIDC_ISSUER") or "").strip() or (services.issuer if services else "")
        if not client_id:
            if (env.get("CONSOLE_OIDC_ISSUER") or "").strip():
                raise ValueError("CONSOLE_OIDC_ISSUER is set but not CONSOLE_OIDC_CLIENT_ID: the console signs in "
                                 "through the provider as its registered public client; set its client id too")
            return None
        if not issuer:
            raise ValueError("CONSOLE_OIDC_CLIENT_ID is set but no provider: set CONSOLE_OIDC_ISSUER (or "
                             "WOODPECKER_OIDC_ISSUER), the provider's issuer URL")
        if problem := provider_url_problem(issuer):
            raise ValueError(f"CONSOLE_OIDC_ISSUER is the provider's issuer URL; {problem}; got {issuer!r}")
        if services is not None and services.issuer != issuer:
            raise ValueError(f"CONSOLE_OIDC_ISSUER ({issuer}) differs from WOODPECKER_OIDC_ISSUER "
                             f"({services.issuer}): the services would refuse the tokens the console signs in with")
        scopes = " ".join((env.get("CONSOLE_OIDC_SCOPES") or "openid").replace(",", " ").split())
        if "openid" not in scopes.split():
            scopes = f"openid {scopes}"
        return cls(issuer=issuer, client_id=client_id, scopes=scopes, name=(env.get("CONSOLE_OIDC_NAME") or "").strip(),
                   claims=services)

    def client_config(self) -> dict:
        """What /config.json says of the provider."""
        claims = self.claims or OidcSettings(issuer=self.issuer, audience="")
        return {"issuer": self.issuer, "clientId": self.client_id, "scopes": self.scopes, "name": self.name,
                "claims": {"role": {"path": claims.role.path, "prefix": claims.role.prefix},
                           "roles": [list(pair) for pair in claims.roles],
                           "dept": {"path": claims.dept.path, "prefix": claims.dept.prefix},
                           "grid": {"path": claims.grid.path, "prefix": claims.grid.prefix}}}


@dataclass(frozen=True)
class ConsoleSettings:
    port: int
    # Where a browser reaches each service (an origin, as the console's page sees it).
    services: Mapping[str, str]
    time_zone: str
    provider: ConsoleProvider | None = None
    # The map's base tiles ({z}/{x}/{y} URL template) and their attribution; None: the grid cells alone (offline).
    tile_url: str | None = None
    tile_attribution: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleSettings:
        services = {service: env.get(f"CONSOLE_{service.upper()}_URL")
                    or f"http://127.0.0.1:{env.get(f'{service.upper()}_PORT', port)}"
                    for service, port in SERVICE_PORTS.items()}
        city = reference.load(env.get("WOODPECKER_REFERENCE_DIR") or None)
        return cls(port=int(env.get("CONSOLE_PORT", DEFAULT_PORT)),
                   services={name: url.rstrip("/") for name, url in services.items()}, time_zone=city.timezone.key,
                   provider=ConsoleProvider.from_env(env),
                   tile_url=checked_tile_url(env.get("CONSOLE_TILE_URL") or None),
                   tile_attribution=env.get("CONSOLE_TILE_ATTRIBUTION", ""))


class BadTileUrl(ValueError):
    pass


def checked_tile_url(url: str | None) -> str | None:
    """CONSOLE_TILE_URL as Leaflet takes it (http(s), with {z}, {x} and {y}; {s} for subdomains), or None."""
    if url is None:
        return None
    if urlparse(url).scheme not in ("http", "https") or not all(part in url for part in ("{z}", "{x}", "{y}")):
        raise BadTileUrl(f"CONSOLE_TILE_URL must be an http(s) URL template with {{z}}, {{x}} and {{y}}, not {url!r}.")
    return url


def tile_origin(url: str) -> str:
    """The origin the map's tiles come from, for the page's policy: {s} (Leaflet's subdomains) becomes a wildcard."""
    parts = urlparse(url.replace("{s}.", "*.").replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}"


def origins(port: int) -> list[str]:
    """The origins a browser may open the local console at: the services' CORS lets these call them."""
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


# --- building ---------------------------------------------------------------------------------

def node_problem() -> str | None:
    """Why this machine cannot build the console, in a sentence that says how to fix it; None if it can."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return f"Node.js and npm are not installed. {NODE_HOWTO}"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    found = _VERSION.match(version)
    if found is None or (int(found[1]), int(found[2])) < NODE_NEEDED:
        return f"Node.js {version or '(unknown version)'} is too old. {NODE_HOWTO}"
    return None


def sources_digest(console: Path = CONSOLE) -> str:
    digest = hashlib.sha256()
    for file in _sources(console):
        digest.update(str(file.relative_to(console)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _sources(console: Path) -> list[Path]:
    files = []
    for name in SOURCES:
        path = console / name
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.is_file() and not p.relative_to(console).is_relative_to(GENERATED))
        elif path.exists():
            files.append(path)
    return files


def lock_digest(console: Path = CONSOLE) -> str:
    return hashlib.sha256((console / "package.json").read_bytes() + (console / "package-lock.json").read_bytes()
                          ).hexdigest()


def npm_install(console: Path = CONSOLE) -> None:
    """`npm ci`, unless node_modules already holds exactly what the lock file pins."""
    stamp = console / INSTALLED
    if stamp.exists() and stamp.read_text() == lock_digest(console):
        return
    _npm(["ci", "--no-audit", "--no-fund"], console)
    stamp.write_text(lock_digest(console))


def build_if_changed(console: Path = CONSOLE) -> bool:
    """Build dist/ unless it was built from these very sources; True if it built. Raises BuildFailed."""
    digest = sources_digest(console)
    stamp = console / "dist" / BUILT_FROM
    if stamp.exists() and stamp.read_text() == digest:
        return False
    npm_install(console)
    _npm(["run", "build"], console)
    # After the build: it rewrites the declarations of the components it imports on demand (src/*.d.ts).
    stamp.write_text(sources_digest(console))
    return True


class BuildFailed(Exception):
    pass


def _npm(arguments: list[str], console: Path) -> None:
    done = subprocess.run([shutil.which("npm") or "npm", *arguments], cwd=console, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise BuildFailed(f"npm {' '.join(arguments)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


# --- serving ----------------------------------------------------------------------------------

def security_headers(settings: ConsoleSettings, provider_origins: set[str] = frozenset()) -> dict[str, str]:
    """The page may talk to the four services (and the provider's issuer and token endpoint, `provider_origins`)
    and nothing else; the token in a sign-in link's fragment never leaves the page (fragments are not sent, and no
    Referer is)."""
    api = " ".join(sorted({_origin(url) for url in settings.services.values()} | set(provider_origins)))
    # The map's tiles are images from their server; only when the deployment names one.
    tiles = f" {tile_origin(settings.tile_url)}" if settings.tile_url else ""
    policy = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
              f"img-src 'self' blob: data:{tiles}; "
              f"connect-src 'self' {api}; font-src 'self' data:; object-src 'none'; base-uri 'none'; "
              "form-action 'self'; frame-ancestors 'none'")
    return {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY"}


def _origin(url: str) -> str:
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}"


class ProviderOrigins:
    """The provider's origins the console's page fetches from: the issuer's (its discovery document) and its token
    endpoint's, which only its discovery document says. Read once it can be; while the provider cannot be reached
    (it is logged) the issuer's alone, and another try at most once a minute."""

    RETRY_S = 60

    def __init__(self, provider: ConsoleProvider, clock: Callable[[], float] = time.monotonic):
        self.provider, self._clock = provider, clock
        self._known: set[str] | None = None
        self._tried_at: float | None = None
        self._lock = threading.Lock()

    def origins(self) -> set[str]:
        with self._lock:
            if self._known is None and (self._tried_at is None or self._clock() - self._tried_at >= self.RETRY_S):
                self._tried_at = self._clock()
                try:
                    self._known = {_origin(self.provider.issuer), _origin(self._token_endpoint())}
                except ValueError as failed:
                    log.warning("identity provider's discovery document not read", extra={"reason": str(failed)})
            return self._known or {_origin(self.provider.issuer)}

    def _token_endpoint(self) -> str:
        url = self.provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        plain_http = urlparse(url).scheme == "http"
        ca_file = self.provider.claims.ca_file if self.provider.claims else None  # a city's own CA
        answer = fetch("GET", url, PROVIDER_POLICY, headers={"Accept": "application/json"},
                       resolve=loopback_only if plain_http else socket.getaddrinfo,
                       tls_context=ssl.create_default_context(cafile=ca_file) if ca_file else None,
                       max_answer_bytes=MAX_DOCUMENT_BYTES)
        if answer.error or answer.status_code != 200:
            raise ValueError(f"{url}: {answer.error or f'HTTP {answer.status_code}'}")
        try:
            endpoint = json.loads(answer.body).get("token_endpoint")
        except (ValueError, AttributeError):
            endpoint = None
        if not isinstance(endpoint, str) or provider_url_problem(endpoint.split("?")[0]):
            raise ValueError(f"{url} names no usable token_endpoint ({endpoint!r})")
        return endpoint


def create_app(settings: ConsoleSettings | None = None, dist: Path = CONSOLE / "dist") -> Flask:
    settings = settings or ConsoleSettings.from_env(os.environ)
    app = Flask("woodpecker-console", static_folder=None)
    page = dist / "index.html"
    client_config = json.dumps({"services": dict(settings.services), "timeZone": settings.time_zone,
                                **({"oidc": settings.provider.client_config()} if settings.provider else {}),
                                **({"tiles": {"url": settings.tile_url, "attribution": settings.tile_attribution}}
                                   if settings.tile_url else {})})
    provider = ProviderOrigins(settings.provider) if settings.provider else None

    @app.after_request
    def secured(response: Response) -> Response:
        response.headers.update(security_headers(settings, provider.origins() if provider else set()))
        return response

    @app.get("/config.json")
    def config() -> Response:
        return Response(client_config, mimetype="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    @app.get("/assets/<path:name>")
    def asset(name: str) -> Response:
        # A missing asset is a 404, never the app's page: a stale page asking for an old chunk must fail loudly.
        return send_from_directory(dist / "assets", name, max_age=ASSET_MAX_AGE_S)

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def app_page(path: str) -> Response:
        # A file at the root (the icon) is itself; a dot-file (the build's stamp) is nobody's business.
        if path and "/" not in path and not path.startswith(".") and (dist / path).is_file():
            return send_from_directory(dist, path, max_age=3600)
        if not page.exists():
            abort(503, "The console is not built: run `make up` (it builds clients/console when Node.js is present).")
        response = send_from_directory(dist, "index.html", max_age=0)
        response.headers["Cache-Control"] = "no-cache"  # a new build's page names new assets at once
        return response

    return app
