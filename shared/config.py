"""Configuration from the environment (docs/contract.md: ports, AMQP_URL, MONGO_URL, WOODPECKER_JWT_SECRET, the
OpenID Connect provider).

Every service reaches its store through MONGO_URL, or through <SERVICE>_MONGO_URL where that is set (a
service whose database lives elsewhere): MongoDB in production, or the embedded databases that `make up`
starts, one per service, when the operator has set neither.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEV_JWT_SECRET = "woodpecker-development-secret-never-use-in-production"
# HS256 is only as strong as its key: RFC 7518 asks for at least as many bits as the hash has.
MIN_JWT_SECRET_BYTES = 32
SERVICE_PORTS = {"intake": 8001, "routing": 8002, "hours": 8003, "notify": 8004}
PERIODS_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# Who may issue the bearer tokens the services accept: `local`, HS256 signed with WOODPECKER_JWT_SECRET (`make
# token`, development, a deployment without a provider); `oidc`, the city's OpenID Connect provider.
TOKEN_ISSUERS = ("local", "oidc")
# The algorithms we accept from a provider, and the key type each needs. HS256 never: a provider's key is public.
PROVIDER_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
# Our roles, in the order the docs list them (shared/auth.py checks tokens against them).
ROLES = ("volunteer", "grid_leader", "office", "department", "association", "service")
# An origin as a browser sends it: scheme, host and maybe a port, never a path (nor a trailing slash).
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Rate:
    """At most `limit` requests per `per` (second, minute, hour or day), e.g. "60/minute"."""

    limit: int
    per: str

    @property
    def period_s(self) -> int:
        return PERIODS_S[self.per]

    def __str__(self) -> str:
        return f"{self.limit}/{self.per}"


def _rate(env: os._Environ | dict, name: str, default: str) -> Rate | None:
    """`N/unit`, or `off` for no limit."""
    raw = env.get(name) or default
    if raw.strip().lower() == "off":
        return None
    count, _, per = raw.strip().partition("/")
    per = per.strip().lower().removesuffix("s")
    if not count.strip().isdigit() or int(count) <= 0 or per not in PERIODS_S:
        raise ValueError(f"{name} must be like 60/minute (per second, minute, hour or day) or off, got {raw!r}")
    return Rate(int(count), per)


def _names(raw: str) -> tuple[str, ...]:
    """A comma-separated list's items, without the blanks."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _origins(raw: str) -> tuple[str, ...]:
    origins = _names(raw)
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(f"WOODPECKER_CORS_ORIGINS lists origins such as https://app.example.gov.cn or "
                             f"http://localhost:5173 (no path, no trailing slash, no wildcard), got {origin!r}")
    return origins


