"""The broker's topology, declared before any service starts: `python -m deploy.broker`.

Each consumer declares its queues when it connects, but a service may publish before another has
ever connected (they start in any order), and an event nobody is bound to yet cannot be delivered.
Declaring every service's queues first (idempotent, the same declarations the consumers make) means
the first report of a fresh system already has a queue to go to.
"""
from __future__ import annotations

import importlib
import os

import kombu

from shared.bus import declare_queue
from shared.config import SERVICE_PORTS, Settings


def service_queues() -> dict[str, tuple[str, ...]]:
    """Every service's consumer queues and their routing keys, from the services' subscription tables."""
    queues: dict[str, tuple[str, ...]] = {}
    for service in SERVICE_PORTS:
        try:
            handlers = importlib.import_module(f"services.{service}.handlers")
        except ModuleNotFoundError:
            continue  # a service that consumes nothing yet
        queues.update({queue: keys for queue, keys, _ in handlers.SUBSCRIPTIONS})
    return queues


def provision(amqp_url: str, retry_delays_ms: tuple[int, ...]) -> list[str]:
    with kombu.Connection(amqp_url, connect_timeout=5) as connection:
        channel = connection.channel()
        for queue, keys in service_queues().items():
            declare_queue(channel, queue, keys, retry_delays_ms)
    return list(service_queues())


if __name__ == "__main__":
    settings = Settings.from_env("intake", os.environ)
    print("declared: " + ", ".join(provision(settings.amqp_url, settings.retry_delays_ms)))
