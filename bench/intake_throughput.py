"""`make bench`: intake's POST /v1/reports throughput under gunicorn, next to a bare Flask app.

Both targets run under deploy/gunicorn.conf.py (intake with its worker process, as `make up` runs it),
against MONGO_URL or an embedded database of the bench's own and a RabbitMQ vhost of its own (see
bench/harness.py), and are loaded by the same keep-alive HTTP clients (one thread and one connection
per simulated volunteer). The bare app parses the same JSON body and echoes it, so the ratio
intake/bare shows what the service's own work (auth, validation, grid lookup, duplicate check,
store, outbox) costs. Intake runs alone: the queues its events feed fill with what nobody takes, so its
admission (shared/admission.py, which would refuse reports behind them) is off. With `--stored
1000,50000` intake is measured once per size, after a year of reports (mostly closed) has been loaded in
bulk up to that many: the rate must not depend on it.
It prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shlex
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pymongo
import requests
from flask import Flask, request
from PIL import Image

from bench import queries
from bench.harness import ROOT, Server, Service, bench_databases, bench_store, bench_vhost, drop_databases, service_env
from services.routing.domain import default_rules
from shared import reference
from shared.auth import issue_token
from shared.config import DEV_JWT_SECRET

INTAKE_APP = "services.intake.app:create_app()"
BARE_APP = "bench.intake_throughput:create_bare_app()"

# Inside grid lanshan-01, so every report is accepted and lands in the same grid.
LAT_RANGE = (35.045, 35.075)
LNG_RANGE = (118.305, 118.325)
DESCRIPTION = "人行道上停放多辆机动车，影响通行"


# --- the bare app -----------------------------------------------------------------------------

def create_bare_app() -> Flask:
    """The floor: one route that parses the report JSON and echoes it with 201."""
    app = Flask("bench-bare")
    # Same JSON encoding as the services, so response bodies are comparable.
    app.json.ensure_ascii = False

    @app.post("/v1/reports")
    def submit_report():
        return request.get_json(), 201

    @app.get("/readyz")
    def readyz():
        return {"status": "ready"}

    return app


# --- volunteers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Volunteer:
    token: str
    photo_id: str


def tokens(count: int) -> list[str]:
    return [issue_token(DEV_JWT_SECRET, f"bench-volunteer-{i}", "volunteer") for i in range(count)]


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(out, "JPEG")
    return out.getvalue()


def upload_photo(port: int, token: str, jpeg: bytes) -> str:
    response = requests.post(f"http://127.0.0.1:{port}/v1/photos", headers={"Authorization": f"Bearer {token}"},
                             files={"file": ("photo.jpg", jpeg, "image/jpeg")}, timeout=10)
    if response.status_code != 201:
        raise SystemExit(f"Photo upload failed: {response.status_code} {response.text}")
    return response.json()["id"]


def intake_volunteers(port: int, count: int) -> list[Volunteer]:
    jpeg = small_jpeg()
    return [Volunteer(token, upload_photo(port, token, jpeg)) for token in tokens(count)]


def bare_volunteers(count: int) -> list[Volunteer]:
    # The bare app checks nothing; the photo ids only keep the request bodies the same size.
    return [Volunteer(token, f"bench-photo-{i:026d}") for i, token in enumerate(tokens(count))]


def report_body(volunteer: Volunteer, rng: random.Random) -> bytes:
    # Scattered points give the duplicate check a realistic mix of near and far open reports.
    location = {"lat": round(rng.uniform(*LAT_RANGE), 6), "lng": round(rng.uniform(*LNG_RANGE), 6)}
    body = {"category": "traffic.parking", "description": DESCRIPTION, "location": location,
            "photo_ids": [volunteer.photo_id]}
    return json.dumps(body, ensure_ascii=False).encode()


# --- load -------------------------------------------------------------------------------------

@dataclass
class Tally:
    """What one client saw inside the measured window."""
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Window:
    start: float
    end: float


def run_client(port: int, volunteer: Volunteer, seed: int, window: Window, stop: threading.Event,
               tally: Tally) -> None:
    """POST reports back to back on one keep-alive connection until the window closes."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {volunteer.token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while not stop.is_set() and time.perf_counter() < window.end:
            body = report_body(volunteer, rng)
            sent = time.perf_counter()
            try:
                connection.request("POST", "/v1/reports", body, headers)
                response = connection.getresponse()
                response.read()
                outcome = response.status
            except (OSError, http.client.HTTPException) as exc:
                connection.close()  # http.client reconnects on the next request
                outcome = type(exc).__name__
            done = time.perf_counter()
            if window.start <= done < window.end:
                if outcome == 201:
                    tally.latencies_ms.append((done - sent) * 1000)
                else:
                    tally.errors[str(outcome)] += 1
    finally:
        connection.close()


@dataclass(frozen=True)
class Result:
    target: str
    ok: int
    errors: Counter
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def percentiles(latencies_ms: list[float]) -> tuple[float, float]:
    if len(latencies_ms) < 2:
        return (latencies_ms[0], latencies_ms[0]) if latencies_ms else (float("nan"), float("nan"))
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return cuts[49], cuts[98]


