"""The broker's topology and identities: `python -m deploy.broker provision | add-department <code>`.

Topology first. Each consumer declares its queues when it connects, but a service may publish before
another has ever connected (they start in any order), so every service's queues are declared before any
service starts, from the services' subscription tables. An event that no queue is bound to at all goes
to the alternate exchange `woodpecker.unrouted` and waits in the durable queue of that name, where
`python -m shared.deadletters list|replay woodpecker.unrouted` finds it.

Identities. Each service connects as a user of its own that may publish only the routing keys it owns
(shared.events.PUBLISHERS: intake `report.*`, routing `case.*`, hours `hours.*` and `volunteer.*`) and
use only its own queues and exchanges (`<service>.*`). A department's user may only bind a queue of
its own (`dept.<code>.*`) to `case.*.<code>` and read it. RabbitMQ enforces both (topic permissions).

Administering needs the broker's administrator: `rabbitmqctl` on the broker's machine, or the HTTP
management API when RABBITMQ_ADMIN_URL is set (e.g. http://admin:secret@rabbitmq:15672).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Protocol
from urllib.parse import quote, unquote, urlparse

import kombu

from shared.bus import declare_exchange, declare_queue, service_queues
from shared.config import SERVICE_PORTS, Settings
from shared.events import EXCHANGE, PUBLISHERS, UNROUTED

ALTERNATE_EXCHANGE_POLICY = "woodpecker-unrouted"


def vhost_of(amqp_url: str) -> str:
    path = urlparse(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def with_user(amqp_url: str, user: str, password: str) -> str:
    """`amqp_url` as `user`, its vhost written as the AMQP URI spec has it: one path segment, percent-encoded
    (`/%2F` for `/`). kombu also reads `//` as `/`, but pika reads it as the empty vhost and is refused."""
    parsed = urlparse(amqp_url)
    host = f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname
    return parsed._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}",
                           path="/" + quote(vhost_of(amqp_url), safe="")).geturl()


def _in(vhost: str, name: str) -> str:
    # Users are the broker's, not a vhost's: one vhost's users must not replace another's (a test run's
    # vhost beside `make up`'s default one).
    return name if vhost == "/" else f"{name}@{vhost}"


def service_user(service: str, vhost: str = "/") -> str:
    return _in(vhost, f"woodpecker-{service}")


def department_user(code: str, vhost: str = "/") -> str:
    return _in(vhost, f"dept-{code}")


# --- who may do what ------------------------------------------------------------------------------

def _any_of(*names: str) -> str:
    return "^(" + "|".join(names) + ")$"


def service_permissions(service: str) -> dict[str, str]:
    """configure/write/read on resource names, and the routing keys it may publish to the event exchange."""
    own = re.escape(service) + r"\..*"
    keys = [re.escape(prefix) + r"\..+" for prefix, owner in PUBLISHERS.items() if owner == service]
    return {
        "configure": _any_of(re.escape(EXCHANGE), own),
        "write": _any_of(re.escape(EXCHANGE), own),
        "read": _any_of(re.escape(EXCHANGE), own),
        # A service that publishes nothing gets a pattern that matches no routing key.
        "topic_write": _any_of(*keys) if keys else "^$",
        "topic_read": ".*",
    }


def department_permissions(code: str) -> dict[str, str]:
    own = r"dept\." + re.escape(code) + r"\..*"
    return {
        "configure": _any_of(own),
        "write": _any_of(own),  # binding writes to the queue
        "read": _any_of(re.escape(EXCHANGE), own),  # binding also reads the exchange
        "topic_write": "^$",
        # Checked on queue.bind: only `case.<anything>.<code>` (the binding `case.*.<code>` included).
        "topic_read": r"^case\.[^.]+\." + re.escape(code) + "$",
    }


# --- the administrator -----------------------------------------------------------------------------

def password_hash(password: str) -> str:
    """RabbitMQ's stored form (rabbit_password_hashing_sha256): base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(vhost: str, users: dict[str, tuple[str, dict[str, str]]], alternate_exchange: bool) -> dict:
    """Users (name → password, rights), their permissions and the alternate-exchange policy, as a RabbitMQ
    definitions document: what `rabbitmqctl import_definitions` and the management API take in one go."""
    document: dict = {"users": [], "permissions": [], "topic_permissions": [], "policies": []}
    for user, (password, rights) in users.items():
        document["users"].append({"name": user, "password_hash": password_hash(password),
                                  "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
        document["permissions"].append({"user": user, "vhost": vhost, **{k: rights[k] for k in
                                                                          ("configure", "write", "read")}})
        document["topic_permissions"].append({"user": user, "vhost": vhost, "exchange": EXCHANGE,
                                              "write": rights["topic_write"], "read": rights["topic_read"]})
    if alternate_exchange:
        document["policies"].append({"vhost": vhost, "name": ALTERNATE_EXCHANGE_POLICY,
                                     "pattern": _any_of(re.escape(EXCHANGE)), "apply-to": "exchanges",
                                     "priority": 0, "definition": {"alternate-exchange": UNROUTED}})
    return document


class BrokerAdmin(Protocol):
    def apply(self, document: dict) -> None: ...


class AdminUnavailable(RuntimeError):
    pass


class Rabbitmqctl:
    """The broker's own command line, on the broker's machine (as root, or its own user)."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def found(cls) -> Rabbitmqctl | None:
        path = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        return cls(path) if os.path.exists(path) and os.access(path, os.X_OK) and os.geteuid() == 0 else None

    def apply(self, document: dict) -> None:
        # One call (each costs about half a second), on standard input: a file would be read by the broker's
        # own user, which may not read ours.
        done = subprocess.run([self.path, "-q", "import_definitions", "--format", "json"],
                              input=json.dumps(document), capture_output=True, text=True)
        if done.returncode != 0:
            raise AdminUnavailable(f"rabbitmqctl import_definitions failed: {done.stderr.strip() or done.stdout}")


class ManagementApi:
    """The HTTP management API (RABBITMQ_ADMIN_URL), for a broker on another machine or in a container."""

    def __init__(self, admin_url: str):
        parsed = urlparse(admin_url)
        self.url = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 15672}/api/definitions"
        credentials = f"{unquote(parsed.username or 'guest')}:{unquote(parsed.password or 'guest')}"
        self.authorization = "Basic " + base64.b64encode(credentials.encode()).decode()

    def apply(self, document: dict) -> None:
        request = urllib.request.Request(self.url, method="POST", data=json.dumps(document).encode(),
                                         headers={"Authorization": self.authorization,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise AdminUnavailable(f"POST {self.url}: {exc.code} {detail}") from exc
        except urllib.error.URLError as exc:
            raise AdminUnavailable(f"the management API at {self.url} does not answer: {exc.reason}") from exc


def administrator(env: dict[str, str] | os._Environ = os.environ) -> BrokerAdmin | None:
    if admin_url := env.get("RABBITMQ_ADMIN_URL"):
        return ManagementApi(admin_url)
    return Rabbitmqctl.found()


# --- provisioning ----------------------------------------------------------------------------------

def declare_topology(amqp_url: str, retry_delays_ms: Iterable[int]) -> list[str]:
    """The event exchange, the unrouted queue and every service's queues (idempotent)."""
    queues = service_queues()
    with kombu.Connection(amqp_url, connect_timeout=5) as connection:
        channel = connection.channel()
        declare_exchange(channel)
        channel.exchange_declare(UNROUTED, "fanout", durable=True, auto_delete=False)
        channel.queue_declare(UNROUTED, durable=True, auto_delete=False)
        channel.queue_bind(UNROUTED, UNROUTED, "")
        for queue, keys in queues.items():
            declare_queue(channel, queue, keys, tuple(retry_delays_ms))
    return list(queues)


def provision(amqp_url: str, retry_delays_ms: Iterable[int], admin: BrokerAdmin | None,
              passwords: dict[str, str] | None = None) -> dict[str, str]:
    """Declare the topology; with an administrator, also route unroutable events to `woodpecker.unrouted`
    and give each service a user of its own. Returns each service's AMQP URL (its own user's, or
    `amqp_url`'s when there is no administrator)."""
    declare_topology(amqp_url, retry_delays_ms)
    if admin is None:
        return {service: amqp_url for service in SERVICE_PORTS}
    vhost = vhost_of(amqp_url)
    passwords = {service: (passwords or {}).get(service) or secrets.token_urlsafe(24) for service in SERVICE_PORTS}
    admin.apply(definitions(vhost, {service_user(service, vhost): (password, service_permissions(service))
                                    for service, password in passwords.items()}, alternate_exchange=True))
    return {service: with_user(amqp_url, service_user(service, vhost), password)
            for service, password in passwords.items()}


def add_department(amqp_url: str, code: str, admin: BrokerAdmin) -> str:
    """A user for department `code`; returns the AMQP URL (with its new password) to give the department."""
    password, vhost = secrets.token_urlsafe(24), vhost_of(amqp_url)
    user = department_user(code, vhost)
    admin.apply(definitions(vhost, {user: (password, department_permissions(code))}, alternate_exchange=False))
    return with_user(amqp_url, user, password)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("provision", help="declare the topology (and, as administrator, the service users)")
    department = commands.add_parser("add-department", help="create a department's user and print its URL")
    department.add_argument("code", help="the department code, e.g. traffic-police")
    args = parser.parse_args()
    settings = Settings.from_env("intake", os.environ)
    admin = administrator()
    if args.command == "provision":
        # The passwords the services were configured with (compose), else new ones.
        passwords = {s: os.environ.get(f"{s.upper()}_BROKER_PASSWORD") for s in SERVICE_PORTS}
        urls = provision(settings.amqp_url, settings.retry_delays_ms, admin,
                         {s: p for s, p in passwords.items() if p})
        print("declared: " + ", ".join(service_queues()))
        users = ", ".join(service_user(s, vhost_of(settings.amqp_url)) for s in urls)
        print("service users: " + (users if admin else "none (no administrator)"))
        return
    if admin is None:
        sys.exit("Creating a user needs the broker's administrator: run as root beside RabbitMQ (rabbitmqctl), "
                 "or set RABBITMQ_ADMIN_URL=http://<admin>:<password>@<host>:15672.")
    url = add_department(settings.amqp_url, args.code, admin)
    print(f"Department {args.code}: give its system this broker URL (shown once; run again to replace it):\n"
          f"  {url}\nIt may bind only a queue named dept.{args.code}.<anything> to case.*.{args.code}.")


if __name__ == "__main__":
    main()
