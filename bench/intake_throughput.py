"""`make bench`: intake's POST /v1/reports throughput under gunicorn, next to a bare Flask app.

Both targets run under deploy/gunicorn.conf.py with the embedded store (MONGO_URL unset), and are
loaded by the same keep-alive HTTP clients (one thread and one connection per simulated volunteer).
The bare app parses the same JSON body and echoes it, so the ratio intake/bare shows what the
service's own work (auth, validation, grid lookup, duplicate check, store, outbox) costs.
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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests
from flask import Flask, request
from PIL import Image

from shared.auth import issue_token
from shared.config import DEFAULT_AMQP_URL, DEV_JWT_SECRET, Settings

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
INTAKE_APP = "services.intake.app:create_app()"
BARE_APP = "bench.intake_throughput:create_bare_app()"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15  # gunicorn's graceful_timeout (10 s) plus some slack

# Inside grid lanshan-01, so every report is accepted and lands in the same grid.
LAT_RANGE = (35.045, 35.075)
LNG_RANGE = (118.305, 118.325)
DESCRIPTION = "人行道上停放多辆机动车，影响通行"


# --- the bare app -----------------------------------------------------------------------------

def create_bare_app() -> Flask:
    """The floor: one route that parses the report JSON and echoes it with 201."""
    app = Flask("bench-bare")
    # deploy/gunicorn.conf.py reads this after fork; the bare app has no background work to start.
    app.config["WOODPECKER_SETTINGS"] = replace(Settings.from_env("intake", env={}), inprocess_workers=False)
    # Same JSON encoding as the services, so response bodies are comparable.
    app.json.ensure_ascii = False

    @app.post("/v1/reports")
    def submit_report():
        return request.get_json(), 201

    @app.get("/readyz")
    def readyz():
        return {"status": "ready"}

    return app


# --- gunicorn ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env() -> dict[str, str]:
    """The environment of `make up`: the embedded store unless MONGO_URL is set (then a fresh database)."""
    env = {k: v for k, v in os.environ.items() if k != "INTAKE_DATABASE"}
    env.setdefault("AMQP_URL", DEFAULT_AMQP_URL)
    if env.get("MONGO_URL"):
        env["INTAKE_DATABASE"] = f"bench_intake_{os.getpid()}"
    return env


def gunicorn_command(app_spec: str, port: int) -> list[str]:
    return [str(GUNICORN), "-c", "deploy/gunicorn.conf.py", "-b", f"127.0.0.1:{port}", app_spec]


def is_ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Server:
    """A gunicorn master in a session of its own, so Ctrl-C reaches only the bench, which stops it."""

    def __init__(self, app_spec: str):
        self.port = free_port()
        self.command = gunicorn_command(app_spec, self.port)
        self.log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=service_env(), stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not is_ready(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{shlex.join(self.command)} did not become ready; log:\n{self.log_tail()}")
            time.sleep(0.3)

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


def bench_target(target: str, app_spec: str, args: argparse.Namespace) -> Result:
    server = Server(app_spec)
    try:
        server.wait_ready()
        print(f"  {target}: {shlex.join(server.command)}", flush=True)
        volunteers = (intake_volunteers(server.port, args.concurrency) if target == "intake"
                      else bare_volunteers(args.concurrency))
        return measure(target, server.port, volunteers, args.warmup, args.seconds)
    finally:
        server.stop()


# --- report -----------------------------------------------------------------------------------

def print_results(results: list[Result]) -> None:
    print(f"\n{'target':8} {'ok':>8} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r.target:8} {r.ok:>8} {sum(r.errors.values()):>7} {r.rate:>9.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f}")
    for r in results:
        if r.errors:
            print(f"  {r.target} errors: " + ", ".join(f"{kind} x{n}" for kind, n in r.errors.most_common()))
    intake, bare = results
    if bare.rate:
        print(f"\nintake / bare: {100 * intake.rate / bare.rate:.1f} %")


def reproduce_command(args: argparse.Namespace) -> str:
    python = os.path.relpath(sys.executable, ROOT)
    return f"cd {shlex.quote(str(ROOT))} && " + shlex.join(
        [python, "-m", "bench.intake_throughput", "--seconds", f"{args.seconds:g}",
         "--concurrency", str(args.concurrency), "--warmup", f"{args.warmup:g}"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (one volunteer each)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"machine: nproc={len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}; "
          f"load: {args.concurrency} keep-alive clients, {args.warmup:g} s warm-up + {args.seconds:g} s per target")
    print(f"reproduce: {reproduce_command(args)}")
    store = f"MongoDB at {os.environ['MONGO_URL']}" if os.environ.get("MONGO_URL") else "the embedded store"
    print(f"gunicorn with {store}, deploy/gunicorn.conf.py:")
    results = [bench_target("intake", INTAKE_APP, args), bench_target("bare", BARE_APP, args)]
    print_results(results)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (the gunicorn processes were stopped)")
