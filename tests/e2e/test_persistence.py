"""End to end: `make down && make up` on the embedded database keeps every report, case and photo.

MONGO_URL is left unset, as on a developer's machine, so `deploy.local up` starts an embedded
database for each service itself; `down` must stop every process it started and keep the data, `reset`
wipes it. A checkout whose `make up` ran one embedded database for all the services gets each service's
data moved into its own.
"""
import os
import socket
from pathlib import Path

import pymongo
import pytest
import requests

from deploy.embedded_db import EmbeddedDatabase, is_running, port_in_use
from tests.conftest import bearer
from tests.e2e.conftest import SERVICES, local
from tests.e2e.test_system import jpeg_bytes
from tests.support import free_port, free_ports, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedded_system(amqp_url, tmp_path):
    """The environment `make up` would see on a machine without MongoDB; `down` whatever the test leaves."""
    ports = {service: free_port() for service in SERVICES}
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URL" and not k.endswith("_MONGO_URL")}
    env.update({f"{s.upper()}_PORT": str(p) for s, p in ports.items()})
    env.update(AMQP_URL=amqp_url, WOODPECKER_DB_PORT=str(free_ports(len(SERVICES))[0]),
               WOODPECKER_RUN_DIR=str(tmp_path / "run"), WEB_CONCURRENCY="1")  # as system_env: one web process
    # Not the console: its build would replace the one the console's own tests serve (tests/e2e/test_console.py).
    env.update(WOODPECKER_CONSOLE="off", CONSOLE_PORT=str(free_port()))
    try:
        yield env, {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    finally:
        stopped = local("down", env, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def up(env: dict[str, str]) -> str:
    started = local("up", env)
    assert started.returncode == 0, started.stdout + started.stderr
    return started.stdout


def test_down_and_up_keep_reports_cases_and_photos(embedded_system):
    env, urls = embedded_system
    run_dir = Path(env["WOODPECKER_RUN_DIR"])
    output = up(env)
    assert "EMBEDDED DATABASE" in output and f":{env['WOODPECKER_DB_PORT']}/" in output

    volunteer, office = bearer("volunteer"), bearer("office")
    uploaded = requests.post(f"{urls['intake']}/v1/photos", headers=volunteer, timeout=10,
                             files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")})
    assert uploaded.status_code == 201, uploaded.text
    photo_id = uploaded.json()["id"]
    submitted = requests.post(f"{urls['intake']}/v1/reports", headers=volunteer, timeout=10, json={
        "category": "env.garbage", "description": "小区门口垃圾满溢，无人清运", "photo_ids": [photo_id],
        "location": {"lat": 35.100, "lng": 118.395}})
    assert submitted.status_code == 201, submitted.text
    report_id = submitted.json()["id"]

    def report() -> dict:
        return requests.get(f"{urls['intake']}/v1/reports/{report_id}", headers=volunteer, timeout=5).json()

    def case() -> dict | None:
        response = requests.get(f"{urls['routing']}/v1/cases/case-{report_id}", headers=office, timeout=5)
        return response.json() if response.status_code == 200 else None

    def settled() -> bool:
        # Every step of the case has come back to the report: nothing is still on its way.
        opened, seen = case(), report()
        return bool(opened) and seen["case_id"] == opened["id"] and len(seen["timeline"]) == 1 + len(opened["history"])

    wait_for(settled, timeout=30, what="routing's case and its steps back on the report")
    report_before, case_before = report(), case()
    photo_before = requests.get(f"{urls['intake']}/v1/photos/{photo_id}", headers=volunteer, timeout=5).content
    assert photo_before and report_before["status"] != "submitted"

    pids = {path.stem: int(path.read_text()) for path in run_dir.glob("*.pid")}
    assert set(pids) >= {"db-intake", "db-routing", "db-hours", "db-notify", "intake-web", "intake-worker",
                         "routing-web", "routing-worker"}
    stopped = local("down", env, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert [name for name, pid in pids.items() if is_running(pid)] == []
    assert not list(run_dir.glob("*.pid"))
    first_database = int(env["WOODPECKER_DB_PORT"])
    listening = [*(int(env[f"{s.upper()}_PORT"]) for s in SERVICES),
                 *range(first_database, first_database + len(SERVICES))]
    assert [port for port in listening if port_in_use(port)] == []  # gunicorn's workers too
    assert all((run_dir / "db" / service).is_dir() for service in SERVICES)

    up(env)
    assert report() == report_before
    assert case() == case_before
    photo = requests.get(f"{urls['intake']}/v1/photos/{photo_id}", headers=volunteer, timeout=5)
    assert photo.status_code == 200 and photo.content == photo_before

    wiped = local("reset", env, timeout=120)
    assert wiped.returncode == 0, wiped.stdout + wiped.stderr
    assert not (run_dir / "db").exists()


def test_up_names_the_database_port_when_it_is_taken(embedded_system):
    env, _ = embedded_system
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["WOODPECKER_DB_PORT"])))
        squatter.listen()
        started = local("up", env, timeout=180)
    assert started.returncode != 0
    assert f"Port {env['WOODPECKER_DB_PORT']} is taken" in started.stderr, started.stdout + started.stderr
    assert not list(Path(env["WOODPECKER_RUN_DIR"]).glob("*.pid"))  # no service was started


def test_up_moves_each_services_data_out_of_the_one_database_they_shared(embedded_system, tmp_path):
    env, urls = embedded_system
    run_dir = Path(env["WOODPECKER_RUN_DIR"])
    # As `make up` kept it before; on a port outside the services' row (free_port never hands that out again), which
    # must stay free for them: a stopped server's port can linger in TIME_WAIT.
    shared = EmbeddedDatabase(run_dir / "db", free_port(), tmp_path / "shared.log")
    shared.start()
    try:
        client = pymongo.MongoClient(shared.url)
        client["woodpecker_intake"]["reports"].insert_one({"_id": "r-1", "grid_id": "lanshan-01"})
        client["woodpecker_intake"]["reports"].create_index("grid_id", name="by_grid")
        client["woodpecker_routing"]["cases"].insert_one({"_id": "case-r-1", "report_ids": ["r-1"]})
        client.close()
    finally:
        shared.stop()

    output = up(env)
    assert "moving each service's data" in output, output
    intake = pymongo.MongoClient((run_dir / "db-intake.url").read_text())
    routing = pymongo.MongoClient((run_dir / "db-routing.url").read_text())
    try:
        assert intake["woodpecker_intake"]["reports"].find_one({"_id": "r-1"}) == {"_id": "r-1",
                                                                                    "grid_id": "lanshan-01"}
        assert "by_grid" in intake["woodpecker_intake"]["reports"].index_information()
        assert routing["woodpecker_routing"]["cases"].find_one({"_id": "case-r-1"})["report_ids"] == ["r-1"]
        assert intake["woodpecker_routing"]["cases"].find_one({"_id": "case-r-1"}) is None  # each its own
    finally:
        intake.close()
        routing.close()
    assert not (run_dir / "db" / "WiredTiger").exists() and (run_dir / "db-shared-before").is_dir()

    local("down", env, timeout=120)
    assert "moving" not in up(env)  # once only