def measure(target: str, port: int, volunteers: list[Volunteer], warmup: float, seconds: float) -> Result:
    """One client thread per volunteer; only requests completing after the warm-up are counted."""
    start = time.perf_counter() + warmup
    window = Window(start, start + seconds)
    stop = threading.Event()
    tallies = [Tally() for _ in volunteers]
    threads = [threading.Thread(target=run_client, args=(port, v, i, window, stop, tally), daemon=True)
               for i, (v, tally) in enumerate(zip(volunteers, tallies, strict=True))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
    latencies = [ms for tally in tallies for ms in tally.latencies_ms]
    errors = sum((tally.errors for tally in tallies), Counter())
    p50, p99 = percentiles(latencies)
    return Result(target, len(latencies), errors, seconds, p50, p99)


def bench_intake(env: dict[str, str], args: argparse.Namespace, label: str = "intake") -> Result:
    service = Service("intake", env)
    try:
        service.wait_ready()
        print(f"  {label}: {service.describe()}", flush=True)
        return measure(label, service.port, intake_volunteers(service.port, args.concurrency), args.warmup,
                       args.seconds)
    finally:
        service.stop()


def bench_bare(env: dict[str, str], args: argparse.Namespace) -> Result:
    server = Server(BARE_APP, env)
    try:
        server.wait_ready()
        print(f"  bare: {shlex.join(server.command)}", flush=True)
        return measure("bare", server.port, bare_volunteers(args.concurrency), args.warmup, args.seconds)
    finally:
        server.stop()


def stored_reports(mongo_url: str, database: str) -> int:
    client = pymongo.MongoClient(mongo_url)
    try:
        return client[database]["reports"].count_documents({})
    finally:
        client.close()


def fill_to(mongo_url: str, database: str, size: int) -> None:
    """Load a year of closed reports in bulk (bench/queries.py's history) until intake holds `size`.

    The reports of the previous measurement are closed first, as routing would have seen to in the
    meantime: with no routing here they stay open, and each measurement would start with more open
    reports nearby for its duplicate lookups to read than the one before."""
    client = pymongo.MongoClient(mongo_url)
    client[database]["reports"].update_many({"open": True}, {"$set": {"open": False, "status": "closed"}})
    missing = size - stored_reports(mongo_url, database)
    city = queries.City.of(reference.load(None), default_rules(reference.load(None).categories.values()))
    try:
        started, done = time.perf_counter(), 0
        filings = queries.history(city, max(0, missing), random.Random(size))
        for batch in queries.batches(filings, queries.BATCH):
            client[database]["reports"].insert_many([filing.report for filing in batch], ordered=False)
            done += len(batch)
            print(f"\r  loading reports: {done}/{missing}", end="", flush=True)
        print(f" in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        client.close()


# --- report -----------------------------------------------------------------------------------

def print_results(results: list[Result]) -> None:
    print(f"\n{'target':16} {'ok':>8} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r.target:16} {r.ok:>8} {sum(r.errors.values()):>7} {r.rate:>9.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f}")
    for r in results:
        if r.errors:
            print(f"  {r.target} errors: " + ", ".join(f"{kind} x{n}" for kind, n in r.errors.most_common()))
    bare = next((r for r in results if r.target == "bare"), None)
    for r in results:
        if bare and bare.rate and r is not bare:
            print(f"{r.target} / bare: {100 * r.rate / bare.rate:.1f} %")


def reproduce_command(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable, ROOT)
    return f"cd {shlex.quote(str(ROOT))} && " + shlex.join(
        [python, "-m", "bench.intake_throughput", "--seconds", f"{args.seconds:g}",
         "--concurrency", str(args.concurrency), "--warmup", f"{args.warmup:g}"]
        + (["--stored", ",".join(map(str, args.stored))] if args.stored else []))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (one volunteer each)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--stored", type=lambda text: [int(n) for n in text.split(",")], default=[],
                        help="measure intake again with this many stored reports, e.g. 1000,50000")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"machine: nproc={len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}; "
          f"load: {args.concurrency} keep-alive clients, {args.warmup:g} s warm-up + {args.seconds:g} s per target")
    print(f"reproduce: {reproduce_command(args)}")
    with bench_store() as (mongo_url, store, _), bench_vhost() as (vhost, amqp_url):
        databases = bench_databases(("intake",))
        env = {**service_env(mongo_url, amqp_url, databases), "WOODPECKER_ADMISSION_BACKLOG": "0"}
        print(f"gunicorn, deploy/gunicorn.conf.py; {store}; broker vhost {vhost}:", flush=True)
        try:
            results = [bench_intake(env, args), bench_bare(env, args)]
            for size in sorted(args.stored):
                fill_to(mongo_url, databases["INTAKE_DATABASE"], size)
                stored = stored_reports(mongo_url, databases["INTAKE_DATABASE"])
                results.append(bench_intake(env, args, f"intake@{stored}"))
        finally:
            drop_databases(mongo_url, databases)
    print_results(results)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (the gunicorn processes were stopped)")
