"""Routing alone over a backlog: how many cases a second one routing worker opens and dispatches.

A backlog of `report.submitted` events waits in routing's queue while routing is stopped; routing starts
(its gunicorn web process and its worker process, as `make up` runs them, bench/harness.py) and works
through it. Cases per second are counted where a department would count them: `case.dispatched.*`
arriving at a plain pika subscriber (consumer → store → outbox relay → broker → subscriber). It runs on
MONGO_URL or an embedded database of the bench's own, in a RabbitMQ vhost of its own deleted at the end.

The report's whole way, intake included, at steady rates: `python -m bench.pipeline`. This prints figures
and asserts nothing.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field

import pika

from bench.harness import (
    READY_TIMEOUT_S,
    ROOT,
    bench_databases,
    bench_store,
    bench_vhost,
    drop_databases,
    running,
    service_env,
)
from bench.intake_throughput import DESCRIPTION
from bench.traffic import DispatchTap, queue_state
from shared.events import EXCHANGE, Event

ROUTING_QUEUE = "routing.report-submitted"  # services/routing/handlers.py
DISTRICT = "lanshan"
BACKLOG_GRID = "lanshan-01"
BACKLOG_ORIGIN = (35.045, 118.305)
# 0.003° of latitude is 333 m, of longitude 273 m at 35°N: more than the 250 m in which a report joins an
# open case of its kind instead of opening one.
BACKLOG_STEP = 0.003
STALL_TIMEOUT_S = 30  # no new case.dispatched for this long ends the run


def stand_in_for_intake(amqp_url: str) -> None:
    """A queue bound as intake's (case.*.*), keeping only the newest message.

    Routing publishes case.opened.<dept> beside case.dispatched.<dept>; in the whole system intake's queue
    makes it routable. With no queue for it, routing's relay would keep it in the outbox as unroutable and
    retry it with back-off, which is not what this bench measures.
    """
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, "topic", durable=True)
        channel.queue_declare("bench.intake-stand-in", arguments={"x-max-length": 1})
        channel.queue_bind("bench.intake-stand-in", EXCHANGE, "case.*.*")
    finally:
        connection.close()


def backlog_events(count: int) -> list[Event]:
    """`report.submitted` as intake publishes it, at points of a lattice 0.003° apart (none joins another's case)."""
    columns = math.ceil(math.sqrt(count))
    events = []
    for i in range(count):
        lat = round(BACKLOG_ORIGIN[0] + (i // columns) * BACKLOG_STEP, 6)
        lng = round(BACKLOG_ORIGIN[1] + (i % columns) * BACKLOG_STEP, 6)
        data = {"id": f"bench-report-{i:06d}-{uuid.uuid4().hex[:8]}", "category": "traffic.parking",
                "description": DESCRIPTION, "location": {"lat": lat, "lng": lng}, "grid_id": BACKLOG_GRID,
                "district": DISTRICT, "photo_ids": ["p"]}
        events.append(Event.new("report.submitted", "intake", data))
    return events


def publish_backlog(amqp_url: str, events: list[Event]) -> float:
    """Publish with confirms and `mandatory` (as intake's relay does); returns the seconds it took."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        started = time.perf_counter()
        for event in events:
            channel.basic_publish(EXCHANGE, event.routing_key, event.to_json(), pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=event.id, type=event.type,
                correlation_id=event.id), mandatory=True)
        return time.perf_counter() - started
    finally:
        connection.close()


@dataclass
class DispatchRate:
    backlog: int
    received: int = 0
    publish_s: float = 0.0
    started: float = 0.0                            # perf_counter() when routing's gunicorn was launched
    times: list[float] = field(default_factory=list)  # arrival of each case.dispatched

    def since_start(self) -> float:
        return self.received / (self.times[-1] - self.started) if self.times else float("nan")

    def steady(self) -> float:
        if len(self.times) < 2:
            return float("nan")
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def by_quarter(self) -> list[float]:
        marks = [round(q * (len(self.times) - 1) / 4) for q in range(5)]
        return [(b - a) / (self.times[b] - self.times[a]) if self.times[b] > self.times[a] else float("nan")
                for a, b in itertools.pairwise(marks)]


def measure_dispatch_rate(amqp_url: str, env: dict[str, str], backlog: int) -> DispatchRate:
    result = DispatchRate(backlog)
    tap = DispatchTap(amqp_url, "case.dispatched.*")
    try:
        stand_in_for_intake(amqp_url)
        events = backlog_events(backlog)
        result.publish_s = publish_backlog(amqp_url, events)
        waiting = queue_state(amqp_url, ROUTING_QUEUE)
        print(f"  backlog: {backlog} report.submitted published in {result.publish_s:.2f} s "
              f"({backlog / result.publish_s:.0f}/s, one confirm each); {waiting[0]} waiting in {ROUTING_QUEUE}",
              flush=True)
        result.started = time.perf_counter()
        with running("routing", env) as routing:
            print(f"  routing: {routing.describe()}", flush=True)
            seen, last_progress = 0, time.monotonic()
            while seen < backlog:
                if routing.worker.process.poll() is not None:
                    raise SystemExit(f"routing's worker exited during the run; log:\n{routing.worker.log_tail()}")
                now_seen = tap.count()
                if now_seen > seen:
                    seen, last_progress = now_seen, time.monotonic()
                elif time.monotonic() - last_progress > (READY_TIMEOUT_S if seen == 0 else STALL_TIMEOUT_S):
                    print(f"  stalled: no case.dispatched for {time.monotonic() - last_progress:.0f} s; log tail:\n"
                          f"{routing.worker.log_tail(10)}", flush=True)
                    break
                time.sleep(0.05)
        result.times, _ = tap.snapshot()
        result.received = len(result.times)
    finally:
        tap.close()
    return result


def print_dispatch_rate(r: DispatchRate) -> None:
    print(f"\ndispatch rate, one routing worker, backlog of {r.backlog} reports")
    if not r.times:
        print("  no case.dispatched arrived")
        return
    print(f"  case.dispatched received: {r.received} of {r.backlog}")
    print(f"  first arrived {r.times[0] - r.started:.2f} s after routing was launched (gunicorn boot, app, "
          f"consumer connect), last after {r.times[-1] - r.started:.2f} s")
    print(f"  cases/s, launch to last:  {r.since_start():8.1f}")
    print(f"  cases/s, first to last:   {r.steady():8.1f}")
    print("  cases/s by quarter of the backlog: " + "  ".join(f"{rate:.1f}" for rate in r.by_quarter()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000, help="the backlog's size")
    args = parser.parse_args()
    if args.reports < 1:
        parser.error("--reports must be positive")
    return args


def main() -> None:
    args = parse_args()
    python = os.path.relpath(sys.executable, ROOT)
    print(f"machine: nproc={len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}")
    print(f"reproduce: cd {shlex.quote(str(ROOT))} && "
          + shlex.join([python, "-m", "bench.routing_backlog", "--reports", str(args.reports)]))
    with bench_store() as (mongo_url, store, _), bench_vhost() as (vhost, amqp_url):
        print(f"{store}; broker vhost {vhost} (deleted at the end)", flush=True)
        databases = bench_databases(("routing",))
        try:
            dispatch = measure_dispatch_rate(amqp_url, service_env(mongo_url, amqp_url, databases), args.reports)
        finally:
            drop_databases(mongo_url, databases)
    print_dispatch_rate(dispatch)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (routing was stopped and the vhost deleted)")
