"""Configuration from the environment (CONTRACT: ports, AMQP_URL, MONGO_URL, WOODPECKER_JWT_SECRET).

Every service reaches its store through MONGO_URL: MongoDB in production, or the embedded database
that `make up` starts (and points MONGO_URL at) when the operator has not set one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEV_JWT_SECRET = "woodpecker-development-secret-never-use-in-production"
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
            retry_delays_ms=_retry_delays(env.get("WOODPECKER_RETRY_DELAYS_MS", "1000,10000,60000")),
            prefetch=int(env.get("WOODPECKER_PREFETCH", "16")),
            relay_interval_s=float(env.get("WOODPECKER_RELAY_INTERVAL_S", "0.2")),
            periodic_interval_s=float(env.get("WOODPECKER_PERIODIC_INTERVAL_S", "30")),
        )
