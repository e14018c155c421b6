"""End to end: deploy/examples/department_subscriber.py, run as a department would run it, against the broker."""
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pika
import pytest

from deploy.broker import Rabbitmqctl, add_department
from shared.events import Event
from tests.support import EventTap, TcpProxy, publish_raw, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "examples" / "department_subscriber.py"


class Subscriber:
    def __init__(self, process: subprocess.Popen, stdout: Path, stderr: Path, queue: str):
        self.process, self.stdout_path, self.stderr_path, self.queue = process, stdout, stderr, queue

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def finish(self, timeout: float = 20) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the subscriber did not exit within {timeout} s\n{self.stdout}\n{self.stderr}")


def queue_state(amqp_url: str, queue: str) -> tuple[int, int] | None:
    """(messages, consumers) of `queue`, or None while it does not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True).method
        return declared.message_count, declared.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture(scope="module")
def police_url(amqp_url):
    """The broker URL the city office gives the traffic police: its own user (`deploy.broker add-department`),
    which may bind only `case.*.traffic-police`; the guest's where this machine cannot create users."""
    admin = Rabbitmqctl.found()
    return add_department(amqp_url, "traffic-police", admin) if admin else amqp_url


@pytest.fixture
def start_subscriber(amqp_url, police_url, tmp_path):
    started: list[Subscriber] = []

    def start(*extra: str, url: str = police_url, queue: str = "dept.traffic-police.cases") -> Subscriber:
        n = len(started)
        stdout, stderr = tmp_path / f"out-{n}.txt", tmp_path / f"err-{n}.txt"
        command = [sys.executable, str(SCRIPT), "--amqp-url", url, "--department", "traffic-police", *extra]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err,
                                       env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        subscriber = Subscriber(process, stdout, stderr, queue)
        started.append(subscriber)
        wait_until_consuming(subscriber, amqp_url)
        return subscriber

    yield start
    for subscriber in started:
        if subscriber.process.poll() is None:
            subscriber.process.kill()
        subscriber.process.wait(timeout=10)
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            connection.channel().queue_delete(subscriber.queue)
        finally:
            connection.close()


def wait_until_consuming(subscriber: Subscriber, amqp_url: str) -> None:
    """Its queue exists, is bound (it binds before it consumes) and has its consumer."""
    def consuming() -> bool:
        assert subscriber.process.poll() is None, f"the subscriber exited\n{subscriber.stderr}"
        state = queue_state(amqp_url, subscriber.queue)
        return state is not None and state[1] >= 1

    wait_for(consuming, timeout=60, interval=0.1, what=f"a consumer on {subscriber.queue}")


def case_event(action: str, department: str, **data) -> Event:
    case_id = uuid.uuid4().hex[:24]
    return Event.new(f"case.{action}.{department}", "routing", {
        "case_id": case_id, "report_ids": [uuid.uuid4().hex[:24]], "category": "traffic.parking",
        "department": department, "status": action, "due_at": "2026-05-11T06:00:00.000Z", "grid_id": "lanshan-01",
        "location": {"lat": 35.06, "lng": 118.315, "address": "金雀山路"},
        "description": "人行道上停放多辆机动车，影响通行", "photo_ids": [], **data})


def publish(amqp_url: str, event: Event) -> None:
    publish_raw(amqp_url, event.routing_key, event.to_json(), message_id=event.id)


def test_receives_only_its_departments_cases_in_order(start_subscriber, amqp_url):
    subscriber = start_subscriber("--max-messages", "3", "--json")
    sanitation = EventTap(amqp_url, "case.*.sanitation")  # publish_raw is mandatory: someone must take it
    try:
        dispatched = case_event("dispatched", "traffic-police")
        elsewhere = case_event("dispatched", "sanitation")
        joined = case_event("joined", "traffic-police", status="dispatched", report_id="r-joined")
        accepted = case_event("accepted", "traffic-police", due_at=None)
        for event in (dispatched, elsewhere, joined, accepted):
            publish(amqp_url, event)

        assert subscriber.finish() == 0, subscriber.stderr
        assert [e["id"] for e in sanitation.events()] == [elsewhere.id]
    finally:
        sanitation.close()
    assert [e["id"] for e in subscriber.events()] == [dispatched.id, joined.id, accepted.id]
    assert subscriber.events()[0] == dispatched.to_dict()
    lines = [line for line in subscriber.stdout.splitlines() if not line.startswith("{")]
    assert lines == [
        f"[due 2026-05-11 14:00] dispatched case {dispatched.data['case_id']} (traffic.parking): "
        "人行道上停放多辆机动车，影响通行",
        f"[due 2026-05-11 14:00] joined case {joined.data['case_id']} by report r-joined (traffic.parking): "
        "人行道上停放多辆机动车，影响通行",
        f"[due no deadline] accepted case {accepted.data['case_id']} (traffic.parking): "
        "人行道上停放多辆机动车，影响通行",
    ]
    assert queue_state(amqp_url, subscriber.queue) == (0, 0)  # everything handled was acknowledged


def test_rejects_what_is_not_an_envelope_and_keeps_going(start_subscriber, amqp_url):
    queue = f"dept.traffic-police.test-{uuid.uuid4().hex[:8]}"
    subscriber = start_subscriber("--queue", queue, "--max-messages", "1", "--json", queue=queue)
    publish_raw(amqp_url, "case.dispatched.traffic-police", b"this is not json {", message_id="junk-1")
    publish_raw(amqp_url, "case.dispatched.traffic-police", {"hello": "world"}, message_id="junk-2")
    valid = case_event("dispatched", "traffic-police")
    publish(amqp_url, valid)

    assert subscriber.finish() == 0, subscriber.stderr
    assert [e["id"] for e in subscriber.events()] == [valid.id]
    assert "rejected message junk-1" in subscriber.stderr
    assert "rejected message junk-2" in subscriber.stderr
    assert queue_state(amqp_url, queue) == (0, 0)  # rejected without requeue: nothing is left


def test_reconnects_when_the_broker_goes_away(start_subscriber, amqp_url, police_url):
    proxy = TcpProxy(police_url).start()
    try:
        subscriber = start_subscriber("--max-messages", "1", "--json", url=proxy.url)
        proxy.cut()
        wait_for(lambda: queue_state(amqp_url, subscriber.queue) == (0, 0), what="the consumer to drop")
        during_outage = case_event("dispatched", "traffic-police")
        publish(amqp_url, during_outage)  # the durable queue keeps it while the subscriber is away
        proxy.restore()

        assert subscriber.finish() == 0, subscriber.stderr
        assert [e["id"] for e in subscriber.events()] == [during_outage.id]
        assert "reconnecting in 1 s" in subscriber.stderr
    finally:
        proxy.close()


def test_sigterm_stops_it_cleanly(start_subscriber):
    subscriber = start_subscriber()
    subscriber.process.send_signal(signal.SIGTERM)
    assert subscriber.finish(timeout=10) == 0, subscriber.stderr
    assert "stopped after 0 case event(s)" in subscriber.stderr
