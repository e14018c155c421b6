"""Service tests: a service in this process over HTTP (Flask's client), with the real broker."""
from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from shared.outbox import PENDING
from tests.conftest import bearer, run_service, settings_for_test
from tests.support import EventTap


@pytest.fixture(scope="module")
def intake(amqp_url, mongo_url):
    service = run_service(settings_for_test("intake", amqp_url, mongo_url))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def intake_routing_hours(amqp_url, mongo_url):
    """The three services a report's way to service hours passes, by name."""
    services = [run_service(settings_for_test(name, amqp_url, mongo_url)) for name in ("intake", "routing", "hours")]
    yield dict(zip(("intake", "routing", "hours"), services, strict=True))
    for service in reversed(services):
        service.stop()


@pytest.fixture
def fresh_intake(amqp_url, mongo_url):
    """An intake with a database of its own, for tests that count everything in it."""
    service = run_service(settings_for_test("intake", amqp_url, mongo_url))
    yield service
    service.stop()


@pytest.fixture
def fresh_hours(amqp_url, mongo_url):
    """An hours service with a database of its own, for tests that count or sample everything in it."""
    service = run_service(settings_for_test("hours", amqp_url, mongo_url))
    yield service
    service.stop()


@pytest.fixture
def subscribe(amqp_url):
    """Plain pika subscribers, as another system would bind them; closed after the test."""
    taps = []

    def bind(*patterns: str) -> EventTap:
        taps.append(EventTap(amqp_url, *patterns))
        return taps[-1]

    yield bind
    for tap in taps:
        tap.close()


@pytest.fixture
def tap(subscribe):
    """A subscriber to report events."""
    return subscribe("report.#")


def outbox_empty(service) -> bool:
    return service.app.extensions["intake"].store.reports.count_documents(PENDING) == 0


def jpeg_bytes(size=(64, 48), color="green", exif: bytes | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", **({"exif": exif} if exif else {}))
    return out.getvalue()


def upload_photo(client, headers, content: bytes | None = None, name="photo.jpg") -> dict:
    response = client.post("/v1/photos", headers=headers,
                           data={"file": (io.BytesIO(content or jpeg_bytes()), name)},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.json
    return response.json


# A point inside grid lanshan-01 (金雀山街道一网格) and one in hedong-03.
LANSHAN_01 = {"lat": 35.060, "lng": 118.315, "address": "金雀山路与沂蒙路交叉口"}
HEDONG_03 = {"lat": 35.100, "lng": 118.395}


def submit_report(client, headers, photo_ids, **fields) -> dict:
    body = {"category": "traffic.parking", "description": "人行道上停放多辆机动车，影响通行",
            "location": LANSHAN_01, "photo_ids": photo_ids, **fields}
    response = client.post("/v1/reports", headers=headers, json=body)
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def volunteer():
    return bearer("volunteer")


@pytest.fixture
def office():
    return bearer("office", "office-1")


@pytest.fixture
def raw_server() -> Iterator[Callable]:
    """A TCP listener on 127.0.0.1 that hands its first connection to the test's function, in a thread; the
    function gets the connection and an event set when the test ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    test_over = threading.Event()
    threads = []

    def serve(handle: Callable[[socket.socket, threading.Event], None]) -> int:
        def run() -> None:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                handle(connection, test_over)

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
        return listener.getsockname()[1]

    yield serve
    test_over.set()
    listener.close()
    for thread in threads:
        thread.join(5)
