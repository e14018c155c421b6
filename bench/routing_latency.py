"""Routing's dispatch rate and the latency from a volunteer's report to the department's subscriber.

Two measurements in one run, each against the services as `make up` runs them (gunicorn web process and
worker process, see bench/harness.py) on MONGO_URL or an embedded database of the bench's own, in a
RabbitMQ vhost of the bench's own, which it deletes at the end:

1. Dispatch rate: a backlog of `report.submitted` events waits in routing's queue while routing is
   stopped; routing starts and works through it. Cases per second are counted where a department
   would count them: `case.dispatched.*` arriving at a plain pika subscriber (consumer → store →
   outbox relay → broker → subscriber).
2. Latency: intake and routing run side by side; reports are POSTed at a steady rate and the time
   from the POST to `case.dispatched.traffic-police` at the department's subscriber is taken per report.

It prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import shlex
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pika
import pika.exceptions
from shapely.geometry import shape

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
from bench.intake_throughput import DESCRIPTION, Volunteer, intake_volunteers
from services.intake.domain import GridMap
from shared import reference
from shared.config import Settings
from shared.events import EXCHANGE, Event
from shared.geo import DUPLICATE_RADIUS_M, distance_m
from shared.testing import EventTap, wait_for

ROUTING_QUEUE = "routing.report-submitted"  # services/routing/handlers.py
INTAKE_QUEUE = "intake.case-events"         # services/intake/handlers.py
DEPARTMENT = "traffic-police"
DISTRICT = "lanshan"
BACKLOG_GRID = "lanshan-01"
BACKLOG_ORIGIN = (35.045, 118.305)
# Lattice steps: 0.003° of latitude is 333 m, of longitude 273 m at 35°N; 0.0025° of latitude is 278 m.
# All are more than the 250 m in which a report joins an open case of its kind instead of opening one.
BACKLOG_STEP = 0.003
SPOT_STEP = (0.0025, 0.003)
STALL_TIMEOUT_S = 30   # no new case.dispatched for this long ends the dispatch-rate run
LATE_AFTER_S = 10      # reports still unseen this long after the last POST count as never arrived


# --- the broker -------------------------------------------------------------------------------

def queue_state(amqp_url: str, queue: str) -> tuple[int, int] | None:
    """(messages, consumers) of `queue`, or None while it does not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return declared.method.message_count, declared.method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def wait_consumed(amqp_url: str, queue: str) -> None:
    """Until `queue` exists with a consumer: /readyz answers before the consumer thread has declared it."""
    wait_for(lambda: (state := queue_state(amqp_url, queue)) is not None and state[1] > 0,
             timeout=READY_TIMEOUT_S, interval=0.2, what=f"a consumer on {queue}")


class DispatchTap(EventTap):
    """A department's subscriber (a plain pika queue, as shared.testing.EventTap), consuming in a thread of
    its own and stamping each `case.dispatched.*` with its arrival time as it is delivered."""

    def __init__(self, amqp_url: str, *patterns: str):
        super().__init__(amqp_url, *patterns)
        self.arrivals: dict[str, float] = {}  # report id → perf_counter() when its case.dispatched arrived
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.channel.basic_consume(self.queue, self._on_message, auto_ack=True)
        self._thread = threading.Thread(target=self._run, name="dispatch-tap", daemon=True)
        self._thread.start()

    def _on_message(self, channel, method, properties, body) -> None:
        now = time.perf_counter()
        if not method.routing_key.startswith("case.dispatched."):
            return
        report_id = json.loads(body)["data"]["report_ids"][0]
        with self._lock:
            self.arrivals.setdefault(report_id, now)
            self.times.append(now)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.connection.process_data_events(time_limit=0.1)

    def count(self) -> int:
        with self._lock:
            return len(self.times)

    def snapshot(self) -> tuple[list[float], dict[str, float]]:
        with self._lock:
            return list(self.times), dict(self.arrivals)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        super().close()


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


# --- 1. dispatch rate -------------------------------------------------------------------------

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


# --- 2. latency -------------------------------------------------------------------------------

