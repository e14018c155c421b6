"""Traffic for the benches: volunteers' reports at a steady rate, and a department's subscriber timing them.

Reports go to spots of their own (none within 250 m of another of its category, so none joins another's
case), POSTed on schedule from a pool of keep-alive connections; the subscriber is a plain pika queue, as
a department's system would bind it, that stamps each `case.dispatched.*` with its arrival time.
"""
from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pika
import pika.exceptions
from shapely.geometry import shape

from bench.intake_throughput import DESCRIPTION, Volunteer
from services.intake.domain import GridMap
from shared import reference
from shared.geo import DUPLICATE_RADIUS_M, distance_m
from tests.support import EventTap

SPOT_STEP = (0.0025, 0.003)  # 278 m of latitude, 273 m of longitude at 35°N: beyond the 250 m that joins a case


# --- where reports are made -------------------------------------------------------------------------

def city_spots() -> Iterator:
    """(category, lat, lng), none within 250 m of another of its category: points of a lattice over every grid
    cell, each taken once for every category a department handles, the categories taking turns."""
    city = reference.load(os.environ.get("WOODPECKER_REFERENCE_DIR") or None)
    grids = GridMap(city.grids)
    bounds = [shape(g.geometry).bounds for g in city.grids.values()]
    min_lng, min_lat = min(b[0] for b in bounds), min(b[1] for b in bounds)
    max_lng, max_lat = max(b[2] for b in bounds), max(b[3] for b in bounds)
    dlat, dlng = SPOT_STEP
    assert min(distance_m(max_lat, min_lng, max_lat + dlat, min_lng),
               distance_m(max_lat, min_lng, max_lat, min_lng + dlng)) > DUPLICATE_RADIUS_M, "lattice too fine"
    points = [(lat, lng) for row in range(int((max_lat - min_lat) / dlat))
              for column in range(int((max_lng - min_lng) / dlng))
              # Offset by a fifth of a step, so that no point falls on a cell's edge.
              for lat, lng in [(round(min_lat + (row + 0.2) * dlat, 6), round(min_lng + (column + 0.2) * dlng, 6))]
              if grids.locate(lat, lng) is not None]
    categories = sorted(c.code for c in city.categories.values() if c.department)
    for lat, lng in points:
        for category in categories:
            yield category, lat, lng


class Spots:
    """Spots handed out once each, across every phase of the run."""

    def __init__(self):
        self._spots = city_spots()

    def take(self, count: int) -> list[tuple[str, float, float]]:
        taken = list(itertools.islice(self._spots, count))
        if len(taken) < count:
            raise SystemExit("the city has no more spots 250 m apart for this run: send fewer reports")
        return taken


# --- sending them -----------------------------------------------------------------------------------

@dataclass
class Sent:
    at: dict[str, float] = field(default_factory=dict)  # report id → perf_counter() when its POST began
    answered: dict[str, float] = field(default_factory=dict)  # report id → perf_counter() when its 201 was read
    errors: Counter = field(default_factory=Counter)
    behind_ms: list[float] = field(default_factory=list)  # how late each POST began against the schedule
    first: float = 0.0
    last: float = 0.0


def send_paced(port: int, volunteers: list[Volunteer], spots: list[tuple[str, float, float]], rate: float,
               senders: int, sent: Sent | None = None) -> Sent:
    """POST one report every 1/rate s (open loop: a pool of keep-alive connections, so a slow answer does
    not delay the next report). `sent`, if given, is filled as the answers come (for a watcher meanwhile)."""
    sent = Sent() if sent is None else sent
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
            outcome, answered = response.status, time.perf_counter()
        except (OSError, http.client.HTTPException) as exc:
            local.connection.close()  # http.client reconnects on the next request
            outcome = type(exc).__name__
        with lock:
            sent.behind_ms.append((began - due) * 1000)
            if outcome == 201:
                report_id = json.loads(payload)["id"]
                sent.at[report_id], sent.answered[report_id] = began, answered
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


# --- the department's subscriber ----------------------------------------------------------------------

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


class DispatchTap(EventTap):
    """A department's subscriber (a plain pika queue, as tests.support.EventTap), consuming in a thread of
    its own and stamping each `case.dispatched.*` with its arrival time as it is delivered."""

    def __init__(self, amqp_url: str, *patterns: str):
        super().__init__(amqp_url, *patterns)
        self.arrivals: dict[str, float] = {}  # report id → perf_counter() when its case.dispatched arrived
        self.submissions: dict[str, float] = {}  # report id → when its report.submitted arrived, if bound to it
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.channel.basic_consume(self.queue, self._on_message, auto_ack=True)
        self._thread = threading.Thread(target=self._run, name="dispatch-tap", daemon=True)
        self._thread.start()

    def _on_message(self, channel, method, properties, body) -> None:
        now = time.perf_counter()
        if method.routing_key == "report.submitted":
            with self._lock:
                self.submissions.setdefault(json.loads(body)["data"]["id"], now)
            return
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

    def submitted(self) -> dict[str, float]:
        with self._lock:
            return dict(self.submissions)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        super().close()


# --- what they measure --------------------------------------------------------------------------------

@dataclass
class Latency:
    sent: Sent
    arrivals: dict[str, float]
    planned: int
    submissions: dict[str, float] = field(default_factory=dict)  # report.submitted at a subscriber, if watched

    def latencies_ms(self) -> list[float]:
        return sorted((self.arrivals[r] - began) * 1000 for r, began in self.sent.at.items() if r in self.arrivals)

    def answers_ms(self) -> list[float]:
        """How long each accepted POST took to be answered: intake's share of the way."""
        return sorted((self.sent.answered[r] - began) * 1000 for r, began in self.sent.at.items())

    def after_answer_ms(self) -> list[float]:
        """From the POST's answer to the department: the relays', the broker's and routing's share."""
        return sorted((self.arrivals[r] - self.sent.answered[r]) * 1000 for r in self.sent.at if r in self.arrivals)

    def to_submission_ms(self) -> list[float]:
        """From the POST's answer to its report.submitted at a subscriber: intake's relay and the broker."""
        return sorted((self.submissions[r] - self.sent.answered[r]) * 1000 for r in self.sent.at
                      if r in self.submissions)

    def routing_ms(self) -> list[float]:
        """From report.submitted at a subscriber to case.dispatched at the department's: routing's share (its
        consumer, its transaction, its relay) and the broker's second hop."""
        return sorted((self.arrivals[r] - self.submissions[r]) * 1000 for r in self.sent.at
                      if r in self.submissions and r in self.arrivals)

    def missing(self) -> int:
        return sum(1 for r in self.sent.at if r not in self.arrivals)


def cuts(values: list[float], *points: int) -> list[float]:
    if not values:
        return [float("nan")] * len(points)
    if len(values) == 1:
        return [values[0]] * len(points)
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    return [quantiles[p - 1] for p in points]
