"""End to end: the embedded database is SIGKILLed while reports stream in, and started again.

A client that retries with its Idempotency-Key until it gets a 201 must end with every report
stored exactly once, and routing must open exactly one case for each: an acknowledged write that
the crash lost, a retry that created a second report, or an event that a relay or a consumer
dropped in the outage would each break that.
"""
import contextlib
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pymongo
import pytest
import requests

from deploy.embedded_db import EmbeddedDatabase
from shared.errors import PROBLEM_MEDIA_TYPE
from tests.conftest import bearer
from tests.e2e.conftest import running_system, system_env
from tests.e2e.test_system import jpeg_bytes
from tests.support import free_port, wait_for

pytestmark = pytest.mark.e2e
RATE_PER_S = 10
SENDING_S = 6.0
KILL_AFTER_S = 2.0
# With the restart, longer than pymongo's 3 s server selection (shared/store.py): with 1-2 s the services
# just wait for the database to come back, no request fails, and the clients' retries are never tested.
DOWN_FOR_S = 3.0
REPORT_DEADLINE_S = 60.0
RETRY_PAUSE_S = 0.2


@dataclass
class Submission:
    """One report as a client sends it: one key, one body, however many attempts it takes."""

    key: str
    body: dict
    outcomes: list = field(default_factory=list)  # a status code, or the name of a connection error
    report_id: str | None = None
    took_s: float | None = None


class CrashingDatabase:
    """The embedded database on one port and data directory, which the test kills and starts again."""

    def __init__(self, data_dir: Path, log_path: Path):
        self.server = EmbeddedDatabase(data_dir, free_port(), log_path)

    @property
    def url(self) -> str:
        return self.server.url

    def crash_and_restart(self, down_for_s: float) -> float:
        """SIGKILL it, leave it down, start it on the same port and data; returns how long it was away."""
        killed_at = time.monotonic()
        self.server.kill()
        time.sleep(down_for_s)
        self.server = EmbeddedDatabase(self.server.data_dir, self.server.port, self.server.log_path)
        self.server.start()
        return time.monotonic() - killed_at


@pytest.fixture
def database(tmp_path):
    database = CrashingDatabase(tmp_path / "db", tmp_path / "db.log")
    database.server.start()
    try:
        yield database
    finally:
        database.server.stop()


@pytest.fixture
def system(database, amqp_url, tmp_path):
    """`make up` against that database (MONGO_URL set: no database of its own), databases of this test's own."""
    env, urls = system_env(amqp_url, database.url, tmp_path / "run", "crash", web_processes=2)
    with running_system(env) as printed:
        assert "EMBEDDED DATABASE" not in printed
        yield urls, env


def spot(n: int) -> dict:
    """The n-th of points about 650 m apart inside the city's grid cells, well beyond the 250 m within
    which reports are one problem: every report opens a case of its own."""
    row, column = divmod(n, 16)
    block, column = divmod(column, 8)
    assert row < 12, "more reports than spots"
    return {"lat": round(35.045 + 0.006 * row, 6), "lng": round(118.305 + 0.08 * block + 0.007 * column, 6)}


def submit_until_created(intake: str, headers: dict, submission: Submission, problems: list,
                         acknowledged: threading.Event) -> Submission:
    """Retry the same request (same key, same body) until a 201, as a phone with a flaky signal would."""
    started = time.monotonic()
    while time.monotonic() - started < REPORT_DEADLINE_S:
        try:
            response = requests.post(f"{intake}/v1/reports", json=submission.body, timeout=15,
                                     headers={**headers, "Idempotency-Key": submission.key})
        except requests.RequestException as exc:
            submission.outcomes.append(exc.__class__.__name__)
        else:
            submission.outcomes.append(response.status_code)
            if response.status_code == 201:
                submission.report_id, submission.took_s = response.json()["id"], time.monotonic() - started
                acknowledged.set()
                return submission
            problems.append(response)
        time.sleep(RETRY_PAUSE_S)
    return submission


