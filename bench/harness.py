"""What every bench needs to run the system as `make up` does: a store, a broker vhost, service processes.

A bench uses MONGO_URL when it is set (in databases of its own, dropped at the end), else an embedded
database of its own on a free port; and a RabbitMQ vhost of its own, deleted at the end, so it never
touches a running system's data or queues. Each service runs as in production: its gunicorn web
process (deploy/gunicorn.conf.py) and, when it has one, its worker process.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import pymongo
import requests

from deploy.broker import provision
from deploy.embedded_db import EmbeddedDatabase, free_port
from shared.config import DEV_JWT_SECRET, Settings, mongo_url_variable

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
READY_TIMEOUT_S = 60
BENCH_RATE = "1000000/minute"
STOP_TIMEOUT_S = 15  # gunicorn's graceful_timeout (10 s) plus some slack


class BenchStore(NamedTuple):
    url: str
    described: str
    server_pid: int | None  # the embedded database's, whose CPU time a bench may count; None for MongoDB


@contextlib.contextmanager
def bench_store() -> Iterator[BenchStore]:
    """The operator's MongoDB (MONGO_URL), or an embedded database of the bench's own."""
    if url := os.environ.get("MONGO_URL"):
        yield BenchStore(url, f"MongoDB at {url}", None)
        return
    with tempfile.TemporaryDirectory(prefix="woodpecker-bench-db-") as directory:
        database = EmbeddedDatabase(Path(directory) / "data", free_port(), Path(directory) / "db.log")
        pid = database.start()
        try:
            yield BenchStore(database.url, f"the embedded database ({database.url}, --sync-on-commit)", pid)
        finally:
            database.stop()


class BenchStores(NamedTuple):
    urls: dict[str, str]  # each service's MONGO_URL
    described: str
    server_pids: dict[str, int]  # each service's embedded database, whose CPU time a bench may count; none for MongoDB


@contextlib.contextmanager
def bench_stores(services: tuple[str, ...]) -> Iterator[BenchStores]:
    """As `make up` runs them: the operator's MongoDB (MONGO_URL) for every service, or an embedded database of
    each service's own."""
    if url := os.environ.get("MONGO_URL"):
        yield BenchStores(dict.fromkeys(services, url), f"MongoDB at {url}", {})
        return
    with tempfile.TemporaryDirectory(prefix="woodpecker-bench-db-") as directory, contextlib.ExitStack() as stack:
        urls, pids = {}, {}
        for service in services:
            database = EmbeddedDatabase(Path(directory) / service, free_port(), Path(directory) / f"{service}.log")
            pids[service] = database.start()
            stack.callback(database.stop)
            urls[service] = database.url
        described = ", ".join(f"{service} {url}" for service, url in urls.items())
        yield BenchStores(urls, f"an embedded database per service (--sync-on-commit): {described}", pids)


def bench_databases(services: tuple[str, ...]) -> dict[str, str]:
    """A fresh database name per service, as <SERVICE>_DATABASE variables."""
    tag = uuid.uuid4().hex[:8]
    return {f"{service.upper()}_DATABASE": f"bench_{service}_{tag}" for service in services}


def service_env(mongo_url: str | dict[str, str], amqp_url: str, databases: dict[str, str]) -> dict[str, str]:
    """The services' environment: this store (or each service's, by name) and vhost, and the development secret
    the bench signs with."""
    stores = ({"MONGO_URL": mongo_url} if isinstance(mongo_url, str)
              else {mongo_url_variable(service): url for service, url in mongo_url.items()})
    return {**os.environ, **stores, "AMQP_URL": amqp_url, **databases,
            "WOODPECKER_JWT_SECRET": DEV_JWT_SECRET, "WOODPECKER_ALLOW_DEV_SECRET": "1",
            # A bench is one address and a few callers at full speed: limits that never bind, still counted.
            **{f"WOODPECKER_RATE_LIMIT_{kind}": BENCH_RATE
               for kind in ("WRITES", "UPLOADS", "PER_IP", "READS", "EXPORTS", "READS_PER_IP")}}


def drop_databases(mongo_url: str | dict[str, str], names: dict[str, str]) -> None:
    """Drop the bench's databases (<SERVICE>_DATABASE: name), each from its service's store if given by service."""
    for variable, name in names.items():
        url = mongo_url if isinstance(mongo_url, str) else mongo_url[variable.removesuffix("_DATABASE").lower()]
        client = pymongo.MongoClient(url)
        try:
            client.drop_database(name)
        finally:
            client.close()


@contextlib.contextmanager
def bench_vhost() -> Iterator[tuple[str, str]]:
    """(vhost, AMQP URL): a vhost of the bench's own, with every service's queues declared, deleted afterwards."""
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not os.path.exists(ctl):
        raise SystemExit("This bench needs rabbitmqctl (run as root) to create a RabbitMQ vhost of its own.")
    vhost = f"woodpecker-bench-{uuid.uuid4().hex[:10]}"
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
    try:
        subprocess.run([ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True)
        url = f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
        # The bench connects as guest in its own vhost: queues declared, no per-service users needed.
        provision(url, Settings.from_env("intake", {}).retry_delays_ms, None)
        yield vhost, url
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, capture_output=True)


def is_ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Process:
    """A process in a session of its own (so Ctrl-C reaches only the bench, which stops it), logging to a file."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.command = command
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Kill the whole session so no orphaned worker keeps the port.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


class Server(Process):
    """A gunicorn web process for `app_spec` on a free port (run through `prefix`, e.g. bench.counted)."""

    def __init__(self, app_spec: str, env: dict[str, str], prefix: list[str] | None = None):
        self.port = free_port()
        gunicorn = [*prefix, "gunicorn"] if prefix else [str(GUNICORN)]
        super().__init__([*gunicorn, "-c", "deploy/gunicorn.conf.py", "-b", f"127.0.0.1:{self.port}", app_spec],
                         env)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not is_ready(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{shlex.join(self.command)} did not become ready; log:\n{self.log_tail()}")
            time.sleep(0.3)


class Service:
    """A service as `make up` runs it: its web process and its worker process; with `counts`, a folder, each
    counts its store commands there (bench/counted.py) as `<name>-web` and `<name>-worker`."""

    def __init__(self, name: str, env: dict[str, str], counts: Path | None = None):
        self.name = name

        def prefix(role: str) -> list[str]:
            return [sys.executable, "-m", "bench.counted", str(counts), f"{name}-{role}"] if counts else []

        self.web = Server(f"services.{name}.app:create_app()", env, prefix("web"))
        self.worker = Process([*(prefix("worker") or [sys.executable]), "-m", f"services.{name}.worker"], env)

    @property
    def port(self) -> int:
        return self.web.port

    def wait_ready(self) -> None:
        self.web.wait_ready()
        if self.worker.process.poll() is not None:
            raise SystemExit(f"{self.name}'s worker exited; log:\n{self.worker.log_tail()}")

    def describe(self) -> str:
        return f"{shlex.join(self.web.command)}  +  {shlex.join(self.worker.command)}"

    def stop(self) -> None:
        self.web.stop()
        self.worker.stop()


@contextlib.contextmanager
def running(name: str, env: dict[str, str], counts: Path | None = None) -> Iterator[Service]:
    service = Service(name, env, counts)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()

