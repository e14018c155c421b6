"""One fixture per backend (broker, store), and the in-process service each service test talks to."""
from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo import monitoring

from shared.auth import issue_token
from shared.config import Rate, Settings
from shared.outbox import GRACE_VARIABLE
from shared.runtime import BackgroundWork
from shared.store import connect
from tests.identity_provider import IdentityProvider
from tests.support import TEST_RETRY_DELAYS_MS, amqp_backend, mongo_backend, wait_for

# The suite sets up its own backends and secrets: whatever the developer's shell exports for a running
# system (MONGO_URL and <SERVICE>_MONGO_URL, AMQP_URL, WOODPECKER_JWT_SECRET, ports, databases) must not leak
# into it.
# TEST_MONGO_URL and TEST_AMQP_URL are how a caller chooses the suite's backends.
for _name in list(os.environ):
    if _name in ("MONGO_URL", "AMQP_URL", "WEB_CONCURRENCY", "GUNICORN_THREADS") or _name.startswith("WOODPECKER_") \
            or _name.endswith(("_PORT", "_DATABASE")) or (_name.endswith("_MONGO_URL") and _name != "TEST_MONGO_URL"):
        del os.environ[_name]
# The services refuse the public development secret outside `make up`'s embedded database; the tests sign
# with a secret of their own, and every process they start inherits it.
TEST_JWT_SECRET = os.environ["WOODPECKER_JWT_SECRET"] = f"woodpecker-test-secret-{uuid.uuid4().hex}"
# Notify refuses to start without the key that seals its webhook secrets, as the services do without the JWT secret.
os.environ["NOTIFY_SECRET_KEY"] = f"notify-test-key-{uuid.uuid4().hex}"
# The tests write quickly, from one address and a few callers: the services they start get limits that never
# bind (the same counting, so its cost and its failures still show); tests of the limits set their own.
GENEROUS_RATE = Rate(100_000, "minute")
for _name in ("WOODPECKER_RATE_LIMIT_WRITES", "WOODPECKER_RATE_LIMIT_UPLOADS", "WOODPECKER_RATE_LIMIT_PER_IP",
              "WOODPECKER_RATE_LIMIT_READS", "WOODPECKER_RATE_LIMIT_EXPORTS", "WOODPECKER_RATE_LIMIT_READS_PER_IP"):
    os.environ[_name] = str(GENEROUS_RATE)
# The tests leave events behind on purpose (a process killed after its write, a broker cut off): a short grace
# lets the workers' sweeps take them up within seconds rather than the production half-minute.
os.environ[GRACE_VARIABLE] = "3"


# Test files that must share a worker under `make test` (pytest-xdist): both console modules build the console.
SAME_WORKER = {"tests/e2e/test_console_sign_in.py": "tests/e2e/test_console.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `make test` each test file is one unit of work, on one worker and in order, so a module's fixtures (a
    whole system for an e2e module) are made once; the files come in collection order, the e2e ones (the longest)
    first. (pytest-xdist's own loadgroup cannot group with pytest 9's node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByTestFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SAME_WORKER.get(path, path)

    return ByTestFile(config, log)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    with amqp_backend() as url:
        yield url


@pytest.fixture(scope="session")
def mongo_url() -> str:
    with mongo_backend() as url:
        yield url


def settings_for_test(service: str, amqp_url: str, mongo_url: str, **overrides) -> Settings:
    """Settings for one test service: its own database, fast back-off, rate limits and an admission that never
    bind (the session's queues fill with what no test consumes)."""
    base = Settings.from_env(service, env={})
    return replace(base, amqp_url=amqp_url, mongo_url=mongo_url, jwt_secret=TEST_JWT_SECRET,
                   database=f"test_{service}_{uuid.uuid4().hex[:10]}", retry_delays_ms=TEST_RETRY_DELAYS_MS,
                   outbox_sweep_s=0.5, **{"admission_backlog": 0, "rate_limit_writes": GENEROUS_RATE,
                                             "rate_limit_uploads": GENEROUS_RATE, "rate_limit_per_ip": GENEROUS_RATE,
                                             "rate_limit_reads": GENEROUS_RATE, "rate_limit_exports": GENEROUS_RATE,
                                             "rate_limit_reads_per_ip": GENEROUS_RATE,
                                             # each audit entry written before the answer: nothing is left in a
                                             # process's buffer when the session stops its database
                                             "audit_flush_s": 0.0, **overrides})


class Commands(monitoring.CommandListener):
    """The commands a client sends to one collection."""

    def __init__(self, collection: str):
        self.collection, self.seen = collection, []

    def started(self, event):
        if event.command.get(event.command_name) == self.collection:
            self.seen.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@dataclass
class RunningService:
    app: Flask
    client: FlaskClient
    background: BackgroundWork
    settings: Settings

    def stop(self) -> None:
        self.background.stop()


def run_service(settings: Settings) -> RunningService:
    """`settings.service`'s web app, with its worker process's background work in threads of this process."""
    app = importlib.import_module(f"services.{settings.service}.app").create_app(settings)
    worker = importlib.import_module(f"services.{settings.service}.worker")
    background = worker.background_work(settings, connect(settings.mongo_url, settings.database)).start()
    if background.consumer is not None:
        wait_for(background.consumer.ready.is_set, timeout=20, what=f"{settings.service} consumer ready")
    return RunningService(app, app.test_client(), background, settings)


def bearer(role: str, sub: str | None = None, dept: str | None = None, grid: str | None = None) -> dict:
    token = issue_token(TEST_JWT_SECRET, sub or f"{role}-{uuid.uuid4().hex[:8]}", role, dept=dept, grid=grid)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def identity_provider() -> Iterator[IdentityProvider]:
    """A real OpenID Connect provider on a loopback port, for one test (tests/identity_provider.py)."""
    with IdentityProvider() as provider:
        yield provider


def provider_env(provider: IdentityProvider, issuers: str = "local,oidc", **mapping: str) -> dict[str, str]:
    """The environment that points the services at `provider` (and accepts `issuers`' tokens)."""
    return {"WOODPECKER_TOKEN_ISSUERS": issuers, "WOODPECKER_OIDC_ISSUER": provider.issuer,
            "WOODPECKER_OIDC_AUDIENCE": provider.audience, **mapping}


def provider_settings(provider: IdentityProvider, issuers: str = "local,oidc", **mapping: str) -> dict:
    """`token_issuers` and `oidc` as a service reads them from provider_env, for settings_for_test(**...)."""
    settings = Settings.from_env("intake", provider_env(provider, issuers, **mapping))
    return {"token_issuers": settings.token_issuers, "oidc": settings.oidc}
