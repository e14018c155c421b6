"""Configuration from the environment (CONTRACT: ports, AMQP_URL, MONGO_URL, WOODPECKER_JWT_SECRET).

Every service reaches its store through MONGO_URL, or through <SERVICE>_MONGO_URL where that is set (a
service whose database lives elsewhere): MongoDB in production, or the embedded databases that `make up`
starts, one per service, when the operator has set neither.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEV_JWT_SECRET = "woodpecker-development-secret-never-use-in-production"
# HS256 is only as strong as its key: RFC 7518 asks for at least as many bits as the hash has.
MIN_JWT_SECRET_BYTES = 32
SERVICE_PORTS = {"intake": 8001, "routing": 8002, "hours": 8003, "notify": 8004}
PERIODS_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
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
