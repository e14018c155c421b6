"""`make up` / `make down`: the whole system as local processes (no Docker needed).

Each service's web process runs under gunicorn in the background, logging to .run/<service>.log.
With MONGO_URL unset they use the embedded store, so each web process also runs its service's
consumer and outbox relay. With MONGO_URL set, a worker process per service runs those instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from shared.auth import issue_token
from shared.bus import broker_problem
from shared.config import DEV_JWT_SECRET, SERVICE_PORTS, Settings

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("WOODPECKER_RUN_DIR", ROOT / ".run"))
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 60


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False


def ensure_broker(amqp_url: str) -> None:
    if broker_problem(amqp_url) is None:
        return
    host = urlparse(amqp_url).hostname
    server = shutil.which("rabbitmq-server")
    if host not in ("127.0.0.1", "localhost") or server is None:
        sys.exit(f"RabbitMQ is not reachable at {amqp_url}.\n"
                 "Start one (Debian: `apt-get install rabbitmq-server`, then `rabbitmq-server -detached` as root;\n"
                 "or `docker run -d -p 5672:5672 rabbitmq:3-management`), or point AMQP_URL at yours.")
    if os.geteuid() != 0:
        sys.exit("RabbitMQ is installed but stopped. Start it with: sudo rabbitmq-server -detached")
    print("RabbitMQ is stopped; starting it (rabbitmq-server -detached) ...")
    subprocess.run([server, "-detached"], check=False)
    deadline = time.monotonic() + 90
    while broker_problem(amqp_url):
        if time.monotonic() > deadline:
            sys.exit("RabbitMQ did not come up within 90 s; see /var/log/rabbitmq/.")
        time.sleep(1)


def _spawn(command: list[str], name: str) -> None:
    pid_file = RUN / f"{name}.pid"
    if _alive(pid_file):
        print(f"  {name}: already running (pid {pid_file.read_text()})")
        return
    log = open(RUN / f"{name}.log", "ab")  # the child keeps the descriptor; ours closes with this process
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))
    print(f"  {name}: started (pid {process.pid}, log {RUN / name}.log)")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def up() -> None:
    RUN.mkdir(exist_ok=True)
    settings = Settings.from_env("intake")
    ensure_broker(settings.amqp_url)
    if settings.embedded_store:
        print("MONGO_URL is not set: every service uses its EMBEDDED IN-MEMORY store (data is lost on `make down`).")
    host = os.environ.get("WOODPECKER_BIND_HOST", "127.0.0.1")
    for service in SERVICE_PORTS:
        port = Settings.from_env(service).port
        _spawn([str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "-b", f"{host}:{port}",
                "--name", f"woodpecker-{service}", f"services.{service}.app:create_app()"], f"{service}-web")
        if not settings.embedded_store and (ROOT / "services" / service / "worker.py").exists():
            _spawn([sys.executable, "-m", f"services.{service}.worker"], f"{service}-worker")
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = {service: Settings.from_env(service).port for service in SERVICE_PORTS}
    while pending and time.monotonic() < deadline:
        pending = {s: p for s, p in pending.items() if not _ready(p)}
        time.sleep(0.5)
    if pending:
        sys.exit(f"Not ready after {READY_TIMEOUT_S} s: {', '.join(pending)}. See {RUN}/<service>-web.log.")
    secret = os.environ.get("WOODPECKER_JWT_SECRET") or DEV_JWT_SECRET
    print("\nWoodpecker is up:")
    for service in SERVICE_PORTS:
        port = Settings.from_env(service).port
        print(f"  {service:8} http://127.0.0.1:{port}   docs: http://127.0.0.1:{port}/docs")
    print("\nAn office token (12 h):")
    print(f"  export TOKEN={issue_token(secret, 'office-1', 'office')}")
    print("A volunteer token:  make token ROLE=volunteer SUB=vol-1")
    print("Stop everything:    make down")


def down() -> None:
    for pid_file in sorted(RUN.glob("*.pid")):
        name = pid_file.stem
        if _alive(pid_file):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            print(f"  {name}: stopped")
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1]]()
