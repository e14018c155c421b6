"""`make up` / `make down` / `make reset`: the whole system as local processes (no Docker needed).

Every service runs as it does in production: its gunicorn web process, and its worker process for
the consumer, outbox relay and periodic work. Each reaches its store through MONGO_URL (or its own
<SERVICE>_MONGO_URL); when neither is set, `make up` first starts an embedded database for each service
(deploy/embedded_db.py), with its data in .run/db/<service>/, which `make down` keeps and `make reset` wipes.
One server per service because the embedded database is one Python process, so one core: the services'
stores together would cap the whole pipeline at what one core serves (see the README's Performance).
Logs are .run/<name>.log.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from deploy import console
from deploy.broker import administrator, provision, service_user, vhost_of
from deploy.embedded_db import (
    DEFAULT_PORT,
    EmbeddedDatabase,
    EmbeddedDatabaseError,
    answers,
    is_running,
    stop_pids,
)
from deploy.migrations import migrate
from deploy.migrations.local_layout import move_shared_data
from services.notify.sealing import DEV_SECRET_KEY, checked_secret_key
from services.notify.settings import NotifySettings
from shared.auth import accepted_tokens, issue_token
from shared.bus import broker_problem
from shared.config import SERVICE_PORTS, Settings, UnsafeConfiguration, check_jwt_secret, mongo_url_variable
from shared.store import connect

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("WOODPECKER_RUN_DIR", ROOT / ".run"))
DATA = RUN / "db"
DB = "db"  # the embedded databases' names among the processes: db-<service> (.run/db-intake.pid, .log, .url)
# Where a single embedded database for all the services kept its data before each had its own (moved on `up`).
SHARED_BEFORE = RUN / "db-shared-before"
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 60


def _pid(name: str) -> int | None:
    """The pid of a process `make up` started, if it is still running."""
    try:
        pid = int((RUN / f"{name}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if is_running(pid) else None


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


def database_name(service: str) -> str:
    return f"{DB}-{service}"


def database_port(service: str) -> int:
    """WOODPECKER_DB_PORT (27017) for the first service, the next ports for the others."""
    return int(os.environ.get("WOODPECKER_DB_PORT", DEFAULT_PORT)) + list(SERVICE_PORTS).index(service)


def ensure_embedded_database(service: str) -> str:
    """Start the service's embedded database unless it runs already; returns the MONGO_URL the service gets."""
    name = database_name(service)
    url_file = RUN / f"{name}.url"
    if (pid := _pid(name)) and url_file.exists() and answers(url_file.read_text().strip(), timeout_s=2):
        print(f"  {name}: already running (pid {pid})")
        return url_file.read_text().strip()
    database = EmbeddedDatabase(DATA / service, database_port(service), RUN / f"{name}.log")
    try:
        pid = database.start()
    except EmbeddedDatabaseError as exc:
        sys.exit(f"The embedded database of {service} did not start. {exc}")
    (RUN / f"{name}.pid").write_text(str(pid))
    url_file.write_text(database.url)
    print(f"  {name}: started (pid {pid}, {database.url}, log {RUN / name}.log)")
    return database.url


def provision_broker(settings: Settings) -> dict[str, str]:
    """Queues first; and, where this machine administers the broker, a user of its own for each service,
    whose password is kept in .run/broker-users.json (so a restart keeps what running processes use)."""
    admin = administrator()
    users = RUN / "broker-users.json"
    passwords = json.loads(users.read_text()) if users.exists() else {}
    urls = provision(settings.amqp_url, settings.retry_delays_ms, admin, passwords)
    if admin is None:
        print("  broker: no administrator here (not root beside RabbitMQ, no RABBITMQ_ADMIN_URL): every service "
              "connects with AMQP_URL's own user.")
        return urls
    users.write_text(json.dumps({service: unquote(urlparse(url).password) for service, url in urls.items()}))
    users.chmod(0o600)
    users = ", ".join(service_user(s, vhost_of(settings.amqp_url)) for s in urls)
    print(f"  broker: queues declared; services connect as {users}")
    return urls


