"""Store round trips per report across the pipeline, and what the services ask of the store while idle.

intake and routing run in this process (their web apps through Flask's test client, their workers'
consumer, relay and deadline watch in threads, as the service tests run them) against a store and a
RabbitMQ vhost of the bench's own. pymongo's command monitoring counts every command each service
sends, by database (whose service) and by thread (the request, the outbox relay, the event consumer,
the deadline watch). Reports are POSTed at a steady rate to spots far apart, so each one opens and
dispatches a case and intake follows it; the count stops once every report shows the dispatch.
It prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace

import pymongo
from pymongo import monitoring

from bench.harness import BENCH_RATE, ROOT, bench_store, bench_vhost
from bench.routing_latency import report_spots
from shared.auth import issue_token
from shared.config import DEV_JWT_SECRET, Settings
from shared.testing import wait_for

SERVICES = ("intake", "routing")
DESCRIPTION = "人行道上停放多辆机动车，影响通行"


class CommandCount(monitoring.CommandListener):
    """Commands started, by (database, thread name)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self.lock:
            self.counts[(event.database_name, threading.current_thread().name)] += 1

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass

    def take(self) -> Counter:
        with self.lock:
            taken, self.counts = self.counts, Counter()
        return taken


def start_services(mongo_url: str, amqp_url: str, databases: dict[str, str]) -> dict:
    """Each service's web app and its worker's background work, in this process."""
    import importlib

    from shared.store import connect

    running = {}
    for service in SERVICES:
        unlimited = {f"WOODPECKER_RATE_LIMIT_{kind}": BENCH_RATE for kind in ("WRITES", "UPLOADS", "PER_IP")}
        settings = replace(Settings.from_env(service, unlimited), mongo_url=mongo_url, amqp_url=amqp_url,
                           database=databases[service], development_secret_allowed=True)
        app = importlib.import_module(f"services.{service}.app").create_app(settings)
        worker = importlib.import_module(f"services.{service}.worker")
        background = worker.background_work(settings, connect(mongo_url, settings.database)).start()
        wait_for(background.consumer.ready.is_set, timeout=30, what=f"{service}'s consumer")
        running[service] = (app, background)
    return running


def upload_photos(client, tokens: list[str]) -> list[str]:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(out, "JPEG")
    ids = []
    for token in tokens:
        response = client.post("/v1/photos", headers={"Authorization": f"Bearer {token}"},
                               data={"file": (io.BytesIO(out.getvalue()), "p.jpg")}, content_type="multipart/form-data")
        ids.append(response.json["id"])
    return ids


def submit(client, tokens: list[str], photos: list[str], spots: list, rate: float) -> list[str]:
    """POST the reports at `rate` per second from a thread named like a request thread; returns their ids."""
    ids: list[str] = []

    def send() -> None:
        start = time.perf_counter()
        for i, (category, lat, lng) in enumerate(spots):
            if (delay := start + i / rate - time.perf_counter()) > 0:
                time.sleep(delay)
            response = client.post("/v1/reports", headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}",
                                                           "Idempotency-Key": uuid.uuid4().hex},
                                   json={"category": category, "description": DESCRIPTION,
                                         "location": {"lat": lat, "lng": lng}, "photo_ids": [photos[i % len(photos)]]})
            if response.status_code != 201:
                raise SystemExit(f"POST /v1/reports answered {response.status_code}: {response.json}")
            ids.append(response.json["id"])

    sender = threading.Thread(target=send, name="request")
    sender.start()
    sender.join()
    return ids


def all_dispatched(reports, ids: list[str]) -> bool:
    """Every report shows its case's dispatch: the whole pipeline has run for it."""
    return reports.count_documents({"_id": {"$in": ids}, "department": {"$ne": None}}) == len(ids)


def print_table(counts: Counter, databases: dict[str, str], per: float, unit: str) -> None:
    service_of = {name: service for service, name in databases.items()}
    rows = sorted((service_of.get(db, db), thread, n) for (db, thread), n in counts.items())
    print(f"  {'service':8} {'thread':16} {'commands':>9} {unit:>12}")
    for service, thread, n in rows:
        print(f"  {service:8} {thread:16} {n:>9} {n / per:>12.2f}")
    for service in SERVICES:
        total = sum(n for s, _, n in rows if s == service)
        print(f"  {service:8} {'(all)':16} {total:>9} {total / per:>12.2f}")
    total = sum(n for *_, n in rows)
    print(f"  {'pipeline':8} {'(all)':16} {total:>9} {total / per:>12.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200, help="reports to send")
    parser.add_argument("--rate", type=float, default=20.0, help="reports per second")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idleness to count")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    python = os.path.relpath(sys.executable, ROOT)
    print("reproduce: " + f"cd {shlex.quote(str(ROOT))} && " + shlex.join(
        [python, "-m", "bench.round_trips", "--reports", str(args.reports), "--rate", f"{args.rate:g}",
         "--idle", f"{args.idle:g}"]))
    listener = CommandCount()
    monitoring.register(listener)  # before any client exists: every client of this process reports to it
    with bench_store() as (mongo_url, store), bench_vhost() as (vhost, amqp_url):
        print(f"store: {store}; broker vhost {vhost}", flush=True)
        tag = uuid.uuid4().hex[:8]
        databases = {service: f"bench_{service}_{tag}" for service in SERVICES}
        running = start_services(mongo_url, amqp_url, databases)
        try:
            client = running["intake"][0].test_client()
            reports = pymongo.MongoClient(mongo_url)[databases["intake"]]["reports"]
            tokens = [issue_token(DEV_JWT_SECRET, f"bench-volunteer-{i}", "volunteer") for i in range(8)]
            photos = upload_photos(client, tokens)
            spots = report_spots(args.reports + 10)
            warm = submit(client, tokens, photos, spots[:10], args.rate)
            wait_for(lambda: all_dispatched(reports, warm), timeout=60, what="the warm-up reports")
            time.sleep(1)
            listener.take()
            time.sleep(args.idle)
            idle = listener.take()
            print(f"\nidle for {args.idle:g} s (nothing to do): commands per second")
            print_table(idle, databases, args.idle, "per second")
            started = time.perf_counter()
            ids = submit(client, tokens, photos, spots[10:], args.rate)
            wait_for(lambda: all_dispatched(reports, ids), timeout=120, interval=0.2, what="every report dispatched")
            elapsed = time.perf_counter() - started
            busy = listener.take()
            busy = Counter({key: n for key, n in busy.items() if key[1] != "MainThread"})  # the bench's own polling
            print(f"\n{len(ids)} reports at {args.rate:g}/s, {elapsed:.1f} s until the last was dispatched: "
                  "commands per report (relay polls during the run included)")
            print_table(busy, databases, len(ids), "per report")
        finally:
            for _, background in running.values():
                background.stop()
            client = pymongo.MongoClient(mongo_url)
            for name in databases.values():
                client.drop_database(name)


if __name__ == "__main__":
    main()