def send_while_the_database_crashes(intake: str, headers: dict, submissions: list[Submission],
                                    problems: list, database: CrashingDatabase) -> float:
    """Submit at a steady rate, each report retried by a client of its own, and crash the database on the
    way; returns how long it was away."""
    acknowledged = threading.Event()
    with ThreadPoolExecutor(max_workers=len(submissions)) as clients:
        def send_at_a_steady_rate() -> None:
            start = time.monotonic()
            for n, submission in enumerate(submissions):
                time.sleep(max(0.0, start + n / RATE_PER_S - time.monotonic()))
                clients.submit(submit_until_created, intake, headers, submission, problems, acknowledged)

        sender = threading.Thread(target=send_at_a_steady_rate, name="sender")
        sender.start()
        time.sleep(KILL_AFTER_S)
        # Right after a 201: the write just acknowledged is the one a lazily flushing database would lose.
        acknowledged.clear()
        acknowledged.wait(timeout=5)
        outage_s = database.crash_and_restart(DOWN_FOR_S)
        sender.join()
    return outage_s


def test_no_acknowledged_report_is_lost_or_duplicated_when_the_database_is_killed(system, database):
    urls, env = system
    reporter = f"volunteer-{uuid.uuid4().hex[:8]}"
    volunteer = bearer("volunteer", sub=reporter)
    photo = requests.post(f"{urls['intake']}/v1/photos", headers=volunteer, timeout=10,
                          files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")})
    assert photo.status_code == 201, photo.text
    submissions = [Submission(uuid.uuid4().hex, {
        "category": "env.garbage", "description": f"路边垃圾堆放 #{n}", "photo_ids": [photo.json()["id"]],
        "location": spot(n)}) for n in range(int(RATE_PER_S * SENDING_S))]
    problems: list[requests.Response] = []

    outage_s = send_while_the_database_crashes(urls["intake"], volunteer, submissions, problems, database)
    retried = [s for s in submissions if len(s.outcomes) > 1]
    print(f"\ndatabase away for {outage_s:.1f} s; {len(retried)} of {len(submissions)} reports needed a retry; "
          f"failed attempts {dict(Counter(o for s in submissions for o in s.outcomes[:-1]))}; "
          f"longest time to 201 {max(s.took_s or 0 for s in submissions):.1f} s")

    assert [s.outcomes for s in submissions if s.report_id is None] == []
    for response in problems:  # the outage as the contract words it, never a 500
        assert response.status_code == 503 and response.headers["Content-Type"] == PROBLEM_MEDIA_TYPE, response.text
        assert "Retry-After" in response.headers
    created = {s.report_id for s in submissions}
    assert len(created) == len(submissions)

    store = pymongo.MongoClient(database.url, serverSelectionTimeoutMS=10_000)
    with contextlib.closing(store):
        reports, cases = store[env["INTAKE_DATABASE"]]["reports"], store[env["ROUTING_DATABASE"]]["cases"]
        stored = {d["_id"]: d["idempotency_key"] for d in reports.find({}, {"idempotency_key": 1})}
        assert sorted(created - set(stored)) == [], "acknowledged with a 201, then lost in the crash"
        assert sorted(set(stored) - created) == [], "stored, though no client was given it"
        assert sorted(stored.values()) == sorted(f"{reporter}:{s.key}" for s in submissions)
        listed = requests.get(f"{urls['intake']}/v1/reports", params={"limit": 200}, headers=volunteer, timeout=10)
        assert {r["id"] for r in listed.json()["items"]} == created

        def cases_by_report() -> Counter:
            return Counter(rid for case in cases.find({}, {"report_ids": 1}) for rid in case["report_ids"])

        wait_for(lambda: created <= set(cases_by_report()), timeout=60, interval=0.5, what="a case for every report")
        assert cases_by_report() == Counter(created)
        assert {c["_id"] for c in cases.find({}, {"_id": 1})} == {f"case-{rid}" for rid in created}
        # And back: every case's events reached its report in intake, through routing's relay and intake's consumer.
        wait_for(lambda: {d["_id"]: d["case_id"] for d in reports.find({}, {"case_id": 1})}
                 == {rid: f"case-{rid}" for rid in created}, timeout=60, interval=0.5, what="every report on its case")
