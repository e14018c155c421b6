"""Notices per second through one notify worker: to the inbox, and to local webhook receivers with every
receiver alive and then with 1 of 8 dead.

The notify service runs as `make up` runs it (its web process and one worker process) on a store and a
broker vhost of the bench's own. An inbox notice is an `hours.credited` event published on the broker for a
volunteer; a webhook notice is a `case.accepted.<department>` event: the worker renders it, stores the inbox
item and a delivery, and the dispatcher posts the signed webhook. Eight receivers (real HTTP servers in this
process) each serve one department (a volunteer's webhook may only be https to a public address); a dead
receiver accepts the connection and never answers, so every attempt at it waits out the attempt deadline
(NOTIFY_ATTEMPT_DEADLINE_S, 2 s here). The figure that matters: the live receivers' rate with one dead must stay
within a tenth of their rate with all eight alive.

    python -m bench.notify [--notices 1000] [--webhooks 500]
"""
from __future__ import annotations

import argparse
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from bench.harness import bench_databases, bench_store, bench_vhost, drop_databases, running, service_env
from shared.auth import issue_token
from shared.bus import EventPublisher
from shared.config import DEV_JWT_SECRET
from shared.events import Event
from shared.store import connect

RECEIVERS = 8
DEPARTMENTS = ("sanitation", "urban-management", "community-affairs", "traffic-police", "municipal-works",
               "market-regulation", "housing-construction", "public-security")
TIMEOUT_S = 2


class Receiver:
    def __init__(self) -> None:
        self.dead = False
        self.arrivals: list[float] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.dead:
                    time.sleep(TIMEOUT_S * 3)
                    return
                receiver.arrivals.append(time.perf_counter())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def credited(volunteer_id: str) -> Event:
    return Event.new("hours.credited", "hours", {
        "id": uuid.uuid4().hex, "volunteer_id": volunteer_id, "hours": 2.0, "kind": "patrol", "source": "patrol",
        "source_id": uuid.uuid4().hex, "service_date": "2026-11-24", "recorded_by": "bench", "rule_version": "bench",
        "note": "网格巡访", "recorded_at": "2026-11-24T08:00:00.000Z"})


def accepted(department: str) -> Event:
    case_id = uuid.uuid4().hex
    return Event.new(f"case.accepted.{department}", "routing", {
        "case_id": case_id, "report_ids": [f"r-{case_id}"], "category": "env.garbage", "department": department,
        "status": "accepted", "due_at": None, "grid_id": "lanshan-01", "location": {"lat": 35.06, "lng": 118.31},
        "description": "垃圾堆放", "photo_ids": [], "overdue": False, "escalation_level": 0, "note": ""})


def publish_all(publisher: EventPublisher, events: list[Event]) -> float:
    started = time.perf_counter()
    for start in range(0, len(events), 100):
        publisher.publish(events[start:start + 100])
    return started


def inbox_rate(db, publisher: EventPublisher, count: int) -> float:
    tag = uuid.uuid4().hex[:6]
    events = [credited(f"inbox-{tag}-{n % 50}") for n in range(count)]
    started = publish_all(publisher, events)
    while db["inbox"].count_documents({"recipient": {"$regex": f"^volunteer:inbox-{tag}-"}}) < count:
        time.sleep(0.2)
    return count / (time.perf_counter() - started)


def webhook_rate(publisher: EventPublisher, receivers: list[Receiver], count: int) -> float:
    """The live receivers' notices per second: from the first publish to the last live arrival."""
    for receiver in receivers:
        receiver.arrivals.clear()
    events = [accepted(DEPARTMENTS[n % RECEIVERS]) for n in range(count)]
    expected = {i: sum(1 for n in range(count) if n % RECEIVERS == i) for i in range(RECEIVERS)}
    live = [i for i, receiver in enumerate(receivers) if not receiver.dead]
    started = publish_all(publisher, events)
    deadline = time.monotonic() + 600
    while any(len(receivers[i].arrivals) < expected[i] for i in live):
        if time.monotonic() > deadline:
            raise SystemExit("live receivers did not get every notice within 10 minutes")
        time.sleep(0.05)
    last = max(receivers[i].arrivals[-1] for i in live)
    return sum(expected[i] for i in live) / (last - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=1000, help="notices to the inbox")
    parser.add_argument("--webhooks", type=int, default=500, help="notices to webhooks in each of the two runs")
    args = parser.parse_args()
    with bench_store() as (mongo_url, described, _), bench_vhost() as (_, amqp_url):
        print(f"Store: {described}")
        databases = bench_databases(("notify",))
        env = {**service_env(mongo_url, amqp_url, databases), "NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8",
               "NOTIFY_ATTEMPT_DEADLINE_S": str(TIMEOUT_S), "NOTIFY_SUSPEND_AFTER": "1000000"}
        db = connect(mongo_url, databases["NOTIFY_DATABASE"])
        try:
            with running("notify", env) as notify:
                print(f"  {notify.describe()}", flush=True)
                publisher = EventPublisher(amqp_url, "hours")
                print(f"  inbox: {inbox_rate(db, publisher, args.notices):.1f} notices/s "
                      f"({args.notices} notices)", flush=True)
                receivers = [Receiver() for _ in range(RECEIVERS)]
                token = issue_token(DEV_JWT_SECRET, "office-bench", "office")
                for department, receiver in zip(DEPARTMENTS, receivers, strict=True):
                    requests.put(f"http://127.0.0.1:{notify.port}/v1/subscriptions/department:{department}",
                                 headers={"Authorization": f"Bearer {token}"}, json={"webhook_url": receiver.url},
                                 timeout=10).raise_for_status()
                alive = webhook_rate(publisher, receivers, args.webhooks)
                print(f"  webhooks, {RECEIVERS} of {RECEIVERS} receivers alive: {alive:.1f} notices/s", flush=True)
                receivers[0].dead = True
                one_dead = webhook_rate(publisher, receivers, args.webhooks)
                print(f"  webhooks, 1 of {RECEIVERS} dead: the {RECEIVERS - 1} live receivers get "
                      f"{one_dead:.1f} notices/s "
                      f"({one_dead / alive * RECEIVERS / (RECEIVERS - 1):.2f} of their rate with all alive, "
                      "per receiver)", flush=True)
        finally:
            drop_databases(mongo_url, databases)


if __name__ == "__main__":
    main()