def _spawn(command: list[str], name: str, env: dict[str, str]) -> None:
    if pid := _pid(name):
        print(f"  {name}: already running (pid {pid})")
        return
    log = open(RUN / f"{name}.log", "ab")  # the child keeps the descriptor; ours closes with this process
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    (RUN / f"{name}.pid").write_text(str(process.pid))
    print(f"  {name}: started (pid {process.pid}, log {RUN / name}.log)")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def up() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    try:
        settings = Settings.from_env("intake", env)
    except ValueError as refused:  # a setting the services would refuse: say which before starting anything
        sys.exit(str(refused))
    ensure_broker(settings.amqp_url)
    broker_urls = provision_broker(settings)
    embedded = [] if env.get("MONGO_URL") else [s for s in SERVICE_PORTS if not env.get(mongo_url_variable(s))]
    if embedded:
        print("MONGO_URL is not set: starting the EMBEDDED DATABASE (SecantusDB, beta), one for each service.")
        if (DATA / "WiredTiger").exists():  # one database for all the services, as `make up` ran it before
            if pid := _pid(DB):
                sys.exit(f"The embedded database of an earlier `make up` runs (pid {pid}), one for all the services. "
                         "Run `make down`, then `make up`: it gives each service a database of its own and moves "
                         "their data into them.")
            DATA.rename(SHARED_BEFORE)
        urls = {service: ensure_embedded_database(service) for service in embedded}
        move_shared_data(SHARED_BEFORE, urls, env, RUN / f"{DB}-shared-before.log")
        env.update({mongo_url_variable(service): url for service, url in urls.items()})
        print(f"  Their data lives in {DATA}/<service>/ and survives `make down`; `make reset` wipes it.\n"
              "  For production, run MongoDB: set MONGO_URL=mongodb://..., or use `docker compose up`.")
        if not env.get("WOODPECKER_JWT_SECRET"):
            print("  WOODPECKER_JWT_SECRET is not set: tokens are signed with the public development secret.")
            env["WOODPECKER_ALLOW_DEV_SECRET"] = "1"
        if not env.get("NOTIFY_SECRET_KEY"):
            print("  NOTIFY_SECRET_KEY is not set: webhook secrets are sealed with the public development key.")
            env.update(NOTIFY_SECRET_KEY=DEV_SECRET_KEY, WOODPECKER_ALLOW_DEV_SECRET="1")
    try:
        check_jwt_secret(Settings.from_env("intake", env))
        checked_secret_key(NotifySettings.from_env(env), Settings.from_env("notify", env))
    except UnsafeConfiguration as refused:
        sys.exit(str(refused))
    for service in SERVICE_PORTS:  # the data in the shape this version stores it, before any process reads it
        service_settings = Settings.from_env(service, env)
        migrate(connect(service_settings.mongo_url, service_settings.database), service, env, say=print)
    console_settings = allow_console(env)
    host = env.get("WOODPECKER_BIND_HOST", "127.0.0.1")
    ports = {service: Settings.from_env(service, env).port for service in SERVICE_PORTS}
    for service, port in ports.items():
        own = {**env, "AMQP_URL": broker_urls[service]}
        _spawn([str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "-b", f"{host}:{port}",
                "--name", f"woodpecker-{service}", f"services.{service}.app:create_app()"], f"{service}-web", own)
        if (ROOT / "services" / service / "worker.py").exists():
            _spawn([sys.executable, "-m", f"services.{service}.worker"], f"{service}-worker", own)
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(ports)
    while pending and time.monotonic() < deadline:
        pending = {s: p for s, p in pending.items() if not _ready(p)}
        time.sleep(0.5)
    if pending:
        sys.exit(f"Not ready after {READY_TIMEOUT_S} s: {', '.join(pending)}. See {RUN}/<service>-web.log.")
    print("\nWoodpecker is up:")
    for service, port in ports.items():
        print(f"  {service:8} http://127.0.0.1:{port}   docs: http://127.0.0.1:{port}/docs")
    print(f"\nBearer tokens: {accepted_tokens(settings)}")
    if "local" in settings.token_issuers:
        print("An office token (12 h):")
        token = issue_token(settings.jwt_secret, "office-1", "office", issuer=settings.jwt_issuer,
                            audience=settings.jwt_audience)
        print(f"  export TOKEN={token}")
        print("A volunteer token:  make token ROLE=volunteer SUB=vol-1")
    else:
        print("Get tokens from the identity provider (docs/identity.md); `make token` is off.")
    if console_settings is not None:
        start_console(env, console_settings, host, settings)
    print("Stop everything:    make down   (data kept; `make reset` wipes it)")


