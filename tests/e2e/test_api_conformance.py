"""The API documents tell the truth: schemathesis, every check and every phase (stateful included), against
each running service's own /openapi.json, as each role that has endpoints there, on the operations the document
says that role may call (and those any caller may). Any failure fails the test, with schemathesis's report (and a
command to reproduce it) as the message. That every operation refuses the roles it does not name is checked for
all of them at once, by tests/service/test_role_refusals.py: schemathesis would take a 2xx as documented there.

Configuration is the repository's schemathesis.toml (what a schema cannot say, and is therefore expected).
The seed is fixed and no example database is kept (schemathesis.toml), so a run is the same in CI as on a
developer's machine; raise WOODPECKER_CONFORMANCE_EXAMPLES to look harder. The runs are independent (one
service, one caller each), so they go RUNS_AT_ONCE at a time: each spends much of its time waiting for the
services' answers, which another run's requests fill.
"""
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import bearer
from tests.e2e.test_system import jpeg_bytes
from tests.support import operations, roles_allowed

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = int(os.environ.get("WOODPECKER_CONFORMANCE_EXAMPLES", "20"))
SEED = 20261124
RUNS_AT_ONCE = int(os.environ.get("WOODPECKER_CONFORMANCE_RUNS_AT_ONCE", "3"))

# Who calls what: each role that has endpoints on a service.
CALLERS = {
    "volunteer": {"role": "volunteer", "sub": "conformance-volunteer"},
    "grid_leader": {"role": "grid_leader", "sub": "conformance-leader", "grid": "lanshan-01"},
    "department": {"role": "department", "sub": "conformance-police", "dept": "traffic-police"},
    "office": {"role": "office", "sub": "conformance-office"},
    "association": {"role": "association", "sub": "conformance-association"},
}
ROLES = {"intake": ("volunteer", "grid_leader", "department", "office", "association"),
         "routing": ("grid_leader", "department", "office", "association"),
         "hours": ("volunteer", "grid_leader", "office", "association"),
         "notify": ("volunteer", "grid_leader", "department", "office")}


@pytest.fixture(scope="module")
def city(system):
    """Something to find: a report by the volunteer, in the grid leader's grid, and the case it opens; a
    registered volunteer (their id)."""
    urls, _ = system
    volunteer = bearer(**CALLERS["volunteer"])
    photo = requests.post(f"{urls['intake']}/v1/photos", headers=volunteer, timeout=10,
                          files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}).json()["id"]
    created = requests.post(f"{urls['intake']}/v1/reports", headers=volunteer, timeout=10, json={
        "category": "traffic.parking", "description": "人行道上停放多辆机动车，影响通行", "photo_ids": [photo],
        "location": {"lat": 35.06, "lng": 118.315}})
    assert created.status_code == 201, created.text
    registered = requests.post(f"{urls['hours']}/v1/volunteers", headers=bearer(**CALLERS["association"]), timeout=10,
                               json={"name": "王小明", "phone": "13900000000", "organization": "金雀山街道志愿服务队",
                                     "grid_id": "lanshan-01"})
    assert registered.status_code == 201, registered.text
    return urls, registered.json()["id"]


RUNS = [(s, r) for s, roles in ROLES.items() for r in roles]


def schemathesis_command(urls: dict[str, str], volunteer_id: str, documents: dict[str, dict], service: str,
                         role: str) -> list[str]:
    # On hours a volunteer is someone the association registered: their token's sub is their volunteer id.
    caller = {**CALLERS[role], "sub": volunteer_id} if (service, role) == ("hours", "volunteer") else CALLERS[role]
    token = bearer(**caller)["Authorization"]
    callable_by_role = [argument for method, path, operation in operations(documents[service])
                        if (allowed := roles_allowed(operation)) is None or role in allowed
                        for argument in ("--include-name", f"{method} {path}")]
    return [str(SCHEMATHESIS), "--config-file", str(ROOT / "schemathesis.toml"), "run",
            f"{urls[service]}/openapi.json", "--header", f"Authorization: {token}", "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
            *callable_by_role, "--no-color"]


@pytest.fixture(scope="module")
def runs(city, request) -> Iterator[dict[tuple[str, str], Future]]:
    """The selected (service, role) runs, started together and RUNS_AT_ONCE at a time; each test waits for its own."""
    urls, volunteer_id = city
    selected = [(item.callspec.params["service"], item.callspec.params["role"]) for item in request.session.items
                if item.nodeid.startswith(f"{request.node.nodeid}::") and hasattr(item, "callspec")]
    # Read here, not in the pool's threads: pytest rewrites os.environ between tests, and a thread reading it then
    # (requests looks for proxies there) fails.
    documents = {service: requests.get(f"{urls[service]}/openapi.json", timeout=10).json()
                 for service in {service for service, _ in selected}}
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks"}
    commands = {run: schemathesis_command(urls, volunteer_id, documents, *run) for run in selected}
    with ThreadPoolExecutor(max_workers=RUNS_AT_ONCE) as pool:
        started = {run: pool.submit(subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                                    env=environment) for run, command in commands.items()}
        yield started
        for future in started.values():
            future.cancel()


@pytest.mark.parametrize("service, role", RUNS)
def test_the_document_tells_the_truth(runs, service, role):
    run = runs[(service, role)].result()
    assert run.returncode == 0, f"{service} as {role}:\n{run.stdout[-20000:]}\n{run.stderr[-2000:]}"
