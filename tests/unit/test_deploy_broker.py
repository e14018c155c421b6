"""The broker URL `python -m deploy.broker add-department` gives a department (deploy/broker.py): pika, which
departments use, and kombu, which the services use, must both read it as the intended vhost and user."""
from __future__ import annotations

from urllib.parse import urlparse

import pika
import pytest
from kombu.utils.url import parse_url

from deploy.broker import add_department, vhost_of, with_user


class RecordingAdmin:
    """The broker's administrator, keeping the definitions it was asked to apply."""

    def __init__(self):
        self.applied: list[dict] = []

    def apply(self, document: dict) -> None:
        self.applied.append(document)


@pytest.mark.parametrize("given, path, vhost", [
    ("amqp://guest:guest@mq.example:5672//", "/%2F", "/"),
    ("amqp://guest:guest@mq.example:5672/%2F", "/%2F", "/"),
    ("amqp://guest:guest@mq.example:5672", "/%2F", "/"),
    ("amqp://guest:guest@mq.example:5672/woodpecker", "/woodpecker", "woodpecker"),
    ("amqps://guest:guest@mq.example/city%2Flinyi%20east", "/city%2Flinyi%20east", "city/linyi east"),
], ids=["default written //", "default written %2F", "no vhost", "named", "named with / and space"])
def test_the_department_url_names_its_vhost_as_pika_and_kombu_read_it(given, path, vhost):
    admin = RecordingAdmin()
    url = add_department(given, "traffic-police", admin)
    assert urlparse(url).path == path
    assert pika.URLParameters(url).virtual_host == vhost
    assert parse_url(url)["virtual_host"] == vhost
    [permissions] = admin.applied[0]["permissions"]
    assert permissions["vhost"] == vhost


def test_the_department_url_carries_its_own_user_and_password_encoded():
    admin = RecordingAdmin()
    url = add_department("amqp://guest:guest@127.0.0.1:5672/woodpecker", "traffic-police", admin)
    parameters = pika.URLParameters(url)
    [user] = admin.applied[0]["users"]
    assert parameters.credentials.username == user["name"] == "dept-traffic-police@woodpecker"
    assert (parameters.host, parameters.port) == ("127.0.0.1", 5672)
    assert "guest" not in url


def test_a_query_of_the_broker_url_is_kept():
    url = with_user("amqps://guest:guest@mq.example:5671//?heartbeat=30", "dept-x", "p@ss/word")
    assert url == "amqps://dept-x:p%40ss%2Fword@mq.example:5671/%2F?heartbeat=30"
    assert pika.URLParameters(url).credentials.password == "p@ss/word"


@pytest.mark.parametrize("url, vhost", [("amqp://h//", "/"), ("amqp://h/%2F", "/"), ("amqp://h", "/"),
                                        ("amqp://h/a%2Fb", "a/b")])
def test_the_vhost_of_a_url_is_read_as_kombu_reads_it(url, vhost):
    assert vhost_of(url) == vhost == (parse_url(url)["virtual_host"] or "/")
