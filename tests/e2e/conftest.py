"""The system as `make up` starts it, for the end-to-end tests of a module (one system per module)."""
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

SERVICES = ("intake", "routing", "hours", "notify")
LOCAL = [sys.executable, "-m", "deploy.local"]


def local(command: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`make <command>`: what the Makefile runs, with the environment `make` would pass on. The timeout is generous
    (`up` builds the console, on a machine the other test workers keep busy); past it, `up` is killed with what it
    started in its own process group (the console's build), and the test fails saying so."""
    with subprocess.Popen([*LOCAL, command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(f"`make {command}` did not finish within {timeout:.0f} s:\n{stdout}{stderr}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def system_env(amqp_url: str, mongo_url: str, run_dir: Path, tag: str,
               web_processes: int = 1) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment `make up` gets, each service's URL): free ports, databases named after `tag`.

    One web process a service unless a test asks for more: a dozen systems start in a run of `make test`, and each
    web process is an interpreter that loads its service; the crash tests keep production's two, to kill one
    beside another."""
    ports = {service: free_port() for service in SERVICES}
    env = dict(os.environ, WEB_CONCURRENCY=str(web_processes))
    env.update({f"{s.upper()}_PORT": str(p) for s, p in ports.items()})
    env.update({f"{s.upper()}_DATABASE": f"{tag}_{s}_{uuid.uuid4().hex[:8]}" for s in SERVICES})
    # The modules' systems share the session's vhost: what one left in the queues (a worker killed on purpose)
    # must not have the next one's intake refuse reports (the admission's own test: tests/service).
    env.update(AMQP_URL=amqp_url, MONGO_URL=mongo_url, WOODPECKER_RUN_DIR=str(run_dir),
               WOODPECKER_OUTBOX_SWEEP_S="0.5", WOODPECKER_ADMISSION_BACKLOG="0")
    # Only the console's own tests (test_console.py) serve the console; on a port of its own if they do.
    env.update(WOODPECKER_CONSOLE="off", CONSOLE_PORT=str(free_port()))
    return env, {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test's report shows what each of its tabs showed: a timeout alone does not say why."""
    report = yield
    opened = getattr(item, "funcargs", {}).get("open_tab")
    if report.failed and call.when == "call" and opened is not None:
        for page in getattr(opened, "pages", []):
            try:
                shown = page.inner_text("body", timeout=2000)[:2000]
            except Exception as error:  # a closed or crashed tab: say so, and keep the test's own failure
                shown = f"(unreadable: {error})"
            report.sections.append((f"tab at {page.url}", shown))
    return report


@contextlib.contextmanager
def running_system(env: dict[str, str]) -> Iterator[str]:
    """`make up`, then `make down` whatever happens; yields what `up` printed."""
    try:
        # Inside the try: an `up` that failed half-way leaves services running, and on the session's vhost they
        # would take the next tests' messages; `down` stops whatever has a pid file.
        started = local("up", env)
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
