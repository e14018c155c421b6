"""Test support shared by every test module: backends, a waiter, an event tap, a broker outage.

It lives with the tests, not in the installed package: it imports deploy/ and testcontainers, which production
images do not carry.

Backends resolve in one order (the handbook's): TEST_AMQP_URL / TEST_MONGO_URL from the
environment, then testcontainers when a Docker engine answers, then the local broker (in a vhost
of the run's own, so tests never touch a running system's queues) and an embedded database that
the test session starts on a free port with its data in a temporary directory.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from shared.config import DEFAULT_AMQP_URL
from shared.events import EXCHANGE

log = logging.getLogger(__name__)
# Short back-off tiers, so that a test sees a retried message within a second.
TEST_RETRY_DELAYS_MS = (100, 300)


def wait_for(probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# The servers tests start listen on ports below the kernel's ephemeral range: a port from that range, free when it is
# chosen, can be taken by any outgoing connection before the server binds it (CI saw an embedded database lose its
# port that way). Each xdist worker hands out ports from a block of its own and never the same port twice.
_PORT_BLOCK = 1500
_FIRST_PORT = 15000
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as probe:  # no SO_REUSEADDR: a port a closed server left in TIME_WAIT counts as taken
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int = 1) -> list[int]:
    """`count` ports in a row that nothing listens on and this process has not handed out before."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _FIRST_PORT + _PORT_BLOCK * (int(worker) if worker.isdigit() else 0)
    # Up to the ephemeral range where it starts inside the block; where it starts below (a machine that lets the
    # kernel use nearly every port), the whole block: no port is safe there, and the bind check still holds.
    floor = _ephemeral_floor()
    last = floor if first + count < floor < first + _PORT_BLOCK else first + _PORT_BLOCK
    with _ports_lock:
        # From a random start, so that two test sessions on one machine seldom try the same ports.
        span = max(last - first - count, 1)
        start = first + int.from_bytes(os.urandom(2), "big") % span
        for offset in range(span):
            row = [first + (start - first + offset) % span + i for i in range(count)]
            if not _handed_out & set(row) and all(_bindable(port) for port in row):
                _handed_out.update(row)
                return row
    raise RuntimeError(f"no {count} free ports in a row between {first} and {last}")


def free_port() -> int:
    return free_ports(1)[0]


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # no engine, no socket, no permission: all mean "not here"
        return False


@contextlib.contextmanager
def amqp_backend() -> Iterator[str]:
    if url := os.environ.get("TEST_AMQP_URL"):
        yield url
        return
    if docker_engine_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as broker:
            host, port = broker.get_container_host_ip(), broker.get_exposed_port(broker.port)
            yield f"amqp://guest:guest@{host}:{port}/"
        return
    with _local_vhost() as url:
        yield url


@contextlib.contextmanager
def _local_vhost() -> Iterator[str]:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not os.path.exists(ctl):
        log.warning("rabbitmqctl not found: tests share the local broker's default vhost")
        yield DEFAULT_AMQP_URL
        return
    vhost = f"woodpecker-test-{uuid.uuid4().hex[:10]}"
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run([ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    url = f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
    # As `make up` provisions a broker: the topology first, and what nobody is bound to goes to the
    # unrouted queue. (deploy/ is not part of the installed package; tests run from the checkout.)
    from deploy.broker import Rabbitmqctl, declare_topology, definitions

    Rabbitmqctl(ctl).apply(definitions(vhost, {}, alternate_exchange=True))
    declare_topology(url, TEST_RETRY_DELAYS_MS)
    try:
        yield url
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, capture_output=True)
        # The users a run provisioned for its vhost (deploy/broker.py names them <user>@<vhost>).
        users = subprocess.run([ctl, "-q", "list_users"], capture_output=True, text=True).stdout.splitlines()
        for user in (line.split()[0] for line in users if line.strip()):
            if user.endswith(f"@{vhost}"):
                subprocess.run([ctl, "-q", "delete_user", user], check=False, capture_output=True)



@contextlib.contextmanager
def mongo_backend() -> Iterator[str]:
    """A MongoDB URL: the given one, a container's, or an embedded database's for this session."""
    if url := os.environ.get("TEST_MONGO_URL"):
        yield url
        return
    if docker_engine_answers():
        with _mongo_replica_set_container() as url:
            yield url
        return
    # deploy/ is not part of the installed package; tests and benches run from the checkout.
    from deploy.embedded_db import EmbeddedDatabase

    with tempfile.TemporaryDirectory(prefix="woodpecker-test-db-") as directory:
        database = EmbeddedDatabase(Path(directory) / "data", free_port(), Path(directory) / "db.log")
        database.start()
        try:
            yield database.url
        finally:
            database.stop()


@contextlib.contextmanager
def _mongo_replica_set_container() -> Iterator[str]:
    """MongoDB 7 as a one-node replica set, as compose runs it: routing's transactions need one."""
    import pymongo
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = DockerContainer("mongo:7").with_command("--replSet rs0 --bind_ip_all").with_exposed_ports(27017)
    with container:
        wait_for_logs(container, "Waiting for connections")
        container.exec(["mongosh", "--quiet", "--eval",
                        "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'localhost:27017'}]})"])
        url = (f"mongodb://{container.get_container_host_ip()}:{container.get_exposed_port(27017)}/"
               "?directConnection=true")
        client = pymongo.MongoClient(url)
        try:
            wait_for(lambda: client.admin.command("hello").get("isWritablePrimary"), timeout=60,
                     what="the MongoDB container's replica set to elect itself")
        finally:
            client.close()
        yield url


class EventTap:
    """A plain pika subscriber, as a department's system would be: its own queue bound to a pattern."""

    def __init__(self, amqp_url: str, *patterns: str):
        import pika

        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EXCHANGE, "topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        for pattern in patterns:
            self.channel.queue_bind(self.queue, EXCHANGE, pattern)
        self.received: list[tuple[Any, dict]] = []

    def drain(self) -> list[tuple[Any, dict]]:
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.received
            self.received.append((properties, json.loads(body)))

    def events(self, type: str | None = None, where: Callable[[dict], bool] = lambda e: True) -> list[dict]:
        return [e for _, e in self.drain() if (type is None or e["type"] == type) and where(e)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def publish_raw(amqp_url: str, routing_key: str, body: bytes | dict, message_id: str | None = None) -> None:
    """Publish as another service would (for driving a consumer in tests)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, "topic", durable=True)
        channel.confirm_delivery()
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        channel.basic_publish(EXCHANGE, routing_key, payload, pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=message_id), mandatory=True)
    finally:
        connection.close()


def queue_messages(amqp_url: str, queue: str) -> list[tuple[Any, bytes]]:
    """Take every message now in `queue` (e.g. a dead-letter queue)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    taken = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))
    finally:
        connection.close()