def report_spots(count: int) -> list[tuple[str, float, float]]:
    """(category, lat, lng) for `count` reports, none within 250 m of another of its category.

    Points of a lattice in the district's grid cells (lanshan-01 first, inside the box the intake bench
    uses, then the rest); every category routed to the department (traffic.parking first) has its own
    spots, as a report only joins an open case of the same category.
    """
    city = reference.load(os.environ.get("WOODPECKER_REFERENCE_DIR") or None)
    categories = sorted((c.code for c in city.categories.values() if c.department == DEPARTMENT),
                        key=lambda code: (code != "traffic.parking", code))
    grids = GridMap(city.grids)
    cells = [g for g in city.grids.values() if g.district == DISTRICT]
    min_lng = min(shape(g.geometry).bounds[0] for g in cells)
    min_lat = min(shape(g.geometry).bounds[1] for g in cells)
    max_lng = max(shape(g.geometry).bounds[2] for g in cells)
    max_lat = max(shape(g.geometry).bounds[3] for g in cells)
    dlat, dlng = SPOT_STEP
    points = []
    for row in range(int((max_lat - min_lat) / dlat)):
        for column in range(int((max_lng - min_lng) / dlng)):
            # Offset by a fifth of a step, so no point falls on a cell's edge.
            lat, lng = round(min_lat + (row + 0.2) * dlat, 6), round(min_lng + (column + 0.2) * dlng, 6)
            grid = grids.locate(lat, lng)
            if grid is not None and grid.district == DISTRICT:
                first = grid.id == "lanshan-01" and 35.045 <= lat <= 35.075 and 118.305 <= lng <= 118.325
                points.append((not first, grid.id, lat, lng))
    points.sort()
    # Neighbours are closest east-west at the northern edge.
    assert min(distance_m(max_lat, min_lng, max_lat + dlat, min_lng),
               distance_m(max_lat, min_lng, max_lat, min_lng + dlng)) > DUPLICATE_RADIUS_M, "lattice too fine"
    spots = [(category, lat, lng) for category in categories for _, _, lat, lng in points]
    if count > len(spots):
        raise SystemExit(f"{count} reports need {count} distinct spots, but the {DISTRICT} grid cells hold "
                         f"{len(points)} points 250 m apart x {len(categories)} categories = {len(spots)}; "
                         "lower --rate or --seconds.")
    return spots[:count]


@dataclass
class Sent:
    at: dict[str, float] = field(default_factory=dict)  # report id → perf_counter() when its POST began
    errors: Counter = field(default_factory=Counter)
    behind_ms: list[float] = field(default_factory=list)  # how late each POST began against the schedule
    first: float = 0.0
    last: float = 0.0


def send_paced(port: int, volunteers: list[Volunteer], spots: list[tuple[str, float, float]], rate: float,
               senders: int) -> Sent:
    """POST one report every 1/rate s (open loop: a pool of keep-alive connections, so a slow answer does
    not delay the next report)."""
    sent = Sent()
    lock = threading.Lock()
    local = threading.local()
    connections: list[http.client.HTTPConnection] = []

    def post(i: int, due: float) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                connections.append(local.connection)
        volunteer = volunteers[i % len(volunteers)]
        category, lat, lng = spots[i]
        body = json.dumps({"category": category, "description": DESCRIPTION, "location": {"lat": lat, "lng": lng},
                           "photo_ids": [volunteer.photo_id]}, ensure_ascii=False).encode()
        headers = {"Authorization": f"Bearer {volunteer.token}", "Content-Type": "application/json",
                   "Idempotency-Key": str(uuid.uuid4())}
        began = time.perf_counter()
        try:
            local.connection.request("POST", "/v1/reports", body, headers)
            response = local.connection.getresponse()
            payload = response.read()
            outcome = response.status
        except (OSError, http.client.HTTPException) as exc:
            local.connection.close()  # http.client reconnects on the next request
            outcome = type(exc).__name__
        with lock:
            sent.behind_ms.append((began - due) * 1000)
            if outcome == 201:
                sent.at[json.loads(payload)["id"]] = began
            else:
                sent.errors[str(outcome)] += 1

    try:
        with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="sender") as pool:
            start = time.perf_counter() + 0.1
            for i in range(len(spots)):
                due = start + i / rate
                if (delay := due - time.perf_counter()) > 0:
                    time.sleep(delay)
                pool.submit(post, i, due)
    finally:
        for connection in connections:
            connection.close()
    if sent.at:
        sent.first, sent.last = min(sent.at.values()), max(sent.at.values())
    return sent


@dataclass
class Latency:
    sent: Sent
    arrivals: dict[str, float]
    planned: int

    def latencies_ms(self) -> list[float]:
        return sorted((self.arrivals[r] - began) * 1000 for r, began in self.sent.at.items() if r in self.arrivals)

    def missing(self) -> int:
        return sum(1 for r in self.sent.at if r not in self.arrivals)


def measure_latency(amqp_url: str, env: dict[str, str], rate: float, seconds: float, volunteers: int,
                    senders: int) -> Latency:
    spots = report_spots(int(rate * seconds))
    tap = DispatchTap(amqp_url, f"case.dispatched.{DEPARTMENT}")
    try:
        with running("intake", env) as intake, running("routing", env) as routing:
            # The consumers are attached, so nothing waits in a queue for a worker still starting.
            wait_consumed(amqp_url, ROUTING_QUEUE)
            wait_consumed(amqp_url, INTAKE_QUEUE)
            print(f"  intake:  {intake.describe()}", flush=True)
            print(f"  routing: {routing.describe()}", flush=True)
            people = intake_volunteers(intake.port, volunteers)
            sent = send_paced(intake.port, people, spots, rate, senders)
            deadline = time.perf_counter() + LATE_AFTER_S if not sent.at else sent.last + LATE_AFTER_S
            while time.perf_counter() < deadline:
                _, arrivals = tap.snapshot()
                if all(r in arrivals for r in sent.at):
                    break
                time.sleep(0.05)
            _, arrivals = tap.snapshot()
    finally:
        tap.close()
    return Latency(sent, arrivals, len(spots))


# --- report -----------------------------------------------------------------------------------

