"""The system as `make up` starts it, for the end-to-end tests of a module (one system per module)."""
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVICES = ("intake", "routing", "hours", "notify")
LOCAL = [sys.executable, "-m", "deploy.local"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local(command: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """`make <command>`: what the Makefile runs, with the environment `make` would pass on."""
    return subprocess.run([*LOCAL, command], env=env, capture_output=True, text=True, timeout=timeout)


def system_env(amqp_url: str, mongo_url: str, run_dir: Path, tag: str) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment `make up` gets, each service's URL): free ports, databases named after `tag`."""
    ports = {service: free_port() for service in SERVICES}
    env = dict(os.environ)
    env.update({f"{s.upper()}_PORT": str(p) for s, p in ports.items()})
    env.update({f"{s.upper()}_DATABASE": f"{tag}_{s}_{uuid.uuid4().hex[:8]}" for s in SERVICES})
    # The modules' systems share the session's vhost: what one left in the queues (a worker killed on purpose)
    # must not have the next one's intake refuse reports (the admission's own test: tests/service).
    env.update(AMQP_URL=amqp_url, MONGO_URL=mongo_url, WOODPECKER_RUN_DIR=str(run_dir),
               WOODPECKER_OUTBOX_SWEEP_S="0.5", WOODPECKER_ADMISSION_BACKLOG="0")
    # Only the console's own tests (test_console.py) serve the console; on a port of its own if they do.
    env.update(WOODPECKER_CONSOLE="off", CONSOLE_PORT=str(free_port()))
    return env, {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}


@contextlib.contextmanager
def running_system(env: dict[str, str]) -> Iterator[str]:
    """`make up`, then `make down` whatever happens; yields what `up` printed."""
    started = local("up", env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield started.stdout
    finally:
        stopped = local("down", env, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def system(amqp_url, mongo_url, tmp_path_factory):
    env, urls = system_env(amqp_url, mongo_url, tmp_path_factory.mktemp("run"), "e2e")
    with running_system(env) as printed:
        yield urls, printed
