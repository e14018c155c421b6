"""Broker identities on the real broker: each service publishes only its own routing keys, a department
reads only its own cases, and consumers park what a service had no right to send."""
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pika
import pika.exceptions
import pytest

from deploy.broker import Rabbitmqctl, add_department, department_user, provision, vhost_of
from shared.events import EXCHANGE
from tests.support import TEST_RETRY_DELAYS_MS, wait_for

REPOSITORY = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(Rabbitmqctl.found() is None, reason="needs rabbitmqctl as root beside RabbitMQ")


@pytest.fixture(scope="module")
def service_urls(amqp_url):
    return provision(amqp_url, TEST_RETRY_DELAYS_MS, Rabbitmqctl.found())


def channel_as(url: str) -> pika.adapters.blocking_connection.BlockingChannel:
    channel = pika.BlockingConnection(pika.URLParameters(url)).channel()
    channel.confirm_delivery()
    return channel


def publish(url: str, routing_key: str, exchange: str = EXCHANGE) -> None:
    channel = channel_as(url)
    try:
        channel.basic_publish(exchange, routing_key, b"{}", pika.BasicProperties(delivery_mode=2))
    finally:
        if channel.connection.is_open:
            channel.connection.close()


@pytest.mark.parametrize("service, own, foreign", [
    ("intake", "report.submitted", "case.closed.sanitation"),
    ("routing", "case.closed.sanitation", "report.submitted"),
    ("hours", "volunteer.registered", "case.opened.none"),
])
def test_a_service_publishes_its_own_routing_keys_and_no_others(service_urls, service, own, foreign):
    publish(service_urls[service], own)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
        publish(service_urls[service], foreign)


def test_a_service_cannot_reach_another_services_queue_by_the_default_exchange(service_urls):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
        publish(service_urls["intake"], "routing.report-submitted", exchange="")


def test_a_service_cannot_read_another_services_queue(service_urls):
    channel = channel_as(service_urls["intake"])
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            channel.basic_get("routing.report-submitted")
    finally:
        channel.connection.close()


@pytest.fixture(scope="module")
def police(amqp_url):
    return add_department(amqp_url, "traffic-police", Rabbitmqctl.found())


def test_a_department_binds_its_own_queue_to_its_own_cases_and_receives_them(police, service_urls):
    channel = channel_as(police)
    try:
        queue = f"dept.traffic-police.{uuid.uuid4().hex[:6]}"
        channel.queue_declare(queue, auto_delete=True)
        channel.queue_bind(queue, EXCHANGE, "case.*.traffic-police")
        publish(service_urls["routing"], "case.dispatched.traffic-police")
        method, _, _ = channel.basic_get(queue, auto_ack=True)
        assert method is not None and method.routing_key == "case.dispatched.traffic-police"
    finally:
        channel.connection.close()


@pytest.mark.parametrize("binding", ["case.*.sanitation", "case.#", "#", "report.submitted"])
def test_the_broker_refuses_a_department_any_other_departments_cases(police, binding):
    channel = channel_as(police)
    try:
        queue = f"dept.traffic-police.{uuid.uuid4().hex[:6]}"
        channel.queue_declare(queue, auto_delete=True)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            channel.queue_bind(queue, EXCHANGE, binding)
    finally:
        if channel.connection.is_open:
            channel.connection.close()


def test_a_department_may_only_name_queues_of_its_own(police):
    channel = channel_as(police)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            channel.queue_declare("dept.sanitation.cases", auto_delete=True)
    finally:
        if channel.connection.is_open:
            channel.connection.close()



def printed_department_url(broker_url: str, code: str) -> str:
    """What `python -m deploy.broker add-department <code>` prints for the broker at `broker_url`."""
    done = subprocess.run([sys.executable, "-m", "deploy.broker", "add-department", code], cwd=REPOSITORY,
                          env={**os.environ, "AMQP_URL": broker_url}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [url] = re.findall(r"^\s+(amqps?://\S+)$", done.stdout, re.MULTILINE)
    return url


@pytest.fixture(params=["default vhost", "named vhost"])
def department_broker(request, amqp_url):
    """(AMQP_URL as an operator sets it, the same broker as pika reads it, a department code no other test
    uses): the default vhost `/` written `//` as in the services' own default, or this run's named vhost.
    The department's user is deleted afterwards."""
    if request.param == "default vhost":
        operator_url, pika_url = (urlparse(amqp_url)._replace(path=path).geturl() for path in ("//", "/%2F"))
    else:
        operator_url = pika_url = amqp_url
    code = f"test-{uuid.uuid4().hex[:8]}"
    yield operator_url, pika_url, code
    subprocess.run([Rabbitmqctl.found().path, "-q", "delete_user", department_user(code, vhost_of(operator_url))],
                   check=False, capture_output=True)


def test_the_printed_department_url_opens_with_pika_and_reads_the_departments_queue(department_broker):
    operator_url, pika_url, code = department_broker
    department = pika.BlockingConnection(pika.URLParameters(printed_department_url(operator_url, code)))
    guest = pika.BlockingConnection(pika.URLParameters(pika_url))
    try:
        queue = f"dept.{code}.cases"
        guest.channel().exchange_declare(EXCHANGE, "topic", durable=True)  # as provisioning declares it
        channel = department.channel()
        channel.queue_declare(queue, exclusive=True)  # gone with the connection, the default vhost's too
        channel.queue_bind(queue, EXCHANGE, f"case.*.{code}")
        # Straight to the department's queue: in the default vhost, the exchange may feed a running system's queues.
        guest.channel().basic_publish("", queue, b'{"type": "case.dispatched"}')
        method, _, body = wait_for(lambda: (got := channel.basic_get(queue, auto_ack=True))[0] and got,
                                   what="the message in the department's queue")
        assert body == b'{"type": "case.dispatched"}'
    finally:
        for connection in (department, guest):
            if connection.is_open:
                connection.close()