# One sign-in link per role the console serves: (what it is, its landing route, the token's claims).
CONSOLE_CALLERS = (("office", "/triage", {"sub": "office-1", "role": "office"}),
                   ("department", "/cases", {"sub": "police-1", "role": "department", "dept": "traffic-police"}),
                   ("grid leader", "/cases", {"sub": "leader-lanshan-01", "role": "grid_leader", "grid": "lanshan-01"}))


def allow_console(env: dict[str, str]) -> console.ConsoleSettings | None:
    """The console's settings, unless WOODPECKER_CONSOLE=off; the services' CORS admits its origins (see
    deploy/console.py for why the console calls the services across origins)."""
    if env.get("WOODPECKER_CONSOLE", "on") == "off":
        return None
    try:
        settings = console.ConsoleSettings.from_env(env)
    except ValueError as refused:  # a CONSOLE_OIDC_* setting it cannot use: say which before starting anything
        sys.exit(f"The console cannot start: {refused}")
    allowed = [o for o in env.get("WOODPECKER_CORS_ORIGINS", "").split(",") if o.strip()]
    env["WOODPECKER_CORS_ORIGINS"] = ",".join(dict.fromkeys([*allowed, *console.origins(settings.port)]))
    return settings


def start_console(env: dict[str, str], settings: console.ConsoleSettings, host: str, auth: Settings) -> None:
    """Build the console if its sources changed, serve it, and print a sign-in link per role. Without Node.js
    (or with a build that fails) everything else runs, and this says why the console does not."""
    built = console.CONSOLE / "dist" / console.BUILT_FROM
    current = built.exists() and built.read_text() == console.sources_digest()
    if not current and (problem := console.node_problem()):
        print(f"\nThe console is not served: {problem}")
        return
    try:
        if not current:
            print("\nBuilding the console (clients/console: its sources changed) ...")
            console.build_if_changed()
    except (console.BuildFailed, subprocess.TimeoutExpired) as failed:
        print(f"\nThe console is not served: its build failed. {failed}")
        return
    _spawn([str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--workers", "1", "--threads", "4",
            "-b", f"{host}:{settings.port}", "--name", "woodpecker-console", "deploy.console:create_app()"],
           "console-web", env)
    base = f"http://127.0.0.1:{settings.port}"
    if settings.provider is not None:
        print(f"\nThe console: {base}   staff sign in through the city's provider {settings.provider.issuer} "
              f"(client {settings.provider.client_id}, redirect URI {base}/sign-in/callback)")
    if "local" not in auth.token_issuers:
        print(f"\nThe console: {base}   (sign-in links need local tokens: WOODPECKER_TOKEN_ISSUERS is oidc alone)")
        return
    print(f"\nThe console: {base}   sign in with a link (12 h, kept for its browser tab only):")
    for what, route, claims in CONSOLE_CALLERS:
        token = issue_token(auth.jwt_secret, claims["sub"], claims["role"], dept=claims.get("dept"),
                            grid=claims.get("grid"), issuer=auth.jwt_issuer, audience=auth.jwt_audience)
        print(f"  {what:11} {base}{route}#token={token}")


def _stop(names: list[str]) -> None:
    """Stop these processes together (each takes a moment to finish its work) and forget them."""
    pids = {name: pid for name in names if (pid := _pid(name))}
    stopped = stop_pids(list(pids.values()))
    for name in names:
        if pids.get(name) in stopped:
            print(f"  {name}: stopped")
        (RUN / f"{name}.pid").unlink(missing_ok=True)


def _is_database(name: str) -> bool:
    return name == DB or name.startswith(f"{DB}-")  # `db` alone: the one database of an earlier `make up`


def down() -> None:
    # The services first, so that none of them loses its store while it is still working.
    names = sorted(p.stem for p in RUN.glob("*.pid"))
    _stop([name for name in names if not _is_database(name)])
    _stop([name for name in names if _is_database(name)])
    for url_file in RUN.glob(f"{DB}*.url"):
        url_file.unlink()


def reset() -> None:
    down()
    for data in (DATA, SHARED_BEFORE):
        if data.exists():
            shutil.rmtree(data)
            print(f"  {data}: wiped")


if __name__ == "__main__":
    {"up": up, "down": down, "reset": reset}[sys.argv[1]]()
