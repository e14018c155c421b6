"""End to end: while reports stream in, intake's web process and every service's worker are SIGKILLed, then
started again (`make up` starts what is not running).

A web process may die between storing a report and publishing it, a worker between taking a batch of
events and acknowledging it, a relay between publishing and settling. Nothing may be lost (every report
gets its case, the department hears of each one) and nothing may be applied twice (one case per report, and
each report follows each case event once).
"""
import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymongo
import pytest
import requests

from tests.conftest import bearer
from tests.e2e.conftest import SERVICES, local, running_system, system_env
from tests.e2e.test_database_crash import Submission, spot, submit_until_created
from tests.e2e.test_system import jpeg_bytes
from tests.support import EventTap, wait_for

pytestmark = pytest.mark.e2e
RATE_PER_S = 10
SENDING_S = 6.0
KILL_AFTER_S = 2.0
DOWN_FOR_S = 1.0
KILLED = ("intake-web", *(f"{service}-worker" for service in SERVICES))


@pytest.fixture
def system(amqp_url, mongo_url, tmp_path):
    env, urls = system_env(amqp_url, mongo_url, tmp_path / "run", "kill", web_processes=2)
    with running_system(env):
        yield urls, env


def kill_and_start_again(env: dict) -> None:
    """SIGKILL the processes (a gunicorn with its workers: each was started in a session of its own), wait, and
    let `make up` start again what no longer runs."""
    run = Path(env["WOODPECKER_RUN_DIR"])
    for name in KILLED:
        os.killpg(int((run / f"{name}.pid").read_text()), signal.SIGKILL)
    time.sleep(DOWN_FOR_S)
    started = local("up", env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert all(f"{name}: started" in started.stdout for name in KILLED), started.stdout


def test_nothing_is_lost_or_applied_twice_when_the_web_process_and_every_worker_are_killed(system, amqp_url,
                                                                                          mongo_url):
    urls, env = system
    department = EventTap(amqp_url, "case.dispatched.*")
    reporter = f"volunteer-{uuid.uuid4().hex[:8]}"
    volunteer = bearer("volunteer", sub=reporter)
    photo = requests.post(f"{urls['intake']}/v1/photos", headers=volunteer, timeout=10,
                          files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}).json()["id"]
    submissions = [Submission(uuid.uuid4().hex, {
        "category": "env.garbage", "description": f"路边垃圾堆放 #{n}", "photo_ids": [photo],
        "location": spot(n)}) for n in range(int(RATE_PER_S * SENDING_S))]
    problems: list = []
    try:
        with ThreadPoolExecutor(max_workers=len(submissions)) as clients:
            def send() -> None:
                start = time.monotonic()
                for n, submission in enumerate(submissions):
                    time.sleep(max(0.0, start + n / RATE_PER_S - time.monotonic()))
                    clients.submit(submit_until_created, urls["intake"], volunteer, submission, problems,
                                   threading.Event())

            sender = threading.Thread(target=send, name="sender")
            sender.start()
            time.sleep(KILL_AFTER_S)
            kill_and_start_again(env)
            sender.join()
        retried = [s for s in submissions if len(s.outcomes) > 1]
        print(f"\n{len(retried)} of {len(submissions)} reports needed a retry: "
              f"{dict(Counter(o for s in submissions for o in s.outcomes[:-1]))}")
        assert [s.outcomes for s in submissions if s.report_id is None] == []
        created = {s.report_id for s in submissions}
        assert len(created) == len(submissions)

        store = pymongo.MongoClient(mongo_url)
        reports, cases = store[env["INTAKE_DATABASE"]]["reports"], store[env["ROUTING_DATABASE"]]["cases"]
        assert {d["_id"] for d in reports.find({}, {"_id": 1})} == created

        def followed() -> dict:
            return {d["_id"]: Counter(entry["event"] for entry in d["timeline"][1:])
                    for d in reports.find({}, {"timeline": 1})}

        wait_for(lambda: all(f["case.dispatched"] for f in followed().values()), timeout=90, interval=0.5,
                 what="every report following its dispatched case")
        # One case per report, and each of its events applied to the report once.
        assert Counter(r for case in cases.find({}, {"report_ids": 1}) for r in case["report_ids"]) == Counter(created)
        assert {rid: dict(f) for rid, f in followed().items()} == {
            rid: {"case.opened": 1, "case.dispatched": 1} for rid in created}
        # The department heard of every case (at least once: an event published again carries its id again).
        heard = wait_for(lambda: (ids := {e["data"]["report_ids"][0] for e in department.events()})
                         >= created and ids, timeout=30, what="the department hearing of every case")
        assert created <= heard
        dispatched = [e for e in department.events() if e["data"]["report_ids"][0] in created]
        assert len({e["id"] for e in dispatched}) == len(created)  # one event per case, whatever its copies
        # And each reporter heard of it once.
        inbox = store[env["NOTIFY_DATABASE"]]["inbox"]
        wait_for(lambda: inbox.count_documents({"recipient": f"volunteer:{reporter}", "kind": "report.dispatched"})
                 == len(created), timeout=60, interval=0.5, what="the reporter's inbox")
    finally:
        department.close()
