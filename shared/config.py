"""Configuration from the environment (CONTRACT: ports, AMQP_URL, MONGO_URL, WOODPECKER_JWT_SECRET).

Every service reaches its store through MONGO_URL: MongoDB in production, or the embedded database
that `make up` starts (and points MONGO_URL at) when the operator has not set one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEV_JWT_SECRET = "woodpecker-development-secret-never-use-in-production"
# HS256 is only as strong as its key: RFC 7518 asks for at least as many bits as the hash has.
MIN_JWT_SECRET_BYTES = 32
SERVICE_PORTS = {"intake": 8001, "routing": 8002, "hours": 8003, "notify": 8004}


def _retry_delays(raw: str) -> tuple[int, ...]:
    delays = tuple(int(part) for part in raw.split(",") if part.strip())
    if not delays or any(d <= 0 for d in delays):
        raise ValueError(f"WOODPECKER_RETRY_DELAYS_MS must list positive milliseconds, got {raw!r}")
    return delays


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
    relay_interval_s: float = 0.2
    # How often periodic work (deadline checks) looks for something to do.
    periodic_interval_s: float = 30.0

    @classmethod
    def from_env(cls, service: str, env: os._Environ | dict | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            service=service,
            port=int(env.get(f"{service.upper()}_PORT", SERVICE_PORTS[service])),
            amqp_url=env.get("AMQP_URL", DEFAULT_AMQP_URL),
            mongo_url=env.get("MONGO_URL") or None,
            jwt_secret=env.get("WOODPECKER_JWT_SECRET") or DEV_JWT_SECRET,
            database=env.get(f"{service.upper()}_DATABASE") or f"woodpecker_{service}",
            reference_dir=env.get("WOODPECKER_REFERENCE_DIR") or None,
            jwt_issuer=env.get("WOODPECKER_JWT_ISSUER") or None,
            jwt_audience=env.get("WOODPECKER_JWT_AUDIENCE") or None,
            development_secret_allowed=env.get("WOODPECKER_ALLOW_DEV_SECRET") == "1",
            retry_delays_ms=_retry_delays(env.get("WOODPECKER_RETRY_DELAYS_MS", "1000,10000,60000")),
            prefetch=int(env.get("WOODPECKER_PREFETCH", "16")),
            relay_interval_s=float(env.get("WOODPECKER_RELAY_INTERVAL_S", "0.2")),
            periodic_interval_s=float(env.get("WOODPECKER_PERIODIC_INTERVAL_S", "30")),
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
