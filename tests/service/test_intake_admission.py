"""Admission through HTTP with the real broker: while the queues behind intake are over their limit, new reports
are refused with 503 and Retry-After, nothing stored; once the queues drain, the same request is taken.

The intake app watches one queue of the test's own, bound to `report.submitted` like routing's and read by
nobody, so that what other tests left in the session's queues does not count.
"""
import uuid

import pika
import pytest

from services.intake.app import create_app
from shared.admission import RETRY_AFTER_S
from shared.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from shared.events import EXCHANGE
from tests.conftest import settings_for_test
from tests.service.conftest import LANSHAN_01, upload_photo
from tests.support import wait_for

LIMIT = 2


@pytest.fixture
def behind(amqp_url):
    """A queue standing for the services behind intake, which have stopped taking their messages."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    queue = f"test.admission-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, EXCHANGE, "report.submitted")

    class Behind:
        name = queue

        @staticmethod
        def ready() -> int:
            return channel.queue_declare(queue, passive=True).method.message_count

        @staticmethod
        def drain() -> None:
            channel.queue_purge(queue)

    yield Behind
    channel.queue_delete(queue)
    connection.close()


@pytest.fixture
def intake_web(amqp_url, mongo_url, behind):
    app = create_app(settings_for_test("intake", amqp_url, mongo_url, admission_backlog=LIMIT,
                                       admission_queues=(behind.name,)))
    yield app, app.test_client()
    app.extensions["intake"].admission.stop()


def post_report(client, headers, photo_id, key=None):
    body = {"category": "traffic.parking", "description": "人行道上停放多辆机动车，影响通行",
            "location": LANSHAN_01, "photo_ids": [photo_id]}
    return client.post("/v1/reports", json=body, headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex})


def test_reports_are_refused_while_the_queues_behind_are_over_the_limit_and_taken_once_they_drain(
        intake_web, behind, volunteer):
    app, client = intake_web
    reports = app.extensions["intake"].store.reports
    photo_id = upload_photo(client, volunteer)["id"]
    for _ in range(LIMIT + 1):
        assert post_report(client, volunteer, photo_id).status_code == 201
    wait_for(lambda: behind.ready() > LIMIT, what="the reports' events in the queue behind")

    refused = wait_for(lambda: (r := post_report(client, volunteer, photo_id)).status_code == 503 and r,
                       what="a refusal once the admission has read the queue")
    assert refused.mimetype == PROBLEM_MEDIA_TYPE
    assert refused.json["type"] == PROBLEM_BASE + "busy" and refused.json["status"] == 503
    assert f"more than the {LIMIT}" in refused.json["detail"]
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_S)
    stored = reports.count_documents({})
    key = uuid.uuid4().hex
    assert post_report(client, volunteer, photo_id, key).status_code == 503
    assert reports.count_documents({}) == stored  # a refused report is not stored

    behind.drain()
    taken = wait_for(lambda: (r := post_report(client, volunteer, photo_id, key)).status_code == 201 and r,
                     what="the report taken once the queue drained")
    assert taken.headers.get("Idempotent-Replayed") != "true"  # the refusals had stored nothing under the key
    assert reports.count_documents({}) == stored + 1