def messages_ready(amqp_url: str, queue: str) -> int:
    """How many messages `queue` holds that no consumer has been given yet, as the broker counts them (a passive
    declare): the probe a test waits on for a queue to drain, rather than sleeping."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


class TcpProxy:
    """A TCP relay in front of the broker that a test can cut and restore: a broker outage as the
    service sees it, without stopping the broker other tests (or a running system) use."""

    def __init__(self, target_url: str):
        parsed = urlparse(target_url)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 5672)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        netloc = f"{parsed.username or 'guest'}:{parsed.password or 'guest'}@127.0.0.1:{self.port}"
        self.url = parsed._replace(netloc=netloc).geturl()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(16)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        sockets = [a, b]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (b if source is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """The broker 'goes away': live connections drop and new ones are refused."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone leaves it listening.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for client, upstream in self._pairs:
                for s in (client, upstream):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
            self._pairs.clear()

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    def close(self) -> None:
        self.cut()


class ConsumerDrain:
    """Proves that the event consumer running in this process has finished with everything published to one of its
    queues before a point: what a test waits on before it asserts that nothing more came of what it sent.

    Start one before publishing what the test is about; `wait` publishes a marker (the test's own event, on the same
    queue) and waits until the marker's effect shows. It is sound because:
    - in a test session one consumer takes the queue, and a quorum queue hands it messages in the order they were
      enqueued, whatever its prefetch (`publish_raw` and the services' publishers return once the broker has
      confirmed them);
    - EventConsumer handles what it was handed on one thread, in that order, batch after batch (a batch that fails
      is handled one by one, in order). A marker whose effect its handler writes after everything it writes for the
      events handled with it therefore shows only once every message ahead of it has been handled or parked;
    - except a message that failed and was retried: its copy waits out a back-off in a delay queue and comes back
      behind the marker. The consumer counts each retry (woodpecker_events_consumed_total, outcome "retried"). If
      the count moved, `wait` lets the longest back-off pass with no further retry, so that every copy is back in
      the queue, and sends another marker behind them.
    A message the broker hands back without a count (a lost connection, a failed move) is out of scope: the broker
    stays up throughout the tests that use this.
    """

    def __init__(self, queue: str, retry_delays_ms: tuple[int, ...] = TEST_RETRY_DELAYS_MS):
        self.queue = queue
        # A copy's delay queue hands it back at the end of its back-off; a moment more for that hand-over.
        self.back_off_s = max(retry_delays_ms) / 1000 + 0.2
        self._retried = self.retried()

    def retried(self) -> float:
        from prometheus_client import REGISTRY

        return REGISTRY.get_sample_value("woodpecker_events_consumed_total",
                                         {"queue": self.queue, "outcome": "retried"}) or 0.0

    def wait(self, send_marker: Callable[[], Callable[[], Any]], timeout: float = 20.0) -> None:
        """`send_marker` publishes a marker and returns the probe that is truthy once its effect shows."""
        deadline = time.monotonic() + timeout
        while True:
            seen = send_marker()
            wait_for(seen, timeout=max(0.0, deadline - time.monotonic()), what=f"a marker through {self.queue}")
            if self.retried() == self._retried:
                return
            self._retried = self._after_a_quiet_back_off(deadline)

    def _after_a_quiet_back_off(self, deadline: float) -> float:
        """The retry count once a whole back-off has passed without a retry (the documented delay, not a guess)."""
        while True:
            before = self.retried()
            time.sleep(self.back_off_s)
            if self.retried() == before:
                return before
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.queue} kept retrying messages: its consumer never caught up")


# shared.auth ends the description of every guarded operation with this line.
_ROLES_LINE = re.compile(r"^Roles: (.*)\.$", re.MULTILINE)


def operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    """Each operation of an OpenAPI document: (METHOD, path, operation)."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                yield method.upper(), path, operation


def roles_allowed(operation: dict) -> tuple[str, ...] | None:
    """The roles an operation's document names (shared.auth writes them); None when any caller, or any signed-in
    one, may call it."""
    found = _ROLES_LINE.search(operation.get("description", ""))
    if found is None or found.group(1) == "any authenticated role":
        return None
    return tuple(re.findall(r"`([a-z_]+)`", found.group(1)))