def cuts(values: list[float], *points: int) -> list[float]:
    if not values:
        return [float("nan")] * len(points)
    if len(values) == 1:
        return [values[0]] * len(points)
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    return [quantiles[p - 1] for p in points]


def print_dispatch_rate(r: DispatchRate) -> None:
    print(f"\n1. dispatch rate, one routing worker, backlog of {r.backlog} reports")
    if not r.times:
        print("  no case.dispatched arrived")
        return
    print(f"  case.dispatched received: {r.received} of {r.backlog}")
    print(f"  first arrived {r.times[0] - r.started:.2f} s after routing was launched (gunicorn boot, app, "
          f"consumer connect), last after {r.times[-1] - r.started:.2f} s")
    print(f"  cases/s, launch to last:  {r.since_start():8.1f}")
    print(f"  cases/s, first to last:   {r.steady():8.1f}")
    print("  cases/s by quarter of the backlog: " + "  ".join(f"{rate:.1f}" for rate in r.by_quarter()))


def print_latency(r: Latency, rate: float, seconds: float) -> None:
    sent = r.sent
    print(f"\n2. POST /v1/reports -> case.dispatched.{DEPARTMENT} at the department's subscriber, "
          f"{rate:g} reports/s for {seconds:g} s")
    window = sent.last - sent.first
    achieved = (len(sent.at) - 1) / window if window > 0 else float("nan")
    behind = cuts(sent.behind_ms, 99)[0]
    print(f"  reports planned {r.planned}, accepted (201) {len(sent.at)}, failed {sum(sent.errors.values())}"
          + (" (" + ", ".join(f"{k} x{n}" for k, n in sent.errors.most_common()) + ")" if sent.errors else "")
          + f"; POSTs began at {achieved:.1f}/s, p99 {behind:.1f} ms behind schedule")
    latencies = r.latencies_ms()
    p50, p90, p99 = cuts(latencies, 50, 90, 99)
    print(f"  {'count':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"  {len(latencies):>6} {p50:>8.1f} {p90:>8.1f} {p99:>8.1f} {max(latencies, default=float('nan')):>8.1f}")
    print(f"  never arrived within {LATE_AFTER_S} s of the last POST: {r.missing()}")


def reproduce_command(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable, ROOT)
    return f"cd {shlex.quote(str(ROOT))} && " + shlex.join(
        [python, "-m", "bench.routing_latency", "--reports", str(args.reports), "--rate", f"{args.rate:g}",
         "--seconds", f"{args.seconds:g}", "--volunteers", str(args.volunteers), "--senders", str(args.senders)])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000, help="backlog size for the dispatch rate")
    parser.add_argument("--rate", type=float, default=20.0, help="reports per second for the latency")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long reports are sent for the latency")
    parser.add_argument("--volunteers", type=int, default=8, help="volunteers (one photo each) taking turns")
    parser.add_argument("--senders", type=int, default=8, help="concurrent HTTP connections the sender may use")
    args = parser.parse_args()
    if args.reports < 1 or args.rate <= 0 or args.seconds <= 0 or args.volunteers < 1 or args.senders < 1:
        parser.error("every option must be positive")
    return args


@contextlib.contextmanager
def fresh_system(mongo_url: str, services: tuple[str, ...]):
    """(AMQP URL, environment) of a phase of its own: its own vhost and databases, nothing left from another."""
    with bench_vhost() as (vhost, amqp_url):
        databases = bench_databases(services)
        print(f"broker: 127.0.0.1:5672, vhost {vhost} (deleted at the end)", flush=True)
        try:
            yield amqp_url, service_env(mongo_url, amqp_url, databases)
        finally:
            drop_databases(mongo_url, databases)


def main() -> None:
    args = parse_args()
    relay_interval = Settings.from_env("routing").relay_interval_s
    print(f"machine: nproc={len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}")
    print(f"reproduce: {reproduce_command(args)}")
    with bench_store() as (mongo_url, store):
        print(f"gunicorn, deploy/gunicorn.conf.py, and each service's worker process; {store}; "
              f"WOODPECKER_RELAY_INTERVAL_S={relay_interval:g} s.\n"
              f"  The relay sleeps that long only after a pass that published nothing, so an event written while it\n"
              f"  sleeps waits up to {relay_interval:g} s (about {relay_interval / 2:g} s on average) before it is "
              f"published; a backlog is relayed\n  back to back. A report crosses two outboxes (intake's "
              f"report.submitted, routing's case.dispatched):\n  up to {2 * relay_interval:g} s of the latency "
              f"below is relay polling.", flush=True)
        with fresh_system(mongo_url, ("routing",)) as (amqp_url, env):
            dispatch = measure_dispatch_rate(amqp_url, env, args.reports)
        print_dispatch_rate(dispatch)
        print(flush=True)
        with fresh_system(mongo_url, ("intake", "routing")) as (amqp_url, env):
            latency = measure_latency(amqp_url, env, args.rate, args.seconds, args.volunteers, args.senders)
        print_latency(latency, args.rate, args.seconds)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (the gunicorn processes were stopped and the vhost deleted)")