def _at_least(env: os._Environ | dict, name: str, default: int, least: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.strip().isdigit() or int(raw) < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, got {raw!r}")
    return int(raw)


def _seconds(env: os._Environ | dict, name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise ValueError(f"{name} must be a number of seconds from 0 to 3600, got {raw!r}")
    return seconds


def _retry_delays(raw: str) -> tuple[int, ...]:
    delays = tuple(int(part) for part in raw.split(",") if part.strip())
    if not delays or any(d <= 0 for d in delays):
        raise ValueError(f"WOODPECKER_RETRY_DELAYS_MS must list positive milliseconds, got {raw!r}")
    return delays


@dataclass(frozen=True)
class ClaimSource:
    """Where one of our claims comes from in a provider's token: the claim at `path` (a name, or a dotted path into
    nested objects such as Keycloak's `realm_access.roles`), a string or a list of strings; with a `prefix`, only
    the values that start with it count, less the prefix (`/departments/traffic-police` gives `traffic-police`)."""

    path: str
    prefix: str = ""


@dataclass(frozen=True)
class OidcSettings:
    """The city's OpenID Connect provider, and how its claims map to ours (docs/identity.md)."""

    issuer: str
    audience: str
    role: ClaimSource = ClaimSource("role")
    # Provider values and the role each gives, in order of precedence (the first the token carries wins); empty:
    # the claim holds our role names themselves.
    roles: tuple[tuple[str, str], ...] = ()
    dept: ClaimSource = ClaimSource("dept")
    grid: ClaimSource = ClaimSource("grid")
    # PEM certificates of the authorities that sign the provider's TLS certificate (a city's private CA);
    # none: the system's.
    ca_file: str | None = None

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def provider_url_problem(url: str) -> str | None:
    """Why the services must not fetch a provider's document at `url`, or None: https only, except on this machine
    (`localhost` or a loopback address), where a developer's or a test's provider runs without TLS."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        return "its host or port cannot be read"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "it must be an https:// URL"
    if parts.username or parts.password or parts.query or parts.fragment:
        return "it must have no user name, password, query or fragment"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "it must be https:// (plain http:// only on this machine: localhost or a loopback address)"
    return None


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _claim_source(env: os._Environ | dict, name: str, default: str) -> ClaimSource:
    path = (env.get(f"WOODPECKER_OIDC_{name}_CLAIM") or default).strip()
    if any(not part for part in path.split(".")):
        raise ValueError(f"WOODPECKER_OIDC_{name}_CLAIM is a claim's name or a dotted path such as "
                         f"realm_access.roles, got {path!r}")
    return ClaimSource(path, (env.get(f"WOODPECKER_OIDC_{name}_PREFIX") or "").strip())


def _role_table(raw: str) -> tuple[tuple[str, str], ...]:
    """`value=role,value=role`: which provider value gives which of our roles, first match first."""
    table: list[tuple[str, str]] = []
    for entry in _names(raw):
        value, equals, role = (part.strip() for part in entry.rpartition("="))
        if not equals or not value or role not in ROLES:
            raise ValueError(f"WOODPECKER_OIDC_ROLES lists provider-value=role pairs such as "
                             f"woodpecker-office=office, the role one of {', '.join(ROLES)}; got {entry!r}")
        if any(value == known for known, _ in table):
            raise ValueError(f"WOODPECKER_OIDC_ROLES names {value!r} twice")
        table.append((value, role))
    return tuple(table)


def _oidc(env: os._Environ | dict) -> OidcSettings | None:
    issuer = (env.get("WOODPECKER_OIDC_ISSUER") or "").strip()
    if not issuer:
        stray = sorted(name for name in env if name.startswith("WOODPECKER_OIDC_") and env[name])
        if stray:
            raise ValueError(f"{', '.join(stray)} set, but not WOODPECKER_OIDC_ISSUER: set the provider's issuer "
                             "too, or unset them")
        return None
    if problem := provider_url_problem(issuer):
        raise ValueError(f"WOODPECKER_OIDC_ISSUER is the provider's issuer URL, exactly as its tokens' `iss` says "
                         f"(e.g. https://sso.example.gov.cn/realms/linyi); {problem}; got {issuer!r}")
    audience = (env.get("WOODPECKER_OIDC_AUDIENCE") or "").strip()
    if not audience:
        raise ValueError("WOODPECKER_OIDC_AUDIENCE must be set with WOODPECKER_OIDC_ISSUER: the `aud` the provider "
                         "puts in the tokens meant for Woodpecker (e.g. woodpecker-api); without it a token the "
                         "provider issued for any other of the city's applications would do")
    ca_file = (env.get("WOODPECKER_OIDC_CA_FILE") or "").strip() or None
    if ca_file and not os.path.isfile(ca_file):
        raise ValueError(f"WOODPECKER_OIDC_CA_FILE names no file: {ca_file!r}")
    return OidcSettings(issuer=issuer, audience=audience, role=_claim_source(env, "ROLE", "role"),
                        roles=_role_table(env.get("WOODPECKER_OIDC_ROLES", "")),
                        dept=_claim_source(env, "DEPT", "dept"), grid=_claim_source(env, "GRID", "grid"),
                        ca_file=ca_file)


def provider_settings(env: os._Environ | dict) -> OidcSettings | None:
    """The provider the WOODPECKER_OIDC_* settings name, and how its claims map to ours; None without one. For the
    console's server, which tells the browser the same mapping (deploy/console.py)."""
    return _oidc(env)


def _token_issuers(env: os._Environ | dict, oidc: OidcSettings | None) -> tuple[str, ...]:
    """Local tokens alone without a provider; with one, its tokens too (docs/contract.md, "Tokens"), until the
    deployment says `oidc` alone."""
    raw = env.get("WOODPECKER_TOKEN_ISSUERS") or ("local,oidc" if oidc else "local")
    issuers = _names(raw.lower())
    if not issuers or any(issuer not in TOKEN_ISSUERS for issuer in issuers):
        raise ValueError(f"WOODPECKER_TOKEN_ISSUERS is local, oidc or local,oidc; got {raw!r}")
    if "oidc" in issuers and oidc is None:
        raise ValueError("WOODPECKER_TOKEN_ISSUERS names oidc, but WOODPECKER_OIDC_ISSUER is not set")
    if "oidc" not in issuers and oidc is not None:
        raise ValueError("WOODPECKER_OIDC_ISSUER is set, but WOODPECKER_TOKEN_ISSUERS does not name oidc: add it "
                         "(local,oidc) or unset the provider")
    if "local" in issuers and oidc and env.get("WOODPECKER_JWT_ISSUER", "").strip() == oidc.issuer:
        raise ValueError("WOODPECKER_JWT_ISSUER must differ from WOODPECKER_OIDC_ISSUER: a locally signed token "
                         "must never pass for one of the provider's")
    return tuple(issuer for issuer in TOKEN_ISSUERS if issuer in issuers)


def mongo_url_variable(service: str) -> str:
    """The variable that points one service at a store of its own, ahead of MONGO_URL."""
    return f"{service.upper()}_MONGO_URL"


@dataclass(frozen=True)
class Settings:
    service: str
    port: int
    amqp_url: str
    mongo_url: str | None
    jwt_secret: str
    database: str
    reference_dir: str | None = None
    # Checked when set: a token must name this issuer and this audience.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Whose tokens the services accept (TOKEN_ISSUERS), and the provider behind `oidc`.
    token_issuers: tuple[str, ...] = ("local",)
    oidc: OidcSettings | None = None
    # The public development secret is accepted only where `make up` runs its embedded database.
    development_secret_allowed: bool = False
    # Consumer back-off tiers; after the last one a message is parked in the dead-letter queue.
    retry_delays_ms: tuple[int, ...] = (1_000, 10_000, 60_000)
    prefetch: int = 16
    # How often a worker's outbox relay sweeps for events left behind (a process that died before publishing
    # them, a broker outage); what a process stores it publishes at once, whatever this says.
    outbox_sweep_s: float = 5.0
    # How often periodic work (deadline checks) looks for something to do.
    periodic_interval_s: float = 30.0
    # Rate limits (None: off). A write counts against its caller's writes limit (the token's subject, or the
    # client address without a valid token), an upload (a multipart write) against its caller's uploads
    # limit instead, and both against the client address's limit (off behind a NAT'd office network).
    rate_limit_writes: Rate | None = Rate(60, "minute")
    rate_limit_uploads: Rate | None = Rate(30, "minute")
    rate_limit_per_ip: Rate | None = Rate(600, "minute")
    # Reads (GET) per caller, spreadsheet and PDF downloads per caller (costly to build: counted apart), and both
    # per client address: generous, so that only a loop or a crawler meets them.
    rate_limit_reads: Rate | None = Rate(600, "minute")
    rate_limit_exports: Rate | None = Rate(30, "minute")
    rate_limit_reads_per_ip: Rate | None = Rate(3000, "minute")
    # How many proxies of ours append to X-Forwarded-For; 0 trusts none: the client is the peer address.
    trusted_proxies: int = 0
    # The browser origins that may call the API (CORS); none: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    # New reports are refused (503, Retry-After) while the services' queues hold more ready messages than
    # this (shared/admission.py); 0: never. A few seconds of the slowest consumer's work on a small machine.
    admission_backlog: int = 200
    # The queues counted; none named: every service's own (not the departments').
    admission_queues: tuple[str, ...] = ()
    # How often each process writes its audit entries (0: each before its answer), and how long they are kept.
    audit_flush_s: float = 0.5
    audit_retention_days: int = 180
    # The largest JSON body a request may send (uploads have their own bound).
    json_body_limit: int = 256 * 1024
    # Photos one web process decodes at once: one may take up to about 250 MB (bench/photo_memory.py).
    photo_concurrency: int = 2
    # How long a built spreadsheet is kept for the same figures asked again (shared/spreadsheets.py).
    spreadsheet_cache_s: int = 3600

    @classmethod
    def from_env(cls, service: str, env: os._Environ | dict | None = None) -> Settings:
        env = os.environ if env is None else env
        oidc = _oidc(env)
        return cls(
            service=service,
            port=int(env.get(f"{service.upper()}_PORT", SERVICE_PORTS[service])),
            amqp_url=env.get("AMQP_URL", DEFAULT_AMQP_URL),
            mongo_url=env.get(mongo_url_variable(service)) or env.get("MONGO_URL") or None,
            jwt_secret=env.get("WOODPECKER_JWT_SECRET") or DEV_JWT_SECRET,
            database=env.get(f"{service.upper()}_DATABASE") or f"woodpecker_{service}",
            reference_dir=env.get("WOODPECKER_REFERENCE_DIR") or None,
            jwt_issuer=env.get("WOODPECKER_JWT_ISSUER") or None,
            jwt_audience=env.get("WOODPECKER_JWT_AUDIENCE") or None,
            token_issuers=_token_issuers(env, oidc),
            oidc=oidc,
            development_secret_allowed=env.get("WOODPECKER_ALLOW_DEV_SECRET") == "1",
            retry_delays_ms=_retry_delays(env.get("WOODPECKER_RETRY_DELAYS_MS", "1000,10000,60000")),
            prefetch=int(env.get("WOODPECKER_PREFETCH", "16")),
            outbox_sweep_s=float(env.get("WOODPECKER_OUTBOX_SWEEP_S", "5")),
            periodic_interval_s=float(env.get("WOODPECKER_PERIODIC_INTERVAL_S", "30")),
            rate_limit_writes=_rate(env, "WOODPECKER_RATE_LIMIT_WRITES", "60/minute"),
            rate_limit_uploads=_rate(env, "WOODPECKER_RATE_LIMIT_UPLOADS", "30/minute"),
            rate_limit_per_ip=_rate(env, "WOODPECKER_RATE_LIMIT_PER_IP", "600/minute"),
            rate_limit_reads=_rate(env, "WOODPECKER_RATE_LIMIT_READS", "600/minute"),
            rate_limit_exports=_rate(env, "WOODPECKER_RATE_LIMIT_EXPORTS", "30/minute"),
            rate_limit_reads_per_ip=_rate(env, "WOODPECKER_RATE_LIMIT_READS_PER_IP", "3000/minute"),
            trusted_proxies=int(env.get("WOODPECKER_TRUSTED_PROXIES", "0")),
            cors_origins=_origins(env.get("WOODPECKER_CORS_ORIGINS", "")),
            photo_concurrency=_at_least(env, "WOODPECKER_PHOTO_CONCURRENCY", 2, 1),
            audit_flush_s=_seconds(env, "WOODPECKER_AUDIT_FLUSH_S", 0.5),
            audit_retention_days=_at_least(env, "WOODPECKER_AUDIT_RETENTION_DAYS", 180, 1),
            json_body_limit=_at_least(env, "WOODPECKER_JSON_BODY_LIMIT", 256 * 1024, 1024),
            admission_backlog=_at_least(env, "WOODPECKER_ADMISSION_BACKLOG", 200, 0),
            admission_queues=_names(env.get("WOODPECKER_ADMISSION_QUEUES", "")),
            spreadsheet_cache_s=_at_least(env, "WOODPECKER_SPREADSHEET_CACHE_S", 3600, 1),
        )


MAKE_A_SECRET = "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"


class UnsafeConfiguration(SystemExit):
    """A setting a service refuses to start with; the message says what to do."""


def check_jwt_secret(settings: Settings) -> None:
    """Refuse a guessable token key: a short one always, the public development one outside development."""
    if settings.jwt_secret == DEV_JWT_SECRET:
        if not settings.development_secret_allowed:
            raise UnsafeConfiguration(
                "WOODPECKER_JWT_SECRET is not set, and the development secret is public. Set it to a random "
                f"string of at least {MIN_JWT_SECRET_BYTES} bytes, e.g. {MAKE_A_SECRET}. (`make up` allows the "
                "development secret only beside its own embedded database.)")
    elif len(settings.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise UnsafeConfiguration(
            f"WOODPECKER_JWT_SECRET is {len(settings.jwt_secret.encode())} bytes; it must be at least "
            f"{MIN_JWT_SECRET_BYTES} random bytes, e.g. {MAKE_A_SECRET}.")
