"""The system as `make up` starts it, for the end-to-end tests of a module (one system per module)."""
import os
import socket
import subprocess
import sys
import uuid

import pytest

SERVICES = ("intake", "routing", "hours", "notify")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def system(amqp_url, mongo_url, tmp_path_factory):
    ports = {service: free_port() for service in SERVICES}
    env = dict(os.environ)
    env.update({f"{s.upper()}_PORT": str(p) for s, p in ports.items()})
    env.update({f"{s.upper()}_DATABASE": f"e2e_{s}_{uuid.uuid4().hex[:8]}" for s in SERVICES})
    env.update(AMQP_URL=amqp_url, MONGO_URL=mongo_url, WOODPECKER_RUN_DIR=str(tmp_path_factory.mktemp("run")),
               WOODPECKER_OUTBOX_SWEEP_S="0.5")
    local = [sys.executable, "-m", "deploy.local"]
    started = subprocess.run([*local, "up"], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}, started.stdout
    finally:
        stopped = subprocess.run([*local, "down"], env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
